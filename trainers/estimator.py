"""``train.py estimator``: train the artifact estimator on a diffusion model's x0 estimates of synthetic artifacts.

Each step takes clean images and, for each, a corrupted copy from the synthetic artifact generator
(:func:`stepwise.models.world.corrupt`, every kind, exact masks). Both are noised with the same noise to the same
timestep (drawn over ``--t-range``, plus a share of finished images at σ = 0) and the diffusion model of
``--base`` denoises them once: its x0 estimates, exactly what a sampler holds at that step, are what the
estimator sees. Losses: per-pixel BCE of the logits against the mask on the latent grid (clean images: all
zeros), plus a logistic ranking loss that makes each corrupted estimate outscore its clean twin.

``--base`` is any checkpoint the host loads (its VAE makes the latents; the empty prompt conditions it) or a
Stepwise refiner/pose checkpoint (pixel space, or ``--vae`` for its latents): see
:class:`stepwise.trainers.base.DiffusionBase`. At the end the held-out images (every tenth) are scored at probe
fractions of a sampling schedule and image/pixel AUROC is logged and saved in the metadata.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..models import checkpoint
from ..models.estimator import ArtifactEstimatorNet
from ..models.init import seeded_init_
from .base import DiffusionBase
from .data import EpochOrder, read_data
from .loop import device_of, train
from .setup import CheckpointInfo, EstimatorOptions, Setup

log = logging.getLogger("stepwise.train")

WIDTHS = {"tiny": 16, "compact": 24, "small": 32}


def corrupted_pairs(images: np.ndarray, rng, region=(0.2, 0.45)):
    """For uint8 images (N×H×W×3): their corrupted copies (every artifact kind) and exact masks (N×H×W). ``rng``: one
    generator drawn from image after image, or one generator per image (then an image's artifact depends on its own
    generator alone, so a multi-process run can corrupt only its own rows)."""
    from ..models.world import corrupt

    rngs = rng if isinstance(rng, (list, tuple)) else [rng] * len(images)
    bad, masks = [], []
    for image, rng in zip(images, rngs):
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


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] (N×3×H×W) as uint8 N×H×W×3."""
    return ((images.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N×H×W×3) as N×3×H×W in [-1, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)


def train_estimator(opts: EstimatorOptions) -> dict:
    """Train an estimator on ``opts.data`` with ``opts.base``'s x0 estimates; returns the written metadata."""
    opts.check()
    if opts.cache:
        raise ValueError(f"--cache {opts.cache}: train.py estimator encodes each image differently every time (random artifacts), so "
                         "there are no latents to keep; drop --cache")
    if not opts.base:
        raise ValueError("--base is required: the diffusion model whose x0 estimates the estimator reads")
    if opts.arch not in WIDTHS:
        raise ValueError(f"--arch {opts.arch!r} is not one of {', '.join(WIDTHS)}")
    if opts.lora_rank:
        raise ValueError("--lora-rank is for refiners")
    if not 0 <= opts.clean_share < 1:
        raise ValueError(f"--clean-share {opts.clean_share} must be in [0, 1)")
    device = device_of(opts.device)
    torch.manual_seed(opts.seed)
    data = read_data(opts)
    if data.count < 2:
        raise ValueError(f"--data {opts.data!r} has {data.count} readable image; the estimator needs at least 2 "
                         "(every tenth is held out)")
    held = torch.arange(data.count) % 10 == 9 if data.count >= 10 else torch.zeros(data.count, dtype=torch.bool)
    train_ids = torch.nonzero(~held).flatten()
    if data.stream is not None:  # the epochs run over the training images; the held-out ones (at most 256) are read
        data.order = data.stream.order = EpochOrder(len(train_ids), opts.seed, opts.batch, subset=train_ids)
        uint8 = None
        test_images = data.stream.read(torch.nonzero(held).flatten()[:256].tolist())[0]
        first = data.first(1)[0]
    else:
        if data.order is not None:
            data.order = EpochOrder(len(train_ids), opts.seed, opts.batch)
        train_images, test_images = data.images[~held], data.images[held]
        uint8 = to_uint8(train_images)
        first = train_images[:1]
    base = DiffusionBase(opts.base, opts.vae, device)
    lo, hi = base.timestep_range
    if not lo <= opts.t_range[0] < opts.t_range[1] <= hi:
        raise ValueError(f"--t-range {opts.t_range[0]} {opts.t_range[1]} lies outside the timesteps --base was trained "
                         f"on [{lo}, {hi}); its x0 estimates there mean nothing")
    x_shape = base.encode(first).shape[1:]
    net = ArtifactEstimatorNet(x_shape[0], width=WIDTHS[opts.arch]).to(device)
    seeded_init_(net, opts.seed)
    with torch.no_grad():
        net.head.weight.zero_()  # start from "no artifact anywhere" (logit −2) rather than from noise
        net.head.bias.fill_(-2.0)
    table = base.model.model_sampling.sigmas.detach().to(device)

    def step_loss(idx: torch.Tensor, t: torch.Tensor, generator: torch.Generator, part: slice) -> torch.Tensor:
        # the clean shares and noise are drawn for the whole batch, the corruptions from one generator per image
        # seeded by one draw; this process corrupts and keeps its own pairs
        root = int(torch.randint(0, 2**31 - 1, (), generator=generator))
        rngs = [np.random.default_rng([root, k]) for k in range(len(idx))][part]
        mine = idx[part]
        clean = uint8[mine.numpy()] if uint8 is not None else to_uint8(data.batch(mine)[0])
        bad, masks = corrupted_pairs(clean, rngs, opts.region)
        n = len(clean)
        x = base.encode(to_tensor(np.concatenate([clean, bad])))
        sigma = table[t[part].to(device)]
        sigma = torch.where((torch.rand(len(idx), generator=generator) < opts.clean_share)[part].to(device),
                            torch.zeros_like(sigma), sigma)
        noise = torch.randn((len(idx), *x_shape), generator=generator)[part].to(device)
        x0 = base.x0(x, sigma.repeat(2), noise.repeat(2, 1, 1, 1))
        logits, scores = net(x0, sigma.repeat(2))
        target = torch.cat([torch.zeros(n, *x_shape[1:]),
                            mask_to_grid(torch.from_numpy(masks), tuple(x_shape[1:]))]).to(device)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1).float(), target)
        rank = torch.nn.functional.softplus(scores[:n].float() - scores[n:].float()).mean()
        return bce + opts.rank_weight * rank

    def finish():
        if len(test_images) >= 2:
            evaluation = evaluate(net, base, test_images, opts.probes, opts.eval_steps, opts.seed + 1, opts.region)
            for row in evaluation["probes"]:
                log.info("held-out: probe %.2f (sigma %.3f): image AUROC %.3f, pixel AUROC %.3f", row["probe"],
                         row["sigma"], row["image_auroc"], row["pixel_auroc"])
            meta = checkpoint.read_metadata(opts.out)
            tensors, _ = checkpoint.load(opts.out)
            meta["evaluation"] = evaluation
            checkpoint.save(opts.out, tensors, meta)

    info = CheckpointInfo(
        kind="estimator", network={"class": "artifact_estimator", "config": net.config(), "arch": opts.arch},
        parameterisation=base.parameterisation, latent_space=base.latent_space, conditioning="none",
        base={"name": base.name, "sha256": base.sha256},
        training={"clean_share": opts.clean_share, "region": list(opts.region), "rank_weight": opts.rank_weight,
                  "held_out_images": int(held.sum())})
    setup = Setup(modules=[("", net)], loss=step_loss, images=len(train_ids), skipped=data.skipped, info=info,
                  finish=finish, data=data)
    return train(opts, setup)


def eval_scheduler(parameterisation: str) -> str:
    """The schedule the held-out evaluation probes on: ``simple`` for flow models (what their workflows sample with;
    karras's spacing puts a flow model's "half way" at σ 0.06, nearly finished), ``karras`` otherwise."""
    return "simple" if parameterisation == "flow" else "karras"


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
    clean = to_uint8(images)
    bad, masks = corrupted_pairs(clean, rng, region)
    x = base.encode(to_tensor(np.concatenate([clean, bad])))
    labels = torch.cat([torch.zeros(len(clean)), torch.ones(len(bad))])
    noise = torch.randn((len(clean), *x.shape[1:]), generator=torch.Generator().manual_seed(seed)).to(x.device)
    rows = []
    scheduler = eval_scheduler(base.parameterisation)
    for probe in probes:
        sigma = probe_sigma(base.model.model_sampling, probe, steps, scheduler)
        s = torch.full((len(x),), sigma, device=x.device)
        x0 = base.x0(x, s, noise.repeat(2, 1, 1, 1))
        logits, scores = net(x0, s)
        heat = torch.sigmoid(logits.squeeze(1).float()).cpu()
        grid = mask_to_grid(torch.from_numpy(masks), tuple(heat.shape[-2:])) > 0.5
        rows.append({"probe": probe, "sigma": round(sigma, 4), "image_auroc": round(auroc(scores.cpu(), labels), 4),
                     "pixel_auroc": round(pixel_auroc(heat[len(clean):], grid), 4)})
    return {"pairs": len(clean), "sampling_steps": steps, "scheduler": scheduler, "probes": rows}
