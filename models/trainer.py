"""Stepwise's trainer: refiners trained on a timestep range (and, in later issues, pose and estimator models).

A refiner is the host's UNet trained only on timesteps ``[lo, hi)`` of the 1000-level schedule (the seed's
``torch.randint(250, 500, ...)``), with the loss in the model's own parameterisation and the host's noise
schedule: the network sees ``x_t = noise_scaling(σ_t, ε, x0)`` and the loss is the squared error of its raw
output against the target of its parameterisation, computed as ``((denoised − x0) / c_out(σ))²`` where
``c_out = ∂denoised/∂output`` (−σ for eps and flow), so eps, v and flow models train with their usual losses.

Runs are deterministic: batches, timesteps and noise come from one seeded generator whose state is saved with
each checkpoint, so ``--resume`` continues bit for bit. Checkpoints (EMA weights when ``--ema`` > 0) and the
training state are written atomically.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import checkpoint, diffusion
from .images import IMAGE_EXTENSIONS, square_image
from .init import seeded_init_

log = logging.getLogger("stepwise.train")


@dataclass
class RefinerOptions:
    data: str
    out: str
    arch: str = "tiny"
    space: str = "pixel"  # pixel | latent
    vae: str | None = None  # with space=latent: a checkpoint or VAE file the host loads
    latent_format: str = "SD15"
    parameterisation: str = "eps"
    t_range: tuple[int, int] = (0, 500)
    steps: int = 1000
    batch: int = 16
    lr: float = 2e-4
    ema: float = 0.999
    precision: str = "fp32"
    resolution: int = 64
    seed: int = 0
    resume: bool = False
    sample_every: int = 0
    save_every: int = 0
    device: str = "auto"
    base: str | None = None  # fine-tune this host checkpoint's UNet (SD1.x/SD2.x/SDXL) instead of from scratch
    lora_rank: int = 0  # with base: train LoRA layers of this rank and write a host LoRA file
    lora_alpha: float | None = None
    cond_dropout: float = 0.1  # with base: share of empty captions (the unconditional input for CFG)


def load_images(directory: str, resolution: int) -> tuple[torch.Tensor, list[str], int]:
    """All readable images under ``directory`` as an N×3×R×R tensor in [-1, 1] (centre crop, then resize), their
    captions (the ``.txt`` beside each image, empty when missing) and the number of unreadable files skipped."""
    if not os.path.isdir(directory):
        raise ValueError(f"--data {directory!r} is not a folder of images")
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(directory) for f in names
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    images, captions, skipped = [], [], 0
    for path in files:
        try:
            image, _ = square_image(path, resolution)
        except Exception as e:  # unreadable or truncated image: skip it and count it
            log.warning("skipping unreadable image %s (%s)", path, e)
            skipped += 1
            continue
        images.append(image)
        caption_path = os.path.splitext(path)[0] + ".txt"
        captions.append(open(caption_path).read().strip() if os.path.isfile(caption_path) else "")
    if not images:
        raise ValueError(f"--data {directory!r} has no readable images ({len(files)} image files, {skipped} "
                         f"unreadable); use a folder of PNG/JPEG/WebP images, e.g. from `train.py make-data`")
    return torch.stack(images), captions, skipped


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _state_path(out: str) -> str:
    return out + ".train-state"


class _VAE:
    """Encode/decode through a host VAE into the model's inner latent space (latent_format.process_in/out)."""

    def __init__(self, path: str, latent_format):
        import comfy.sd
        import comfy.utils

        sd = comfy.utils.load_torch_file(path)
        vae_sd = {k[len("first_stage_model."):]: v for k, v in sd.items() if k.startswith("first_stage_model.")}
        self.vae = comfy.sd.VAE(sd=vae_sd or sd)
        self.format = latent_format

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        pixels = ((images + 1) / 2).permute(0, 2, 3, 1)  # host IMAGE layout, [0, 1]
        return self.format.process_in(self.vae.encode(pixels).float())

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(self.format.process_out(latents)).permute(0, 3, 1, 2) * 2 - 1


def _modules(model) -> list[tuple[str, torch.nn.Module]]:
    """The trained modules of a host model and the checkpoint prefix of each: the UNet (unprefixed, so the host's
    UNet loader reads refiner files) and, for pose models, the keypoint encoder (``pose_encoder.``)."""
    mods = [("", model.diffusion_model)]
    if hasattr(model, "pose_encoder"):
        mods.append(("pose_encoder.", model.pose_encoder))
    return mods


def _state_dict(modules) -> dict[str, torch.Tensor]:
    return {prefix + k: v for prefix, m in modules for k, v in m.state_dict().items()}


def _save_state(path: str, modules, ema, opt, generator, step: int, losses: list[float], opts: RefinerOptions):
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


def sample_grid(model, x0: torch.Tensor, t_hi: int, seed: int, decode, path: str, steps: int = 10,
                conditioning=None) -> None:
    """Refine ``x0`` noised to the top of the trained range with the host's sampler; save rows of
    clean | noised | refined as a PNG grid."""
    import comfy.model_patcher
    import comfy.sample
    import comfy.samplers
    from PIL import Image

    from ..kernels.schedule import sigma_at_timestep

    patcher = comfy.model_patcher.ModelPatcher(model, load_device=x0.device, offload_device=x0.device)
    ms = model.model_sampling
    sigma = sigma_at_timestep(ms.sigmas.cpu(), t_hi - 1)
    full = comfy.samplers.calculate_sigmas(ms, "karras", steps * 4).cpu()
    from ..kernels.schedule import split_sigmas_at

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
    arr = ((grid.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(arr).save(path)


def _parameterisation_of(model) -> str:
    import comfy.model_sampling as msm

    sampling = model.model_sampling
    if isinstance(sampling, msm.CONST):
        return "flow"
    if isinstance(sampling, msm.V_PREDICTION):
        return "v"
    return "eps"


def _scratch_setup(opts: RefinerOptions, images: torch.Tensor, device) -> dict:
    latent = "pixel" if opts.space == "pixel" else opts.latent_format
    fmt = diffusion.latent_format(latent)()
    if opts.space == "latent":
        vae = _VAE(opts.vae, fmt)
        with torch.no_grad():
            x0 = torch.cat([vae.encode(images[i:i + 32]) for i in range(0, len(images), 32)])
        decode = vae.decode
    else:
        x0, decode = images, (lambda x: x)
    channels = x0.shape[1]
    unet = diffusion.unet_config(opts.arch, channels)
    model = diffusion.new_model(unet, opts.parameterisation, latent, device=device)
    seeded_init_(model.diffusion_model, opts.seed)
    return {
        "model": model, "x0": x0.to(device), "decode": decode, "lora": None, "batch_conds": None,
        "sample_conditioning": None, "conditioning": "none", "base": None,
        "parameterisation": opts.parameterisation,
        "network": {"class": "comfy_unet", "unet_config": unet, "arch": opts.arch, "model_class": "BaseModel"},
        "latent_space": {"kind": "pixel", "channels": channels} if opts.space == "pixel"
        else {"kind": "vae", "latent_format": latent, "channels": channels, "vae": os.path.basename(opts.vae)},
    }


def _base_setup(opts: RefinerOptions, images: torch.Tensor, captions: list[str], device) -> dict:
    """Fine-tune a host checkpoint: its VAE makes the latents, its text encoder the captions' conditioning."""
    import comfy.conds
    import comfy.sd

    if not os.path.isfile(opts.base):
        raise ValueError(f"--base {opts.base!r} is not a file; give a checkpoint the host can load")
    patcher, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(opts.base, model_options={"dtype": torch.float32})
    if clip is None or vae is None:
        raise ValueError(f"--base {opts.base!r} has no text encoder or VAE; use a full checkpoint")
    model = patcher.model
    model.diffusion_model.to(device)
    fmt = model.latent_format
    with torch.no_grad():
        pixels = ((images + 1) / 2).permute(0, 2, 3, 1)
        x0 = torch.cat([fmt.process_in(vae.encode(pixels[i:i + 16]).float()) for i in range(0, len(pixels), 16)])
    h, w = images.shape[-2:]

    def encode(text: str) -> dict:
        cond, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
        extra = model.extra_conds(cross_attn=cond, pooled_output=pooled, width=w, height=h, device=device)
        return {k: v.cond.float() for k, v in extra.items()}

    with torch.no_grad():
        per_image = [encode(c) for c in captions]
        empty = encode("")

    def batch_conds(idx: torch.Tensor, generator: torch.Generator) -> dict:
        drop = torch.rand(len(idx), generator=generator) < opts.cond_dropout
        rows = [empty if d else per_image[i] for i, d in zip(idx.tolist(), drop.tolist())]
        out = {}
        for k in rows[0]:
            tensors = [r[k] for r in rows]
            if k == "c_crossattn" and len({t.shape[1] for t in tensors}) > 1:
                tensors = [comfy.conds.CONDCrossAttn(t) for t in tensors]
                out[k] = tensors[0].concat(tensors[1:]).to(device)
            else:
                out[k] = torch.cat(tensors).to(device)
        return out

    wrapped = None
    if opts.lora_rank:
        from . import lora

        wrapped = lora.inject(model.diffusion_model, opts.lora_rank, opts.lora_alpha, opts.seed)
    else:
        for p in model.diffusion_model.parameters():
            p.requires_grad_(True)
    cond, pooled = clip.encode_from_tokens(clip.tokenize(""), return_pooled=True)
    return {
        "model": model, "x0": x0.to(device), "lora": wrapped, "batch_conds": batch_conds,
        "decode": lambda x: vae.decode(fmt.process_out(x)).permute(0, 3, 1, 2) * 2 - 1,
        "sample_conditioning": [[cond, {"pooled_output": pooled}]], "conditioning": "text",
        "base": {"name": os.path.basename(opts.base), "sha256": checkpoint.sha256(opts.base)},
        "parameterisation": _parameterisation_of(model),
        "network": {"class": "lora" if wrapped else "comfy_unet", "model_class": type(model).__name__,
                    "unet_config": diffusion.json_safe(model.model_config.unet_config),
                    **({"lora_rank": opts.lora_rank} if wrapped else {})},
        "latent_space": {"kind": "vae", "latent_format": type(fmt).__name__, "channels": x0.shape[1],
                         "vae": os.path.basename(opts.base)},
    }


def _check_common(opts) -> None:
    lo, hi = opts.t_range
    if not 0 <= lo < hi <= 1000:
        raise ValueError(f"--t-range {lo} {hi} must satisfy 0 <= lo < hi <= 1000 (hi exclusive)")
    if opts.precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"--precision {opts.precision!r} is not one of fp32, bf16, fp16")
    if opts.space not in ("pixel", "latent"):
        raise ValueError(f"--space {opts.space!r} is not one of pixel, latent")
    if not opts.base and opts.space == "latent" and not opts.vae:
        raise ValueError("--space latent needs --vae (a checkpoint or VAE file whose VAE defines the latents)")
    if opts.steps < 1 or opts.batch < 1:
        raise ValueError(f"--steps and --batch must be >= 1, got {opts.steps} and {opts.batch}")
    if not 0 <= opts.cond_dropout <= 1:
        raise ValueError(f"--cond-dropout {opts.cond_dropout} must be in [0, 1]")


def train_refiner(opts: RefinerOptions) -> dict:
    """Train a refiner on ``opts.data`` (from scratch, or fine-tuning ``opts.base``, optionally as a LoRA); returns
    the metadata written to ``opts.out`` (plus the loss of every step under ``losses``)."""
    _check_common(opts)
    if opts.lora_rank and not opts.base:
        raise ValueError("--lora-rank needs --base: a LoRA adapts an existing checkpoint's UNet")
    device = _device(opts.device)
    torch.manual_seed(opts.seed)
    images, captions, skipped = load_images(opts.data, opts.resolution)
    setup = _base_setup(opts, images, captions, device) if opts.base else _scratch_setup(opts, images, device)
    x0_all, batch_conds = setup["x0"], setup["batch_conds"]

    def batch(idx: torch.Tensor, generator: torch.Generator):
        conds = batch_conds(idx, generator) if batch_conds else {"c_crossattn": None}
        return x0_all[idx.to(x0_all.device)], conds

    def samples(model, step: int):
        sample_grid(model, x0_all[:4], opts.t_range[1], opts.seed, setup["decode"],
                    f"{opts.out}.samples/step_{step:06d}.png", conditioning=setup["sample_conditioning"])

    setup.update(batch=batch, shape=tuple(x0_all.shape[1:]), samples=samples, kind="refiner", extra_meta={})
    return _train(opts, setup, len(images), skipped)


def _diffusion_loss(setup: dict, device):
    """The diffusion loss of one batch: noise the batch's x0 to the drawn timesteps, predict, and compare in the
    model's parameterisation."""
    model = setup["model"]
    ms = model.model_sampling
    table = ms.sigmas.detach().to(device)

    def loss(idx: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn((len(idx), *setup["shape"]), generator=generator).to(device)
        x0, conds = setup["batch"](idx, generator)
        sigma = table[t.to(device)]
        s = sigma.view(-1, *([1] * (x0.ndim - 1)))
        denoised = model.apply_model(ms.noise_scaling(s, noise, x0), sigma, **conds)
        c_out = ms.calculate_denoised(s, torch.ones_like(x0[:1]), torch.zeros_like(x0[:1]))
        return (((denoised.float() - x0) / c_out) ** 2).mean()

    return loss


def _train(opts, setup: dict, n_images: int, skipped: int) -> dict:
    """The training loop shared by every kind: timesteps from ``opts.t_range``, noise and batches from one seeded
    generator, the loss in the model's parameterisation, EMA, mixed precision, atomic checkpoints and resume."""
    from tqdm import tqdm

    lo, hi = opts.t_range
    device = _device(opts.device)
    model = setup["model"]
    modules = setup.get("modules") or _modules(model)
    for _, module in modules:
        module.train()
    named = [(prefix + n, p) for prefix, m in modules for n, p in m.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    ema = [p.detach().clone() for p in params] if opts.ema > 0 else None
    generator = torch.Generator(device="cpu").manual_seed(opts.seed)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(opts.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=opts.precision == "fp16" and device.type == "cuda")

    step, losses = 0, []
    state_path = _state_path(opts.out)
    if opts.resume:
        if not os.path.isfile(state_path):
            raise ValueError(f"--resume: no training state at {state_path}; run without --resume first")
        step, losses = _load_state(state_path, modules, ema, opt, generator)
        log.info("resumed at step %d", step)

    def meta_for(at_step: int) -> dict:
        recent = losses[-max(1, len(losses) // 10):] if losses else []
        return {
            "kind": setup["kind"], "network": setup["network"], "parameterisation": setup["parameterisation"],
            "latent_space": setup["latent_space"], "timestep_range": [lo, hi], "conditioning": setup["conditioning"],
            "base": setup["base"], "resolution": opts.resolution,
            "training": {"steps": at_step, "batch": opts.batch, "lr": opts.lr, "ema": opts.ema,
                         "precision": opts.precision, "seed": opts.seed, "images": n_images,
                         "skipped_images": skipped, "final_loss": float(np.mean(recent)) if recent else None,
                         "lora_rank": opts.lora_rank, "data": os.path.abspath(opts.data), **setup["extra_meta"]},
        }

    def write(at_step: int):
        trained = dict(zip([n for n, _ in named], ema)) if ema is not None else {}
        if setup["lora"] is not None:
            from . import lora as lora_mod

            backup = {n: p.detach().clone() for n, p in model.diffusion_model.named_parameters() if n in trained}
            with torch.no_grad():  # write the EMA weights of the LoRA layers
                for n, p in model.diffusion_model.named_parameters():
                    if n in trained:
                        p.copy_(trained[n])
            checkpoint.save(opts.out, lora_mod.host_state_dict(setup["lora"]), meta_for(at_step))
            with torch.no_grad():
                for n, p in model.diffusion_model.named_parameters():
                    if n in backup:
                        p.copy_(backup[n])
        else:
            checkpoint.save(opts.out, {**_state_dict(modules), **trained}, meta_for(at_step))
        _save_state(state_path, modules, ema, opt, generator, at_step, losses, opts)

    save_every = opts.save_every or opts.steps
    bar = tqdm(total=opts.steps, initial=step, desc=setup["kind"], unit="step", dynamic_ncols=True)
    t_start, seen = time.perf_counter(), 0
    step_loss = setup.get("loss") or _diffusion_loss(setup, device)
    while step < opts.steps:
        idx = torch.randint(0, n_images, (opts.batch,), generator=generator)
        t = torch.randint(lo, hi, (opts.batch,), generator=generator)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = step_loss(idx, t, generator)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema, params):
                    e.mul_(opts.ema).add_(p.detach(), alpha=1 - opts.ema)
        step += 1
        seen += opts.batch
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", img_s=f"{seen / max(1e-9, time.perf_counter() - t_start):.1f}")
        if opts.sample_every and step % opts.sample_every == 0:
            for _, module in modules:
                module.eval()
            setup["samples"](model, step)
            for _, module in modules:
                module.train()
        if step % save_every == 0 or step == opts.steps:
            write(step)
    bar.close()
    if not os.path.isfile(opts.out):  # resumed at the final step: nothing left to train
        write(step)
    if setup.get("finish"):
        for _, module in modules:
            module.eval()
        setup["finish"]()
    meta = checkpoint.read_metadata(opts.out)
    meta["losses"] = losses
    return meta
