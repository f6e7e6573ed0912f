"""Artifact estimation from a sampler's denoised estimate x0(k): training-free maps, scores and their metrics.

Training-free measures (no checkpoint), each a per-pixel map (B×H×W, ≥ 0) on the model's latent grid:

- :func:`discrepancy`: re-noise x0(k) to a probe level σ_p and denoise once; the per-pixel change
  ``|D(x0 + σ_p ε, σ_p) − x0|``. Regions the model would redraw from a fresh look are ones it does not
  believe (the late-step-removal seed's observation that artifacts move more under re-encoding, applied
  with the diffusion model itself as the autoencoder).
- :func:`instability`: how much x0 still moves over the last few steps, the mean absolute step-to-step change
  ``mean_i |x0(k−i) − x0(k−i−1)|``. Late, local changes flag regions the sampler is still unsure of.

Scores: :func:`score` reduces a map to one number per image (mean of its top ``fraction`` of pixels, so a
small artifact is not averaged away). Metrics: :func:`auroc` (image level, Mann–Whitney U with ties) and
:func:`pixel_auroc` (every pixel of every image pooled). :func:`early_reject_calls` is the model-call count of
early rejection. :func:`balanced_sigma` is the probe level at which a re-noised image is as much signal as noise in a
model's own noising (σ = 1 for SD-style ``x0 + σ ε``, σ = 1/2 for rectified flow's ``(1 − σ) x0 + σ ε``).
"""

from __future__ import annotations

import torch


def _channel_mean(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 4:
        raise ValueError(f"expected B×C×H×W, got shape {tuple(x.shape)}")
    return x.abs().float().mean(1)


def discrepancy(x0: torch.Tensor, redenoised: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``|redenoised − x0|`` averaged over channels: B×C×H×W → B×H×W."""
    if x0.shape != redenoised.shape:
        raise ValueError(f"x0 {tuple(x0.shape)} and its re-denoised estimate {tuple(redenoised.shape)} differ")
    return _channel_mean(redenoised - x0)


def instability(history: list[torch.Tensor]) -> torch.Tensor:
    """Mean absolute step-to-step change of the last x0 estimates (oldest first; at least two): B×H×W."""
    if len(history) < 2:
        raise ValueError(f"instability needs at least 2 x0 estimates, got {len(history)}")
    changes = [_channel_mean(b - a) for a, b in zip(history[:-1], history[1:])]
    return torch.stack(changes).mean(0)


def score(heatmap: torch.Tensor, fraction: float = 0.05) -> torch.Tensor:
    """One score per image (B×H×W → B): the mean of the top ``fraction`` of its pixels."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction} must be in (0, 1]")
    flat = heatmap.reshape(heatmap.shape[0], -1).float()
    k = max(1, int(round(fraction * flat.shape[1])))
    return flat.topk(k, dim=1).values.mean(1)


def to_image(heatmap: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A map on the latent grid (B×h×w) resized to image resolution (bilinear), B×H×W."""
    return torch.nn.functional.interpolate(heatmap.unsqueeze(1).float(), size=(height, width), mode="bilinear",
                                           align_corners=False).squeeze(1)


def normalise(heatmap: torch.Tensor) -> torch.Tensor:
    """Each image's map scaled to [0, 1] by its own maximum (a zero map stays zero)."""
    peak = heatmap.reshape(heatmap.shape[0], -1).amax(1).clamp_min(1e-12).view(-1, *([1] * (heatmap.ndim - 1)))
    return (heatmap / peak).clamp(0, 1)


def auroc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 = positive): the probability that a random
    positive scores above a random negative, ties counting one half (Mann–Whitney U / (n₊ n₋))."""
    s = torch.as_tensor(scores, dtype=torch.float64).flatten()
    y = torch.as_tensor(labels).flatten().bool()
    if s.shape != y.shape:
        raise ValueError(f"{s.numel()} scores for {y.numel()} labels")
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError(f"AUROC needs both classes; got {pos} positives and {neg} negatives")
    order = torch.argsort(s)
    ranks = torch.empty_like(s)
    sorted_s = s[order]
    # average ranks over ties (1-based)
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg = ends - (counts.double() - 1) / 2
    ranks[order] = avg[inverse]
    u = ranks[y].sum() - pos * (pos + 1) / 2
    return float(u / (pos * neg))


def pixel_auroc(heatmaps, masks) -> float:
    """AUROC of every pixel of every image pooled: heatmaps and masks (B×H×W, mask > 0.5 = artifact)."""
    h = torch.as_tensor(heatmaps)
    m = torch.as_tensor(masks)
    if h.shape != m.shape:
        raise ValueError(f"heatmaps {tuple(h.shape)} and masks {tuple(m.shape)} differ")
    return auroc(h.flatten(), m.flatten() > 0.5)


def early_reject_calls(seeds: int, probe_step: int, kept: int, steps: int, calls_per_step: int = 1) -> int:
    """Model calls of early rejection: every seed to the probe step, the kept ones to the end,
    ``(K·k + M·(N − k)) · calls_per_step``."""
    if not 0 < kept <= seeds:
        raise ValueError(f"keep {kept} must be between 1 and the number of seeds ({seeds})")
    if not 0 <= probe_step <= steps:
        raise ValueError(f"probe step {probe_step} must be within the {steps} steps")
    return (seeds * probe_step + kept * (steps - probe_step)) * calls_per_step


def balanced_sigma(scales, lo: float, hi: float, iterations: int = 60) -> float:
    """σ in ``[lo, hi]`` at which a noised sample is as much signal as noise: ``noise(σ) = signal(σ)``.

    ``scales(σ) -> (signal, noise)`` are the coefficients of x0 and of ε in the model's noising at σ (SD-style
    ``x0 + σ ε``: (1, σ), so σ = 1; rectified flow ``(1 − σ) x0 + σ ε``: (1 − σ, σ), so σ = 1/2). The ratio
    noise/signal must rise with σ; bisection on log σ. Where it never reaches 1 inside the range, the nearer end.
    """
    import math

    if not 0 < lo < hi:
        raise ValueError(f"the sigma range [{lo}, {hi}] must satisfy 0 < lo < hi")

    def ratio(sigma: float) -> float:
        signal, noise = scales(sigma)
        return math.inf if signal <= 0 else noise / signal

    if ratio(lo) >= 1:
        return lo
    if ratio(hi) <= 1:
        return hi
    a, b = math.log(lo), math.log(hi)
    for _ in range(iterations):
        mid = (a + b) / 2
        if ratio(math.exp(mid)) < 1:
            a = mid
        else:
            b = mid
    return math.exp((a + b) / 2)
