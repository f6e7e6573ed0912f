"""Reference tests for kernels.schedule: timestep indices and σ-schedule splitting (hand-worked values; the maps
checked against the host's own schedules are in tests/host/test_kernels_schedule_host.py)."""

import pytest
import torch

from stepwise.kernels.schedule import segment_schedule, split_sigmas_at, timestep_index


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
