"""SplitSigmasAtTimestep in the real host, in-process: the σ it cuts at and two-stage sampling."""

import pytest
import torch

from stepwise.kernels.schedule import sigma_at_timestep
from stepwise.nodes.schedule import SplitSigmasAtTimestep
from stepwise_dev import paths
from stepwise_dev.inprocess import encode, noise_for, sample_sigmas, scheduler_sigmas, with_parameterisation


def _split(model, sigmas, t):
    return SplitSigmasAtTimestep.execute(model=model, sigmas=sigmas, timestep=t).result


@pytest.mark.parametrize("kind", ["eps", "v", "flow"])
def test_cuts_at_the_timesteps_sigma_of_the_models_schedule(tiny_models, kind):
    model = with_parameterisation(tiny_models[paths.TINY_SD15][0], kind)
    ms = model.get_model_object("model_sampling")
    sigmas = scheduler_sigmas(model, "karras" if kind != "flow" else "simple", 12)
    for t in (100, 250, 600):
        high, low, sigma = _split(model, sigmas, t)
        assert sigma == pytest.approx(sigma_at_timestep(ms.sigmas, t), rel=1e-6)
        if kind != "flow":
            assert sigma == pytest.approx(float(ms.sigma(torch.tensor(float(t)))), rel=1e-5)
        assert high[-1].item() == pytest.approx(sigma) and low[0].item() == pytest.approx(sigma)
        assert (high[:-1] > sigma).all() and (low[1:] < sigma).all()


def test_same_timestep_same_sigma_under_every_scheduler(tiny_models):
    model = tiny_models[paths.TINY_SD15][0]
    cut = {s: _split(model, scheduler_sigmas(model, s, n), 400)[2]
           for s, n in (("normal", 7), ("karras", 20), ("exponential", 13), ("simple", 30))}
    assert len({round(v, 6) for v in cut.values()}) == 1


def test_timestep_999_leaves_the_whole_schedule_to_the_low_part(tiny_models):
    model = tiny_models[paths.TINY_SD15][0]
    sigmas = scheduler_sigmas(model, "normal", 10)
    high, low, _ = _split(model, sigmas, 999)
    assert len(high) == 1 and torch.equal(low, sigmas)


@pytest.mark.parametrize("model_name", [paths.TINY_SD15, paths.TINY_SDXL])
@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_two_stages_equal_one_run_over_the_joined_schedule(tiny_models, model_name, sampler):
    """Shape stage (noise added) then detail stage (no noise) = one run over the same levels, for one-step samplers."""
    model, clip, _ = tiny_models[model_name]
    pos, neg = encode(clip, "a red circle"), encode(clip, "")
    latent = torch.zeros(1, 4, 8, 8)
    noise = noise_for(latent.shape, 3)
    sigmas = scheduler_sigmas(model, "karras", 8)
    high, low, _ = _split(model, sigmas, 300)
    joined = torch.cat([high, low[1:]])
    assert len(joined) == len(sigmas) + 1  # the boundary was inserted
    one = sample_sigmas(model, pos, neg, latent, noise, joined, sampler)
    stage1 = sample_sigmas(model, pos, neg, latent, noise, high, sampler)
    two = sample_sigmas(model, pos, neg, stage1, torch.zeros_like(noise), low, sampler)
    assert torch.isfinite(two).all()
    torch.testing.assert_close(two, one, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["v", "flow"])
def test_two_stages_equal_one_run_for_v_and_flow_models(tiny_models, kind):
    model_, clip, _ = tiny_models[paths.TINY_SD15]
    model = with_parameterisation(model_, kind)
    pos, neg = encode(clip, "a blue square"), encode(clip, "")
    latent = torch.zeros(1, 4, 8, 8)
    noise = noise_for(latent.shape, 5)
    sigmas = scheduler_sigmas(model, "simple", 9)
    high, low, _ = _split(model, sigmas, 500)
    one = sample_sigmas(model, pos, neg, latent, noise, torch.cat([high, low[1:]]))
    two = sample_sigmas(model, pos, neg, sample_sigmas(model, pos, neg, latent, noise, high), torch.zeros_like(noise), low)
    torch.testing.assert_close(two, one, rtol=1e-4, atol=1e-4)
