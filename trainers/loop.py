"""The training loop every trainer shares (:func:`train`) and the diffusion loss of the diffusion trainers.

Runs are deterministic: batches, timesteps and noise come from one seeded generator whose state is saved with
each checkpoint, so ``--resume`` continues bit for bit. The loop keeps an EMA of the trained weights (written
when ``--ema`` > 0), runs the loss under autocast for ``--precision bf16|fp16`` (with a gradient scaler for fp16
on CUDA), writes the checkpoint and the training state (``<out>.train-state``) atomically, and calls the
setup's sample-grid hook every ``--sample-every`` steps. Under ``torchrun`` the ranks split each global batch
and average their gradients through DistributedDataParallel (:mod:`.distributed`); rank 0 alone writes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict

import numpy as np
import torch

from ..models import checkpoint
from . import distributed
from .setup import LossFn, Setup, TrainOptions

log = logging.getLogger("stepwise.train")


def device_of(name: str) -> torch.device:
    """``--device``: ``auto`` is CUDA when available, else the CPU; anything else is a torch device name. Under
    torchrun, ``cuda`` is this process's GPU (``cuda:LOCAL_RANK``)."""
    if name == "auto":
        return distributed.local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    return distributed.local_device(torch.device(name))


def state_path(out: str) -> str:
    """Where the training state of the checkpoint ``out`` lives (what ``--resume`` reads)."""
    return out + ".train-state"


def host_modules(model) -> list[tuple[str, torch.nn.Module]]:
    """The trained modules of a host model and the checkpoint prefix of each: the UNet (unprefixed, so the host's
    UNet loader reads refiner files) and, for pose models, the keypoint encoder (``pose_encoder.``)."""
    mods = [("", model.diffusion_model)]
    if hasattr(model, "pose_encoder"):
        mods.append(("pose_encoder.", model.pose_encoder))
    return mods


def diffusion_loss(model, batch, shape: tuple[int, ...], device) -> LossFn:
    """The diffusion loss of one batch: noise the batch's x0 to the drawn timesteps, predict, and compare in the
    model's parameterisation. ``batch(idx, generator)`` gives the batch's x0 (in the model's inner space, on
    ``device``) and the ``apply_model`` inputs; ``shape`` is one x0's shape (C×H×W).

    ``batch(idx, generator, part)`` makes its draws for the whole of ``idx`` and returns the rows ``part`` (see
    :data:`~stepwise.trainers.setup.LossFn`); the noise is drawn the same way.

    The network sees ``x_t = noise_scaling(σ_t, ε, x0)``; the loss is the squared error of its raw output against
    the target of its parameterisation, computed as ``((denoised − x0) / c_out(σ))²`` where
    ``c_out = ∂denoised/∂output`` (−σ for eps and flow), so eps, v and flow models train with their usual losses.
    """
    ms = model.model_sampling
    table = ms.sigmas.detach().to(device)

    def loss(idx: torch.Tensor, t: torch.Tensor, generator: torch.Generator, part: slice) -> torch.Tensor:
        noise = torch.randn((len(idx), *shape), generator=generator)[part].to(device)
        x0, conds = batch(idx, generator, part)
        sigma = table[t[part].to(device)]
        s = sigma.view(-1, *([1] * (x0.ndim - 1)))
        denoised = model.apply_model(ms.noise_scaling(s, noise, x0), sigma, **conds)
        c_out = ms.calculate_denoised(s, torch.ones_like(x0[:1]), torch.zeros_like(x0[:1]))
        return (((denoised.float() - x0) / c_out) ** 2).mean()

    return loss


def save_png(pixels: np.ndarray, path: str) -> None:
    """Write an H×W×3 uint8 array as a PNG, making its folder."""
    from PIL import Image

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(pixels).save(path)


def sample_path(out: str, step: int) -> str:
    """The sample grid of ``step`` for the checkpoint ``out``."""
    return f"{out}.samples/step_{step:06d}.png"


def _save_state(path: str, modules, ema, opt, generator, step: int, losses: list[float], opts: TrainOptions):
    from safetensors.torch import save_file

    tensors = {f"model.{prefix}{k}": v for prefix, m in modules for k, v in m.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{i}": p for i, p in enumerate(ema)})
    opt_state = opt.state_dict()
    for idx, st in opt_state["state"].items():
        for name, value in st.items():
            tensors[f"opt.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors["generator"] = generator.get_state()
    tensors["losses"] = torch.tensor(losses, dtype=torch.float64)
    meta = {"step": step, "param_groups": opt_state["param_groups"], "options": asdict(opts)}
    tmp = path + f".{os.getpid()}.tmp"
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp,
              metadata={"stepwise_train_state": json.dumps(meta)})
    os.replace(tmp, path)


def _load_state(path: str, modules, ema, opt, generator):
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["stepwise_train_state"])
    tensors = load_file(path)
    saved = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    prefixes = [p for p, _ in modules if p]
    for prefix, module in modules:
        module.load_state_dict({k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)
                                and (prefix or not any(k.startswith(p) for p in prefixes))}, strict=True)
    if ema is not None:
        for i, p in enumerate(ema):
            p.copy_(tensors[f"ema.{i}"])
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    generator.set_state(tensors["generator"])
    return meta["step"], tensors["losses"].tolist()


def checkpoint_blocks(unet: torch.nn.Module) -> int:
    """Gradient checkpointing of a host UNet (``--grad-checkpointing``): each residual block and spatial transformer
    runs under PyTorch's ``torch.utils.checkpoint`` (non-reentrant), so the backward pass recomputes its activations
    instead of keeping them. The host calls these layers one by one (its ``forward_timestep_embed``), so each
    layer's forward of this training copy is wrapped; returns how many were."""
    import functools

    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock
    from torch.utils.checkpoint import checkpoint

    def run(forward, *args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    layers = [m for m in unet.modules() if isinstance(m, (ResBlock, SpatialTransformer))]
    for layer in layers:
        layer.forward = functools.partial(run, layer.forward)
    return len(layers)


def _set_mode(modules, training: bool) -> None:
    for _, module in modules:
        module.train(training)


def train(opts: TrainOptions, setup: Setup) -> dict:
    """Run ``setup`` for ``opts.steps`` steps: image indices from ``[0, setup.images)`` and timesteps from
    ``opts.t_range``, drawn from one generator seeded with ``opts.seed``; AdamW, EMA, mixed precision, atomic
    checkpoints to ``opts.out`` every ``opts.save_every`` steps and at the end, resume, and a stop after
    ``opts.max_minutes`` (a part of a longer run: the checkpoint and state are written there). Returns the written metadata
    plus the loss of every step under ``losses`` (the global batch's mean loss under torchrun)."""
    from tqdm import tqdm

    lo, hi = opts.t_range
    device = device_of(opts.device)
    ranks = distributed.start(device)
    part = ranks.part(opts.batch)
    modules, info = setup.modules, setup.info
    _set_mode(modules, True)
    if opts.grad_checkpointing:
        unets = [m for _, m in modules if hasattr(m, "input_blocks") and hasattr(m, "output_blocks")]
        if not unets:
            raise ValueError("--grad-checkpointing: this run trains no UNet (nothing to checkpoint); drop the flag")
        for unet in unets:
            checkpoint_blocks(unet)
    named = [(prefix + n, p) for prefix, m in modules for n, p in m.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    ema_device = torch.device("cpu") if opts.ema_device == "cpu" else None
    ema = [p.detach().to(ema_device, copy=True) for p in params] if opts.ema > 0 else None
    generator = torch.Generator(device="cpu").manual_seed(opts.seed)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(opts.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=opts.precision == "fp16" and device.type == "cuda")

    order = getattr(setup.data, "order", None)
    stream = getattr(setup.data, "stream", None)
    step_loss = distributed.wrap([m for _, m in modules], setup.loss, device, ranks)
    step, losses = 0, []
    state = state_path(opts.out)
    if opts.resume:
        if not os.path.isfile(state):
            raise ValueError(f"--resume: no training state at {state}; run without --resume first")
        step, losses = _load_state(state, modules, ema, opt, generator)
        log.info("resumed at step %d", step)

    def meta_for(at_step: int) -> dict:
        recent = losses[-max(1, len(losses) // 10):] if losses else []
        return {
            "kind": info.kind, "network": info.network, "parameterisation": info.parameterisation,
            "latent_space": info.latent_space, "timestep_range": [lo, hi], "conditioning": info.conditioning,
            "base": info.base, "resolution": opts.resolution,
            "training": {"steps": at_step, "batch": opts.batch, "lr": opts.lr, "ema": opts.ema,
                         "precision": opts.precision, "seed": opts.seed, "images": setup.images,
                         "skipped_images": setup.skipped, "final_loss": float(np.mean(recent)) if recent else None,
                         "lora_rank": opts.lora_rank, "data": os.path.abspath(opts.data), "processes": ranks.world,
                         "order": "epochs" if order is not None else "random", "streamed": stream is not None,
                         **info.training},
        }

    def write(at_step: int):
        if not ranks.main:
            return
        trained = dict(zip([n for n, _ in named], ema)) if ema is not None else {}
        if setup.lora is not None:
            from ..models import lora as lora_mod

            live = [(prefix + n, p) for prefix, m in modules for n, p in m.named_parameters()]
            backup = {n: p.detach().clone() for n, p in live if n in trained}
            with torch.no_grad():  # write the EMA weights of the LoRA layers
                for n, p in live:
                    if n in trained:
                        p.copy_(trained[n])
            if setup.lora_merged:  # a full checkpoint: each LoRA layer folded into its base layer
                first = modules[0][1]
                weights = {prefix + k: v for prefix, m in modules for k, v in
                           (lora_mod.merged_state_dict(m, setup.lora) if m is first else m.state_dict()).items()}
                checkpoint.save(opts.out, {**(setup.constants or {}), **weights}, meta_for(at_step))
            else:
                checkpoint.save(opts.out, lora_mod.host_state_dict(setup.lora), meta_for(at_step))
            with torch.no_grad():
                for n, p in live:
                    if n in backup:
                        p.copy_(backup[n])
        else:
            weights = {prefix + k: v for prefix, m in modules for k, v in m.state_dict().items()}
            checkpoint.save(opts.out, {**(setup.constants or {}), **weights, **trained}, meta_for(at_step))
        _save_state(state, modules, ema, opt, generator, at_step, losses, opts)

    save_every = opts.save_every or opts.steps
    if stream is not None:
        stream.begin(step, opts.steps, part)
    bar = tqdm(total=opts.steps, initial=step, desc=info.kind, unit="step", dynamic_ncols=True, disable=not ranks.main)
    t_start, seen = time.perf_counter(), 0
    while step < opts.steps:
        if order is not None:  # epochs: a function of the step (the generator makes no draw for it)
            idx = order.indices(step)
        else:
            idx = torch.randint(0, setup.images, (opts.batch,), generator=generator)
        t = torch.randint(lo, hi, (opts.batch,), generator=generator)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = step_loss(idx, t, generator, part)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema, params):
                    e.mul_(opts.ema).add_(p.detach().to(e.device), alpha=1 - opts.ema)
        step += 1
        seen += opts.batch
        losses.append(distributed.mean(loss.detach(), ranks))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", img_s=f"{seen / max(1e-9, time.perf_counter() - t_start):.1f}")
        if opts.sample_every and step % opts.sample_every == 0 and setup.samples is not None and ranks.main:
            _set_mode(modules, False)
            setup.samples(step)
            _set_mode(modules, True)
        if step % save_every == 0 or step == opts.steps:
            write(step)
        over = bool(opts.max_minutes) and time.perf_counter() - t_start > 60 * opts.max_minutes
        if step < opts.steps and distributed.agree(over, ranks):
            write(step)
            log.info("stopped at step %d of %d after --max-minutes %g; rerun with --resume to continue", step,
                     opts.steps, opts.max_minutes)
            break
    bar.close()
    if not os.path.isfile(opts.out):  # resumed at the final step: nothing left to train
        write(step)
    if setup.finish is not None and step == opts.steps and ranks.main:
        _set_mode(modules, False)
        setup.finish()
    distributed.barrier(ranks)  # the other ranks read what rank 0 wrote
    meta = checkpoint.read_metadata(opts.out)
    meta["losses"] = losses
    return meta
