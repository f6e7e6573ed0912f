"""PromptToPromptAttn: Prompt-to-Prompt image editing (Hertz et al. 2022, "Prompt-to-Prompt Image Editing with
Cross Attention Control") through the UNet's attention, in any host sampler.

The node encodes a source and a target prompt into one positive CONDITIONING of two rows [source, target] and
returns a two-row LATENT with identical noise (``batch_index`` repeated). The user's negative and KSampler do the
rest. The returned MODEL is a clone carrying:

- ``attn2`` replace patches on every transformer block: in the conditional chunk(s) tagged by this node (found by
  the conditioning's ``uuid``, never by position), the target row's cross-attention becomes the edited attention of
  :func:`kernels.attention_edit.edit` (replace / refine, reweight, per-word step windows), run through the host's
  optimized attention as edits on V; the source row and the negative rows are left alone;
- ``attn1`` replace patches: inside the ``self_replace`` window the target row's self-attention at the
  low-resolution layers (at most 1/4 of the latent's side, i.e. ≤16² at 512 px for SD1.5, ≤32² at 1024 px for
  SDXL) uses the source row's attention maps: ``attention(q_src, k_src, v_tgt)``;
- a post-CFG function for local blend: outside a mask from the blend words' accumulated cross-attention maps the
  target's denoised prediction is the source's, so the finished target keeps the source's content there (the
  paper blends x_t after each step; blending the prediction is the sampler-agnostic equivalent, and the
  difference left from before the blend starts decays with σ);
- wrappers: OUTER_SAMPLE (checks and a fresh per-run state; the state is dropped in ``finally``, so nothing of an
  interrupted or finished run stays for a later prompt), CALC_COND_BATCH (the window decisions for the σ of each
  model call, taken from ``sample_sigmas``), SAMPLER_SAMPLE (the pair shares the per-step noise of ancestral and
  SDE samplers, drawn as for one image, so the rows differ only by the edit).

Patches already in an ``attn1``/``attn2`` slot are chained: they compute the attention this node edits.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import logging
import re
from dataclasses import dataclass, field

import comfy.k_diffusion.sampling
import comfy.ldm.modules.attention
import comfy.patcher_extension
import comfy.samplers
import torch
from comfy_api.latest import io

from ..kernels import attention_edit as ae
from ..kernels.schedule import in_window, window_end_sigma
from ..kernels.token_align import find_word, parse_word_values, parse_words, refine_alignment, replace_mapper, word_ids
from .common import CATEGORY

TAG = "stepwise_p2p"
MAPS_KEY = "stepwise_p2p_maps"
WRAPPER_KEY = "stepwise.p2p"
MODES = ("replace", "refine", "reweight")
MAP_LEVEL = 2  # maps, blend and self-injection layers: 1/4 of the latent's side
log = logging.getLogger(__name__)


# --- prompts ---

@dataclass(frozen=True)
class Prompt:
    text: str
    words: tuple[str, ...]
    ids: tuple[int, ...]  # token ids of the one CLIP chunk, start/end/padding included
    word_ids: tuple[int, ...]  # per position: 0 start/end/padding, 1.. the words in order


def _sd_tokenizer(clip):
    for name in ("clip_l", "clip_g"):
        tok = getattr(clip.tokenizer, name, None)
        if tok is not None and hasattr(tok, "tokenizer"):
            return tok
    raise ValueError(f"PromptToPromptAttn needs a CLIP text encoder (SD1.x, SD2.x, SDXL); got "
                     f"{type(clip.tokenizer).__name__}")


def tokenize(clip, text: str, name: str) -> tuple[Prompt, dict]:
    """The prompt word by word, checked against the host's own tokens (which are what gets encoded)."""
    tokens = clip.tokenize(text)
    chunks = next(iter(tokens.values()))
    sd_tok = _sd_tokenizer(clip)
    words = text.split()
    end = -1 if getattr(sd_tok, "tokenizer_adds_end_token", True) else None
    per_word = [sd_tok.tokenizer(w)["input_ids"][sd_tok.tokens_start:end] for w in words]
    count = sum(len(w) for w in per_word)
    chunk_len = len(chunks[0])
    if len(chunks) > 1 or count + 2 > chunk_len:
        raise ValueError(f"the {name} prompt has {count} tokens; PromptToPromptAttn edits prompts of up to "
                         f"{chunk_len - 2} tokens (one CLIP chunk); shorten it")
    host = chunks[0]
    ids = [t[0] for t in host]
    flat = [t for w in per_word for t in w]
    plain = all(isinstance(i, int) for i in ids) and all(t[1] == 1.0 for t in host)
    if not plain or ids[1:1 + len(flat)] != flat:
        raise ValueError(f"the {name} prompt {text!r} uses prompt weights such as (word:1.2) or an embedding; "
                         "PromptToPromptAttn needs plain words (use its reweight input to weight words)")
    return Prompt(text, tuple(words), tuple(ids), tuple(word_ids([len(w) for w in per_word], chunk_len))), tokens


# --- the plan: everything decided when the node runs (CPU tensors) ---

@dataclass(frozen=True, eq=False)
class Plan:
    source: Prompt
    target: Prompt
    mode: str
    mapping: torch.Tensor  # source tokens × target tokens
    keep: torch.Tensor  # target tokens that keep their own attention (refine)
    weights: torch.Tensor  # reweight, per target token
    cross_fractions: torch.Tensor  # per target token: the cross_replace window
    self_replace: float
    blend_src: tuple[int, ...]  # token positions of the blend words in the source / target
    blend_tgt: tuple[int, ...]
    blend_threshold: float
    blend_start: float
    record: bool  # keep per-word maps for the attention-map node

    @property
    def tokens(self) -> int:
        return self.mapping.shape[0]

    @property
    def blend(self) -> bool:
        return bool(self.blend_src or self.blend_tgt)

    @property
    def needs_maps(self) -> bool:
        return self.record or self.blend


def make_plan(source: Prompt, target: Prompt, mode: str, cross_replace: float, word_cross_replace: str,
              self_replace: float, reweight: str, blend_words: str, blend_threshold: float, blend_start: float,
              record: bool) -> Plan:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    for name, value in (("cross_replace", cross_replace), ("self_replace", self_replace),
                        ("blend_threshold", blend_threshold), ("blend_start", blend_start)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    n = len(target.ids)
    if mode == "replace":
        mapping = replace_mapper(list(source.word_ids), list(target.word_ids), list(source.words),
                                 list(target.words))
        keep = torch.zeros(n)
    elif mode == "refine":
        mapping, keep = refine_alignment(list(source.ids), list(target.ids))
    else:
        if source.ids != target.ids:
            raise ValueError("reweight edits one prompt: leave target empty or equal to source "
                             f"(got {source.text!r} and {target.text!r}); to change words too use replace or refine "
                             "with reweight words")
        mapping, keep = torch.eye(n), torch.zeros(n)

    def positions(word: str, name: str, prompts=(target,)) -> list[int]:
        found = [p for prompt in prompts for p in find_word(list(prompt.words), list(prompt.word_ids), word)]
        if not found:
            where = " or ".join(repr(p.text) for p in prompts)
            raise ValueError(f"{name}: the word {word!r} is not in {where}")
        return found

    fractions = torch.full((n,), float(cross_replace))
    for word, value in parse_word_values(word_cross_replace, "word_cross_replace"):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"word_cross_replace: {word}:{value} is outside [0, 1]")
        fractions[positions(word, "word_cross_replace")] = value
    weights = torch.ones(n)
    for word, value in parse_word_values(reweight, "reweight"):
        weights[positions(word, "reweight")] = value
    blend_src, blend_tgt = [], []
    for word in parse_words(blend_words):
        positions(word, "blend_words", (source, target))
        blend_src += find_word(list(source.words), list(source.word_ids), word)
        blend_tgt += find_word(list(target.words), list(target.word_ids), word)
    return Plan(source, target, mode, mapping, keep, weights, fractions, float(self_replace),
                tuple(sorted(set(blend_src))), tuple(sorted(set(blend_tgt))), float(blend_threshold),
                float(blend_start), bool(record))


# --- per-run state ---

@dataclass
class Step:
    """Decisions for the σ of one model call, on the model's device."""

    sigma: float
    alpha: torch.Tensor | None = None  # per target token, 1 = cross-attention edited; None = no edit
    self_inject: bool = False
    blend: bool = False  # local blend active (after blend_start)
    cache: dict = field(default_factory=dict)  # (device, dtype) -> edit tensors


@dataclass
class Run:
    ours: set  # uuids of this node's positive entries
    maps: torch.Tensor | None = None  # 2 × (h·w) × tokens, summed cross-attention of [source, target]
    map_shape: tuple[int, int] | None = None
    calls: int = 0
    step: Step | None = None
    windows: dict = field(default_factory=dict)  # id(sample_sigmas) -> window σs


@dataclass
class Record:
    """Per-word maps of one finished run, for the attention-map node."""

    maps: torch.Tensor  # 2 × h × w × tokens, mean over calls
    source: Prompt
    target: Prompt


class MapStore:
    """Records of finished runs, keyed by a digest of the sampler's output (shared through the LATENT dict)."""

    KEEP = 8

    def __init__(self):
        self.records: dict[str, Record] = {}

    def add(self, key: str, record: Record) -> None:
        self.records.pop(key, None)
        self.records[key] = record
        while len(self.records) > self.KEEP:
            self.records.pop(next(iter(self.records)))


def digest(samples: torch.Tensor) -> str:
    return hashlib.sha1(samples.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def _level(height: int, width: int, level: int) -> tuple[int, int]:
    for _ in range(level):
        height, width = (height + 1) // 2, (width + 1) // 2
    return height, width


def _default_attention(q, k, v, extra):
    return comfy.ldm.modules.attention.optimized_attention(q, k, v, extra["n_heads"],
                                                           attn_precision=extra.get("attn_precision"),
                                                           transformer_options=extra)


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


class Controller:
    """The hooks of one PromptToPromptAttn node; bound methods of this object are what the model clone carries."""

    def __init__(self, plan: Plan, store: MapStore):
        self.plan = plan
        self.store = store
        self.run: Run | None = None
        self.inner1: dict = {}  # block key -> the patch this node chains to (or the host's attention)
        self.inner2: dict = {}

    # -- wrappers --

    def outer_sample(self, executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                     disable_pbar=False, seed=None):
        conds = executor.class_obj.conds
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
        if ours and noise.shape[0] != 2:
            raise ValueError(f"PromptToPromptAttn's conditioning holds [source, target] and needs its two-row LATENT; "
                             f"the sampler got {noise.shape[0]} rows (sample the LATENT the node returns)")
        if not ours:
            log.warning("a model patched by PromptToPromptAttn was sampled without that node's conditioning; "
                        "nothing is edited")
        self.run = Run(ours)
        try:
            out = executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)
            run = self.run
            if ours and self.plan.needs_maps and run.maps is None:
                log.warning("PromptToPromptAttn found no cross-attention at 1/4 of the latent's size in this model: "
                            "no maps were recorded and local blend did nothing")
            if ours and self.plan.record and run.maps is not None:
                h, w = run.map_shape
                maps = (run.maps / max(run.calls, 1)).reshape(2, h, w, -1).cpu()
                self.store.add(digest(out), Record(maps, self.plan.source, self.plan.target))
            return out
        finally:
            self.run = None

    def sampler_sample(self, executor, guider, sigmas, extra_args, callback, noise, latent_image=None,
                       denoise_mask=None, disable_pbar=False):
        args = (guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)
        sampler = executor.class_obj
        run = self.run
        if (run is None or not run.ours or not isinstance(sampler, comfy.samplers.KSAMPLER)
                or "noise_sampler" in sampler.extra_options
                or "noise_sampler" not in inspect.signature(sampler.sampler_function).parameters):
            return executor(*args)
        shared = copy.copy(sampler)
        shared.sampler_function = functools.wraps(sampler.sampler_function)(
            functools.partial(_shared_noise, sampler.sampler_function))
        return comfy.patcher_extension.WrapperExecutor.new_class_executor(
            shared.sample, shared, executor.wrappers, executor.idx + 1).execute(*args)

    def calc_cond_batch(self, executor, model, conds, x_in, timestep, model_options):
        run = self.run
        if run is not None and run.ours:
            sample_sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
            if sample_sigmas is None:
                raise ValueError("PromptToPromptAttn needs the sampler's schedule (sample_sigmas) to place its step "
                                 "windows; sample with a ComfyUI sampler node")
            run.step = self._step(run, float(timestep.reshape(-1)[0]), sample_sigmas)
        return executor(model, conds, x_in, timestep, model_options)

    def _step(self, run: Run, sigma: float, sample_sigmas: torch.Tensor) -> Step:
        key = id(sample_sigmas)
        if key not in run.windows:
            plan = self.plan
            sched = sample_sigmas.detach().float().cpu()
            ends = {f: window_end_sigma(sched, f) for f in set(plan.cross_fractions.tolist())}
            run.windows[key] = (ends, window_end_sigma(sched, plan.self_replace),
                                window_end_sigma(sched, plan.blend_start))
        ends, self_end, blend_end = run.windows[key]
        alpha = torch.tensor([1.0 if in_window(sigma, ends[f]) else 0.0 for f in self.plan.cross_fractions.tolist()])
        return Step(sigma, alpha if bool(alpha.any()) else None, in_window(sigma, self_end),
                    self.plan.blend and not in_window(sigma, blend_end))

    def _tensors(self, step: Step, device, dtype) -> dict:
        key = (device, dtype)
        if key not in step.cache:
            plan = self.plan
            w_src, w_own = ae.edit_weights(step.alpha, plan.keep, plan.weights)
            step.cache[key] = {
                "m": plan.mapping.to(device, dtype),
                "w_src": w_src.to(device, dtype),
                "w_own": w_own.to(device, dtype) if bool(w_own.any()) else None,
            }
        return step.cache[key]

    # -- post-CFG: local blend --

    def post_cfg(self, args):
        denoised = args["denoised"]
        run, plan = self.run, self.plan
        if run is None or not run.ours or run.step is None or not run.step.blend or run.maps is None:
            return denoised
        h, w = run.map_shape
        maps = run.maps.reshape(2, h, w, -1)
        word_maps = [maps[0][..., list(plan.blend_src)].sum(-1), maps[1][..., list(plan.blend_tgt)].sum(-1)]
        mask = ae.blend_mask(torch.stack(word_maps), denoised.shape[-2], denoised.shape[-1], plan.blend_threshold)
        mask = mask.to(denoised.device, denoised.dtype)
        out = denoised.clone()
        out[1:2] = denoised[0:1] + mask * (denoised[1:2] - denoised[0:1])
        return out

    # -- attention patches --

    def _pairs(self, extra, batch: int):
        run = self.run
        if run is None or not run.ours or run.step is None:
            return None
        uuids = extra.get("uuids") or []
        chunks = [i for i, u in enumerate(uuids) if u in run.ours]
        if not chunks:
            return None
        rows = batch // len(uuids)
        return [c * rows for c in chunks], [c * rows + 1 for c in chunks]

    def attn2(self, key, q, k, v, extra):
        inner = self.inner2.get(key) or _default_attention
        pairs = self._pairs(extra, q.shape[0])
        if pairs is None:
            return inner(q, k, v, extra)
        src, tgt = pairs
        run, plan, step = self.run, self.plan, self.run.step
        if plan.needs_maps:
            self._record(run, q, k, extra, src, tgt)
        if step.alpha is None:
            return inner(q, k, v, extra)
        t = self._tensors(step, q.device, q.dtype)
        own = (q[tgt].clone(), k[tgt].clone(), ae.scale_tokens(v[tgt], t["w_own"])) if t["w_own"] is not None else None
        # q, k, v are this block's fresh projections: the target rows are overwritten in place (no full copies).
        v[tgt] = ae.map_tokens(ae.scale_tokens(v[tgt], t["w_src"]), t["m"])
        q[tgt] = q[src]
        k[tgt] = k[src]
        out = inner(q, k, v, extra)
        if own is not None:
            sub = {**extra, "cond_or_uncond": [0] * len(tgt), "uuids": [None] * len(tgt)}
            out[tgt] += inner(*own, sub)
        return out

    def attn1(self, key, q, k, v, extra):
        inner = self.inner1.get(key) or _default_attention
        pairs = self._pairs(extra, q.shape[0])
        if pairs is None or not self.run.step.self_inject:
            return inner(q, k, v, extra)
        shape = extra.get("activations_shape")
        original = extra.get("original_shape")
        if shape is None or original is None:
            return inner(q, k, v, extra)
        h, w = _level(original[-2], original[-1], MAP_LEVEL)
        if shape[-2] * shape[-1] > h * w:
            return inner(q, k, v, extra)
        src, tgt = pairs
        q[tgt] = q[src]
        k[tgt] = k[src]
        return inner(q, k, v, extra)

    def _record(self, run: Run, q, k, extra, src, tgt) -> None:
        shape, original = extra.get("activations_shape"), extra.get("original_shape")
        if shape is None or original is None:
            return
        size = _level(original[-2], original[-1], MAP_LEVEL)
        if (shape[-2], shape[-1]) != size:
            return
        rows = torch.tensor([i for pair in zip(src, tgt) for i in pair], device=q.device)
        probs = ae.token_probs(q[rows], k[rows], extra["n_heads"], self.plan.tokens)
        probs = probs.reshape(len(src), 2, *probs.shape[1:]).mean(0)
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


def patch(model, plan: Plan, store: MapStore):
    m = model.clone()
    controller = Controller(plan, store)
    replace = m.model_options.get("transformer_options", {}).get("patches_replace", {})
    for key in transformer_blocks(m):
        for slot, inner, fn in (("attn1", controller.inner1, controller.attn1),
                                ("attn2", controller.inner2, controller.attn2)):
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
    for kind, fn in ((WrappersMP.OUTER_SAMPLE, controller.outer_sample),
                     (WrappersMP.SAMPLER_SAMPLE, controller.sampler_sample),
                     (WrappersMP.CALC_COND_BATCH, controller.calc_cond_batch)):
        m.add_wrapper_with_key(kind, WRAPPER_KEY, fn)
    if plan.blend:
        m.set_model_sampler_post_cfg_function(controller.post_cfg)
    return m, controller


# --- the node ---

def _pair_conditioning(clip, source_tokens, target_tokens, plan: Plan) -> list:
    encoded = []
    for name, tokens in (("source", source_tokens), ("target", target_tokens)):
        cond = clip.encode_from_tokens_scheduled(tokens)
        if len(cond) != 1:
            raise ValueError(f"the {name} prompt encoded to {len(cond)} scheduled conditionings (CLIP hooks); "
                             "PromptToPromptAttn needs a CLIP without scheduled hooks")
        encoded.append(cond[0])
    (c_src, o_src), (c_tgt, o_tgt) = encoded
    options = dict(o_src)
    if o_src.get("pooled_output") is not None and o_tgt.get("pooled_output") is not None:
        options["pooled_output"] = torch.cat([o_src["pooled_output"], o_tgt["pooled_output"]])
    options[TAG] = plan
    return [[torch.cat([c_src, c_tgt]), options]]


def pair_latent(latent: dict, store: MapStore) -> dict:
    samples = latent["samples"]
    if samples.shape[0] != 1:
        raise ValueError(f"latent has {samples.shape[0]} images; PromptToPromptAttn makes its source/target pair "
                         "from one latent (batch_size 1)")
    out = {k: v for k, v in latent.items() if k not in ("samples", "batch_index", "noise_mask")}
    out["samples"] = samples.repeat(2, *[1] * (samples.ndim - 1))
    index = (latent.get("batch_index") or [0])[0]
    out["batch_index"] = [index, index]
    if latent.get("noise_mask") is not None:
        mask = latent["noise_mask"]
        out["noise_mask"] = mask.repeat(2, *[1] * (mask.ndim - 1)) if mask.shape[0] == 1 else mask
    out[MAPS_KEY] = store
    return out


class PromptToPromptAttn(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwisePromptToPromptAttn",
            display_name="Prompt-to-Prompt",
            category=CATEGORY,
            description=(
                "Prompt-to-Prompt editing (Hertz et al. 2022): the source and the target prompt are sampled together "
                "from the same noise and the target's cross-attention follows the source's, so the edit keeps the "
                "source image's layout. Connect MODEL, positive and LATENT to a KSampler (with your negative); "
                "row 1 of the result is the source image, row 2 the edited one."),
            inputs=[
                io.Model.Input("model", tooltip="An SD1.x/SD2.x/SDXL model (a UNet with cross-attention)."),
                io.Clip.Input("clip", tooltip="The model's text encoder."),
                io.String.Input("source", multiline=True, default="a photo of a cat riding a bicycle",
                                tooltip="The source prompt (plain words, up to 75 tokens)."),
                io.String.Input("target", multiline=True, default="a photo of a dog riding a bicycle",
                                tooltip="The edited prompt. replace: the same number of words with some swapped. "
                                        "refine: words added or changed. reweight: empty or equal to source."),
                io.Combo.Input("mode", options=list(MODES), default="replace",
                               tooltip="replace: word swap (same word count). refine: words added/changed, aligned "
                                       "token by token. reweight: only the reweight words' attention changes."),
                io.Float.Input("cross_replace", default=0.8, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of the steps, from the start, in which the target's cross-attention "
                                       "follows the source's. 0 turns the edit off."),
                io.String.Input("word_cross_replace", default="",
                                tooltip="Per-word windows for target words, e.g. 'dog:0.4' (a smaller value lets that "
                                        "word change the shape more)."),
                io.Float.Input("self_replace", default=0.4, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of the steps in which the target's self-attention at the "
                                       "low-resolution layers is the source's (keeps the layout). 0 turns it off."),
                io.String.Input("reweight", default="",
                                tooltip="Scale target words' attention, e.g. 'fluffy:5, cat:-0.5' (not "
                                        "renormalised; 1 does nothing). Works with every mode."),
                io.String.Input("blend_words", default="",
                                tooltip="Local blend: words (of either prompt, comma-separated) whose attention marks "
                                        "the region that may change; elsewhere the target keeps the source. Empty: off."),
                io.Float.Input("blend_threshold", default=0.3, min=0.0, max=1.0, step=0.05,
                               tooltip="Local blend: fraction of the maps' peak above which a pixel is in the mask."),
                io.Float.Input("blend_start", default=0.2, min=0.0, max=1.0, step=0.05,
                               tooltip="Local blend: fraction of the steps after which blending starts."),
                io.Boolean.Input("record_maps", default=True,
                                 tooltip="Keep per-word cross-attention maps (one resolution) for the "
                                         "Prompt-to-Prompt Attention Maps node."),
                io.Latent.Input("latent", tooltip="One empty or encoded latent (batch_size 1); it becomes the pair."),
            ],
            outputs=[
                io.Model.Output("patched_model", display_name="model",
                                tooltip="The model with the edit attached; sample it with positive and latent."),
                io.Conditioning.Output("pair_positive", display_name="positive",
                                       tooltip="[source, target]: connect to the sampler's positive."),
                io.Latent.Output("pair_latent", display_name="latent",
                                 tooltip="Two rows with identical noise: source, target."),
            ],
        )

    @classmethod
    def execute(cls, model, clip, source, target, mode, cross_replace, word_cross_replace, self_replace, reweight,
                blend_words, blend_threshold, blend_start, record_maps, latent) -> io.NodeOutput:
        if clip is None:
            raise ValueError("clip is missing; connect the text encoder of the model's checkpoint")
        if mode == "reweight" and not target.strip():
            target = source
        src, src_tokens = tokenize(clip, source, "source")
        tgt, tgt_tokens = tokenize(clip, target, "target")
        plan = make_plan(src, tgt, mode, cross_replace, word_cross_replace, self_replace, reweight, blend_words,
                         blend_threshold, blend_start, record_maps)
        store = MapStore()
        patched, _ = patch(model, plan, store)
        return io.NodeOutput(patched, _pair_conditioning(clip, src_tokens, tgt_tokens, plan), pair_latent(latent, store))
