"""ArtifactEarlyReject: sample K seeds to a probe point, score each one's x0 estimate, finish only the best M.

Each seed runs the host's own sampler exactly as a KSampler with that seed would (same noise, same sampler),
and is stopped in the step callback once the probe step is done, recording every model call's input and
output. The kept seeds are then sampled again from the start with those calls replayed from the record (the
model is not called while the recorded inputs repeat exactly), so a kept seed's final latent is bit-identical
to sampling that seed alone, for every sampler (multistep history and ancestral noise streams included), and
the model is called ``K·k + M·(N − k)`` times (steps × calls per step for multi-call samplers).

Scores at the probe (higher = more artifact; the lowest M are kept):

- ``trained``: the estimator checkpoint on (x0(k), σ_k);
- ``training-free``: instability: the mean absolute change of x0 over the last ``window`` steps
  (:func:`kernels.artifact.instability`), free of extra model calls.
"""

from __future__ import annotations

import json
import logging

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import torch
from comfy_api.latest import io

from ..kernels import artifact
from .artifact import MODES, Estimator, check_mode, image_scale
from .common import CATEGORY, check_choice, check_finite

log = logging.getLogger("stepwise")
MAX_SEED = 0xFFFFFFFFFFFFFFFF  # the host's largest seed (torch takes seeds up to 2**64 - 1)


class _Probe(Exception):
    """Raised in the step callback to stop a run at the probe step."""


class _Replay:
    """A model function wrapper that records each call's (input, output) or replays a record while the inputs
    repeat exactly; any wrapper already on the model runs inside it."""

    def __init__(self, inner):
        self.inner = inner
        self.record: list | None = None
        self.replay: list = []
        self.position = 0
        self.calls = 0

    def __call__(self, apply_model, args):
        if self.position < len(self.replay):
            x_in, out = self.replay[self.position]
            self.position += 1
            if torch.equal(x_in, args["input"]):
                return out.clone()
            log.warning("early reject: a replayed model input differs; computing from here on")
            self.replay, self.position = [], 0
        self.calls += 1
        if self.inner is not None:
            out = self.inner(apply_model, args)
        else:
            out = apply_model(args["input"], args["timestep"], **args["c"])
        if self.record is not None:
            self.record.append((args["input"].detach().clone(), out.detach().clone()))
        return out


class ArtifactEarlyReject(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwiseArtifactEarlyReject",
            display_name="Artifact Early Reject",
            category=CATEGORY,
            description=("Samples several seeds to a probe point of the schedule, scores each for artifacts from the "
                         "model's denoised estimate, and finishes only the best ones: each kept image is exactly "
                         "what a KSampler with its seed gives, at a fraction of the cost of finishing every seed."),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model to sample with."),
                io.Conditioning.Input("positive", tooltip="Positive conditioning, as in KSampler."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning, as in KSampler."),
                io.Latent.Input("latent_image", tooltip="The latent to sample from (batch size 1)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="First seed; the candidates are seed, seed+1, ..., seed+seeds-1."),
                io.Int.Input("seeds", default=4, min=1, max=64, tooltip="K: how many seeds to sample up to the probe."),
                io.Int.Input("keep", default=1, min=1, max=64, tooltip="M: how many to finish (at most seeds)."),
                io.Int.Input("steps", default=20, min=2, max=10000,
                             tooltip="N: sampling steps of each seed, as in KSampler."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale, as in KSampler."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS,
                               tooltip="The host sampler, as in KSampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS,
                               tooltip="The host scheduler, as in KSampler."),
                io.Float.Input("probe", default=0.5, min=0.01, max=0.99, step=0.01,
                               tooltip="Where to judge, as a fraction of the steps, strictly between 0 and 1 (0.5 with "
                                       "20 steps: judged at step 10)."),
                io.Combo.Input("mode", options=list(MODES), default="training-free",
                               tooltip="trained: the connected estimator; training-free: how much x0 still moves."),
                io.Int.Input("window", default=3, min=1, max=50,
                             tooltip="training-free: how many recent steps of x0 the instability looks at."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Share of the schedule to run, as in KSampler (1 = from pure noise)."),
                Estimator.Input("estimator", optional=True, tooltip="From Load Artifact Estimator (mode trained)."),
                io.Vae.Input("vae", optional=True, tooltip="Sets the image resolution of the heatmaps."),
            ],
            outputs=[
                io.Latent.Output("kept", display_name="latent",
                                 tooltip="The kept seeds' finished latents, best first."),
                io.Float.Output("scores", display_name="scores", is_output_list=True,
                                tooltip="Their scores at the probe (lower is better)."),
                io.Mask.Output("heatmaps", display_name="heatmaps",
                               tooltip="Their heatmaps at the probe, 0..1 at image resolution."),
                io.String.Output("report", display_name="report",
                                 tooltip="JSON: every seed's score, which were kept, model calls."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, seeds, keep, steps, cfg, sampler_name, scheduler,
                probe, mode, window, denoise, estimator=None, vae=None) -> io.NodeOutput:
        check_finite(cfg=cfg, probe=probe, denoise=denoise)
        check_choice("sampler_name", sampler_name, comfy.samplers.KSampler.SAMPLERS)
        check_choice("scheduler", scheduler, comfy.samplers.KSampler.SCHEDULERS)
        if seed + seeds - 1 > MAX_SEED:
            raise ValueError(f"seed {seed} is too large for {seeds} seeds: the candidates seed..seed+{seeds - 1} must "
                             f"not exceed {MAX_SEED}; use a seed up to {MAX_SEED - seeds + 1}")
        if keep > seeds:
            raise ValueError(f"keep ({keep}) must not exceed seeds ({seeds}): K seeds are started, the best M kept")
        if not 0 < probe < 1:
            raise ValueError(f"probe {probe} must lie strictly between 0 and 1 (a fraction of the {steps} steps)")
        check_mode(mode, estimator, model)
        samples = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
        if samples.shape[0] != 1:
            raise ValueError(f"latent_image has batch size {samples.shape[0]}; early rejection samples one image per "
                             "seed: use batch_size 1")
        if denoise <= 0:
            raise ValueError(f"denoise {denoise} must be above 0")
        total = int(steps / denoise) if denoise < 1 else steps  # as the host's KSampler lengthens the schedule
        probe_step = min(steps - 1, max(1, round(probe * steps)))
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, total)[-(steps + 1):]
        probe_sigma = float(sigmas[probe_step - 1])
        replay = _Replay(model.model_options.get("model_function_wrapper"))
        wrapped = model.clone()
        wrapped.set_model_unet_function_wrapper(replay)
        pbar = comfy.utils.ProgressBar(seeds * probe_step + keep * (steps - probe_step))

        def sample(s: int, callback):
            return comfy.sample.sample(wrapped, comfy.sample.prepare_noise(samples, s), steps, cfg, sampler_name,
                                       scheduler, positive, negative, samples, denoise=denoise,
                                       noise_mask=latent_image.get("noise_mask"), callback=callback,
                                       disable_pbar=True, seed=s)

        records, histories = [], []
        for i in range(seeds):  # every seed to the probe step, recording its model calls
            comfy.model_management.throw_exception_if_processing_interrupted()
            history: list[torch.Tensor] = []

            def to_probe(step, x0, x, total):
                pbar.update(1)
                history.append(x0.detach().float().cpu())
                del history[:-(window + 1)]
                if step + 1 >= probe_step:
                    raise _Probe()

            replay.record, replay.replay, replay.position = [], [], 0
            try:
                sample(seed + i, to_probe)
                log.warning("early reject: seed %d finished before the probe step %d", seed + i, probe_step)
            except _Probe:
                pass
            records.append(replay.record)
            histories.append(history)
        replay.record = None
        heat, scores = [], []
        for history in histories:
            if mode == "trained":
                h, sc = estimator(history[-1], probe_sigma)
            else:
                raw = artifact.instability(history) if len(history) > 1 else torch.zeros_like(history[-1][:, 0])
                h, sc = artifact.normalise(raw), artifact.score(raw)
            heat.append(h)
            scores.append(float(sc[0]))
        order = sorted(range(seeds), key=lambda i: scores[i])[:keep]
        results = []
        for i in order:  # the kept seeds again, the recorded calls replayed, to the end
            comfy.model_management.throw_exception_if_processing_interrupted()
            replay.replay, replay.position = records[i], 0
            results.append(sample(seed + i, lambda step, x0, x, total: pbar.update(1) if step >= probe_step else None))
        replay.replay = []
        records.clear()
        kept = torch.cat(results)
        scale = image_scale(model, vae)
        maps = torch.cat([heat[i] for i in order])
        maps = artifact.to_image(maps, maps.shape[-2] * scale, maps.shape[-1] * scale).clamp(0, 1)
        report = {"seeds": [{"seed": seed + i, "score": round(scores[i], 6), "kept": i in order} for i in range(seeds)],
                  "kept_seeds": [seed + i for i in order], "probe_step": probe_step, "probe_sigma": probe_sigma,
                  "steps": steps, "model_calls": replay.calls,
                  "model_calls_formula": artifact.early_reject_calls(seeds, probe_step, keep, steps), "mode": mode}
        log.info("early reject: kept seeds %s of %d (scores %s)", report["kept_seeds"], seeds,
                 [round(s, 4) for s in scores])
        out = {k: v for k, v in latent_image.items() if k not in ("samples", "batch_index", "noise_mask")}
        out["samples"] = kept
        return io.NodeOutput(out, [scores[i] for i in order], maps, json.dumps(report))
