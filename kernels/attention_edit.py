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


def map_tokens(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``M v``: values of the target tokens rearranged onto source-token positions (``v``: …×n_tgt×d)."""
    return torch.einsum("st,...td->...sd", m.to(v.dtype), v)


def scale_tokens(v: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return v * weights.to(v.dtype).unsqueeze(-1)


def replace(q_src, k_src, v_tgt, m, attention: Attention = sdpa, alpha: torch.Tensor | None = None,
            q_tgt=None, k_tgt=None) -> torch.Tensor:
    """Target output of a replace edit; with per-target-token ``alpha`` (1 = fully edited) the rest keeps the
    target's own attention (then ``q_tgt``/``k_tgt`` are needed)."""
    if alpha is None:
        return attention(q_src, k_src, map_tokens(v_tgt, m))
    edited = attention(q_src, k_src, map_tokens(scale_tokens(v_tgt, alpha), m))
    return edited + attention(q_tgt, k_tgt, scale_tokens(v_tgt, 1 - alpha))


def refine(q_src, k_src, q_tgt, k_tgt, v_tgt, m, keep, attention: Attention = sdpa) -> torch.Tensor:
    return attention(q_src, k_src, map_tokens(v_tgt, m)) + attention(q_tgt, k_tgt, scale_tokens(v_tgt, keep))


def reweight(q, k, v, weights, attention: Attention = sdpa) -> torch.Tensor:
    return attention(q, k, scale_tokens(v, weights))


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
