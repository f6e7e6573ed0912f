"""The pack's checkpoint format and loader: round trips, refusals, exact rebuild of the network."""

import json
import os

import pytest
import torch

from stepwise.models import checkpoint, diffusion
from stepwise_dev import paths, refiners


def test_round_trip_and_atomic_write(tmp_path, tiny_models):
    path = str(tmp_path / "r.safetensors")
    meta = refiners.copy_of_base(tiny_models[paths.TINY_SD15][0], path)
    tensors, loaded = checkpoint.load(path, kind="refiner")
    assert loaded["timestep_range"] == [0, 500] and loaded["format_version"] == checkpoint.FORMAT_VERSION
    assert loaded["network"] == json.loads(json.dumps(meta["network"]))
    ref = tiny_models[paths.TINY_SD15][0].model.diffusion_model.state_dict()
    assert set(tensors) == set(ref) and all(torch.equal(tensors[k], ref[k]) for k in ref)
    assert os.listdir(tmp_path) == ["r.safetensors"]  # no temporary file left behind


def test_rebuilt_model_predicts_exactly_like_the_base(tmp_path, tiny_models):
    base = tiny_models[paths.TINY_SD15][0]
    path = str(tmp_path / "r.safetensors")
    refiners.copy_of_base(base, path)
    tensors, meta = checkpoint.load(path)
    rebuilt = diffusion.model_patcher(tensors, meta, "r")
    assert diffusion.checkpoint_meta(rebuilt)["timestep_range"] == [0, 500] and diffusion.checkpoint_meta(base) is None
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([3.0])
    context = torch.randn(1, 77, 64, generator=torch.Generator().manual_seed(1))
    a = base.model.apply_model(x, sigma, c_crossattn=context)
    b = rebuilt.model.apply_model(x, sigma, c_crossattn=context)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_from_scratch_refiner_builds_and_runs(tmp_path):
    path = str(tmp_path / "s.safetensors")
    refiners.from_scratch(path, "tiny", 3, "pixel", (0, 300))
    tensors, meta = checkpoint.load(path)
    model = diffusion.model_patcher(tensors, meta, "s")
    assert model.get_model_object("latent_format").latent_channels == 3
    out = model.model.apply_model(torch.randn(2, 3, 16, 16), torch.tensor([1.0, 1.0]), c_crossattn=torch.zeros(2, 1, 8))
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


def _meta(**over):
    base = {"kind": "refiner", "network": {"class": "comfy_unet", "unet_config": {}}, "parameterisation": "eps",
            "latent_space": {"kind": "pixel", "channels": 3}, "timestep_range": [0, 500], "conditioning": "none"}
    base.update(over)
    return base


def test_foreign_corrupt_and_wrong_kind_files_are_refused(tmp_path, zoo):
    with pytest.raises(checkpoint.CheckpointError, match="without Stepwise metadata"):
        checkpoint.load(os.path.join(zoo, paths.TINY_SD15))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable safetensors file"):
        checkpoint.load(str(broken))
    good = str(tmp_path / "good.safetensors")
    checkpoint.save(good, {"w": torch.zeros(2)}, _meta())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(open(good, "rb").read()[:-4])
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(str(truncated))
    with pytest.raises(checkpoint.CheckpointError, match="holds a refiner checkpoint, not a pose"):
        checkpoint.load(good, kind="pose")


def test_tensors_that_do_not_match_the_network_are_refused(tmp_path):
    path = str(tmp_path / "s.safetensors")
    meta = refiners.from_scratch(path)
    tensors, meta = checkpoint.load(path)
    tensors.pop(next(iter(tensors)))
    with pytest.raises(checkpoint.CheckpointError, match="do not match the network"):
        diffusion.model_patcher(tensors, meta, "s")
