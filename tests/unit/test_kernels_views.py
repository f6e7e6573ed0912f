"""Reference tests for kernels.views: exact inverses, orthogonality, Gaussian noise stays Gaussian."""

import pytest
import torch

from stepwise.kernels.views import VIEW_NAMES, View, as_matrix, is_orthogonal

ALL = [View(n) for n in VIEW_NAMES] + [View("patch_permute", grid=2, seed=3), View("skew", skew=1.5)]


def _x(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("view", ALL, ids=lambda v: f"{v.name}-{v.grid}-{v.skew}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_inverse_undoes_the_view_exactly(view, dtype):
    x = _x(2, 4, 16, 16, dtype=dtype)
    assert torch.equal(view.inverse(view.apply(x)), x)
    assert torch.equal(view.apply(view.inverse(x)), x)


@pytest.mark.parametrize("view", ALL, ids=lambda v: f"{v.name}-{v.grid}-{v.skew}")
def test_every_view_is_orthogonal(view):
    assert is_orthogonal(view, 8, 8)


@pytest.mark.parametrize("view", [v for v in ALL if not v.needs_square], ids=lambda v: v.name)
def test_shape_keeping_views_are_orthogonal_on_non_square_latents(view):
    if view.name == "patch_permute":
        view = View("patch_permute", grid=2)
    assert is_orthogonal(view, 6, 10)


@pytest.mark.parametrize("view", ALL, ids=lambda v: f"{v.name}-{v.grid}-{v.skew}")
def test_standard_gaussian_noise_stays_standard_gaussian(view):
    """Orthogonal maps preserve N(0, I) exactly; check the statistics of a large sample too."""
    m = as_matrix(view, 8, 8)
    torch.testing.assert_close(m @ m.T, torch.eye(64, dtype=m.dtype))  # covariance I -> I
    noise = _x(4000, 1, 8, 8, seed=1).double()
    out = view.apply(noise).reshape(4000, 64)
    assert out.mean().abs() < 0.01 and (out.std() - 1).abs() < 0.01
    cov = out.T @ out / 4000
    assert (cov - torch.eye(64, dtype=cov.dtype)).abs().max() < 0.1


def test_known_values():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(View("flip_ud").apply(x)[0, 0, 0], torch.tensor([12.0, 13, 14, 15]))
    assert torch.equal(View("flip_lr").apply(x)[0, 0, 0], torch.tensor([3.0, 2, 1, 0]))
    assert torch.equal(View("rot180").apply(x), x.flip(-1).flip(-2))
    assert torch.equal(View("rot90").apply(View("rot270").apply(x)), x)
    assert torch.equal(View("negate").apply(x), -x)
    skewed = View("skew", skew=1.0).apply(x)[0, 0]
    assert skewed[:, 0].tolist() == [0, 4, 8, 12] and skewed[:, 1].tolist() == [13, 1, 5, 9]


def test_patch_permutation_moves_whole_patches_and_follows_its_seed():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    a = View("patch_permute", grid=2, seed=1).apply(x)[0, 0]
    patches = {tuple(x[0, 0, r:r + 4, c:c + 4].flatten().tolist()) for r in (0, 4) for c in (0, 4)}
    assert {tuple(a[r:r + 4, c:c + 4].flatten().tolist()) for r in (0, 4) for c in (0, 4)} == patches
    assert torch.equal(View("patch_permute", grid=2, seed=1).apply(x), View("patch_permute", grid=2, seed=1).apply(x))
    differs = [not torch.equal(View("patch_permute", grid=4, seed=s).apply(x), View("patch_permute", grid=4, seed=0).apply(x))
               for s in range(1, 5)]
    assert any(differs)


def test_inner_rotation_keeps_the_corners_and_turns_the_disc():
    x = _x(1, 1, 16, 16)
    y = View("inner_rotate90").apply(x)
    assert torch.equal(y[..., 0, 0], x[..., 0, 0]) and torch.equal(y[..., 15, 15], x[..., 15, 15])
    torch.testing.assert_close(y[..., 6:10, 6:10], torch.rot90(x, 1, dims=(-2, -1))[..., 6:10, 6:10])


@pytest.mark.parametrize("name", ["rot90", "rot270", "inner_rotate90", "inner_rotate180"])
def test_rotations_refuse_non_square_latents_naming_the_size(name):
    with pytest.raises(ValueError, match="square.*8x12"):
        View(name).check_shape(8, 12)


def test_patch_grid_must_divide_the_latent():
    with pytest.raises(ValueError, match="grid 3"):
        View("patch_permute", grid=3).check_shape(8, 8)
    with pytest.raises(ValueError, match="grid"):
        View("patch_permute", grid=1)


def test_unknown_view_is_refused():
    with pytest.raises(ValueError, match="unknown view 'spin'"):
        View("spin")
