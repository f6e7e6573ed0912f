"""Reference tests for kernels.artifact: training-free maps, scores and AUROC against direct definitions."""

import itertools

import pytest
import torch

from stepwise.kernels import artifact


def auroc_by_pairs(scores, labels):
    """The definition: the share of (positive, negative) pairs ranked correctly, ties one half."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_the_pair_count_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (40,), generator=g).float()  # many ties
    labels = torch.rand(40, generator=g) < 0.4
    assert artifact.auroc(scores, labels) == pytest.approx(auroc_by_pairs(scores.tolist(), labels.tolist()))


def test_auroc_extremes_and_errors():
    assert artifact.auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert artifact.auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert artifact.auroc([0.5] * 4, [0, 1, 0, 1]) == 0.5  # the constant predictor
    with pytest.raises(ValueError, match="needs both classes"):
        artifact.auroc([1, 2], [1, 1])
    with pytest.raises(ValueError, match="3 scores for 2 labels"):
        artifact.auroc([1, 2, 3], [0, 1])


def test_pixel_auroc_pools_pixels():
    masks = torch.zeros(2, 4, 4)
    masks[0, :2, :2] = 1
    perfect = masks * 0.9 + 0.05
    assert artifact.pixel_auroc(perfect, masks) == 1.0
    assert artifact.pixel_auroc(1 - perfect, masks) == 0.0


def test_discrepancy_and_instability_are_mean_absolute_changes():
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(2, 4, 8, 8, generator=g) for _ in range(3))
    torch.testing.assert_close(artifact.discrepancy(a, b), (b - a).abs().mean(1))
    want = ((b - a).abs().mean(1) + (c - b).abs().mean(1)) / 2
    torch.testing.assert_close(artifact.instability([a, b, c]), want)
    assert not artifact.instability([a, a]).any()
    with pytest.raises(ValueError, match="at least 2"):
        artifact.instability([a])
    with pytest.raises(ValueError, match="differ"):
        artifact.discrepancy(a, b[:1])


def test_score_is_the_mean_of_the_top_fraction():
    h = torch.zeros(2, 10, 10)
    h[0, 0, :5] = 1.0  # 5 hot pixels
    s = artifact.score(h, fraction=0.05)
    assert s.tolist() == [1.0, 0.0]
    assert artifact.score(h, fraction=0.1).tolist() == [0.5, 0.0]
    with pytest.raises(ValueError, match="fraction 0"):
        artifact.score(h, 0)


def test_heatmap_resize_and_normalise():
    h = torch.zeros(1, 4, 4)
    h[0, 1, 1] = 2.0
    big = artifact.to_image(h, 32, 32)
    assert big.shape == (1, 32, 32) and big.argmax() // 32 < 16 and big.argmax() % 32 < 16
    n = artifact.normalise(big)
    assert float(n.max()) == 1.0 and float(n.min()) >= 0
    assert not artifact.normalise(torch.zeros(1, 2, 2)).any()


def test_early_reject_call_count():
    assert artifact.early_reject_calls(8, 10, 2, 20) == 8 * 10 + 2 * 10
    assert artifact.early_reject_calls(4, 5, 1, 20, calls_per_step=2) == (20 + 15) * 2
    with pytest.raises(ValueError, match="keep 5"):
        artifact.early_reject_calls(4, 5, 5, 20)
    with pytest.raises(ValueError, match="probe step 30"):
        artifact.early_reject_calls(4, 30, 1, 20)


def test_balanced_sigma_is_where_noise_equals_signal():
    # SD-style x0 + σ ε: σ = 1; rectified flow (1 − σ) x0 + σ ε: σ = 1/2; variance preserving with
    # ᾱ = 1 / (1 + σ²) is SD-style again after scaling, so σ = 1
    assert artifact.balanced_sigma(lambda s: (1.0, s), 0.03, 14.6) == pytest.approx(1.0, rel=1e-9)
    assert artifact.balanced_sigma(lambda s: (1.0 - s, s), 1e-3, 1.0) == pytest.approx(0.5, rel=1e-9)
    assert artifact.balanced_sigma(lambda s: ((1 + s * s) ** -0.5, s * (1 + s * s) ** -0.5), 0.03, 14.6) == \
        pytest.approx(1.0, rel=1e-9)
    # outside the range: the nearer end
    assert artifact.balanced_sigma(lambda s: (1.0, s), 2.0, 14.6) == 2.0
    assert artifact.balanced_sigma(lambda s: (1.0, s), 0.03, 0.5) == 0.5
    with pytest.raises(ValueError, match=r"the sigma range \[1.0, 0.5\] must satisfy 0 < lo < hi"):
        artifact.balanced_sigma(lambda s: (1.0, s), 1.0, 0.5)
