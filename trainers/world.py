"""``train.py world``: a text-to-image model for the captioned world, from scratch or fine-tuning a checkpoint.

From scratch it builds :mod:`stepwise.models.world_model`'s model (SD1.5's UNet and CLIP-L-shaped text encoder at
the world's size, the host's pixel-space VAE, flow) and trains the UNet and, with ``--text train`` (the default),
the text encoder with it; ``--text frozen`` keeps the seeded random encoder. With ``--base`` it fine-tunes an
existing host checkpoint's UNet over the whole timestep range (the fine-tuning experiment of
``prompt-to-prompt-and-finetuning.md``) with the checkpoint's VAE and its text encoder (trained with ``--text
train`` on SD1-style checkpoints, else frozen).

Either way the written file is a full checkpoint in the host's layout (UNet, text encoder, VAE) that the host's
Load Checkpoint reads, with Stepwise metadata (``kind: world``: network, training record, data) beside the
tensors. Every ``--sample-every`` steps a grid of held-out prompts (rows) by seeds (columns) is written with the
analyser's reading of it (``step_NNNNNN.json``: the share of objects whose shape, colour and position match the
prompt), to choose when to stop. ``--stream`` (or tar shards as ``--data``) decodes each batch on the fly
(:mod:`.data`), as the refiner does.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..models import world_model
from ..models.init import seeded_init_
from .base import LatentCodec, load_base
from .cache import Encoded
from .data import read_data
from .loop import device_of, diffusion_loss, sample_path, save_png, train
from .setup import CheckpointInfo, Setup, WorldOptions

log = logging.getLogger("stepwise.train")


@dataclass
class WorldNetwork:
    """A text-to-image model ready to train: the host model, text encoder and VAE as the host's loader returns
    them, the codec of images into the model's space, and what the checkpoint says about it."""

    model: object  # the host's BaseModel
    clip: object  # comfy.sd.CLIP
    vae: object  # comfy.sd.VAE
    codec: LatentCodec
    info: CheckpointInfo
    text_trained: bool


def _token_ids(clip, caption: str) -> list[int]:
    """The caption's token ids for the checkpoint's CLIP-L encoder (start, words, end, padding: 77)."""
    chunks = clip.tokenize(caption)["l"]
    if len(chunks) != 1:
        raise ValueError(f"caption {caption!r} is longer than one 77-token window; keep captions under 75 tokens")
    return [int(t[0]) for t in chunks[0]]


def text_context(text_model, ids: torch.Tensor) -> torch.Tensor:
    """The context a host CLIP text model (``comfy.clip_model.CLIPTextModel_``) gives for token ids (B×77), as the
    host's SD1 text encoder returns it (last layer, final layer norm, causal mask, no padding mask), computed out
    of place so that it can be trained (the host's layers add their residuals in place, for inference)."""
    from comfy.ldm.modules.attention import optimized_attention_for_device

    emb = text_model.embeddings
    x = torch.nn.functional.embedding(ids, emb.token_embedding.weight).float() + emb.position_embedding.weight.float()
    n = x.shape[1]
    mask = torch.full((n, n), -torch.finfo(x.dtype).max, dtype=x.dtype, device=x.device).triu_(1)
    attention = optimized_attention_for_device(x.device, mask=True, small_input=True)
    for layer in text_model.encoder.layers:
        x = x + layer.self_attn(layer.layer_norm1(x), mask, attention)
        x = x + layer.mlp(layer.layer_norm2(x))
    return text_model.final_layer_norm(x)


def from_scratch(opts: WorldOptions, device) -> WorldNetwork:
    model, clip, vae = world_model.new_parts()
    seeded_init_(model.diffusion_model, opts.seed)
    seeded_init_(clip.cond_stage_model, opts.seed + 1)
    model.diffusion_model.to(device)
    clip.cond_stage_model.to(device)
    info = CheckpointInfo(
        kind="world", parameterisation="flow", conditioning="text", base=None,
        network={"class": "comfy_checkpoint", "config": world_model.config_class().__name__,
                 "unet_config": dict(world_model.WORLD_UNET), "text_encoder": dict(world_model.WORLD_CLIP),
                 "flow_shift": world_model.FLOW_SHIFT},
        latent_space={"kind": "pixel", "channels": 3})
    return WorldNetwork(model, clip, vae, LatentCodec(vae, model.latent_format), info, opts.text == "train")


def fine_tune(opts: WorldOptions, device) -> WorldNetwork:
    base = load_base(opts.base)
    model = base.model
    sd1 = hasattr(base.clip.cond_stage_model, "clip_l") and not hasattr(base.clip.cond_stage_model, "clip_g")
    if opts.text == "train" and (not sd1 or getattr(model, "adm_channels", None)):
        raise ValueError(f"--text train fine-tunes a single CLIP-L text encoder (SD1.x-style checkpoints); "
                         f"{base.name} is not one: use --text frozen")
    if opts.resolution % 8 and base.model.latent_format.latent_channels != 3:
        raise ValueError(f"--resolution {opts.resolution} must be a multiple of 8 for {base.name}'s VAE")
    model.diffusion_model.to(device)
    base.clip.cond_stage_model.to(device)
    from ..models import diffusion

    info = CheckpointInfo(
        kind="world", parameterisation=base.parameterisation, conditioning="text", base=base.reference(),
        network={"class": "comfy_checkpoint", "config": type(model.model_config).__name__,
                 "unet_config": diffusion.json_safe(model.model_config.unet_config)},
        latent_space=base.latent_space())
    return WorldNetwork(model, base.clip, base.codec.vae, base.codec, info, opts.text == "train")


def sample_prompts(opts: WorldOptions) -> list[str]:
    """The prompts of the sample grids: ``--sample-prompts``, or 8 held-out scenes (a held-out colour and shape
    pair in each) of 1 or 2 objects."""
    if opts.sample_prompts:
        return list(opts.sample_prompts)
    from ..models import scenes

    return [scenes.caption(scenes.sample_scene(opts.resolution, 9001, i, objects=(1, 2), split="held_out"))
            for i in range(8)]


@torch.no_grad()
def generate(model, clip, prompts: list[str], seeds: list[int], resolution: int, steps: int = 20,
             cfg: float = 3.0, device=None) -> torch.Tensor:
    """Latents (len(prompts)·len(seeds) × C × r × r, as a sampler node outputs them: what VAE Decode reads;
    prompt-major) of ``model`` (a host
    ``ModelPatcher`` or ``BaseModel``) from the host's euler sampler with CFG
    against the empty prompt, one batch per prompt: what a KSampler of ``steps`` steps on the ``simple`` schedule
    draws for each prompt and seed (noise from ``torch.manual_seed(seed)`` per image)."""
    import comfy.model_patcher
    import comfy.sample
    import comfy.samplers

    if isinstance(model, comfy.model_patcher.ModelPatcher):  # as the host's loader returns it
        patcher, model = model, model.model
        device = device or patcher.load_device
    else:
        device = device or next(model.diffusion_model.parameters()).device
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)
    channels = model.latent_format.latent_channels
    factor = 1 if channels == 3 else 8
    side = resolution // factor
    noise = torch.cat([torch.randn((1, channels, side, side), generator=torch.Generator().manual_seed(s))
                       for s in seeds])
    sigmas = comfy.samplers.calculate_sigmas(model.model_sampling, "simple", steps).cpu()
    empty, empty_pooled = clip.encode_from_tokens(clip.tokenize(""), return_pooled=True)
    out = []
    for prompt in prompts:
        cond, pooled = clip.encode_from_tokens(clip.tokenize(prompt), return_pooled=True)
        positive = [[cond, {"pooled_output": pooled}]]
        negative = [[empty, {"pooled_output": empty_pooled}]]
        latent = torch.zeros_like(noise)
        samples = comfy.sample.sample_custom(patcher, noise, cfg, comfy.samplers.sampler_object("euler"), sigmas,
                                             positive, negative, latent, disable_pbar=True, seed=seeds[0])
        out.append(samples)
    return torch.cat(out)


def read_grid(images: torch.Tensor, prompts: list[str], per_prompt: int, drawn: bool = False) -> dict:
    """The analyser's reading of generated images against their prompts (``images`` prompt-major, [-1, 1]):
    accuracy of shape, colour, size, position, background and object count (:func:`models.analyser.summarise`).
    With ``drawn``, also ``"drawn"``: the share of images whose first object is read as each shape (``"none"``: no
    object read), which says what a model draws where it misses the asked shape."""
    from ..models import analyser, scenes

    pixels = ((images.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
    results, shapes = [], collections.Counter()
    for i, prompt in enumerate(prompts):
        truth = scenes.parse_caption(prompt)
        for j in range(per_prompt):
            reading = analyser.read(pixels[i * per_prompt + j])
            results.append(analyser.attribute_accuracy(reading, truth))
            shapes[reading.objects[0].shape if reading.objects else "none"] += 1
    summary = analyser.summarise(results)
    if drawn:
        summary["drawn"] = {k: v / len(results) for k, v in sorted(shapes.items())}
    return summary


@torch.no_grad()
def _frozen_conditioning(net: WorldNetwork, captions, resolution: int, device) -> dict[str, dict[str, torch.Tensor]]:
    """The model inputs (``c_crossattn``, and ``y`` for SDXL) of each caption, from a frozen text encoder."""
    out = {}
    for c in captions:
        cond, pooled = net.clip.encode_from_tokens(net.clip.tokenize(c), return_pooled=True)
        extra = net.model.extra_conds(cross_attn=cond, pooled_output=pooled, width=resolution, height=resolution,
                                      device=device)
        out[c] = {k: v.cond.float().to(device) for k, v in extra.items()}
    return out


def _decode(net: WorldNetwork, latents: torch.Tensor) -> torch.Tensor:
    return net.codec.decode(net.model.process_latent_in(latents.cpu()))


def train_world(opts: WorldOptions) -> dict:
    """Train a world text-to-image model on ``opts.data`` (images with ``.txt`` captions); returns the metadata
    written to ``opts.out`` (plus the loss of every step under ``losses``)."""
    opts.check()
    device = device_of(opts.device)
    torch.manual_seed(opts.seed)
    data = read_data(opts)
    net = fine_tune(opts, device) if opts.base else from_scratch(opts, device)
    encoded = Encoded(opts, data, net.codec.encode, device, "world", chunk=64)
    shape = tuple(encoded.first(1).shape[1:])
    text_model = net.clip.cond_stage_model
    encoder = text_model.clip_l if net.text_trained else None
    memo = functools.lru_cache(maxsize=None if data.stream is None else 4096)  # per caption (streams: recent ones)
    if encoder is not None:
        for p in encoder.transformer.text_model.parameters():  # the host freezes text encoders when it builds them
            p.requires_grad_(True)
        ids = memo(lambda c: tuple(_token_ids(net.clip, c)))
    else:  # frozen: each caption's conditioning once
        for p in text_model.parameters():
            p.requires_grad_(False)
        frozen = memo(lambda c: _frozen_conditioning(net, [c], opts.resolution, device)[c])

    def batch(idx: torch.Tensor, generator: torch.Generator, part: slice):
        drop = (torch.rand(len(idx), generator=generator) < opts.cond_dropout)[part].tolist()
        x0, captions = encoded.rows(idx[part])
        captions = ["" if d else c for c, d in zip(captions, drop)]
        if encoder is not None:
            tokens = torch.tensor([ids(c) for c in captions], device=device)
            conds = {"c_crossattn": text_context(encoder.transformer.text_model, tokens)}
        else:
            rows = [frozen(c) for c in captions]
            conds = {k: torch.cat([r[k] for r in rows]) for k in rows[0]}
        return x0, conds

    prompts = sample_prompts(opts)
    seeds = list(range(4))

    def samples(step: int):
        imgs = generate(net.model, net.clip, prompts, seeds, opts.resolution, opts.sample_steps, opts.sample_cfg,
                        device)
        pixels = _decode(net, imgs)
        reading = read_grid(pixels, prompts, len(seeds)) if net.info.base is None else {}
        rows = pixels.view(len(prompts), len(seeds), *pixels.shape[1:]).clamp(-1, 1)
        grid = torch.cat([torch.cat(list(r), dim=-1) for r in rows], dim=-2)
        path = sample_path(opts.out, step)
        save_png(((grid.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8), path)
        with open(os.path.splitext(path)[0] + ".json", "w") as f:
            json.dump({"step": step, "prompts": prompts, "seeds": seeds, "reading": reading}, f, indent=1)
        if reading:
            log.info("step %d samples: shape %.2f colour %.2f position %.2f", step, reading.get("shape") or 0,
                     reading.get("colour") or 0, reading.get("position") or 0)

    modules = [("model.diffusion_model.", net.model.diffusion_model)]
    if encoder is not None:  # the text model alone: SD1.5's layout has no text projection (the host adds its own)
        modules.append(("cond_stage_model.transformer.text_model.", encoder.transformer.text_model))
    full = net.model.state_dict_for_saving(net.clip.get_sd(), net.vae.get_sd(), None)
    written = {p + k for p, m in modules for k in m.state_dict()}
    constants = {k: v for k, v in full.items() if k not in written and not k.startswith("model.diffusion_model.")
                 and not (encoder is not None and k.startswith("cond_stage_model."))}
    net.info.training.update({"text": opts.text, "cond_dropout": opts.cond_dropout, "recipe": opts.recipe})
    loss = diffusion_loss(net.model, batch, shape, device)
    setup = Setup(modules=modules, loss=loss, images=data.count, skipped=data.skipped, info=net.info, samples=samples,
                  constants=constants, data=data)
    return train(opts, setup)
