"""Reference tests for kernels.frequency: kornia low-pass against an explicit convolution, band algebra."""

import pytest
import torch

from stepwise.kernels.frequency import (
    auto_kernel,
    auto_sigma,
    band,
    check_blur,
    combine_bands,
    combine_gray_color,
    gray,
    lowpass,
    lowpass_reference,
)


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_auto_values_match_the_reference_setting():
    assert auto_sigma(64, 64) == (2.0, 2.0)
    assert auto_kernel(2.0) == 17 and auto_kernel(1.0) == 9 and auto_kernel(0.25) == 3
    assert auto_sigma(32, 48) == (1.0, 1.5)


@pytest.mark.parametrize("sigma,kernel,shape", [((2.0, 2.0), (33, 33), (2, 3, 64, 64)), ((1.0, 1.5), (9, 13), (1, 4, 32, 48)),
                                                ((0.25, 0.25), (3, 3), (1, 4, 8, 8))])
def test_lowpass_matches_the_explicit_convolution(sigma, kernel, shape):
    x = _x(*shape)
    torch.testing.assert_close(lowpass(x, sigma, kernel), lowpass_reference(x, sigma, kernel), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_lowpass_in_half_precision(dtype, tol):
    x = _x(1, 4, 32, 32)
    out = lowpass(x.to(dtype), (1.0, 1.0), (9, 9))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), lowpass_reference(x, (1.0, 1.0), (9, 9)), rtol=tol, atol=tol)


def test_lowpass_keeps_constants_and_removes_checkerboards():
    const = torch.full((1, 1, 16, 16), 0.7)
    torch.testing.assert_close(lowpass(const, (2.0, 2.0), (15, 15)), const)
    checker = ((torch.arange(16).view(-1, 1) + torch.arange(16).view(1, -1)) % 2).float().view(1, 1, 16, 16) * 2 - 1
    assert lowpass(checker, (2.0, 2.0), (9, 9)).abs().max() < 0.05


@pytest.mark.parametrize("n_bounds", [1, 2])
def test_bands_of_one_input_sum_back_to_it(n_bounds):
    x = _x(2, 4, 32, 32)
    sigmas = [(2.0, 2.0), (0.5, 0.5)][:n_bounds] if n_bounds == 2 else [(1.0, 1.0)]
    kernels = [(auto_kernel(s[0]),) * 2 for s in sigmas]
    total = sum(band(x, i, sigmas, kernels) for i in range(n_bounds + 1))
    torch.testing.assert_close(total, x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(combine_bands([x] * (n_bounds + 1), sigmas, kernels), x, rtol=1e-5, atol=1e-5)


def test_two_band_hybrid_takes_lows_of_a_and_highs_of_b():
    a, b = _x(1, 4, 32, 32, seed=1), _x(1, 4, 32, 32, seed=2)
    s, k = [(1.0, 1.0)], [(9, 9)]
    out = combine_bands([a, b], s, k)
    torch.testing.assert_close(out, lowpass(a, s[0], k[0]) + b - lowpass(b, s[0], k[0]))
    torch.testing.assert_close(lowpass(out, (3.0, 3.0), (25, 25)), lowpass(lowpass(a, s[0], k[0]), (3.0, 3.0), (25, 25)),
                               atol=0.05, rtol=0)


def test_gray_color_split():
    a, b = _x(2, 3, 8, 8, seed=3), _x(2, 3, 8, 8, seed=4)
    out = combine_gray_color(a, b)
    torch.testing.assert_close(gray(out), gray(a))
    torch.testing.assert_close(out - gray(out), b - gray(b))
    torch.testing.assert_close(combine_gray_color(a, a), a)
    with pytest.raises(ValueError, match="3 colour channels, got 4"):
        gray(_x(1, 4, 8, 8))


@pytest.mark.parametrize("sigma,kernel,h,w,match", [((0.0, 1.0), (9, 9), 32, 32, "sigma must be > 0"),
                                                    ((-1.0, 1.0), (9, 9), 32, 32, "sigma must be > 0"),
                                                    ((1.0, 1.0), (8, 9), 32, 32, "odd"),
                                                    ((1.0, 1.0), (33, 33), 8, 8, "too large")])
def test_bad_blur_settings_are_named(sigma, kernel, h, w, match):
    with pytest.raises(ValueError, match=match):
        check_blur(sigma, kernel, h, w)
