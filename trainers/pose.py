"""``train.py pose``: train a pose-conditioned model (UNet + keypoint encoder) on images with keypoints.

From scratch (``--arch``, pixel space or a VAE's latents; the context is the pose tokens alone) or fine-tuning
a host checkpoint (``--base``; the context is the caption's text tokens followed by the pose tokens). The loop,
EMA, precision, resume and checkpoint writing are the shared loop's (:func:`stepwise.trainers.loop.train`).

Per batch: a random square crop and a horizontal flip that move the keypoints with the image and swap left and
right joints (:func:`stepwise.models.pose_data.augment`); condition dropout replaces the pose by the null pose
(and, independently, the caption by the empty one) so classifier-free guidance has an unconditional input.
Sample grids put the requested skeletons above the samples generated for them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..models import diffusion
from ..models.init import seeded_init_
from ..models.pose import POSE_KEY, TOKENS
from ..models.pose_data import apply_augment, draw_augment
from .base import TextConditioning, load_base, load_vae, stack_conds
from .data import read_pose_data
from .loop import device_of, diffusion_loss, host_modules, sample_path, save_png, train
from .setup import CheckpointInfo, PoseOptions, Setup


@dataclass
class PoseNetwork:
    """A pose model ready to train: the host model (with ``pose_encoder``), the encoder of images into its inner
    space and the decoder back, and, fine-tuning, the captions' conditioning."""

    model: object  # the host's BaseModel with a pose encoder
    encode: Callable[[torch.Tensor], torch.Tensor]  # images in [-1, 1] -> the model's inner space
    decode: Callable[[torch.Tensor], torch.Tensor]  # inner space -> images in [-1, 1], for sample grids
    info: CheckpointInfo
    text: Callable[[str], TextConditioning] | None = None  # a caption's conditioning (fine-tuning only)
    empty: TextConditioning | None = None  # the empty caption (fine-tuning only)


def _encoder_config(opts: PoseOptions, context_dim: int) -> dict:
    return {"context_dim": int(context_dim), "tokens": opts.tokens, "bands": opts.bands,
            "max_people": opts.max_people, "grid": opts.grid, "canvas": opts.canvas}


def from_scratch(opts: PoseOptions, device) -> PoseNetwork:
    """A seeded ``opts.arch`` UNet reading pose tokens alone, in pixel space or the latents of ``opts.vae``."""
    if diffusion.ARCHS.get(opts.arch, {}).get("transformer_depth_middle", 0) == -1:
        raise ValueError(f"--arch {opts.arch} has no cross-attention, so it cannot read pose tokens; use "
                         f"{' or '.join(a for a, c in diffusion.ARCHS.items() if c['transformer_depth_middle'] != -1)}")
    latent = "pixel" if opts.space == "pixel" else opts.latent_format
    fmt = diffusion.latent_format(latent)()
    if opts.space == "latent":
        vae = load_vae(opts.vae, fmt)
        encode, decode, channels = vae.encode, vae.decode, fmt.latent_channels
    else:
        encode, decode, channels = (lambda x: x), (lambda x: x), 3
    pose = {"encoder": _encoder_config(opts, opts.context_dim), "text": False}
    unet = diffusion.unet_config(opts.arch, channels, context_dim=opts.context_dim)
    model = diffusion.new_model(unet, opts.parameterisation, latent, device=device, pose=pose)
    seeded_init_(model.diffusion_model, opts.seed)
    seeded_init_(model.pose_encoder, opts.seed + 1)
    info = CheckpointInfo(
        kind="pose", parameterisation=opts.parameterisation, conditioning="keypoints", base=None,
        network={"class": "comfy_unet", "unet_config": unet, "arch": opts.arch, "model_class": "BaseModel",
                 "pose": pose},
        latent_space={"kind": "pixel", "channels": channels} if opts.space == "pixel"
        else {"kind": "vae", "latent_format": latent, "channels": channels, "vae": os.path.basename(opts.vae)})
    return PoseNetwork(model, encode, decode, info)


def fine_tune(opts: PoseOptions, device, streamed: bool = False) -> PoseNetwork:
    """A pose model around a host checkpoint's UNet (SD1.x/2.x or SDXL), its text encoder reading the captions."""
    base = load_base(opts.base)
    host = base.model
    parent = "SDXL" if type(host).__name__ == "SDXL" else "BaseModel"
    if parent == "BaseModel" and type(host).__name__ not in ("BaseModel",):
        raise ValueError(f"--base {opts.base!r} is a {type(host).__name__} model; pose fine-tuning takes SD1.x, "
                         "SD2.x or SDXL checkpoints")
    unet = diffusion.json_safe(host.model_config.unet_config)
    fmt = host.latent_format
    pose = {"encoder": _encoder_config(opts, unet["context_dim"]), "text": True}
    model = diffusion.new_model(unet, base.parameterisation, type(fmt).__name__, device=device, pose=pose,
                                model_class=parent)
    model.diffusion_model.load_state_dict(host.diffusion_model.state_dict(), strict=True)
    seeded_init_(model.pose_encoder, opts.seed + 1)
    for p in model.diffusion_model.parameters():
        p.requires_grad_(True)
    h = w = opts.resolution

    @functools.lru_cache(maxsize=4096 if streamed else None)  # each caption encoded once (streams: recent ones)
    def text(caption: str) -> TextConditioning:
        with torch.no_grad():
            return base.text(caption, w, h, device)

    info = CheckpointInfo(
        kind="pose", parameterisation=base.parameterisation, conditioning="text+keypoints", base=base.reference(),
        network={"class": "comfy_unet", "unet_config": unet, "model_class": parent, "pose": pose},
        latent_space=base.latent_space())
    return PoseNetwork(model, base.codec.encode, base.codec.decode, info, text, text(""))


def generate(patcher, poses: torch.Tensor, seed: int, steps: int = 20, cfg: float = 3.0, shape=None,
             text: list | None = None, sampler: str = "euler") -> torch.Tensor:
    """Sample one image per pose (``poses``: N × people × 17 × 3) with the host's sampler from pure noise,
    CFG against the null pose (and, for text models, the same caption); returns the host's output latents
    (N × C × H × W, outer space). ``text``: per pose ``(cond, pooled)`` for text-conditioned models."""
    import comfy.sample
    import comfy.samplers

    model = patcher.model
    out = []
    for i, pose in enumerate(poses):
        if text is not None:
            cond, pooled = text[i]
            base = [cond, {"pooled_output": pooled}]
        else:
            base = [torch.zeros(1, 1, 1), {}]
        positive = [[base[0], {**base[1], POSE_KEY: pose}]]
        negative = [[base[0], dict(base[1])]]
        latent = torch.zeros(1, *shape)
        noise = comfy.sample.prepare_noise(latent, seed + i)
        sigmas = comfy.samplers.calculate_sigmas(model.model_sampling, "karras", steps).cpu()
        with torch.no_grad():
            out.append(comfy.sample.sample_custom(patcher, noise, cfg, comfy.samplers.sampler_object(sampler), sigmas,
                                                  positive, negative, latent, disable_pbar=True, seed=seed + i))
    return torch.cat(out)


def pose_grid(patcher, poses: torch.Tensor, seed: int, decode, path: str, shape, steps: int, cfg: float,
              text: list | None = None) -> None:
    """A PNG: the requested skeletons (top row) above the samples generated for them (bottom row)."""
    from ..models.world import skeleton_image

    samples = generate(patcher, poses, seed, steps, cfg, shape, text)
    with torch.no_grad():
        pictures = decode(patcher.model.process_latent_in(samples).to(next(patcher.model.parameters()).device))
    pictures = ((pictures.float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    h, w = pictures.shape[1:3]
    skeletons = [np.asarray(skeleton_image(p.numpy(), w, h)) for p in poses]
    save_png(np.concatenate([np.concatenate(skeletons, 1), np.concatenate(list(pictures), 1)], 0), path)


def train_pose(opts: PoseOptions) -> dict:
    """Train a pose model on ``opts.data``; returns the metadata written to ``opts.out`` (plus ``losses``)."""
    import comfy.model_patcher

    opts.check()
    if opts.cache:
        raise ValueError(f"--cache {opts.cache}: train.py pose encodes each image differently every time (random crops), so "
                         "there are no latents to keep; drop --cache")
    if opts.tokens not in TOKENS:
        raise ValueError(f"--tokens {opts.tokens!r} is not one of {', '.join(TOKENS)}")
    if opts.lora_rank and not opts.base:
        raise ValueError("--lora-rank needs --base: LoRA layers adapt an existing checkpoint's UNet (from scratch the "
                         "UNet trains fully)")
    if not 0 <= opts.flip <= 1 or not 0 < opts.min_scale <= 1:
        raise ValueError(f"--flip {opts.flip} must be in [0, 1] and --min-scale {opts.min_scale} in (0, 1]")
    if opts.max_people < 1 or opts.context_dim < 1:
        raise ValueError(f"--max-people {opts.max_people} and --context-dim {opts.context_dim} must be >= 1")
    device = device_of(opts.device)
    torch.manual_seed(opts.seed)
    data = read_pose_data(opts)
    net = fine_tune(opts, device, data.stream is not None) if opts.base else from_scratch(opts, device)
    model = net.model
    wrapped = None
    if opts.lora_rank:  # LoRA layers in the UNet, the keypoint encoder trained fully; written merged (full checkpoint)
        from ..models import lora

        wrapped = lora.inject(model.diffusion_model, opts.lora_rank, opts.lora_alpha, opts.seed)
    first_images, first_captions, first_poses = data.first(4)
    with torch.no_grad():
        shape = tuple(net.encode(first_images[:1].to(device)).shape[1:])

    def batch(idx: torch.Tensor, generator: torch.Generator, part: slice):
        # every draw is made for the whole batch (augmentations in order), then this process keeps its rows
        drawn = [draw_augment(generator, opts.resolution, opts.resolution, opts.flip, opts.min_scale) for _ in idx]
        images, captions, poses = data.batch(idx[part])
        pairs = [apply_augment(im, po, d) for im, po, d in zip(images, poses, drawn[part])]
        x = torch.stack([p[0] for p in pairs]).to(device)
        posed = torch.stack([p[1] for p in pairs])
        posed[(torch.rand(len(idx), generator=generator) < opts.cond_dropout)[part]] = 0  # the null pose
        with torch.no_grad():
            x0 = net.encode(x)
        tokens = model.pose_context(posed.to(device))
        if net.text is None:
            return x0, {"c_crossattn": tokens}
        drop = (torch.rand(len(idx), generator=generator) < opts.cond_dropout)[part].tolist()
        conds = stack_conds([(net.empty if d else net.text(c)).inputs for c, d in zip(captions, drop)], device)
        conds["c_crossattn"] = torch.cat([conds["c_crossattn"], tokens.to(conds["c_crossattn"].dtype)], dim=1)
        return x0, conds

    def samples(step: int):
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)
        text = [(t.cond, t.pooled) for t in map(net.text, first_captions)] if net.text is not None else None
        pose_grid(patcher, first_poses, opts.seed, net.decode, sample_path(opts.out, step), shape,
                  opts.sample_steps, opts.sample_cfg, text)

    info = net.info
    info.training = {"cond_dropout": opts.cond_dropout, "flip": opts.flip, "min_scale": opts.min_scale,
                     "max_people": opts.max_people}
    setup = Setup(modules=host_modules(model), loss=diffusion_loss(model, batch, shape, device), images=data.count,
                  skipped=data.skipped, info=info, samples=samples, lora=wrapped, lora_merged=True, data=data)
    return train(opts, setup)
