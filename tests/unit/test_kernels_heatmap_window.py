"""Reference tests for kernels.heatmap, the step windows of kernels.schedule and the word parsing of
kernels.token_align."""

import math

import pytest
import torch

from stepwise.kernels.heatmap import STOPS, colorize, normalise
from stepwise.kernels.schedule import in_window, window_end_sigma
from stepwise.kernels.token_align import find_word, parse_word_values, parse_words, word_ids


def test_colorize_ends_and_luminance_rise():
    assert torch.allclose(colorize(torch.tensor(0.0)), STOPS[0])
    assert torch.allclose(colorize(torch.tensor(1.0)), STOPS[-1])
    assert torch.allclose(colorize(torch.tensor(0.125)), (STOPS[0] + STOPS[1]) / 2)
    ramp = colorize(torch.linspace(0, 1, 101))
    luminance = ramp @ torch.tensor([0.2126, 0.7152, 0.0722])
    assert (luminance.diff() > -1e-6).all() and colorize(torch.rand(2, 3, 5)).shape == (2, 3, 5, 3)


def test_normalise_per_map():
    maps = torch.stack([torch.full((2, 2), 4.0), torch.zeros(2, 2)])
    maps[0, 0, 0] = 8.0
    out = normalise(maps)
    assert out[0].max() == 1 and out[0, 1, 1] == 0.5 and not out[1].any()


def test_windows_by_sigma_hand_worked():
    sigmas = torch.tensor([10.0, 8.0, 6.0, 4.0, 2.0, 0.0])  # 5 steps
    assert window_end_sigma(sigmas, 0.8) == 2.0  # steps 0..3 inside
    assert [in_window(s, 2.0) for s in (10.0, 4.0, 3.0, 2.0, 1.0)] == [True, True, True, False, False]
    assert window_end_sigma(sigmas, 0.0) == math.inf and not in_window(10.0, math.inf)
    assert window_end_sigma(sigmas, 1.0) == 0.0 and in_window(0.01, 0.0) and not in_window(0.0, 0.0)
    assert window_end_sigma(sigmas, 0.3) == 8.0  # int(0.3 * 5) = 1 step, as the paper's code counts
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1.5"):
        window_end_sigma(sigmas, 1.5)


def test_word_values_and_lookup():
    assert parse_word_values("lion:0.4, cat: -0.5\nfluffy:5", "reweight") == [("lion", 0.4), ("cat", -0.5), ("fluffy", 5.0)]
    assert parse_word_values(" , ", "x") == []
    for bad in ("lion", "lion:", ":2", "lion:nan", "lion:abc"):
        with pytest.raises(ValueError, match="is not word:value"):
            parse_word_values(bad, "reweight")
    assert parse_words("cat, dog\nbird,,") == ["cat", "dog", "bird"]
    words = ["A", "cat,", "and", "a", "Cat"]
    ids = word_ids([1, 2, 1, 1, 1], length=10)
    assert find_word(words, ids, "cat") == [2, 3, 6] and find_word(words, ids, "a") == [1, 5]
    assert find_word(words, ids, "dog") == []
