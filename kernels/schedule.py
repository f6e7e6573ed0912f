"""σ ↔ timestep maps and σ-schedule splitting.

Stepwise names noise levels by the discrete timestep ``t`` of a 1000-level training schedule (t = 999 is
the noisiest level, t = 0 the cleanest), as DDPM (Ho et al. 2020) and the SDXL refiner's "first 200 of
1000 noise levels" do, and finds every step by its σ rather than by counting calls: k-diffusion's samplers
(Karras et al. 2022) only ever hand the model a σ.

The σ of each level comes from the model's own table (``model_sampling.sigmas`` in ComfyUI), so the same
``t`` means the same noise level for eps, v and flow models and under every scheduler. A table of N levels
is read as N/1000 table entries per timestep, level ``t`` being entry ``round((t + 1) * N / 1000) - 1``:
for the usual N = 1000 that is entry ``t`` itself.
"""

from __future__ import annotations

import math

import torch

NUM_TIMESTEPS = 1000


def _check_table(sigma_table: torch.Tensor) -> torch.Tensor:
    if sigma_table.ndim != 1 or sigma_table.numel() < 2:
        raise ValueError(
            f"sigma_table must be a 1-D table of at least 2 noise levels, got shape {tuple(sigma_table.shape)}"
        )
    return sigma_table


def timestep_index(t: int, num_levels: int) -> int:
    """Index into a σ table of ``num_levels`` entries (ascending σ) for discrete timestep ``t`` in [0, 999]."""
    if isinstance(t, bool) or int(t) != t:
        raise ValueError(f"timestep must be an integer in [0, {NUM_TIMESTEPS - 1}], got {t!r}")
    t = int(t)
    if not 0 <= t < NUM_TIMESTEPS:
        raise ValueError(f"timestep {t} is out of range: use an integer in [0, {NUM_TIMESTEPS - 1}]")
    if num_levels < 2:
        raise ValueError(f"a σ table needs at least 2 levels, got {num_levels}")
    return min(num_levels - 1, max(0, round((t + 1) * num_levels / NUM_TIMESTEPS) - 1))


def sigma_at_timestep(sigma_table: torch.Tensor, t: int) -> float:
    """σ of discrete timestep ``t`` read from a model's ascending σ table (``model_sampling.sigmas``)."""
    table = _check_table(sigma_table)
    return float(table[timestep_index(t, table.numel())])


def timestep_at_sigma(sigma_table: torch.Tensor, sigma: float) -> int:
    """Nearest discrete timestep (in log σ) for ``sigma``; the inverse of :func:`sigma_at_timestep` on its levels.

    σ beyond the ends of the table map to 0 or 999.
    """
    table = _check_table(sigma_table).double()
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 to have a timestep, got {sigma!r}")
    n = table.numel()
    levels = torch.tensor([timestep_index(t, n) for t in range(NUM_TIMESTEPS)])
    dist = (table[levels].log() - torch.tensor(float(sigma), dtype=torch.float64).log()).abs()
    return int(dist.argmin())


def split_sigmas_at(sigmas: torch.Tensor, sigma_split: float, rtol: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a descending σ schedule into ``(high, low)`` at ``sigma_split``.

    ``high`` runs from the first σ down to ``sigma_split`` and ``low`` from ``sigma_split`` to the last σ, so
    sampling ``high`` then ``low`` visits the same levels as the whole schedule plus the boundary. When no
    σ of the schedule lies within ``rtol`` (relative) of ``sigma_split`` the boundary is inserted, so the
    split is exactly at the requested noise level whatever the scheduler. A boundary at or above the first
    σ gives an empty ``high`` (a single σ: no steps); at or below the last σ an empty ``low``.
    """
    if sigmas.ndim != 1 or sigmas.numel() < 1:
        raise ValueError(f"sigmas must be a non-empty 1-D schedule, got shape {tuple(sigmas.shape)}")
    if sigmas.numel() > 1 and bool((sigmas[1:] > sigmas[:-1]).any()):
        raise ValueError("sigmas must be descending (a sampling schedule from noisy to clean)")
    if not sigma_split >= 0:
        raise ValueError(f"sigma_split must be >= 0, got {sigma_split!r}")
    first, last = float(sigmas[0]), float(sigmas[-1])
    if sigma_split >= first * (1 - rtol):
        return sigmas[:1].clone(), sigmas.clone()
    if sigma_split <= last * (1 + rtol):
        return sigmas.clone(), sigmas[-1:].clone()
    close = ((sigmas - sigma_split).abs() <= rtol * sigma_split).nonzero()
    if close.numel() > 0:
        k = int(close[0])
        return sigmas[: k + 1].clone(), sigmas[k:].clone()
    k = int((sigmas > sigma_split).sum())
    boundary = sigmas.new_tensor([sigma_split])
    return torch.cat([sigmas[:k], boundary]), torch.cat([boundary, sigmas[k:]])


def segment_schedule(sigmas: torch.Tensor, cuts, rtol: float = 1e-5) -> list[torch.Tensor]:
    """Cut a descending σ schedule at every σ in ``cuts`` that lies inside it (inserting it when needed).

    Returns consecutive segments that share their boundary σ; cuts at or beyond the schedule's ends are
    ignored, so a schedule with no inner cut comes back whole as the only segment.
    """
    segments, rest = [], sigmas
    for cut in sorted({float(c) for c in cuts}, reverse=True):
        if len(rest) < 2 or not float(rest[-1]) * (1 + rtol) < cut < float(rest[0]) * (1 - rtol):
            continue
        high, rest = split_sigmas_at(rest, cut, rtol)
        segments.append(high)
    segments.append(rest)
    return segments


def timestep_range_sigmas(sigma_table: torch.Tensor, lo: int, hi: int) -> tuple[float, float]:
    """σ interval ``(σ_low, σ_high)`` a network trained on timesteps ``[lo, hi)`` may be evaluated at.

    ``σ_low`` is 0 when the range reaches t = 0 (the last step of a sampler lands on σ = 0 without evaluating
    the model there).
    """
    if not 0 <= lo < hi <= NUM_TIMESTEPS:
        raise ValueError(f"timestep range [{lo}, {hi}) is not within [0, {NUM_TIMESTEPS}) with lo < hi")
    low = 0.0 if lo == 0 else sigma_at_timestep(sigma_table, lo)
    return low, sigma_at_timestep(sigma_table, hi - 1)


def covers(sigma_range: tuple[float, float], segment: torch.Tensor, rtol: float = 1e-5) -> bool:
    """Whether every σ a sampler evaluates on ``segment`` (between its ends) lies in ``sigma_range``."""
    low, high = sigma_range
    return float(segment[0]) <= high * (1 + rtol) and float(segment[-1]) >= low * (1 - rtol)


def window_end_sigma(sample_sigmas: torch.Tensor, fraction: float) -> float:
    """σ that ends a window over the first ``fraction`` of a sampler's steps (Prompt-to-Prompt's step windows).

    Steps ``0 … int(fraction·N) − 1`` of an ``N``-step schedule are inside (as in the paper's code); a model call
    at σ is inside iff σ is above the returned value (:func:`in_window`). Deciding by σ, not by counting calls,
    keeps second-order and SDE samplers' extra evaluations in the window of their noise level. ``inf`` = empty."""
    steps = len(sample_sigmas) - 1
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"a step window fraction must be in [0, 1], got {fraction}")
    end = int(fraction * steps + 1e-9)
    if steps < 1 or end <= 0:
        return math.inf
    return float(sample_sigmas[end])


def in_window(sigma: float, end_sigma: float, rtol: float = 1e-4) -> bool:
    """Whether a model call at ``sigma`` lies in the window ended by ``end_sigma`` (:func:`window_end_sigma`)."""
    return sigma > end_sigma * (1 + rtol) and sigma > 0
