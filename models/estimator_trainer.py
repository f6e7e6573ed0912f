"""``train.py estimator``: train the artifact estimator on a diffusion model's x0 estimates of synthetic artifacts.

Each step takes clean images and, for each, a corrupted copy from the synthetic artifact generator
(:func:`models.world.corrupt`, every kind, exact masks). Both are noised with the same noise to the same
timestep (drawn over ``--t-range``, plus a share of finished images at σ = 0) and the diffusion model of
``--base`` denoises them once: its x0 estimates, exactly what a sampler holds at that step, are what the
estimator sees. Losses: per-pixel BCE of the logits against the mask on the latent grid (clean images: all
zeros), plus a logistic ranking loss that makes each corrupted estimate outscore its clean twin.

``--base`` is any checkpoint the host loads (its VAE makes the latents; the empty prompt conditions it) or a
Stepwise refiner/pose checkpoint (pixel space, or ``--vae`` for its latents). At the end the held-out images
(every tenth) are scored at probe fractions of a sampling schedule and image/pixel AUROC is logged and saved
in the metadata.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from . import checkpoint, diffusion
from .estimator import ArtifactEstimatorNet
from .init import seeded_init_
from .trainer import _VAE, RefinerOptions, _check_common, _device, _parameterisation_of, _train, load_images

log = logging.getLogger("stepwise.train")

WIDTHS = {"tiny": 16, "compact": 24, "small": 32}


@dataclass
class EstimatorOptions(RefinerOptions):
    arch: str = "small"
    t_range: tuple[int, int] = (0, 1000)
    clean_share: float = 0.1  # share of finished images (σ = 0) in each batch
    region: tuple[float, float] = (0.2, 0.45)  # artifact size range (share of the side)
    rank_weight: float = 1.0
    probes: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    eval_steps: int = 20


class DiffusionBase:
    """The diffusion model whose x0 estimates the estimator reads, with its encoder into the model's space."""

    def __init__(self, path: str, vae: str | None, device):
        self.name = os.path.basename(path)
        meta = None
        try:
            meta = checkpoint.read_metadata(path)
        except checkpoint.CheckpointError:
            pass
        if meta is not None:
            if meta["kind"] not in ("refiner", "pose"):
                raise ValueError(f"--base {path!r} is a {meta['kind']} checkpoint; give a diffusion model (a host "
                                 "checkpoint, or a Stepwise refiner or pose model)")
            self.patcher = diffusion.model_patcher(*checkpoint.load(path), self.name)
            self.timestep_range = tuple(meta["timestep_range"])
            self.model = self.patcher.model
            self.latent_space = meta["latent_space"]
            self.cond = {"c_crossattn": None}
            if meta["conditioning"] not in ("none", "keypoints"):
                raise ValueError(f"--base {path!r} needs {meta['conditioning']} conditioning; use a host checkpoint "
                                 "with its text encoder, or an unconditional/pose model")
            if hasattr(self.model, "pose_context"):  # a pose model: the null pose
                from .pose import null_pose

                self.cond = {"c_crossattn": self.model.pose_context(null_pose().unsqueeze(0)).detach()}
            if self.latent_space["kind"] == "pixel":
                self.encode_fn = lambda x: x
            else:
                if not vae:
                    raise ValueError(f"--base {path!r} works in {self.latent_space['latent_format']} latents: give "
                                     "--vae (the checkpoint or VAE file that makes them)")
                self.encode_fn = _VAE(vae, self.model.latent_format).encode
        else:
            import comfy.sd

            if not os.path.isfile(path):
                raise ValueError(f"--base {path!r} is not a file; give a checkpoint the host can load")
            self.patcher, clip, vae_obj, _ = comfy.sd.load_checkpoint_guess_config(
                path, model_options={"dtype": torch.float32})
            if vae_obj is None:
                raise ValueError(f"--base {path!r} has no VAE; use a full checkpoint")
            self.model = self.patcher.model
            self.timestep_range = (0, 1000)
            fmt = self.model.latent_format
            self.latent_space = {"kind": "vae", "latent_format": type(fmt).__name__,
                                 "channels": fmt.latent_channels, "vae": self.name}
            self.cond = {"c_crossattn": None}
            if clip is not None:
                with torch.no_grad():
                    c, pooled = clip.encode_from_tokens(clip.tokenize(""), return_pooled=True)
                    extra = self.model.extra_conds(cross_attn=c, pooled_output=pooled, width=64, height=64,
                                                   device=device)
                self.cond = {k: v.cond.float().to(device) for k, v in extra.items()}
            self.encode_fn = lambda x: fmt.process_in(vae_obj.encode(((x + 1) / 2).permute(0, 2, 3, 1)).float())
        self.model.diffusion_model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = device
        self.sha256 = checkpoint.sha256(path)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.encode_fn(images[i:i + 16].to(self.device)) for i in range(0, len(images), 16)])

    @torch.no_grad()
    def x0(self, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The model's denoised estimate of ``x`` noised with ``noise`` to ``sigma`` (B); σ = 0 returns ``x``."""
        ms = self.model.model_sampling
        s = sigma.view(-1, *([1] * (x.ndim - 1)))
        conds = {k: (v.expand(len(x), *v.shape[1:]) if torch.is_tensor(v) else v) for k, v in self.cond.items()}
        out = self.model.apply_model(ms.noise_scaling(s, noise, x), sigma.clamp_min(1e-4), **conds).float()
        return torch.where(s > 0, out, x)


def corrupted_pairs(images: np.ndarray, rng: np.random.Generator, region=(0.2, 0.45)):
    """For uint8 images (N×H×W×3): their corrupted copies (every artifact kind) and exact masks (N×H×W)."""
    from .world import corrupt

    bad, masks = [], []
    for image in images:
        for _ in range(20):  # an artifact on a flat region may change nothing: draw until it shows
            out, mask, _ = corrupt(image, rng, None, region=float(rng.uniform(*region)))
            if mask.mean() >= 0.01:
                break
        bad.append(out)
        masks.append(mask)
    return np.stack(bad), np.stack(masks)


def mask_to_grid(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Masks (B×H×W) as the share of artifact pixels in each cell of the latent grid (B×h×w)."""
    return torch.nn.functional.adaptive_avg_pool2d(masks.unsqueeze(1).float(), size).squeeze(1)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)


def train_estimator(opts: EstimatorOptions) -> dict:
    """Train an estimator on ``opts.data`` with ``opts.base``'s x0 estimates; returns the written metadata."""
    _check_common(opts)
    if not opts.base:
        raise ValueError("--base is required: the diffusion model whose x0 estimates the estimator reads")
    if opts.arch not in WIDTHS:
        raise ValueError(f"--arch {opts.arch!r} is not one of {', '.join(WIDTHS)}")
    if opts.lora_rank:
        raise ValueError("--lora-rank is for refiners")
    if not 0 <= opts.clean_share < 1:
        raise ValueError(f"--clean-share {opts.clean_share} must be in [0, 1)")
    device = _device(opts.device)
    torch.manual_seed(opts.seed)
    images, _, skipped = load_images(opts.data, opts.resolution)
    if len(images) < 2:
        raise ValueError(f"--data {opts.data!r} has {len(images)} readable image; the estimator needs at least 2 "
                         "(every tenth is held out)")
    held = torch.arange(len(images)) % 10 == 9 if len(images) >= 10 else torch.zeros(len(images), dtype=torch.bool)
    train_images, test_images = images[~held], images[held]
    base = DiffusionBase(opts.base, opts.vae, device)
    lo, hi = base.timestep_range
    if not lo <= opts.t_range[0] < opts.t_range[1] <= hi:
        raise ValueError(f"--t-range {opts.t_range[0]} {opts.t_range[1]} lies outside the timesteps --base was trained "
                         f"on [{lo}, {hi}); its x0 estimates there mean nothing")
    x_shape = base.encode(train_images[:1]).shape[1:]
    net = ArtifactEstimatorNet(x_shape[0], width=WIDTHS[opts.arch]).to(device)
    seeded_init_(net, opts.seed)
    with torch.no_grad():
        net.head.weight.zero_()  # start from "no artifact anywhere" (logit −2) rather than from noise
        net.head.bias.fill_(-2.0)
    table = base.model.model_sampling.sigmas.detach().to(device)
    uint8 = _to_uint8(train_images)

    def step_loss(idx: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (), generator=generator)))
        clean = uint8[idx.numpy()]
        bad, masks = corrupted_pairs(clean, rng, opts.region)
        x = base.encode(_to_tensor(np.concatenate([clean, bad])))
        sigma = table[t.to(device)]
        sigma = torch.where(torch.rand(len(idx), generator=generator).to(device) < opts.clean_share,
                            torch.zeros_like(sigma), sigma)
        noise = torch.randn((len(idx), *x_shape), generator=generator).to(device)
        x0 = base.x0(x, sigma.repeat(2), noise.repeat(2, 1, 1, 1))
        logits, scores = net(x0, sigma.repeat(2))
        target = torch.cat([torch.zeros(len(idx), *x_shape[1:]),
                            mask_to_grid(torch.from_numpy(masks), tuple(x_shape[1:]))]).to(device)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1).float(), target)
        rank = torch.nn.functional.softplus(scores[:len(idx)].float() - scores[len(idx):].float()).mean()
        return bce + opts.rank_weight * rank

    evaluation: dict = {}

    def finish():
        if len(test_images) >= 2:
            evaluation.update(evaluate(net, base, test_images, opts.probes, opts.eval_steps, opts.seed + 1,
                                       opts.region))
            for row in evaluation["probes"]:
                log.info("held-out: probe %.2f (sigma %.3f): image AUROC %.3f, pixel AUROC %.3f", row["probe"],
                         row["sigma"], row["image_auroc"], row["pixel_auroc"])
            meta = checkpoint.read_metadata(opts.out)
            tensors, _ = checkpoint.load(opts.out)
            meta["evaluation"] = evaluation
            checkpoint.save(opts.out, tensors, meta)

    setup = {
        "model": base.model, "modules": [("", net)], "loss": step_loss, "kind": "estimator", "lora": None,
        "network": {"class": "artifact_estimator", "config": net.config(), "arch": opts.arch},
        "parameterisation": _parameterisation_of(base.model), "latent_space": base.latent_space,
        "conditioning": "none", "base": {"name": base.name, "sha256": base.sha256},
        "samples": lambda model, step: None, "finish": finish,
        "extra_meta": {"clean_share": opts.clean_share, "region": list(opts.region), "rank_weight": opts.rank_weight,
                       "held_out_images": int(held.sum())},
    }
    return _train(opts, setup, len(train_images), skipped)


def probe_sigma(model_sampling, probe: float, steps: int, scheduler: str = "karras") -> float:
    """σ after ``round(probe · steps)`` steps of a ``steps``-step schedule (probe 1.0: the finished image, σ = 0)."""
    import comfy.samplers

    sigmas = comfy.samplers.calculate_sigmas(model_sampling, scheduler, steps).cpu()
    return float(sigmas[int(round(probe * steps))])


@torch.no_grad()
def evaluate(net, base: DiffusionBase, images: torch.Tensor, probes, steps: int, seed: int, region=(0.2, 0.45)):
    """Image and pixel AUROC of the estimator on held-out clean/corrupted pairs at each probe fraction."""
    from ..kernels.artifact import auroc, pixel_auroc

    rng = np.random.default_rng(seed)
    clean = _to_uint8(images)
    bad, masks = corrupted_pairs(clean, rng, region)
    x = base.encode(_to_tensor(np.concatenate([clean, bad])))
    labels = torch.cat([torch.zeros(len(clean)), torch.ones(len(bad))])
    noise = torch.randn((len(clean), *x.shape[1:]), generator=torch.Generator().manual_seed(seed)).to(x.device)
    rows = []
    for probe in probes:
        sigma = probe_sigma(base.model.model_sampling, probe, steps)
        s = torch.full((len(x),), sigma, device=x.device)
        x0 = base.x0(x, s, noise.repeat(2, 1, 1, 1))
        logits, scores = net(x0, s)
        heat = torch.sigmoid(logits.squeeze(1).float()).cpu()
        grid = mask_to_grid(torch.from_numpy(masks), tuple(heat.shape[-2:])) > 0.5
        rows.append({"probe": probe, "sigma": round(sigma, 4), "image_auroc": round(auroc(scores.cpu(), labels), 4),
                     "pixel_auroc": round(pixel_auroc(heat[len(clean):], grid), 4)})
    return {"pairs": len(clean), "sampling_steps": steps, "probes": rows}
