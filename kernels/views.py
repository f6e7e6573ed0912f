"""Views for visual anagrams: exactly invertible, orthogonal transforms of an image or latent.

Visual Anagrams (Geng, Park, Owens, CVPR 2024) denoise one image under several views at once: each view
``v`` is applied to the noisy input, the model predicts in that frame, and ``v⁻¹`` brings the prediction back
before the views' predictions are averaged. For this to stay a valid diffusion step the noise must keep its
statistics under every view, which holds when ``v`` is orthogonal (a pixel permutation or a sign flip):
standard Gaussian noise then maps to standard Gaussian noise. Every view here is such a map, with an exact
inverse (``inverse(apply(x)) == x`` bit for bit).

Views act on the last two dimensions (H, W) of any tensor (latents ``B×C×H×W``, single images ``C×H×W``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

VIEW_NAMES = (
    "identity",
    "flip_ud",
    "flip_lr",
    "rot90",
    "rot180",
    "rot270",
    "negate",
    "patch_permute",
    "inner_rotate90",
    "inner_rotate180",
    "skew",
)


@dataclass(frozen=True)
class View:
    """One view. ``name`` is from :data:`VIEW_NAMES`; the other fields parametrise the views that use them.

    - ``grid``, ``seed``: ``patch_permute`` cuts H×W into grid×grid patches and permutes them with a
      permutation drawn from ``seed`` (same seed, same puzzle);
    - ``skew``: ``skew`` rolls column j down by ``round(skew * j)`` rows (cyclically).
    """

    name: str
    grid: int = 4
    seed: int = 0
    skew: float = 0.5

    def __post_init__(self):
        if self.name not in VIEW_NAMES:
            raise ValueError(f"unknown view {self.name!r}; choose one of {', '.join(VIEW_NAMES)}")
        if self.name == "patch_permute" and not (isinstance(self.grid, int) and self.grid >= 2):
            raise ValueError(f"patch_permute needs a grid of at least 2 patches per side, got {self.grid!r}")

    # --- requirements a latent must meet ---
    @property
    def needs_square(self) -> bool:
        return self.name in ("rot90", "rot270", "inner_rotate90", "inner_rotate180")

    @property
    def pixel_space_only(self) -> bool:
        """Negation swaps black and white: meaningful for pixels, not for a VAE's latent channels."""
        return self.name == "negate"

    def check_shape(self, height: int, width: int) -> None:
        """Raise ``ValueError`` naming the size when this view cannot act on an H×W latent."""
        if self.needs_square and height != width:
            raise ValueError(
                f"view {self.name} needs a square latent, got {height}x{width} (height x width); use a square "
                "image size or a view that keeps the shape (flip_ud, flip_lr, rot180, patch_permute, skew, ...)"
            )
        if self.name == "patch_permute" and (height % self.grid or width % self.grid):
            raise ValueError(
                f"patch_permute with grid {self.grid} needs a latent whose sides divide by {self.grid}, got "
                f"{height}x{width}; choose a grid that divides both sides"
            )

    # --- the transform and its inverse ---
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self._map(x, inverse=False)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return self._map(x, inverse=True)

    def _map(self, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        name = self.name
        if name == "identity":
            return x
        if name == "flip_ud":
            return x.flip(-2)
        if name == "flip_lr":
            return x.flip(-1)
        if name == "negate":
            return -x
        if name in ("rot90", "rot180", "rot270"):
            k = {"rot90": 1, "rot180": 2, "rot270": 3}[name]
            return torch.rot90(x, -k if inverse else k, dims=(-2, -1))
        self.check_shape(x.shape[-2], x.shape[-1])
        index = _permutation(self, x.shape[-2], x.shape[-1], inverse).to(x.device)
        flat = x.reshape(*x.shape[:-2], -1)
        return flat.index_select(-1, index).reshape(x.shape)


@lru_cache(maxsize=64)
def _permutation(view: View, height: int, width: int, inverse: bool) -> torch.Tensor:
    """Source pixel (flat index) of every output pixel, for the views that are general permutations (cached:
    the same views run at every sampling step)."""
    index = _source_index(view, height, width)
    return torch.argsort(index) if inverse else index


def _source_index(view: View, height: int, width: int) -> torch.Tensor:
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    cols = torch.arange(width).view(1, -1).expand(height, width)
    if view.name == "patch_permute":
        ph, pw = height // view.grid, width // view.grid
        order = torch.randperm(view.grid * view.grid, generator=torch.Generator().manual_seed(view.seed))
        src_patch = order[(rows // ph) * view.grid + cols // pw]
        src_rows = (src_patch // view.grid) * ph + rows % ph
        src_cols = (src_patch % view.grid) * pw + cols % pw
    elif view.name in ("inner_rotate90", "inner_rotate180"):
        # Rotate the pixels of the inscribed disc about the grid centre; the disc is symmetric under quarter
        # turns, so this is a permutation, and pixels outside it stay.
        centre = (height - 1) / 2
        inside = (rows - centre) ** 2 + (cols - centre) ** 2 <= (height / 2) ** 2
        turned = torch.arange(height * width).view(height, width)
        turned = torch.rot90(turned, 1 if view.name == "inner_rotate90" else 2, dims=(0, 1))
        flat_src = torch.where(inside, turned, rows * width + cols)
        return flat_src.reshape(-1)
    elif view.name == "skew":
        shift = torch.tensor([round(view.skew * j) for j in range(width)]).view(1, -1)
        src_rows = (rows - shift) % height
        src_cols = cols
    else:  # pragma: no cover - guarded by VIEW_NAMES
        raise ValueError(view.name)
    return (src_rows * width + src_cols).reshape(-1)


def as_matrix(view: View, height: int, width: int) -> torch.Tensor:
    """The view as an (HW)×(HW) matrix acting on flattened images (for tests and analysis)."""
    basis = torch.eye(height * width, dtype=torch.float64).view(height * width, height, width)
    return view.apply(basis).reshape(height * width, -1).T


def is_orthogonal(view: View, height: int, width: int) -> bool:
    m = as_matrix(view, height, width)
    return bool(torch.allclose(m.T @ m, torch.eye(m.shape[0], dtype=m.dtype)))


def describe(view: View) -> str:
    extra = {"patch_permute": f"(grid {view.grid}, seed {view.seed})", "skew": f"({view.skew:g} px/column)"}
    return view.name + (" " + extra[view.name] if view.name in extra else "")


