"""Frequency and colour splits for hybrid images (Factorized Diffusion, Geng et al. 2024).

A hybrid image looks like prompt A from afar and prompt B up close: at every step the model's prediction for
A is low-passed, B's is high-passed (the prediction minus its low-pass), and the two are summed. The bands of
one input always sum back to it, so with A = B the hybrid is the plain sample.

The low-pass is a Gaussian blur (kornia, reflect borders). The reference used kernel 33 with σ 2 on 64 px
images, i.e. σ = side/32; :func:`auto_sigma` scales that to any latent, with kernel ``2·ceil(4σ)+1``.
"""

from __future__ import annotations

import math

import torch

Pair = tuple[float, float]


def auto_sigma(height: int, width: int, divisor: float = 32.0) -> Pair:
    """σ (y, x) of the reference hybrid split scaled to an H×W latent: side/32 per axis."""
    return (height / divisor, width / divisor)


def auto_kernel(sigma: float) -> int:
    """Odd kernel size covering ±4σ: ``2·ceil(4σ)+1``."""
    return 2 * math.ceil(4 * sigma) + 1


def check_blur(sigma: Pair, kernel: tuple[int, int], height: int, width: int) -> None:
    """Raise ``ValueError`` naming the value when a blur cannot run on an H×W latent."""
    for s in sigma:
        if not s > 0:
            raise ValueError(f"blur sigma must be > 0, got {s!r}; use auto or a positive value such as 2.0")
    for k, side, axis in ((kernel[0], height, "height"), (kernel[1], width, "width")):
        if k < 1 or k % 2 == 0:
            raise ValueError(f"blur kernel size must be a positive odd number, got {k}")
        if k // 2 >= side:
            raise ValueError(
                f"blur kernel {k} is too large for a latent of {axis} {side} (reflect padding needs kernel <= "
                f"{2 * side - 1}); use a smaller kernel or auto"
            )


def lowpass(x: torch.Tensor, sigma: Pair, kernel: tuple[int, int]) -> torch.Tensor:
    """Gaussian low-pass over the last two dims of a B×C×H×W tensor (computed in float32)."""
    import kornia  # imported on first use: loading the pack stays light

    blurred = kornia.filters.gaussian_blur2d(x.float(), kernel, sigma, border_type="reflect")
    return blurred.to(x.dtype)


def lowpass_reference(x: torch.Tensor, sigma: Pair, kernel: tuple[int, int]) -> torch.Tensor:
    """Slow, explicit 2-D convolution with the sampled, normalised Gaussian; the reference for :func:`lowpass`."""

    def taps(k: int, s: float) -> torch.Tensor:
        i = torch.arange(k, dtype=torch.float64) - k // 2
        g = torch.exp(-(i**2) / (2 * s * s))
        return g / g.sum()

    k2d = torch.outer(taps(kernel[0], sigma[0]), taps(kernel[1], sigma[1]))
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x.double().reshape(b * c, 1, h, w),
                                     (kernel[1] // 2, kernel[1] // 2, kernel[0] // 2, kernel[0] // 2), mode="reflect")
    out = torch.nn.functional.conv2d(padded, k2d.view(1, 1, *k2d.shape))
    return out.reshape(b, c, h, w).to(x.dtype)


def band(x: torch.Tensor, index: int, sigmas: list[Pair], kernels: list[tuple[int, int]]) -> torch.Tensor:
    """Band ``index`` of ``x`` for boundaries ``sigmas`` ordered coarse to fine (decreasing σ).

    With n boundaries there are n + 1 bands: band 0 is the low-pass at the coarsest σ, band i the difference
    of the low-passes at boundaries i and i-1, and band n what the finest low-pass leaves (the high-pass).
    """
    n = len(sigmas)
    if not 0 <= index <= n:
        raise ValueError(f"band index {index} out of range for {n + 1} bands")
    upper = x if index == n else lowpass(x, sigmas[index], kernels[index])
    lower = None if index == 0 else lowpass(x, sigmas[index - 1], kernels[index - 1])
    return upper if lower is None else upper - lower


def combine_bands(preds: list[torch.Tensor], sigmas: list[Pair], kernels: list[tuple[int, int]]) -> torch.Tensor:
    """Σ_i band_i(preds[i]): prediction i contributes its band i (prompt A the lows, the last prompt the highs)."""
    if len(preds) != len(sigmas) + 1:
        raise ValueError(f"{len(preds)} predictions for {len(sigmas) + 1} bands")
    return sum(band(p, i, sigmas, kernels) for i, p in enumerate(preds))


def gray(x: torch.Tensor) -> torch.Tensor:
    """The grayscale part of a B×3×H×W image: the channel mean in every channel (projection onto (1,1,1))."""
    if x.shape[-3] != 3:
        raise ValueError(f"a grayscale/colour split needs 3 colour channels, got {x.shape[-3]}")
    return x.mean(dim=-3, keepdim=True).expand_as(x)


def combine_gray_color(pred_gray: torch.Tensor, pred_color: torch.Tensor) -> torch.Tensor:
    """Grayscale part of one prediction plus the colour part (image minus its gray) of the other."""
    return gray(pred_gray) + (pred_color - gray(pred_color))
