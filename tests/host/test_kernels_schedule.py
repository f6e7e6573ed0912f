"""Reference tests for kernels.schedule: σ/timestep maps and σ-schedule splitting."""

import comfy.model_sampling
import comfy.supported_models_base
import pytest
import torch

from stepwise.kernels.schedule import (
    covers,
    segment_schedule,
    sigma_at_timestep,
    split_sigmas_at,
    timestep_at_sigma,
    timestep_index,
    timestep_range_sigmas,
)


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


def test_timestep_index_identity_on_1000_levels():
    assert [timestep_index(t, 1000) for t in range(1000)] == list(range(1000))


def test_timestep_index_other_table_sizes_keep_the_ends():
    assert timestep_index(999, 10000) == 9999 and timestep_index(0, 10000) == 9
    assert timestep_index(999, 100) == 99 and timestep_index(0, 100) == 0
    idx = [timestep_index(t, 10000) for t in range(1000)]
    assert idx == sorted(idx) and len(set(idx)) == 1000


@pytest.mark.parametrize("bad", [-1, 1000, 2.5, True, "3"])
def test_timestep_index_rejects_bad_timesteps(bad):
    with pytest.raises((ValueError, TypeError)):
        timestep_index(bad, 1000)


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


SCHEDULE = torch.tensor([14.6, 8.0, 4.0, 2.0, 1.0, 0.5, 0.0])


def test_split_inserts_the_boundary_between_steps():
    high, low = split_sigmas_at(SCHEDULE, 3.0)
    assert high.tolist() == pytest.approx([14.6, 8.0, 4.0, 3.0])
    assert low.tolist() == pytest.approx([3.0, 2.0, 1.0, 0.5, 0.0])


def test_split_on_an_existing_step_shares_it():
    high, low = split_sigmas_at(SCHEDULE, 2.0)
    assert high.tolist() == pytest.approx([14.6, 8.0, 4.0, 2.0])
    assert low.tolist() == pytest.approx([2.0, 1.0, 0.5, 0.0])
    assert torch.equal(torch.cat([high[:-1], low]), SCHEDULE)
    high, low = split_sigmas_at(SCHEDULE, 2.0 * (1 + 1e-7))  # within rtol snaps too
    assert len(high) == 4 and len(low) == 4


def test_split_at_the_ends_gives_an_empty_part():
    high, low = split_sigmas_at(SCHEDULE, 20.0)
    assert high.tolist() == pytest.approx([14.6]) and torch.equal(low, SCHEDULE)
    high, low = split_sigmas_at(SCHEDULE, 0.0)
    assert torch.equal(high, SCHEDULE) and low.tolist() == [0.0]


def test_split_does_not_alias_its_input():
    s = SCHEDULE.clone()
    high, low = split_sigmas_at(s, 3.0)
    high[0] = -1
    low[-1] = -1
    assert torch.equal(s, SCHEDULE)


@pytest.mark.parametrize("bad", [torch.tensor([1.0, 2.0]), torch.zeros(2, 2), torch.tensor([])])
def test_split_rejects_non_schedules(bad):
    with pytest.raises(ValueError):
        split_sigmas_at(bad, 1.0)


def test_split_rejects_negative_sigma():
    with pytest.raises(ValueError, match="sigma_split"):
        split_sigmas_at(SCHEDULE, -1.0)


def test_segment_schedule_cuts_inside_and_ignores_the_ends():
    segs = segment_schedule(SCHEDULE, [3.0, 0.75, 20.0, 0.0, 8.0])
    assert [s.tolist() for s in segs] == [pytest.approx([14.6, 8.0]), pytest.approx([8.0, 4.0, 3.0]),
                                          pytest.approx([3.0, 2.0, 1.0, 0.75]), pytest.approx([0.75, 0.5, 0.0])]
    assert len(segment_schedule(SCHEDULE, [])) == 1 and torch.equal(segment_schedule(SCHEDULE, [])[0], SCHEDULE)
    joined = torch.cat([segs[0]] + [s[1:] for s in segs[1:]])
    assert joined.tolist() == pytest.approx([14.6, 8.0, 4.0, 3.0, 2.0, 1.0, 0.75, 0.5, 0.0])


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
