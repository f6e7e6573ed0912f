"""Heat maps for viewing attention maps: normalisation and a perceptually ordered colour map."""

from __future__ import annotations

import torch

# An inferno-like ramp: black, purple, red, orange, pale yellow; luminance rises along it.
STOPS = torch.tensor([
    [0.00, 0.00, 0.02],
    [0.34, 0.06, 0.43],
    [0.73, 0.21, 0.33],
    [0.98, 0.55, 0.04],
    [0.99, 1.00, 0.64],
])


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each map (N×H×W) divided by its maximum; all-zero maps stay zero."""
    peak = maps.flatten(1).amax(dim=1).view(-1, 1, 1)
    return torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps)).clamp(0, 1)


def colorize(values: torch.Tensor) -> torch.Tensor:
    """Values in [0, 1] (any shape) → RGB in [0, 1] (shape + (3,)) by linear interpolation between :data:`STOPS`."""
    x = values.float().clamp(0, 1) * (len(STOPS) - 1)
    low = x.floor().long().clamp(max=len(STOPS) - 2)
    frac = (x - low).unsqueeze(-1)
    stops = STOPS.to(values.device)
    return stops[low] * (1 - frac) + stops[low + 1] * frac
