"""The Prompt-to-Prompt plan (Hertz et al. 2022): everything about an edit that is decided from the prompts and the
node's inputs, and the per-model-call decisions taken from it. Pure: token ids and word lists in, CPU tensors out.

- :class:`Prompt` / :func:`read_prompt`: a prompt word by word, checked against the text encoder's own tokens (the
  caller tokenizes; this module only compares lists of ids);
- :class:`Plan` / :func:`make_plan`: the token correspondence (:mod:`kernels.token_align`), per-token windows,
  reweighting and local-blend words;
- :class:`Windows` / :func:`windows` / :func:`step`: the σ that ends each window on a sampler's schedule, and the
  decisions for the σ of one model call (:mod:`kernels.schedule`); :func:`edit_tensors`: the edit's factors
  (:mod:`kernels.attention_edit`) on a device, cached per call;
- :func:`pair_rows`, :func:`map_size`, :func:`accumulate_maps`, :func:`blend_denoised`: where the pair sits in a
  batched model call, the one resolution whose cross-attention is recorded, and local blend on a prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import attention_edit as ae
from .schedule import in_window, window_end_sigma
from .token_align import (
    find_word,
    parse_word_values,
    parse_words,
    prompt_length,
    refine_alignment,
    replace_mapper,
    word_ids,
)

MODES = ("replace", "refine", "reweight")
MAP_LEVEL = 2  # self-injection layers, and by default the maps and blend: 1/4 of the latent's side
# Where the per-word maps (maps node, local blend) are taken, as a share of the latent's side -> UNet level. 1/4 is
# the paper's (16x16 maps at 512 px on SD1.5); a small latent leaves too few cells there (8x8 on a 32 px world model,
# a cell of 4 px for objects of about 6 px), and 1/2 takes the next finer attention layers instead.
MAP_SCALES = {"1/4": 2, "1/2": 1}


# --- prompts ---

@dataclass(frozen=True)
class Prompt:
    text: str
    words: tuple[str, ...]
    ids: tuple[int, ...]  # token ids of the one CLIP chunk, start/end/padding included
    word_ids: tuple[int, ...]  # per position: 0 start/end/padding, 1.. the words in order

    @property
    def length(self) -> int:
        """The prompt's own tokens: start, words, end (the rest is padding)."""
        return prompt_length(list(self.word_ids))


def read_prompt(text: str, name: str, chunks: list[list[tuple]], per_word: list[list[int]]) -> Prompt:
    """The prompt ``text`` word by word. ``chunks``: the text encoder's tokens of the whole prompt (chunks of
    ``(id, weight, ...)``, start/end/padding included); ``per_word``: each whitespace-separated word's token ids
    alone. CLIP tokenizes words independently, so the words' ids in order are the prompt's; a prompt whose tokens
    differ (weights such as ``(word:1.2)``, embeddings) or that needs more than one chunk is refused."""
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
    return Prompt(text, tuple(text.split()), tuple(ids), tuple(word_ids([len(w) for w in per_word], chunk_len)))


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
    map_scale: str = "1/4"  # where the maps and the blend mask are taken, as a share of the latent's side

    @property
    def tokens(self) -> int:
        return self.mapping.shape[0]

    @property
    def map_level(self) -> int:
        """The UNet level whose cross-attention gives the maps and the blend mask (:data:`MAP_SCALES`)."""
        return MAP_SCALES[self.map_scale]

    @property
    def blend(self) -> bool:
        return bool(self.blend_src or self.blend_tgt)

    @property
    def needs_maps(self) -> bool:
        return self.record or self.blend


def make_plan(source: Prompt, target: Prompt, mode: str, cross_replace: float, word_cross_replace: str,
              self_replace: float, reweight: str, blend_words: str, blend_threshold: float, blend_start: float,
              record: bool, map_scale: str = "1/4") -> Plan:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if map_scale not in MAP_SCALES:
        raise ValueError(f"map_scale {map_scale!r} is not one of {', '.join(MAP_SCALES)} (the maps' side as a share "
                         "of the latent's side)")
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
        mapping, keep = refine_alignment(list(source.ids), list(target.ids), source.length, target.length)
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
                float(blend_start), bool(record), map_scale)


# --- decisions per model call ---

@dataclass(frozen=True)
class Windows:
    """The σ that ends each window of a plan on one sampler schedule (:func:`kernels.schedule.window_end_sigma`)."""

    cross: dict  # cross_replace fraction -> end σ
    self_end: float
    blend_end: float


def windows(plan: Plan, sample_sigmas: torch.Tensor) -> Windows:
    sched = sample_sigmas.detach().float().cpu()
    return Windows({f: window_end_sigma(sched, f) for f in set(plan.cross_fractions.tolist())},
                   window_end_sigma(sched, plan.self_replace), window_end_sigma(sched, plan.blend_start))


@dataclass
class Step:
    """Decisions for the σ of one model call."""

    sigma: float
    alpha: torch.Tensor | None = None  # per target token, 1 = cross-attention edited; None = no edit
    self_inject: bool = False
    blend: bool = False  # local blend active (after blend_start)
    cache: dict = field(default_factory=dict)  # (device, dtype) -> edit tensors


def step(plan: Plan, ends: Windows, sigma: float) -> Step:
    alpha = torch.tensor([1.0 if in_window(sigma, ends.cross[f]) else 0.0 for f in plan.cross_fractions.tolist()])
    return Step(sigma, alpha if bool(alpha.any()) else None, in_window(sigma, ends.self_end),
                plan.blend and not in_window(sigma, ends.blend_end))


def edit_tensors(plan: Plan, current: Step, device, dtype) -> dict:
    """The edit's map and factors (:func:`kernels.attention_edit.edit_weights`) on ``device``/``dtype``, made once
    per model call. ``w_own`` is None when the target's own attention has no share."""
    key = (device, dtype)
    if key not in current.cache:
        w_src, w_own = ae.edit_weights(current.alpha, plan.keep, plan.weights)
        current.cache[key] = {
            "m": plan.mapping.to(device, dtype),
            "w_src": w_src.to(device, dtype),
            "w_own": w_own.to(device, dtype) if bool(w_own.any()) else None,
        }
    return current.cache[key]


# --- the pair in a batched model call ---

def pair_rows(uuids: list, ours: set, batch: int) -> tuple[list[int], list[int]] | None:
    """``(source rows, target rows)`` of the pair in a model call whose chunks (one per conditioning) have the
    ``uuids``; a chunk is the pair's when its uuid is in ``ours``. None when no chunk is."""
    chunks = [i for i, u in enumerate(uuids) if u in ours]
    if not chunks:
        return None
    rows = batch // len(uuids)
    return [c * rows for c in chunks], [c * rows + 1 for c in chunks]


def map_size(height: int, width: int, level: int = MAP_LEVEL) -> tuple[int, int]:
    """The activations' size at a UNet ``level`` (each level halves the side, rounding up)."""
    for _ in range(level):
        height, width = (height + 1) // 2, (width + 1) // 2
    return height, width


def pair_probs(q: torch.Tensor, k: torch.Tensor, heads: int, tokens: int, src: list[int],
               tgt: list[int]) -> torch.Tensor:
    """Cross-attention probabilities (:func:`kernels.attention_edit.token_probs`) of the [source, target] rows,
    averaged over the pair's chunks → 2 × queries × tokens."""
    rows = torch.tensor([i for pair in zip(src, tgt) for i in pair], device=q.device)
    probs = ae.token_probs(q[rows], k[rows], heads, tokens)
    return probs.reshape(len(src), 2, *probs.shape[1:]).mean(0)


def blend_denoised(denoised: torch.Tensor, maps: torch.Tensor, map_shape: tuple[int, int], plan: Plan) -> torch.Tensor:
    """Local blend on a prediction of the pair: outside the mask of the blend words' accumulated maps
    (``maps``: 2 × (h·w) × tokens), the target row's prediction is the source row's."""
    h, w = map_shape
    maps = maps.reshape(2, h, w, -1)
    word_maps = [maps[0][..., list(plan.blend_src)].sum(-1), maps[1][..., list(plan.blend_tgt)].sum(-1)]
    mask = ae.blend_mask(torch.stack(word_maps), denoised.shape[-2], denoised.shape[-1], plan.blend_threshold)
    mask = mask.to(denoised.device, denoised.dtype)
    out = denoised.clone()
    out[1:2] = denoised[0:1] + mask * (denoised[1:2] - denoised[0:1])
    return out
