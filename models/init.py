"""Seeded weight initialisation for networks built from ComfyUI's layers.

ComfyUI's ``comfy.ops`` layers skip ``reset_parameters`` (weights are left as ``torch.empty``, since real
checkpoints overwrite them), so a network built from them for training from scratch, or as a test model,
outputs NaN until it is initialised. :func:`seeded_init_` gives every floating-point parameter a value
from one seeded generator, so the same seed gives bit-identical weights on every machine.
"""

from __future__ import annotations

import math

import torch

_EMBEDDING_STD = 0.02


@torch.no_grad()
def seeded_init_(module: torch.nn.Module, seed: int, gain: float = 1.0) -> torch.nn.Module:
    """Initialise ``module``'s parameters in place from ``seed`` and return it.

    - biases (names ending in ``bias``) and shifts: 0;
    - other 1-D parameters (normalisation scales): 1;
    - embedding tables (``nn.Embedding`` weights): N(0, 0.02²), as in CLIP and GPT-2;
    - every other weight: N(0, gain² / fan_in) with fan_in = elements per output row (LeCun normal), which
      keeps activations at unit scale through linear and convolution layers;
    - 0-d parameters (e.g. a logit scale) keep the value their module gave them.

    Values are drawn on the CPU in float32 in ``named_parameters()`` order, then cast to each parameter's
    dtype and device, so results do not depend on where the module lives.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    embedding_weights = {
        id(m.weight) for m in module.modules() if isinstance(m, torch.nn.Embedding) and m.weight is not None
    }
    for name, param in module.named_parameters():
        if not param.is_floating_point() or param.ndim == 0:
            continue
        if name.endswith("bias") or name.endswith("shift"):
            value = torch.zeros(param.shape)
        elif param.ndim == 1:
            value = torch.ones(param.shape)
        elif id(param) in embedding_weights:
            value = torch.randn(param.shape, generator=generator) * _EMBEDDING_STD
        else:
            fan_in = param[0].numel()
            value = torch.randn(param.shape, generator=generator) * (gain / math.sqrt(fan_in))
        param.copy_(value.to(dtype=param.dtype, device=param.device))
    return module
