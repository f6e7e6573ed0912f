"""Reference tests for models.init.seeded_init_ on networks made of ComfyUI's (init-skipping) layers."""

import math

import comfy.ops
import pytest
import torch

from stepwise.models.init import seeded_init_


def _net():
    ops = comfy.ops.disable_weight_init
    return torch.nn.Sequential(ops.Embedding(100, 16), ops.Linear(16, 64), ops.LayerNorm(64),
                               ops.Linear(64, 256), ops.GroupNorm(8, 256))


def test_same_seed_same_weights_and_different_seed_differs():
    a, b, c = seeded_init_(_net(), 3), seeded_init_(_net(), 3), seeded_init_(_net(), 4)
    for (na, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(pa, pb), na
        if pa.ndim > 1:
            assert not torch.equal(pa, pc), na


def test_values_follow_the_documented_rules():
    net = seeded_init_(_net(), 0)
    assert torch.isfinite(torch.cat([p.flatten() for p in net.parameters()])).all()
    assert net[0].weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert net[3].weight.std().item() == pytest.approx(1 / math.sqrt(64), rel=0.05)
    assert torch.equal(net[2].weight, torch.ones(64)) and torch.equal(net[2].bias, torch.zeros(64))
    assert torch.equal(net[1].bias, torch.zeros(64))


def test_activations_stay_at_unit_scale():
    net = seeded_init_(torch.nn.Sequential(*[comfy.ops.disable_weight_init.Linear(256, 256) for _ in range(8)]), 1)
    x = torch.randn(512, 256, generator=torch.Generator().manual_seed(0))
    assert net(x).std().item() == pytest.approx(1.0, rel=0.3)


def test_independent_of_dtype_up_to_rounding():
    a = seeded_init_(_net(), 5)
    b = seeded_init_(_net().to(torch.bfloat16), 5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa.to(torch.bfloat16), pb)


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True])
def test_rejects_bad_seed(bad):
    with pytest.raises(ValueError, match="seed"):
        seeded_init_(_net(), bad)
