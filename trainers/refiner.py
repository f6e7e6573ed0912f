"""``train.py refiner``: refiners trained on a timestep range, from scratch or fine-tuning a host checkpoint.

A refiner is the host's UNet trained only on timesteps ``[lo, hi)`` of the 1000-level schedule (the seed's
``torch.randint(250, 500, ...)``), with the loss in the model's own parameterisation and the host's noise
schedule (:func:`stepwise.trainers.loop.diffusion_loss`). From scratch it is a ``--arch`` network in pixel space
or a VAE's latents; with ``--base`` it fine-tunes that checkpoint's UNet (optionally as LoRA layers written as a
host LoRA file), its VAE making the latents and its text encoder reading the captions.
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
from .base import load_base, load_vae, stack_conds
from .cache import Encoded
from .data import TrainingData, read_data
from .loop import device_of, diffusion_loss, host_modules, sample_path, save_png, train
from .setup import CheckpointInfo, RefinerOptions, Setup


@dataclass
class RefinerNetwork:
    """A refiner ready to train: the host model, how images enter its inner space and leave it, and (fine-tuning) how
    captions become its conditioning."""

    model: object  # the host's BaseModel
    encode: Callable[[torch.Tensor], torch.Tensor]  # images in [-1, 1] -> the model's inner space
    decode: Callable[[torch.Tensor], torch.Tensor]  # inner space -> images in [-1, 1], for sample grids
    info: CheckpointInfo
    lora: dict | None = None  # the injected LoRA layers (LoRA mode)
    text: Callable[[str], dict] | None = None  # a caption's model inputs (fine-tuning a text-conditioned base)
    empty: dict | None = None  # the empty caption's inputs (caption dropout)
    sample_conditioning: list | None = None  # the sampler's conditioning for sample grids (empty caption)


def sample_grid(model, x0: torch.Tensor, t_hi: int, seed: int, decode, path: str, steps: int = 10,
                conditioning=None) -> None:
    """Refine ``x0`` noised to the top of the trained range with the host's sampler; save rows of
    clean | noised | refined as a PNG grid."""
    import comfy.model_patcher
    import comfy.sample
    import comfy.samplers

    from ..kernels.schedule import sigma_at_timestep, split_sigmas_at

    patcher = comfy.model_patcher.ModelPatcher(model, load_device=x0.device, offload_device=x0.device)
    ms = model.model_sampling
    sigma = sigma_at_timestep(ms.sigmas.cpu(), t_hi - 1)
    full = comfy.samplers.calculate_sigmas(ms, "karras", steps * 4).cpu()
    sigmas = split_sigmas_at(full, sigma)[1]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    cond = conditioning or [[torch.zeros(1, 1, 8), {}]]
    outer = model.process_latent_out(x0.cpu())
    with torch.no_grad():
        refined = comfy.sample.sample_custom(patcher, noise, 1.0, comfy.samplers.sampler_object("euler"), sigmas,
                                             cond, cond, outer, disable_pbar=True, seed=seed)
        noised = ms.noise_scaling(torch.tensor(sigma), noise, x0.cpu())
        rows = [decode(x0.cpu()), decode(noised), decode(model.process_latent_in(refined))]
    grid = torch.cat([torch.cat(list(r.clamp(-1, 1)), dim=-1) for r in rows], dim=-2)
    save_png(((grid.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8), path)


def from_scratch(opts: RefinerOptions, data: TrainingData, device) -> RefinerNetwork:
    """A seeded ``opts.arch`` UNet in pixel space or in the latents of ``opts.vae``."""
    latent = "pixel" if opts.space == "pixel" else opts.latent_format
    fmt = diffusion.latent_format(latent)()
    if opts.space == "latent":
        vae = load_vae(opts.vae, fmt)
        encode, decode = vae.encode, vae.decode
    else:
        encode, decode = (lambda x: x), (lambda x: x)
    with torch.no_grad():
        channels = encode(data.first(1)[0]).shape[1]
    unet = diffusion.unet_config(opts.arch, channels)
    model = diffusion.new_model(unet, opts.parameterisation, latent, device=device)
    seeded_init_(model.diffusion_model, opts.seed)
    info = CheckpointInfo(
        kind="refiner", parameterisation=opts.parameterisation, conditioning="none", base=None,
        network={"class": "comfy_unet", "unet_config": unet, "arch": opts.arch, "model_class": "BaseModel"},
        latent_space={"kind": "pixel", "channels": channels} if opts.space == "pixel"
        else {"kind": "vae", "latent_format": latent, "channels": channels, "vae": os.path.basename(opts.vae)})
    return RefinerNetwork(model, encode, decode, info)


def fine_tune(opts: RefinerOptions, data: TrainingData, device) -> RefinerNetwork:
    """Fine-tune a host checkpoint: its VAE makes the latents, its text encoder the captions' conditioning."""
    base = load_base(opts.base)
    model = base.model
    model.diffusion_model.to(device)
    first = data.first(1)[0]
    with torch.no_grad():
        channels = base.codec.encode(first).shape[1]
    h, w = first.shape[-2:]

    @functools.lru_cache(maxsize=None if data.stream is None else 4096)  # each caption encoded once (streams: recent)
    def text(caption: str) -> dict:
        with torch.no_grad():
            return base.text(caption, w, h, device).inputs

    wrapped = None
    if opts.lora_rank:
        from ..models import lora

        wrapped = lora.inject(model.diffusion_model, opts.lora_rank, opts.lora_alpha, opts.seed)
    else:
        for p in model.diffusion_model.parameters():
            p.requires_grad_(True)
    cond, pooled = base.prompt("")
    info = CheckpointInfo(
        kind="refiner", parameterisation=base.parameterisation, conditioning="text", base=base.reference(),
        network={"class": "lora" if wrapped else "comfy_unet", "model_class": type(model).__name__,
                 "unet_config": diffusion.json_safe(model.model_config.unet_config),
                 **({"lora_rank": opts.lora_rank} if wrapped else {})},
        latent_space=base.latent_space(channels=channels))
    return RefinerNetwork(model, base.codec.encode, base.codec.decode, info, lora=wrapped, text=text, empty=text(""),
                          sample_conditioning=[[cond, {"pooled_output": pooled}]])


def train_refiner(opts: RefinerOptions) -> dict:
    """Train a refiner on ``opts.data`` (from scratch, or fine-tuning ``opts.base``, optionally as a LoRA); returns
    the metadata written to ``opts.out`` (plus the loss of every step under ``losses``)."""
    opts.check()
    if opts.lora_rank and not opts.base:
        raise ValueError("--lora-rank needs --base: a LoRA adapts an existing checkpoint's UNet")
    if not opts.base and diffusion.ARCHS.get(opts.arch, {}).get("transformer_depth_middle", -1) != -1:
        raise ValueError(f"--arch {opts.arch}: from scratch a refiner is unconditional, and {opts.arch} has "
                         "cross-attention blocks with nothing to attend to; use --arch tiny, or --base to fine-tune "
                         "a text-conditioned checkpoint")
    device = device_of(opts.device)
    torch.manual_seed(opts.seed)
    data = read_data(opts)
    net = fine_tune(opts, data, device) if opts.base else from_scratch(opts, data, device)
    encoded = Encoded(opts, data, net.encode, device, "refiner", chunk=16)
    shown = encoded.first(4)

    def batch(idx: torch.Tensor, generator: torch.Generator, part: slice):
        drop = (torch.rand(len(idx), generator=generator) < opts.cond_dropout)[part].tolist() if net.text else None
        x0, captions = encoded.rows(idx[part])
        if net.text is None:
            return x0, {"c_crossattn": None}
        return x0, stack_conds([net.empty if d else net.text(c) for c, d in zip(captions, drop)], device)

    def samples(step: int):
        sample_grid(net.model, shown, opts.t_range[1], opts.seed, net.decode, sample_path(opts.out, step),
                    conditioning=net.sample_conditioning)

    loss = diffusion_loss(net.model, batch, tuple(shown.shape[1:]), device)
    setup = Setup(modules=host_modules(net.model), loss=loss, images=data.count, skipped=data.skipped, info=net.info,
                  samples=samples, lora=net.lora, data=data)
    return train(opts, setup)
