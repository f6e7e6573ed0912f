"""Reference tests for kernels.masks.latent_mask."""

import pytest
import torch

from stepwise.kernels.masks import latent_mask


def test_resizes_any_resolution_to_the_latent_and_keeps_values():
    m = torch.zeros(64, 64)
    m[16:48, 16:48] = 1
    out = latent_mask(m, 2, 8, 8)
    assert out.shape == (2, 1, 8, 8)
    assert out[0, 0, 2:6, 2:6].eq(1).all() and out[0, 0, 0, 0] == 0 and torch.equal(out[0], out[1])
    assert torch.equal(latent_mask(torch.ones(8, 8), 1, 8, 8), torch.ones(1, 1, 8, 8))


def test_per_image_masks_and_soft_values():
    m = torch.stack([torch.full((4, 4), 0.25), torch.full((4, 4), 0.75)])
    out = latent_mask(m, 2, 8, 8)
    assert torch.allclose(out[0], torch.full((1, 8, 8), 0.25)) and torch.allclose(out[1], torch.full((1, 8, 8), 0.75))


def test_feather_softens_edges_but_keeps_a_solid_inside():
    m = torch.zeros(32, 32)
    m[:, 16:] = 1
    hard, soft = latent_mask(m, 1, 32, 32), latent_mask(m, 1, 32, 32, feather=2.0)
    assert set(hard.unique().tolist()) == {0.0, 1.0}
    assert 0 < soft[0, 0, 10, 15] < 1 and soft[0, 0, 10, 31] > 0.99 and soft[0, 0, 10, 0] < 0.01


@pytest.mark.parametrize("mask,match", [(torch.ones(3, 8, 8), "batch of 3 but the latent has 2"),
                                        (torch.ones(1, 1, 8, 8), "H×W or B×H×W"),
                                        (torch.full((8, 8), float("nan")), "NaN")])
def test_bad_masks_are_named(mask, match):
    with pytest.raises(ValueError, match=match):
        latent_mask(mask, 2, 8, 8)
