"""LateStepRefine: remove artifacts by re-noising a latent to a mid timestep and denoising only the late steps.

SDEdit (Meng et al. 2021) re-noises an image part-way and lets the reverse process pull it back onto the data
manifold; shapes stay, wrong details go. Here the start is the noise level of a discrete timestep ``start_t``
(σ from the model's own schedule), so the same ``start_t`` means the same noise under every scheduler, and the
late steps split at ``split_t`` into a shape stage and a detail stage, each with its chosen model: the base, or a
refiner trained only on late timesteps (as the SDXL refiner was on the first 200 of 1000 levels). A refiner is
never evaluated outside its trained range; the base covers the rest.

Stages run as consecutive host sampler runs; a stage after the first continues from the previous one exactly,
and a MASK keeps the unmasked latent equal to the input at every step (host inpainting) and at the end.
"""

from __future__ import annotations

import logging

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import torch
from comfy_api.latest import io, ui

from ..kernels.masks import latent_mask
from ..kernels.schedule import (
    covers,
    segment_schedule,
    sigma_at_timestep,
    split_sigmas_at,
    timestep_at_sigma,
    timestep_range_sigmas,
)
from ..models.diffusion import checkpoint_meta
from .common import CATEGORY, check_choice, check_finite, sigma_table

log = logging.getLogger(__name__)


def late_schedule(model, scheduler: str, steps: int, sigma_start: float) -> torch.Tensor:
    """A schedule from exactly ``sigma_start`` to 0 with ``steps`` steps (one more when the scheduler's spacing
    forces it), made of the scheduler's own levels below ``sigma_start``."""
    model_sampling = model.get_model_object("model_sampling")

    def below(n: int) -> tuple[int, torch.Tensor]:
        full = comfy.samplers.calculate_sigmas(model_sampling, scheduler, n).cpu().float()
        return int((full < sigma_start * (1 - 1e-5)).sum()), full

    n = steps
    while True:
        count, full = below(n)
        if count >= steps or n > steps * 1000:
            break
        n += max(1, (steps - count) // 2)
    return split_sigmas_at(full, sigma_start)[1]


def _model_range(model) -> tuple[int, int]:
    meta = checkpoint_meta(model)
    return tuple(meta["timestep_range"]) if meta else (0, 1000)


def _continuation_noise(model, sigma: float, previous: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """The noise that makes the host's sampler start from ``previous`` while re-noising from ``original``.

    The host starts a run at ``noise_scaling(σ, noise, latent)`` and, with a mask, re-noises unmasked pixels with
    that same noise. With ``latent`` = the original input, this noise reproduces the previous stage's state
    exactly, and in unmasked pixels it equals the first stage's noise.
    """
    ms = model.get_model_object("model_sampling")
    prev_in = model.model.process_latent_in(previous)
    orig_in = model.model.process_latent_in(original)
    s = torch.tensor(sigma, dtype=prev_in.dtype)
    target = ms.noise_scaling(s, torch.zeros_like(prev_in), prev_in)
    offset = ms.noise_scaling(s, torch.zeros_like(orig_in), orig_in)
    scale = ms.noise_scaling(s, torch.ones_like(orig_in), torch.zeros_like(orig_in))
    return (target - offset) / scale


def _uncovered(table: torch.Tensor, segment: torch.Tensor, covered: list[tuple[int, int]]) -> tuple[int, int]:
    """The timesteps (low, high) of ``segment`` outside every ``[lo, hi)`` of ``covered``: a segment's ends are
    shared with a neighbouring range (a refiner on [0, 500) covers 499, where the segment below 999 ends)."""
    t_hi = timestep_at_sigma(table, float(segment[0]))
    t_lo = timestep_at_sigma(table, float(segment[-1])) if float(segment[-1]) > 0 else 0
    while t_lo < t_hi and any(lo <= t_lo < hi for lo, hi in covered):
        t_lo += 1
    while t_hi > t_lo and any(lo <= t_hi < hi for lo, hi in covered):
        t_hi -= 1
    return t_lo, t_hi


def _substitution_notices(table: torch.Tensor, substituted: list, candidates: dict) -> list[str]:
    """One sentence per stage whose chosen model did not do all of its steps, naming who did which timesteps."""
    notices = []
    for stage in ("shape", "detail"):
        items = [(w, c, seg) for st, w, c, seg in substituted if st == stage]
        if not items:
            continue
        wanted, chosen = items[0][0], items[0][1]
        lo, hi = _model_range(candidates[wanted])
        t_lo = min(_uncovered(table, seg, [(lo, hi)])[0] for _, _, seg in items)
        t_hi = max(_uncovered(table, seg, [(lo, hi)])[1] for _, _, seg in items)
        name = "base model" if chosen == "base" else "refiner"
        advice = f"; lower start_t to {hi - 1} or less to refine with the {wanted} alone" if t_lo >= hi else ""
        notices.append(f"{stage}_model is {wanted}, but the {wanted} was trained on timesteps [{lo}, {hi}) only, so "
                       f"the {name} did timesteps {t_lo} to {t_hi} of the {stage} stage{advice}")
    return notices


def plan_runs(schedule: torch.Tensor, table: torch.Tensor, split: float | None, candidates: dict,
              shape_model: str, detail_model: str, notices: list | None = None) -> list[tuple[str, torch.Tensor]]:
    """Consecutive sampler runs ``(model name, σ schedule)`` covering ``schedule``.

    Steps above ``split`` belong to the shape stage, the rest to the detail stage; each step goes to its stage's
    model when that model was trained on its σ, else to the other one; the schedule is cut only where the model
    changes, so one model means one run whatever the stage boundary. Each stretch a connected stage model was
    not trained on, done by the other model instead, is described in ``notices`` (when given).
    """
    ranges = {k: timestep_range_sigmas(sigma_table(m), *_model_range(m)) for k, m in candidates.items() if m is not None}
    cuts = [split] if split else []
    for low, high in ranges.values():
        cuts += [high] + ([low] if low > 0 else [])
    runs: list[tuple[str, torch.Tensor]] = []
    substituted: list[tuple[str, str, str, torch.Tensor]] = []  # (stage, wanted, chosen, segment)
    for segment in segment_schedule(schedule, cuts):
        stage = "shape" if split and float(segment[-1]) >= split * (1 - 1e-5) else "detail"
        wanted = shape_model if stage == "shape" else detail_model
        order = [wanted, "base" if wanted == "refiner" else "refiner"]
        chosen = next((k for k in order if k in ranges and covers(ranges[k], segment)), None)
        if chosen is None:
            t_lo, t_hi = _uncovered(table, segment, [_model_range(candidates[k]) for k in ranges])
            trained = ", ".join(f"{k} on [{_model_range(candidates[k])[0]}, {_model_range(candidates[k])[1]})"
                                for k in ranges)
            raise ValueError(f"no connected model was trained on timesteps {t_lo} to {t_hi} of this refinement "
                             f"(trained: {trained}); connect a base model that covers them or lower start_t")
        if chosen != wanted and wanted in ranges:
            substituted.append((stage, wanted, chosen, segment))
        if not runs or runs[-1][0] != chosen:
            runs.append((chosen, segment))
    if notices is not None:
        notices += _substitution_notices(table, substituted, candidates)
    boundaries = [float(seg[0]) for _, seg in runs[1:]]
    return list(zip([name for name, _ in runs], segment_schedule(schedule, boundaries)))


class LateStepRefine(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwiseLateStepRefine",
            display_name="Late Step Refine",
            category=CATEGORY,
            description=(
                "Removes artifacts from a latent (e.g. VAEEncode of a flawed image): re-noises it to timestep "
                "start_t with seeded noise and denoises only the late steps, start_t to split_t (shape) then "
                "split_t to 0 (detail), each with the base model or a refiner trained on late timesteps. With a "
                "MASK only the masked area changes."
            ),
            # model is required so that it is the node's first input (the UI puts optional inputs after the
            # required ones); a refiner alone is connected here: it is then used only inside its trained range
            inputs=[
                io.Model.Input("model",
                               tooltip="The base model; covers every noise level the refiner was not trained on. "
                                       "To refine with a refiner alone, connect it here and leave refiner empty."),
                io.Model.Input("refiner", optional=True,
                               tooltip="A refiner, e.g. from Load Stepwise Checkpoint; only used inside its trained "
                                       "timestep range."),
                io.Conditioning.Input("positive", tooltip="What the image shows."),
                io.Conditioning.Input("negative", tooltip="What to avoid."),
                io.Latent.Input("latent", tooltip="The latent to refine, e.g. from VAEEncode."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the fresh noise the latent is re-noised with."),
                io.Int.Input("steps", default=20, min=1, max=1000,
                             tooltip="Sampling steps from start_t down to 0 (one more when the scheduler needs it)."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale (1 = positive only, one model call per step)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler",
                               tooltip="The host sampler to use, as in KSampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="The host scheduler; its levels below start_t are used."),
                io.Int.Input("start_t", default=500, min=0, max=999,
                             tooltip="Timestep (of 1000; 999 = pure noise) to re-noise to; higher changes more. "
                                     "0 returns the latent unchanged."),
                io.Int.Input("split_t", default=250, min=0, max=999,
                             tooltip="Where the shape stage ends and the detail stage begins; equal to start_t or "
                                     "0 gives a single stage."),
                io.Combo.Input("shape_model", options=["base", "refiner"], default="base",
                               tooltip="Model for start_t to split_t (the base when no refiner is connected)."),
                io.Combo.Input("detail_model", options=["base", "refiner"], default="refiner",
                               tooltip="Model for split_t to 0 (the base when no refiner is connected)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Only masked areas change (soft values blend); any resolution."),
                io.Float.Input("feather", default=0.0, min=0.0, max=64.0, step=0.1,
                               tooltip="Softens the mask's edges by a Gaussian of this σ in latent pixels."),
                io.Conditioning.Input("refiner_positive", optional=True,
                                      tooltip="Positive for the refiner if it uses another text encoder."),
                io.Conditioning.Input("refiner_negative", optional=True,
                                      tooltip="Negative for the refiner if it uses another text encoder."),
            ],
            outputs=[io.Latent.Output("refined", display_name="latent",
                                      tooltip="The refined latent (with a mask, unmasked pixels equal the input).")],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent, seed, steps, cfg, sampler_name, scheduler, start_t, split_t,
                shape_model="base", detail_model="refiner", refiner=None, mask=None, feather=0.0,
                refiner_positive=None, refiner_negative=None) -> io.NodeOutput:
        check_finite(cfg=cfg, feather=feather)
        check_choice("sampler_name", sampler_name, comfy.samplers.KSampler.SAMPLERS)
        check_choice("scheduler", scheduler, comfy.samplers.KSampler.SCHEDULERS)
        check_choice("shape_model", shape_model, ("base", "refiner"))
        check_choice("detail_model", detail_model, ("base", "refiner"))
        for name, value in (("start_t", start_t), ("split_t", split_t)):
            if not 0 <= value <= 999:
                raise ValueError(f"{name} {value} is out of range: use a timestep in [0, 999]")
        if split_t > start_t:
            raise ValueError(f"split_t ({split_t}) must not exceed start_t ({start_t}): the detail stage comes after "
                             "the shape stage; lower split_t or raise start_t")
        if model is None and refiner is None:
            raise ValueError("LateStepRefine needs a model: connect the base model, a refiner, or both")
        original = latent["samples"]
        out = dict(latent)
        if start_t == 0:
            return io.NodeOutput(out)

        reference = model if model is not None else refiner
        original = comfy.sample.fix_empty_latent_channels(reference, original)
        batch, height, width = original.shape[0], original.shape[-2], original.shape[-1]
        if mask is None and "noise_mask" in latent:
            mask = latent["noise_mask"]
        lmask = None if mask is None else latent_mask(mask, batch, height, width, feather)
        if lmask is not None and not bool(lmask.any()):
            return io.NodeOutput(out)

        table = sigma_table(reference)
        sigma_start = sigma_at_timestep(table, start_t)
        schedule = late_schedule(reference, scheduler, steps, sigma_start)
        split = None if split_t in (0, start_t) else sigma_at_timestep(table, split_t)

        candidates = {"base": model, "refiner": refiner}
        for k, m in candidates.items():
            channels = getattr(m.get_model_object("latent_format"), "latent_channels", None) if m is not None else None
            if channels is not None and channels != original.shape[1]:
                raise ValueError(f"the {k} works on {channels}-channel latents but the latent has {original.shape[1]} "
                                 "channels; encode the image with the VAE that matches the model")
        notices: list[str] = []
        runs = plan_runs(schedule, table, split, candidates, shape_model, detail_model, notices)
        for notice in notices:
            log.warning("Late Step Refine: %s", notice)

        total = sum(len(s) - 1 for _, s in runs)
        pbar = comfy.utils.ProgressBar(total)
        noise = comfy.sample.prepare_noise(original, seed, latent.get("batch_index"))
        current, done = original, 0
        for i, (name, sigmas) in enumerate(runs):
            m = candidates[name]
            pos = refiner_positive if name == "refiner" and refiner_positive is not None else positive
            neg = refiner_negative if name == "refiner" and refiner_negative is not None else negative
            run_noise = noise if i == 0 else _continuation_noise(m, float(sigmas[0]), current, original)

            def callback(step, x0, x, total_steps, offset=done):
                comfy.model_management.throw_exception_if_processing_interrupted()
                pbar.update_absolute(offset + step + 1, total)

            current = comfy.sample.sample_custom(m, run_noise, cfg, comfy.samplers.sampler_object(sampler_name), sigmas,
                                                 pos, neg, original, noise_mask=lmask, callback=callback,
                                                 disable_pbar=True, seed=seed)
            done += len(sigmas) - 1
        if lmask is not None:
            current = current * lmask + original * (1 - lmask)
        out["samples"] = current
        out.pop("noise_mask", None)
        # the notice also goes with the node's result (the /history outputs and the websocket's "executed" message)
        return io.NodeOutput(out, ui=ui.PreviewText("\n".join(notices)) if notices else None)
