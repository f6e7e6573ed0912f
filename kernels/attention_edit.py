"""Prompt-to-Prompt cross-attention edits (Hertz et al. 2022) as maps on V, plus a materialised reference.

Every edit is linear in V along the token axis, so it runs through any (optimized, non-materialising) attention:

- replace:  ``softmax(q_s k_sᵀ) · M · v_t``                  = attention(q_src, k_src, M v_tgt)
- refine:   ``attention(q_s, k_s, M v_t) + attention(q_t, k_t, keep ⊙ v_t)``
- reweight: ``softmax(q k ᵀ) · diag(e) · v``                = attention(q, k, e ⊙ v)   (not renormalised)

Here ``M`` is source tokens × target tokens (:mod:`kernels.token_align`): ``(A_src M)[p, t] = Σ_s A_src[p, s] M[s, t]``,
so ``(A_src M) v_t = A_src (M v_t)``. A blend between the edited and the original attention with weight α
(``cross_replace`` windows, per-word α) is also linear: ``α·edit + (1 − α)·own``. Tensors are
``batch × heads × tokens × dim`` for q/k/v (``attention`` is any function of (q, k, v) with that layout).
"""

from __future__ import annotations

from typing import Callable

import torch

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def _tile(x: torch.Tensor, tokens: int) -> torch.Tensor:
    """A per-token vector of length ``L`` tiled to ``tokens`` (a multiple of ``L``): the host repeats a shorter
    conditioning's tokens to the common length of a batch."""
    if tokens == x.shape[-1]:
        return x
    if tokens % x.shape[-1]:
        raise ValueError(f"the context has {tokens} tokens, not a multiple of the prompt's {x.shape[-1]}")
    return x.repeat(tokens // x.shape[-1])


def map_tokens(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``M v``: values of the target tokens rearranged onto source-token positions (``v``: …×n_tgt×d).

    A context of ``r·L`` tokens (the host's repetition of an ``L``-token prompt) is folded into ``r`` copies and
    each copy is mapped; attention over repeated keys is attention over one copy, so this is exact."""
    n = m.shape[1]
    if v.shape[-2] == n:
        return torch.einsum("st,...td->...sd", m.to(v.dtype), v)
    tokens = v.shape[-2]
    if tokens % n:
        raise ValueError(f"the context has {tokens} tokens, not a multiple of the prompt's {n}")
    folded = v.reshape(*v.shape[:-2], tokens // n, n, v.shape[-1])
    return torch.einsum("st,...td->...sd", m.to(v.dtype), folded).reshape(v.shape)


def scale_tokens(v: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return v * _tile(weights, v.shape[-2]).to(v.dtype).unsqueeze(-1)


def edit_weights(alpha: torch.Tensor, keep: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-target-token factors ``(w_src, w_own)`` of the general edit (see :func:`edit`)."""
    return alpha * weights, alpha * weights * keep + (1 - alpha)


def edit(q_src, k_src, q_tgt, k_tgt, v_tgt, m, alpha=None, keep=None, weights=None,
         attention: Attention = sdpa) -> torch.Tensor:
    """Target output of the general Prompt-to-Prompt edit (replace or refine, reweighted, in a window):

    ``A' = α ⊙ ((A_src M + A_tgt ⊙ keep) ⊙ e) + (1 − α) ⊙ A_tgt``, output ``A' v_tgt``, i.e.
    ``attention(q_src, k_src, M (w_src ⊙ v)) + attention(q_tgt, k_tgt, w_own ⊙ v)`` with
    ``(w_src, w_own)`` = :func:`edit_weights`. ``α`` (1 = edited, per target token; default 1), ``keep`` (1 = a
    refine's new token that keeps its own attention; default 0), ``e`` (reweight; default 1). A term whose
    factors are all zero is skipped."""
    n = m.shape[1]
    alpha = torch.ones(n) if alpha is None else alpha
    keep = torch.zeros(n) if keep is None else keep
    weights = torch.ones(n) if weights is None else weights
    w_src, w_own = edit_weights(alpha, keep, weights)
    out = None
    if bool(w_src.any()):
        out = attention(q_src, k_src, map_tokens(scale_tokens(v_tgt, w_src), m))
    if bool(w_own.any()):
        own = attention(q_tgt, k_tgt, scale_tokens(v_tgt, w_own))
        out = own if out is None else out + own
    if out is None:  # every factor zero: the attention output is zero
        out = q_src.new_zeros(*q_src.shape[:-1], v_tgt.shape[-1])
    return out


def replace(q_src, k_src, v_tgt, m, attention: Attention = sdpa, alpha: torch.Tensor | None = None,
            q_tgt=None, k_tgt=None) -> torch.Tensor:
    """Target output of a replace edit; with per-target-token ``alpha`` (1 = fully edited) the rest keeps the
    target's own attention (then ``q_tgt``/``k_tgt`` are needed)."""
    return edit(q_src, k_src, q_tgt, k_tgt, v_tgt, m, alpha=alpha, attention=attention)


def refine(q_src, k_src, q_tgt, k_tgt, v_tgt, m, keep, attention: Attention = sdpa) -> torch.Tensor:
    return edit(q_src, k_src, q_tgt, k_tgt, v_tgt, m, keep=keep, attention=attention)


def reweight(q, k, v, weights, attention: Attention = sdpa) -> torch.Tensor:
    return attention(q, k, scale_tokens(v, weights))


def query_chunks(rows: int, queries: int, keys: int, features: int, budget: int) -> int:
    """How many queries one attention call may take so that ``rows · queries · keys · features`` (the multiply-adds
    of its scores, about those of its output too) stays within ``budget``; all ``queries`` when they fit."""
    per_query = max(1, rows * keys * features)
    return max(1, min(queries, budget // per_query))


def chunked(attention: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, budget: int,
            between: Callable[[], None] | None = None) -> torch.Tensor:
    """``attention(q, k, v)`` (rows × tokens × features) in query chunks of at most ``budget`` multiply-adds each,
    calling ``between()`` before every chunk (e.g. to honour an interrupt). Each query attends independently, so
    the chunks' outputs concatenated are the output of one call; a call within the budget is one call."""
    size = query_chunks(q.shape[0], q.shape[1], k.shape[1], q.shape[2], budget)
    if between is not None:
        between()
    if size >= q.shape[1]:
        return attention(q, k, v)
    out = []
    for start in range(0, q.shape[1], size):
        if start and between is not None:
            between()
        out.append(attention(q[:, start:start + size], k, v))
    return torch.cat(out, dim=1)


def take_source_attention(q: torch.Tensor, k: torch.Tensor, src: list[int], tgt: list[int]) -> None:
    """In place: the target rows' queries and keys become their source rows', so the target rows attend as the
    source rows do (with their own values)."""
    q[tgt] = q[src]
    k[tgt] = k[src]


def edit_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, src: list[int], tgt: list[int], m: torch.Tensor,
              w_src: torch.Tensor, w_own: torch.Tensor | None, attention: Attention,
              own_attention: Attention | None = None) -> torch.Tensor:
    """:func:`edit` on batched projections (rows × tokens × features, heads folded into features): the target
    rows ``tgt`` get the edit from their source rows ``src``, every other row plain ``attention``; the target's own
    term (``w_own``; None = no share) runs through ``own_attention`` (default ``attention``). ``q``, ``k``, ``v``
    are overwritten in place (fresh projections: no full copies)."""
    own = (q[tgt].clone(), k[tgt].clone(), scale_tokens(v[tgt], w_own)) if w_own is not None else None
    v[tgt] = map_tokens(scale_tokens(v[tgt], w_src), m)
    take_source_attention(q, k, src, tgt)
    out = attention(q, k, v)
    if own is not None:
        out[tgt] += (own_attention or attention)(*own)
    return out


def token_probs(q: torch.Tensor, k: torch.Tensor, heads: int, tokens: int) -> torch.Tensor:
    """Cross-attention probabilities of every query over the first ``tokens`` keys, averaged over heads, in float32
    (``q``: B×N×(heads·d), ``k``: B×T×(heads·d) with T a multiple of ``tokens``) → B×N×tokens.

    The one materialised map (for local blend and the attention-map node, at one resolution): a context repeated
    to ``r·tokens`` keys gives the same probabilities over one copy."""
    b, n, inner = q.shape
    d = inner // heads
    qh = q.reshape(b, n, heads, d).transpose(1, 2).float()
    kh = k[:, :tokens].reshape(b, tokens, heads, d).transpose(1, 2).float()
    return torch.softmax(qh @ kh.transpose(-1, -2) * d ** -0.5, dim=-1).mean(dim=1)


def blend_mask(word_maps: torch.Tensor, height: int, width: int, threshold: float = 0.3,
               pool: int = 1) -> torch.Tensor:
    """Local-blend mask (Hertz et al. 2022, Sec. 3.3): ``word_maps`` (R×h×w, one summed map of the blend words per
    row, accumulated over steps) → max-pool (2·pool+1)², resize to ``height×width``, normalise by each map's
    maximum, threshold, and take the union over rows → 1×1×height×width of 0/1."""
    maps = word_maps.float().unsqueeze(1)
    if pool > 0:
        maps = torch.nn.functional.max_pool2d(maps, 2 * pool + 1, stride=1, padding=pool)
    maps = torch.nn.functional.interpolate(maps, size=(height, width))
    peak = maps.amax(dim=(2, 3), keepdim=True)
    maps = torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps))
    return (maps > threshold).any(dim=0, keepdim=True).float()


# --- the slow, materialised reference ---

def probs(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Attention probabilities ``softmax(q kᵀ / √d)`` (batch × heads × queries × tokens), in float64."""
    scale = q.shape[-1] ** -0.5
    return torch.softmax(q.double() @ k.double().transpose(-1, -2) * scale, dim=-1)


def replace_reference(q_src, k_src, v_tgt, m, alpha=None, q_tgt=None, k_tgt=None) -> torch.Tensor:
    a = probs(q_src, k_src) @ m.double()
    if alpha is not None:
        a = a * alpha.double() + probs(q_tgt, k_tgt) * (1 - alpha.double())
    return (a @ v_tgt.double()).to(v_tgt.dtype)


def refine_reference(q_src, k_src, q_tgt, k_tgt, v_tgt, m, keep) -> torch.Tensor:
    a = probs(q_src, k_src) @ m.double() + probs(q_tgt, k_tgt) * keep.double()
    return (a @ v_tgt.double()).to(v_tgt.dtype)


def reweight_reference(q, k, v, weights) -> torch.Tensor:
    return ((probs(q, k) * weights.double()) @ v.double()).to(v.dtype)


def edit_reference(q_src, k_src, q_tgt, k_tgt, v_tgt, m, alpha, keep, weights) -> torch.Tensor:
    a_src, a_tgt = probs(q_src, k_src), probs(q_tgt, k_tgt)
    alpha, keep, weights = alpha.double(), keep.double(), weights.double()
    a = alpha * ((a_src @ m.double() + a_tgt * keep) * weights) + (1 - alpha) * a_tgt
    return (a @ v_tgt.double()).to(v_tgt.dtype)
