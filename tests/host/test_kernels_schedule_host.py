"""Reference tests for kernels.schedule against the host's own model_sampling: σ/timestep maps and ranges."""

import comfy.model_sampling
import comfy.supported_models_base
import pytest
import torch

from stepwise.kernels.schedule import covers, sigma_at_timestep, timestep_at_sigma, timestep_range_sigmas


def _model_sampling(kind, **settings):
    """The host's own model_sampling for eps, v or flow, as the host builds it for a model."""
    config = comfy.supported_models_base.BASE({})
    config.sampling_settings = settings
    sampling = {"eps": comfy.model_sampling.EPS, "v": comfy.model_sampling.V_PREDICTION,
                "flow": comfy.model_sampling.CONST}[kind]
    base = comfy.model_sampling.ModelSamplingDiscreteFlow if kind == "flow" else comfy.model_sampling.ModelSamplingDiscrete

    class ModelSampling(base, sampling):
        pass

    return ModelSampling(config)


@pytest.mark.parametrize("kind", ["eps", "v"])
def test_sigma_at_timestep_matches_host_discrete_schedule(kind):
    ms = _model_sampling(kind)
    for t in (0, 1, 250, 500, 998, 999):
        assert sigma_at_timestep(ms.sigmas, t) == pytest.approx(float(ms.sigma(torch.tensor(float(t)))), rel=1e-6)
        assert timestep_at_sigma(ms.sigmas, sigma_at_timestep(ms.sigmas, t)) == t


def test_sigma_at_timestep_flow_uses_the_models_shifted_levels():
    ms = _model_sampling("flow", shift=3.0, multiplier=1000)
    for t in (0, 250, 500, 999):
        expected = float(ms.sigma(torch.tensor((t + 1) / 1000 * 1000.0)))
        assert sigma_at_timestep(ms.sigmas, t) == pytest.approx(expected, rel=1e-6)
    assert sigma_at_timestep(ms.sigmas, 999) == pytest.approx(1.0)


def test_timestep_at_sigma_clamps_outside_the_table():
    ms = _model_sampling("eps")
    assert timestep_at_sigma(ms.sigmas, 1e6) == 999
    assert timestep_at_sigma(ms.sigmas, 1e-6) == 0
    with pytest.raises(ValueError):
        timestep_at_sigma(ms.sigmas, 0.0)


def test_timestep_range_sigmas_and_coverage():
    ms = _model_sampling("eps")
    low, high = timestep_range_sigmas(ms.sigmas, 0, 500)
    assert low == 0.0 and high == pytest.approx(float(ms.sigmas[499]))
    low, high = timestep_range_sigmas(ms.sigmas, 250, 500)
    assert low == pytest.approx(float(ms.sigmas[250]))
    assert covers((low, high), torch.tensor([high, (low + high) / 2, low]))
    assert not covers((low, high), torch.tensor([high * 1.01, low]))
    assert not covers((low, high), torch.tensor([high, low * 0.99]))
    assert covers((0.0, high), torch.tensor([high, 0.0]))
    with pytest.raises(ValueError, match=r"\[500, 500\)"):
        timestep_range_sigmas(ms.sigmas, 500, 500)
