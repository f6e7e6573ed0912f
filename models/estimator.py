"""The artifact estimator: a small convolutional network on a sampler's denoised estimate x0(k) and its σ.

``ArtifactEstimatorNet(x0, σ) → (logits, score)``: ``x0`` is B×C×h×w in the diffusion model's own space (pixels
or the inner latents, as ``model.process_latent_in`` gives them), σ the noise level the estimate was made at
(0 for a finished image). Per-pixel logits (B×1×h×w, on the latent grid; > 0 means artifact) come from a
two-level encoder-decoder whose features are modulated by an embedding of log σ (FiLM), since what an artifact
looks like in x0 changes with the step. The image score is the mean of the top ``fraction`` of the logits
(:func:`kernels.artifact.score`), so a small artifact is not averaged away and the score and heatmap agree.

Trained (``train.py estimator``) with per-pixel BCE on the synthetic artifact masks plus a pairwise ranking
loss (a corrupted image must outscore its clean original), not a regression on integer ratings — the seed's
approach that collapsed to predicting the mean.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..kernels.artifact import score as top_fraction_score


def sigma_features(sigma: torch.Tensor, bands: int = 8) -> torch.Tensor:
    """Fourier features of log σ (B → B×2·bands); σ = 0 is read as a tiny σ."""
    s = torch.log(sigma.float().clamp_min(1e-3)).unsqueeze(-1) / 4.0
    freqs = 2.0 ** torch.arange(bands, device=sigma.device, dtype=torch.float32) * math.pi / 8
    return torch.cat([torch.sin(s * freqs), torch.cos(s * freqs)], -1)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm = nn.GroupNorm(min(8, cout), cout)
        self.film = nn.Linear(emb, 2 * cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, e):
        h = self.conv1(x)
        scale, shift = self.film(e).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        h = nn.functional.silu(self.norm(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(h)


class ArtifactEstimatorNet(nn.Module):
    def __init__(self, in_channels: int, width: int = 32, bands: int = 8, fraction: float = 0.05):
        super().__init__()
        self.in_channels, self.width, self.bands, self.fraction = in_channels, width, bands, fraction
        emb = 4 * width
        self.embed = nn.Sequential(nn.Linear(2 * bands, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.enc1 = _Block(width, width, emb)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.enc2 = _Block(2 * width, 2 * width, emb)
        self.mid = _Block(2 * width, 2 * width, emb)
        self.dec1 = _Block(3 * width, width, emb)
        self.head = nn.Conv2d(width, 1, 1)

    def config(self) -> dict:
        return {"in_channels": self.in_channels, "width": self.width, "bands": self.bands, "fraction": self.fraction}

    def forward(self, x0: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x0.ndim != 4 or x0.shape[1] != self.in_channels:
            raise ValueError(f"x0 must be B×{self.in_channels}×H×W, got {tuple(x0.shape)}")
        if x0.shape[-2] * x0.shape[-1] < 2:
            raise ValueError(f"x0 is {x0.shape[-2]}×{x0.shape[-1]}; the artifact estimator needs at least 2 latent "
                             "cells (its group norms need more than one value per group): estimate a larger image")
        sigma = sigma.to(x0.device).float().reshape(-1).expand(x0.shape[0])
        dtype = self.stem.weight.dtype
        e = self.embed(sigma_features(sigma, self.bands).to(dtype))
        h1 = self.enc1(self.stem(x0.to(dtype)), e)
        h2 = self.mid(self.enc2(self.down(h1), e), e)
        up = nn.functional.interpolate(h2, size=h1.shape[-2:], mode="nearest")
        logits = self.head(self.dec1(torch.cat([h1, up], 1), e))
        return logits, top_fraction_score(logits.squeeze(1), self.fraction)
