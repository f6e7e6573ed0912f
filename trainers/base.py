"""The one loader of the checkpoints trainers start from or read, and of the VAEs that make their latents.

- :func:`load_base`: a host checkpoint (SD1.x/SD2.x/SDXL, anything ``comfy.sd`` loads, or a world model) as a
  :class:`BaseCheckpoint`: its model in fp32, its text encoder, its VAE as a :class:`LatentCodec`, its name and
  hash for the metadata. The refiner and pose trainers fine-tune it; the estimator reads it.
- :func:`load_vae`: the VAE of a checkpoint or VAE file, for from-scratch models in a VAE's latent space.
- :class:`DiffusionBase`: the diffusion model whose x0 estimates the estimator (and ``eval/``) read, from a host
  checkpoint or a Stepwise refiner/pose checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from ..models import checkpoint, diffusion


class LatentCodec:
    """Images in [-1, 1] (N×3×H×W) to a model's inner latents and back, through a host VAE and the model's latent
    format (``process_in`` / ``process_out``)."""

    def __init__(self, vae, latent_format):
        self.vae = vae
        self.format = latent_format

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        pixels = ((images + 1) / 2).permute(0, 2, 3, 1)  # host IMAGE layout, [0, 1]
        return self.format.process_in(self.vae.encode(pixels).float())

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(self.format.process_out(latents)).permute(0, 3, 1, 2) * 2 - 1


def load_vae(path: str, latent_format) -> LatentCodec:
    """The VAE of a checkpoint (its ``first_stage_model.`` tensors) or of a VAE file, in ``latent_format``."""
    import comfy.sd
    import comfy.utils

    sd = comfy.utils.load_torch_file(path)
    vae_sd = {k[len("first_stage_model."):]: v for k, v in sd.items() if k.startswith("first_stage_model.")}
    return LatentCodec(comfy.sd.VAE(sd=vae_sd or sd), latent_format)


def parameterisation_of(model) -> str:
    """What a host model predicts: ``flow`` (CONST sampling), ``v`` or ``eps``."""
    import comfy.model_sampling as msm

    sampling = model.model_sampling
    if isinstance(sampling, msm.CONST):
        return "flow"
    if isinstance(sampling, msm.V_PREDICTION):
        return "v"
    return "eps"


@dataclass
class TextConditioning:
    """A caption read by a checkpoint's text encoder: the raw ``(cond, pooled)`` a sampler's conditioning holds,
    and the model inputs (``c_crossattn``, and ``y`` for SDXL) the training loss feeds ``apply_model``."""

    cond: torch.Tensor
    pooled: torch.Tensor | None
    inputs: dict[str, torch.Tensor]


@dataclass
class BaseCheckpoint:
    """A host checkpoint loaded in fp32: its model (on the CPU until a trainer moves it), text encoder and VAE."""

    path: str
    patcher: Any  # comfy.model_patcher.ModelPatcher
    clip: Any | None  # comfy.sd.CLIP, None when the checkpoint has no text encoder
    codec: LatentCodec

    @property
    def model(self):
        """The host's BaseModel (``.diffusion_model`` is the UNet)."""
        return self.patcher.model

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def parameterisation(self) -> str:
        return parameterisation_of(self.model)

    def reference(self) -> dict:
        """The checkpoint metadata's ``base`` entry: file name and SHA-256."""
        return {"name": self.name, "sha256": checkpoint.sha256(self.path)}

    def latent_space(self, channels: int | None = None) -> dict:
        """The checkpoint metadata's ``latent_space`` entry for a model in this checkpoint's latents."""
        fmt = self.model.latent_format
        return {"kind": "vae", "latent_format": type(fmt).__name__,
                "channels": fmt.latent_channels if channels is None else channels, "vae": self.name}

    def prompt(self, caption: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(cond, pooled)`` of ``caption``, as the host's text encode node makes them."""
        return self.clip.encode_from_tokens(self.clip.tokenize(caption), return_pooled=True)

    def text(self, caption: str, width: int, height: int, device) -> TextConditioning:
        """``caption`` as conditioning for images of ``width`` × ``height`` pixels (SDXL's size inputs)."""
        cond, pooled = self.prompt(caption)
        extra = self.model.extra_conds(cross_attn=cond, pooled_output=pooled, width=width, height=height,
                                       device=device)
        return TextConditioning(cond, pooled, {k: v.cond.float() for k, v in extra.items()})


def _world_parts(path: str):
    """``(patcher, clip, vae)`` in fp32 when ``path`` is a world checkpoint trained from scratch (``train.py world``),
    through the pack's own loader (the host's model detection does not know its config); ``None`` for anything else,
    a world checkpoint fine-tuned from a host checkpoint included (the host loads those itself)."""
    from ..models import world_model

    try:
        meta = checkpoint.read_metadata(path)
    except checkpoint.CheckpointError:
        return None
    if not world_model.from_scratch(meta):
        return None
    tensors, _ = checkpoint.load(path, "world")
    return world_model.load_parts(tensors, dtype=torch.float32)


def load_base(path: str | None, text: bool = True) -> BaseCheckpoint:
    """Load the host checkpoint ``path`` (``--base``) in fp32; with ``text`` it must have a text encoder. A world
    checkpoint from ``train.py world`` counts as a host checkpoint (it is one, in SD1.5's layout)."""
    import comfy.sd

    if not path or not os.path.isfile(path):
        raise ValueError(f"--base {path!r} is not a file; give a checkpoint the host can load")
    world = _world_parts(path)
    if world is not None:
        patcher, clip, vae = world
    else:
        patcher, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(path, model_options={"dtype": torch.float32})
    if text and (clip is None or vae is None):
        raise ValueError(f"--base {path!r} has no text encoder or VAE; use a full checkpoint")
    if vae is None:
        raise ValueError(f"--base {path!r} has no VAE; use a full checkpoint")
    return BaseCheckpoint(path, patcher, clip, LatentCodec(vae, patcher.model.latent_format))


def stack_conds(rows: list[dict[str, torch.Tensor]], device) -> dict[str, torch.Tensor]:
    """One batch of per-image model inputs; captions of different token lengths repeat to a common length (the
    host's rule for ``c_crossattn``)."""
    import comfy.conds

    out = {}
    for k in rows[0]:
        tensors = [r[k] for r in rows]
        if k == "c_crossattn" and len({t.shape[1] for t in tensors}) > 1:
            wrapped = [comfy.conds.CONDCrossAttn(t) for t in tensors]
            out[k] = wrapped[0].concat(wrapped[1:]).to(device)
        else:
            out[k] = torch.cat(tensors).to(device)
    return out


class DiffusionBase:
    """The diffusion model whose x0 estimates the estimator reads, with its encoder into the model's space: a host
    checkpoint (its VAE makes the latents; the empty prompt conditions it) or a Stepwise refiner/pose checkpoint
    (pixel space, or ``vae`` for its latents; a pose model gets the null pose)."""

    def __init__(self, path: str, vae: str | None, device):
        self.name = os.path.basename(path)
        meta = None
        try:
            meta = checkpoint.read_metadata(path)
        except checkpoint.CheckpointError:
            pass
        if meta is not None and meta["kind"] != "world":  # a world checkpoint is a host checkpoint: below
            if meta["kind"] not in ("refiner", "pose"):
                raise ValueError(f"--base {path!r} is a {meta['kind']} checkpoint; give a diffusion model (a host "
                                 "checkpoint, a world model, or a Stepwise refiner or pose model)")
            self.patcher = diffusion.model_patcher(*checkpoint.load(path), self.name)
            self.timestep_range = tuple(meta["timestep_range"])
            self.model = self.patcher.model
            self.latent_space = meta["latent_space"]
            self.cond = {"c_crossattn": None}
            if meta["conditioning"] not in ("none", "keypoints"):
                raise ValueError(f"--base {path!r} needs {meta['conditioning']} conditioning; use a host checkpoint "
                                 "with its text encoder, or an unconditional/pose model")
            if hasattr(self.model, "pose_context"):  # a pose model: the null pose
                from ..models.pose import null_pose

                self.cond = {"c_crossattn": self.model.pose_context(null_pose().unsqueeze(0)).detach()}
            if self.latent_space["kind"] == "pixel":
                self.encode_fn = lambda x: x
            else:
                if not vae:
                    raise ValueError(f"--base {path!r} works in {self.latent_space['latent_format']} latents: give "
                                     "--vae (the checkpoint or VAE file that makes them)")
                self.encode_fn = load_vae(vae, self.model.latent_format).encode
        else:
            base = load_base(path, text=False)
            self.patcher = base.patcher
            self.model = base.model
            self.timestep_range = (0, 1000)
            self.latent_space = base.latent_space()
            self.cond = {"c_crossattn": None}
            if base.clip is not None:
                with torch.no_grad():
                    empty = base.text("", 64, 64, device)
                self.cond = {k: v.to(device) for k, v in empty.inputs.items()}
            self.encode_fn = base.codec.encode
        self.model.diffusion_model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = device
        self.sha256 = checkpoint.sha256(path)

    @property
    def parameterisation(self) -> str:
        return parameterisation_of(self.model)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.encode_fn(images[i:i + 16].to(self.device)) for i in range(0, len(images), 16)])

    @torch.no_grad()
    def x0(self, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The model's denoised estimate of ``x`` noised with ``noise`` to ``sigma`` (B); σ = 0 returns ``x``."""
        s = sigma.view(-1, *([1] * (x.ndim - 1)))
        out = self.denoise(self.model.model_sampling.noise_scaling(s, noise, x), sigma)
        return torch.where(s > 0, out, x)

    @torch.no_grad()
    def denoise(self, x_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The model's denoised estimate of ``x_t``, a sample already at noise level ``sigma`` (B) in the model's own
        noising (``x + σ·n`` for eps/v, ``(1 − σ)·x + σ·n`` for flow): what a sampler's step calls."""
        conds = {k: (v.expand(len(x_t), *v.shape[1:]) if torch.is_tensor(v) else v) for k, v in self.cond.items()}
        return self.model.apply_model(x_t, sigma.clamp_min(1e-4), **conds).float()
