"""ArtifactEstimator and its loader: an artifact score and heatmap from a latent, finished or mid-schedule.

The estimate is made on the model's denoised estimate x0 at the latent's σ (a finished latent is its own x0),
so it works at any step of the reverse process:

- ``trained``: the estimator checkpoint (``train.py estimator``, loaded with Load Artifact Estimator) reads
  (x0, σ) and gives per-pixel logits and a score (:mod:`models.estimator`).
- ``training-free``: denoise discrepancy (:func:`kernels.artifact.discrepancy`): x0 is re-noised to
  ``probe_sigma`` with a fixed noise and denoised once; the per-pixel change is the heatmap (what the model
  would redraw), its top-5 % mean the score. Costs one model call (two with cfg > 1). ``probe_sigma`` 0 (the
  default) is the model's own balanced level (:func:`probe_level`): σ 1 on SD-style models, 1/2 on flow models,
  where σ 1 would be pure noise and the "redraw" only the model's unconditional mean.

Outputs: one score per image (higher = more artifact), the heatmap as a MASK at image resolution (0..1, each
image scaled by its own peak), and an IMAGE overlay for viewing.
"""

from __future__ import annotations

import logging

import comfy.sample
import comfy.samplers
import folder_paths
import torch
from comfy_api.latest import io

from ..kernels import artifact
from ..kernels.heatmap import colorize
from ..models import checkpoint
from .common import CATEGORY, check_finite

log = logging.getLogger("stepwise")

Estimator = io.Custom("STEPWISE_ARTIFACT_ESTIMATOR")
SIGMA_KEY = "stepwise_sigma"  # σ of a LATENT returned mid-schedule by Stepwise's samplers
NOISY = 0.5  # robust noise estimate above which a latent without a σ is taken as unfinished
MIN_SIDE = 8  # smallest latent side estimated: below it the networks' norms see a single value per group


class LoadedEstimator:
    """An estimator network with its checkpoint metadata."""

    def __init__(self, net, meta: dict, name: str):
        self.net, self.meta, self.name = net, meta, name

    def check_model(self, model) -> None:
        """Refuse a diffusion model whose latent space differs from the one the estimator was trained on."""
        space = self.meta["latent_space"]
        fmt = model.get_model_object("latent_format")
        channels = fmt.latent_channels
        kind = "pixel" if type(fmt).__name__ == "ChromaRadiance" else "vae"
        want = space.get("latent_format", "pixel") if space["kind"] == "vae" else "pixel"
        have = type(fmt).__name__ if kind == "vae" else "pixel"
        if space["kind"] != kind or space["channels"] != channels or (kind == "vae" and want != have):
            raise ValueError(f"estimator {self.name!r} was trained on {want} ({space['channels']} channels) but the "
                             f"model works in {have} ({channels} channels); train one on this model with "
                             "`train.py estimator --base <this checkpoint>`")

    @torch.no_grad()
    def __call__(self, x0: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(heatmap B×h×w in [0, 1] = sigmoid of the logits, score B)."""
        weight = next(self.net.parameters())
        logits, score = self.net(x0.to(weight.device, weight.dtype), torch.full((len(x0),), float(sigma)))
        return torch.sigmoid(logits.squeeze(1).float()).cpu(), score.float().cpu()


def estimator_files() -> list[str]:
    """The estimator checkpoints in models/stepwise. A file that cannot be read (foreign, corrupt, metadata that
    is not a JSON object, unreadable) is left out with a warning: the list, and so the node's schema in
    /object_info, never depends on every file in the folder being well formed."""
    from .loader import FOLDER, checkpoint_files

    out = []
    for name in checkpoint_files():
        try:
            if checkpoint.read_metadata(folder_paths.get_full_path(FOLDER, name))["kind"] == "estimator":
                out.append(name)
        except checkpoint.CheckpointError:
            continue  # another kind of file; Load Stepwise Checkpoint names what is wrong with it when chosen
        except Exception as e:  # noqa: BLE001 - a listing must survive any file
            log.warning("models/%s/%s left out of Load Artifact Estimator's list: %s: %s", FOLDER, name,
                        type(e).__name__, e)
    return out


def load_estimator(path: str, name: str) -> LoadedEstimator:
    """The estimator in ``path``. Its metadata's network is built on the meta device and checked against the
    names and shapes of the file's tensors (from the header) before anything is allocated or loaded, so metadata
    that claims a huge network is refused at no cost."""
    from ..models.estimator import ArtifactEstimatorNet

    meta = checkpoint.read_metadata(path)
    checkpoint.check_kind(meta, "estimator", path)
    config = meta["network"].get("config")
    if meta["network"].get("class") != "artifact_estimator" or not isinstance(config, dict):
        raise checkpoint.CheckpointError(f"{name}: network {meta['network'].get('class')!r} is not an artifact "
                                         "estimator this pack builds")
    try:
        with torch.device("meta"):
            probe = ArtifactEstimatorNet(**config)
    except Exception as e:  # a config the network cannot take (unknown keys, wrong types, impossible sizes)
        raise checkpoint.CheckpointError(f"{name}: the estimator config {config!r} in its metadata cannot be built "
                                         f"({type(e).__name__}: {e})") from None
    checkpoint.check_tensors({k: tuple(v.shape) for k, v in probe.state_dict().items()},
                             checkpoint.tensor_shapes(path), name, "the estimator in its metadata")
    tensors, meta = checkpoint.load(path, "estimator")
    net = ArtifactEstimatorNet(**config)
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise checkpoint.CheckpointError(f"{name}: tensors do not match the estimator in its metadata ({e})") from None
    return LoadedEstimator(net.eval(), meta, name)


class LoadArtifactEstimator(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwiseLoadArtifactEstimator",
            display_name="Load Artifact Estimator",
            category=CATEGORY,
            description="Loads an artifact estimator trained by `train.py estimator` from models/stepwise.",
            inputs=[io.Combo.Input("estimator_name", options=estimator_files(),
                                   tooltip="An estimator checkpoint (.safetensors) in models/stepwise.")],
            outputs=[Estimator.Output("estimator", display_name="estimator",
                                      tooltip="The estimator, for Artifact Estimator and Artifact Early Reject "
                                              "(mode: trained).")],
        )

    @classmethod
    def execute(cls, estimator_name) -> io.NodeOutput:
        from .loader import FOLDER

        named = isinstance(estimator_name, str) and estimator_name
        path = folder_paths.get_full_path(FOLDER, estimator_name) if named else None
        if path is None:
            raise ValueError(f"estimator_name {estimator_name!r} is not in models/{FOLDER}; put train.py's "
                             "estimator there")
        return io.NodeOutput(load_estimator(path, estimator_name))


# --- model calls (through the host's sampler, so patches, wrappers and cfg apply as in sampling) ---

def denoise_once(model, positive, negative, latent: torch.Tensor, sigma: float, cfg: float, noise=None,
                 seed: int = 0) -> torch.Tensor:
    """The model's denoised estimate of the outer-space ``latent`` at ``sigma`` (re-noised by ``noise`` when given),
    in the model's inner space: one Euler step of the host's sampler from σ to 0."""
    sigmas = torch.tensor([float(sigma), 0.0])
    noise = torch.zeros_like(latent) if noise is None else noise
    seen = {}

    def callback(step, x0, x, total):
        seen["x0"] = x0.detach().float().cpu()

    comfy.sample.sample_custom(model, noise, cfg, comfy.samplers.sampler_object("euler"), sigmas, positive, negative,
                               latent, callback=callback, disable_pbar=True, seed=seed)
    return seen["x0"]


def estimated_noise(latent: torch.Tensor) -> float:
    """A robust estimate of i.i.d. noise in a latent: MAD of horizontal neighbour differences / √2 (× 1.4826)."""
    d = (latent[..., :, 1:] - latent[..., :, :-1]).float().flatten()
    return float(d.abs().median() * 1.4826 / 2 ** 0.5)


def image_scale(model, vae) -> int:
    if vae is not None:
        return int(vae.spacial_compression_decode())
    return 1 if type(model.get_model_object("latent_format")).__name__ == "ChromaRadiance" else 8


def overlay(heat: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
    """IMAGE (B×H×W×3): the colorised heatmap, blended over the decoded pixels when given."""
    colour = colorize(heat)
    if pixels is None:
        return colour
    pixels = pixels[..., :3].float().cpu()
    if pixels.shape[1:3] != heat.shape[1:3]:
        pixels = torch.nn.functional.interpolate(pixels.permute(0, 3, 1, 2), size=heat.shape[1:3],
                                                 mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    alpha = (0.25 + 0.6 * heat).unsqueeze(-1)
    return pixels * (1 - alpha) + colour * alpha


def estimate(model, positive, negative, latent: dict, sigma: float, mode: str, estimator, probe_sigma: float,
             cfg: float, seed: int):
    """(heatmap on the latent grid B×h×w in [0, 1], score B) for a LATENT at σ."""
    import comfy.model_management

    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    inner = model.get_model_object("process_latent_in")
    if sigma > 0:
        x0 = denoise_once(model, positive, negative, samples, sigma, cfg, seed=seed)
    else:
        x0 = inner(samples.float())
    comfy.model_management.throw_exception_if_processing_interrupted()
    if mode == "trained":
        return estimator(x0, sigma)
    noise = comfy.sample.prepare_noise(samples, seed)
    outer = model.get_model_object("process_latent_out")(x0)
    probe = probe_level(model, probe_sigma)
    log.info("training-free probe at sigma %.4g", probe)
    again = denoise_once(model, positive, negative, outer, probe, cfg, noise=noise, seed=seed)
    heat = artifact.discrepancy(x0, again)
    return artifact.normalise(heat), artifact.score(heat)


MODES = ("training-free", "trained")


def probe_level(model, probe_sigma: float) -> float:
    """σ of the training-free re-noising: ``probe_sigma``, or for 0 (auto) the σ at which the re-noised latent is
    as much signal as noise in the model's own noising (:func:`kernels.artifact.balanced_sigma` on its
    ``model_sampling``: 1.0 on SD-style models, 0.5 on flow models). A σ at or above the model's largest one
    leaves no trace of the image, so it is refused."""
    sampling = model.get_model_object("model_sampling")
    lo, hi = float(sampling.sigma_min), float(sampling.sigma_max)
    if probe_sigma == 0:
        one, zero = torch.ones(1, 1), torch.zeros(1, 1)

        def scales(sigma: float) -> tuple[float, float]:
            s = torch.tensor([sigma])
            return float(sampling.noise_scaling(s, zero, one)), float(sampling.noise_scaling(s, one, zero))

        return artifact.balanced_sigma(scales, lo, hi)
    if probe_sigma >= hi:
        auto = probe_level(model, 0.0)
        raise ValueError(f"probe_sigma {probe_sigma:g} is at or above this model's largest sigma ({hi:.4g}): re-noised "
                         f"there, nothing of the image is left to redraw; use 0 (auto: {auto:.3g} for this model) or a "
                         f"value below {hi:.4g}")
    return probe_sigma


def check_mode(mode: str, estimator, model) -> None:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "trained":
        if estimator is None:
            raise ValueError("mode 'trained' needs an estimator: connect Load Artifact Estimator, or use mode "
                             "'training-free'")
        estimator.check_model(model)


def check_size(samples: torch.Tensor) -> None:
    """Refuse a latent too small to estimate on (a 1×1 latent would reach the networks and fail in a norm layer)."""
    h, w = samples.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"the latent is {h}×{w}; Artifact Estimator needs at least {MIN_SIDE}×{MIN_SIDE} latent "
                         f"cells ({8 * MIN_SIDE}×{8 * MIN_SIDE} px for an SD VAE's 8× latents, {MIN_SIDE}×{MIN_SIDE} "
                         "px in pixel space): estimate a larger image")


class ArtifactEstimator(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwiseArtifactEstimator",
            display_name="Artifact Estimator",
            category=CATEGORY,
            description=("Scores each image of a latent for artifacts and draws where they are, from the model's "
                         "denoised estimate: works on a finished latent or one returned mid-schedule (give its "
                         "sigma). trained: an estimator checkpoint; training-free: what the model would redraw "
                         "after re-noising."),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model that made the latent."),
                io.Conditioning.Input("positive", tooltip="The positive prompt the latent was sampled with."),
                io.Conditioning.Input("negative", tooltip="The negative prompt (used when cfg > 1)."),
                io.Latent.Input("latent", tooltip="A finished latent, or one with leftover noise at sigma."),
                io.Combo.Input("mode", options=list(MODES), default="training-free",
                               tooltip="trained: the connected estimator; training-free: denoise discrepancy."),
                io.Float.Input("sigma", default=0.0, min=0.0, max=1000.0, step=0.001,
                               tooltip="Noise level of the latent: 0 for a finished one. Ignored when sigmas is "
                                       "connected or the latent carries its sigma (from Artifact Early Reject)."),
                io.Float.Input("probe_sigma", default=0.0, min=0.0, max=100.0, step=0.01,
                               tooltip="training-free: the noise level (σ) x0 is re-noised to before it is denoised "
                                       "again. 0 = auto: half signal, half noise for this model (σ 1.0 on SD-style "
                                       "models, about timestep 350 of SD1.5's schedule; 0.5 on flow models). Must "
                                       "stay below the model's largest σ."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1,
                               tooltip="CFG scale of the model calls (1 = one call, positive only)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=False,
                             tooltip="Seed of the re-noising noise (training-free)."),
                Estimator.Input("estimator", optional=True, tooltip="From Load Artifact Estimator (mode trained)."),
                io.Sigmas.Input("sigmas", optional=True,
                                tooltip="The schedule the latent was sampled on; with step, gives its sigma."),
                io.Int.Input("step", default=0, min=0, max=10000, optional=True,
                             tooltip="With sigmas: the number of steps taken (the latent's sigma is sigmas[step])."),
                io.Vae.Input("vae", optional=True, tooltip="Decodes the latent for the overlay and sets the image "
                                                            "resolution of the heatmap."),
            ],
            outputs=[
                io.Float.Output("scores", display_name="scores", is_output_list=True,
                                tooltip="One score per image; higher means more artifact."),
                io.Mask.Output("heatmap", display_name="heatmap",
                               tooltip="Where the artifacts are, 0..1 at image resolution."),
                io.Image.Output("overlay", display_name="overlay",
                                tooltip="The heatmap over the decoded image (or alone without a VAE)."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent, mode, sigma, probe_sigma, cfg, seed, estimator=None,
                sigmas=None, step=0, vae=None) -> io.NodeOutput:
        check_finite(sigma=sigma, probe_sigma=probe_sigma, cfg=cfg)
        check_mode(mode, estimator, model)
        check_size(latent["samples"])
        if sigmas is not None:
            if not 0 <= step < len(sigmas):
                raise ValueError(f"step {step} is outside the {len(sigmas) - 1}-step schedule of sigmas (0..{len(sigmas) - 1})")
            sigma = float(sigmas[step])
        elif SIGMA_KEY in latent and sigma == 0:
            sigma = float(latent[SIGMA_KEY])
        elif sigma == 0:
            samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
            noise = estimated_noise(model.get_model_object("process_latent_in")(samples.float()))
            if noise > NOISY:
                raise ValueError(f"the latent looks unfinished (estimated noise {noise:.2f}) but sigma is 0; set sigma "
                                 "to its noise level, or connect the sigmas it was sampled with and the step")
        heat, scores = estimate(model, positive, negative, latent, sigma, mode, estimator, probe_sigma, cfg, seed)
        scale = image_scale(model, vae)
        big = artifact.to_image(heat, heat.shape[-2] * scale, heat.shape[-1] * scale).clamp(0, 1)
        pixels = vae.decode(latent["samples"]) if vae is not None and sigma == 0 else None
        if pixels is not None and pixels.ndim == 5:
            pixels = pixels.reshape(-1, *pixels.shape[-3:])
        log.info("artifact scores (%s, sigma %.3f): %s", mode, sigma, [round(float(s), 4) for s in scores])
        return io.NodeOutput([float(s) for s in scores], big, overlay(big, pixels))
