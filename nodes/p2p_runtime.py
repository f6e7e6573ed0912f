"""What a PromptToPromptAttn model does while it is sampled: hooks on a ModelPatcher clone, and the state of a run.

The math is in :mod:`kernels.p2p_plan` (decisions) and :mod:`kernels.attention_edit` (the edits); this module
connects them to the host:

- ``attn2`` replace patches on every transformer block: in the conditional chunk(s) tagged by the node (found by
  the conditioning's ``uuid``, never by position), the target row's cross-attention becomes the edited attention
  of :func:`kernels.attention_edit.edit` (replace / refine, reweight, per-word step windows), run through the
  host's optimized attention as edits on V; the source row and the negative rows are left alone;
- ``attn1`` replace patches: inside the ``self_replace`` window the target row's self-attention at the
  low-resolution layers (at most 1/4 of the latent's side, i.e. ≤16² at 512 px for SD1.5, ≤32² at 1024 px for
  SDXL) uses the source row's attention maps: ``attention(q_src, k_src, v_tgt)``;
- interrupts: the host looks for one only between steps, and one step at a large latent is minutes of
  self-attention, so every attention call of the patched model checks for an interrupt, and the host's own
  attention runs in query chunks of about a second's work (:data:`INTERRUPT_BUDGET`) with a check before each
  (another node's chained patch is called whole, after a check);
- a post-CFG function for local blend: outside a mask from the blend words' accumulated cross-attention maps the
  target's denoised prediction is the source's, so the finished target keeps the source's content there (the
  paper blends x_t after each step; blending the prediction is the sampler-agnostic equivalent, and the
  difference left from before the blend starts decays with σ);
- wrappers: OUTER_SAMPLE (checks, and the run's state), CALC_COND_BATCH (the window decisions for the σ of each
  model call, taken from ``sample_sigmas``), SAMPLER_SAMPLE (the pair shares the per-step noise of ancestral and
  SDE samplers, drawn as for one image, so the rows differ only by the edit).

Patches already in an ``attn1``/``attn2`` slot are chained: they compute the attention this node edits.

Per-run state, as the host's own cache nodes keep theirs (``comfy_extras/nodes_easycache.py``): the OUTER_SAMPLE
wrapper makes a :class:`Run` and puts it into a clone of the guider's model options for this run only, under
``transformer_options[STATE_KEY]``; the host copies those options into everything the run calls (the sampler's
``extra_args``, ``calc_cond_batch``, the post-CFG arguments and each attention patch's ``extra_options``), and
the hooks read the run from there. :class:`Hooks` holds only what the node decided (the plan, the chained
patches, the maps hand-over), never a run: two runs of one patched model, one after the other or one inside
another, each see their own state, and when a run ends, finished or interrupted, the guider gets its own options
back and the run's state is gone with the clone.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import re
from dataclasses import dataclass, field

import comfy.k_diffusion.sampling
import comfy.ldm.modules.attention
import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import comfy.samplers
import torch

from ..kernels import attention_edit as ae
from ..kernels import p2p_plan
from ..kernels.p2p_plan import Plan
from .p2p_handover import HandOver, Record, digest

TAG = "stepwise_p2p"  # conditioning option: the plan of the node that made the pair
STATE_KEY = "stepwise_p2p_run"  # transformer_options entry of a run: its Run
WRAPPER_KEY = "stepwise.p2p"
log = logging.getLogger(__name__)


@dataclass
class Run:
    """The state of one sampling run (created by :meth:`Hooks.outer_sample`, held in the run's model options)."""

    plan: Plan
    ours: set  # uuids of this node's positive entries
    maps: torch.Tensor | None = None  # 2 × (h·w) × tokens, summed cross-attention of [source, target]
    map_shape: tuple[int, int] | None = None
    calls: int = 0
    step: p2p_plan.Step | None = None
    windows: dict = field(default_factory=dict)  # id(sample_sigmas) -> p2p_plan.Windows
    last_x0: torch.Tensor | None = None  # the sampler's last x0 (SamplerCustom's denoised_output)


def _default_attention(q, k, v, extra):
    return comfy.ldm.modules.attention.optimized_attention(q, k, v, extra["n_heads"],
                                                           attn_precision=extra.get("attn_precision"),
                                                           transformer_options=extra)


# Multiply-adds of attention between two interrupt checks: about a second of a CPU's attention (a few ms on a
# GPU). A large latent's self-attention is far more in one call (1280 px on the tiny zoo model: ~1.7e11 per call),
# and the host looks for an interrupt only between steps, so the host's own attention is called in query chunks
# of this size with a check before each.
INTERRUPT_BUDGET = {"cpu": 2**32}
INTERRUPT_BUDGET_OTHER = 2**38


def _attend(inner, q, k, v, extra):
    """``inner(q, k, v, extra)`` that honours an interrupt within about :data:`INTERRUPT_BUDGET` of work."""
    check = comfy.model_management.throw_exception_if_processing_interrupted
    if inner is not _default_attention:  # another node's patch may need the whole call: check before it only
        check()
        return inner(q, k, v, extra)
    budget = INTERRUPT_BUDGET.get(q.device.type, INTERRUPT_BUDGET_OTHER)
    return ae.chunked(lambda q_, k_, v_: inner(q_, k_, v_, extra), q, k, v, budget, check)


_BROWNIAN = re.compile(r"sample_dpmpp_(sde|2m_sde|2m_sde_heun|3m_sde)(_gpu)?$")


def _shared_noise(fn, model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
    """Run sampler ``fn`` with one noise draw per step for all rows: the draw the sampler itself would make for a
    single image (same seed, same kind of noise sampler), so row 0 matches a one-image run."""
    seed = (extra_args or {}).get("seed")
    first = x[:1]
    name = getattr(fn, "__name__", "")
    match = _BROWNIAN.match(name)
    if match:
        positive = sigmas[sigmas > 0]
        one = comfy.k_diffusion.sampling.BrownianTreeNoiseSampler(
            first, positive.min(), sigmas.max(), seed=seed, cpu=match.group(2) is None)
    else:
        one = comfy.k_diffusion.sampling.default_noise_sampler(first, seed=seed)
    options["noise_sampler"] = lambda sigma, sigma_next: one(sigma, sigma_next).expand_as(x).contiguous()
    return fn(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable, **options)


def run_of(options: dict | None, plan: Plan) -> Run | None:
    """The run of ``plan`` in a run's ``transformer_options`` (or an attention patch's ``extra_options``)."""
    run = (options or {}).get(STATE_KEY)
    return run if run is not None and run.plan is plan and run.ours else None


class Hooks:
    """The hooks of one PromptToPromptAttn node; bound methods of this object are what the model clone carries.
    Holds the node's decisions only; every run's state is in that run's options (:func:`run_of`)."""

    def __init__(self, plan: Plan, handover: HandOver):
        self.plan = plan
        self.handover = handover
        self.inner1: dict = {}  # block key -> the patch this node chains to (or the host's attention)
        self.inner2: dict = {}

    # -- wrappers --

    def _ours(self, conds: dict, rows: int) -> set:
        ours = set()
        for kind, entries in conds.items():
            for e in entries or []:
                tag = e.get(TAG)
                if tag is None:
                    continue
                if tag is not self.plan:
                    raise ValueError("the conditioning comes from a different PromptToPromptAttn node than the model; "
                                     "connect the MODEL and the positive of the same node")
                if kind != "positive":
                    raise ValueError(f"PromptToPromptAttn's conditioning is connected to {kind}; connect it to positive")
                ours.add(e["uuid"])
        if ours and rows != 2:
            raise ValueError(f"PromptToPromptAttn's conditioning holds [source, target] and needs its two-row LATENT; "
                             f"the sampler got {rows} rows (sample the LATENT the node returns)")
        if not ours:
            log.warning("a model patched by PromptToPromptAttn was sampled without that node's conditioning; "
                        "nothing is edited")
        return ours

    def outer_sample(self, executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                     disable_pbar=False, seed=None):
        guider = executor.class_obj
        run = Run(self.plan, self._ours(guider.conds, noise.shape[0]))
        original = guider.model_options
        guider.model_options = comfy.model_patcher.create_model_options_clone(original)
        guider.model_options.setdefault("transformer_options", {})[STATE_KEY] = run
        if run.ours and self.plan.record and callback is not None:
            callback = functools.partial(self._keep_x0, run, callback)
        try:
            out = executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)
            if run.ours and self.plan.needs_maps and run.maps is None:
                log.warning("PromptToPromptAttn found no cross-attention at %s of the latent's side in this model: "
                            "no maps were recorded and local blend did nothing (try the other map_scale)",
                            self.plan.map_scale)
            if run.ours and self.plan.record and run.maps is not None:
                h, w = run.map_shape
                maps = (run.maps / max(run.calls, 1)).reshape(2, h, w, -1).cpu()
                keys = [digest(out)]
                if run.last_x0 is not None:  # SamplerCustom's denoised_output, as the host computes it
                    keys.append(digest(guider.model_patcher.model.process_latent_out(run.last_x0.cpu())))
                self.handover.add(keys, Record(maps, self.plan.source, self.plan.target))
            return out
        finally:
            guider.model_options = original

    @staticmethod
    def _keep_x0(run: Run, callback, step, x0, x, total_steps):
        run.last_x0 = x0
        return callback(step, x0, x, total_steps)

    def sampler_sample(self, executor, guider, sigmas, extra_args, callback, noise, latent_image=None,
                       denoise_mask=None, disable_pbar=False):
        args = (guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)
        sampler = executor.class_obj
        run = run_of(extra_args.get("model_options", {}).get("transformer_options"), self.plan)
        if (run is None or not isinstance(sampler, comfy.samplers.KSAMPLER)
                or "noise_sampler" in sampler.extra_options
                or "noise_sampler" not in inspect.signature(sampler.sampler_function).parameters):
            return executor(*args)
        shared = copy.copy(sampler)
        shared.sampler_function = functools.wraps(sampler.sampler_function)(
            functools.partial(_shared_noise, sampler.sampler_function))
        return comfy.patcher_extension.WrapperExecutor.new_class_executor(
            shared.sample, shared, executor.wrappers, executor.idx + 1).execute(*args)

    def calc_cond_batch(self, executor, model, conds, x_in, timestep, model_options):
        transformer_options = model_options.get("transformer_options", {})
        run = run_of(transformer_options, self.plan)
        if run is not None:
            sample_sigmas = transformer_options.get("sample_sigmas")
            if sample_sigmas is None:
                raise ValueError("PromptToPromptAttn needs the sampler's schedule (sample_sigmas) to place its step "
                                 "windows; sample with a ComfyUI sampler node")
            key = id(sample_sigmas)
            if key not in run.windows:
                run.windows[key] = p2p_plan.windows(self.plan, sample_sigmas)
            run.step = p2p_plan.step(self.plan, run.windows[key], float(timestep.reshape(-1)[0]))
        return executor(model, conds, x_in, timestep, model_options)

    # -- post-CFG: local blend --

    def post_cfg(self, args):
        denoised = args["denoised"]
        run = run_of(args.get("model_options", {}).get("transformer_options"), self.plan)
        if run is None or run.step is None or not run.step.blend or run.maps is None:
            return denoised
        return p2p_plan.blend_denoised(denoised, run.maps, run.map_shape, self.plan)

    # -- attention patches --

    def _pairs(self, run: Run | None, extra: dict, batch: int):
        if run is None or run.step is None:
            return None
        return p2p_plan.pair_rows(extra.get("uuids") or [], run.ours, batch)

    def attn2(self, key, q, k, v, extra):
        inner = self.inner2.get(key) or _default_attention
        run = run_of(extra, self.plan)
        pairs = self._pairs(run, extra, q.shape[0])
        if pairs is None:
            return _attend(inner, q, k, v, extra)
        src, tgt = pairs
        if self.plan.needs_maps:
            self._record(run, q, k, extra, src, tgt)
        if run.step.alpha is None:
            return _attend(inner, q, k, v, extra)
        t = p2p_plan.edit_tensors(self.plan, run.step, q.device, q.dtype)

        def own(q_, k_, v_):  # the target rows alone: one conditional chunk each
            return _attend(inner, q_, k_, v_, {**extra, "cond_or_uncond": [0] * len(tgt), "uuids": [None] * len(tgt)})

        return ae.edit_rows(q, k, v, src, tgt, t["m"], t["w_src"], t["w_own"],
                            lambda q_, k_, v_: _attend(inner, q_, k_, v_, extra), own)

    def attn1(self, key, q, k, v, extra):
        inner = self.inner1.get(key) or _default_attention
        run = run_of(extra, self.plan)
        pairs = self._pairs(run, extra, q.shape[0])
        if pairs is None or not run.step.self_inject:
            return _attend(inner, q, k, v, extra)
        shape = extra.get("activations_shape")
        original = extra.get("original_shape")
        if shape is None or original is None:
            return _attend(inner, q, k, v, extra)
        h, w = p2p_plan.map_size(original[-2], original[-1])
        if shape[-2] * shape[-1] > h * w:
            return _attend(inner, q, k, v, extra)
        ae.take_source_attention(q, k, *pairs)
        return _attend(inner, q, k, v, extra)

    def _record(self, run: Run, q, k, extra, src, tgt) -> None:
        shape, original = extra.get("activations_shape"), extra.get("original_shape")
        if shape is None or original is None:
            return
        size = p2p_plan.map_size(original[-2], original[-1], self.plan.map_level)
        if (shape[-2], shape[-1]) != size:
            return
        probs = p2p_plan.pair_probs(q, k, extra["n_heads"], self.plan.tokens, src, tgt)
        if run.maps is None or run.map_shape != size:
            run.maps, run.map_shape, run.calls = torch.zeros_like(probs), size, 0
        run.maps += probs
        run.calls += 1


def transformer_blocks(model) -> list[tuple]:
    """``(block, id, index)`` keys of every transformer block of the model's UNet, as the host looks patches up."""
    keys = []
    diffusion_model = model.get_model_object("diffusion_model")
    for name, module in diffusion_model.named_modules():
        if not isinstance(module, comfy.ldm.modules.attention.BasicTransformerBlock):
            continue
        parts = name.split(".")
        if parts[0] == "input_blocks":
            keys.append(("input", int(parts[1]), int(parts[-1])))
        elif parts[0] == "middle_block":
            keys.append(("middle", 0, int(parts[-1])))
        elif parts[0] == "output_blocks":
            keys.append(("output", int(parts[1]), int(parts[-1])))
    if not keys:
        raise ValueError(f"PromptToPromptAttn needs a UNet with cross-attention (SD1.x, SD2.x, SDXL); "
                         f"{type(diffusion_model).__name__} has no transformer blocks it can patch")
    return keys


def attach(m, plan: Plan, handover: HandOver) -> Hooks:
    """Attach the hooks of ``plan`` to the ModelPatcher clone ``m`` (chaining the attention patches already there)."""
    hooks = Hooks(plan, handover)
    replace = m.model_options.get("transformer_options", {}).get("patches_replace", {})
    for key in transformer_blocks(m):
        for slot, inner, fn in (("attn1", hooks.inner1, hooks.attn1), ("attn2", hooks.inner2, hooks.attn2)):
            existing = replace.get(slot, {})
            previous = existing.get(key) or existing.get(key[:2])
            if previous is not None:
                inner[key] = previous
            bound = functools.partial(fn, key)
            if slot == "attn1":
                m.set_model_attn1_replace(bound, key[0], key[1], key[2])
            else:
                m.set_model_attn2_replace(bound, key[0], key[1], key[2])
    WrappersMP = comfy.patcher_extension.WrappersMP
    for kind, fn in ((WrappersMP.OUTER_SAMPLE, hooks.outer_sample),
                     (WrappersMP.SAMPLER_SAMPLE, hooks.sampler_sample),
                     (WrappersMP.CALC_COND_BATCH, hooks.calc_cond_batch)):
        m.add_wrapper_with_key(kind, WRAPPER_KEY, fn)
    if plan.blend:
        m.set_model_sampler_post_cfg_function(hooks.post_cfg)
    return hooks
