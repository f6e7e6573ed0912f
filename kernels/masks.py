"""Masks for local refinement: any-resolution soft masks brought to a latent's grid."""

from __future__ import annotations

import torch

from .frequency import auto_kernel, lowpass


def latent_mask(mask: torch.Tensor, batch: int, height: int, width: int, feather: float = 0.0) -> torch.Tensor:
    """A ``B×1×H×W`` mask in [0, 1] for a latent of ``batch`` images of ``height×width``.

    ``mask`` is a ComfyUI MASK (``H'×W'`` or ``B'×H'×W'``, any resolution, soft values allowed); B' must be 1 or
    ``batch``. It is resized bilinearly (area-weighted when shrinking) and, with ``feather`` > 0, softened by a
    Gaussian of σ = ``feather`` latent pixels so refined regions blend into their surroundings.
    """
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim != 3:
        raise ValueError(f"a MASK must be H×W or B×H×W, got shape {tuple(mask.shape)}")
    if mask.shape[0] not in (1, batch):
        raise ValueError(f"the mask has a batch of {mask.shape[0]} but the latent has {batch} images; use one mask "
                         f"for all or one per image")
    if not torch.isfinite(mask).all():
        raise ValueError("the mask contains NaN or infinite values")
    if feather < 0:
        raise ValueError(f"feather must be >= 0 latent pixels, got {feather}")
    m = mask.float().clamp(0, 1).unsqueeze(1)
    shrinking = m.shape[-2] > height or m.shape[-1] > width
    m = torch.nn.functional.interpolate(m, size=(height, width), mode="area" if shrinking else "bilinear",
                                        **({} if shrinking else {"align_corners": False}))
    if feather > 0:
        k = min(auto_kernel(feather), 2 * min(height, width) - 1)  # both odd; reflect padding needs k < 2·side
        m = lowpass(m, (feather, feather), (k, k))
    return m.clamp(0, 1).expand(batch, 1, height, width).contiguous()
