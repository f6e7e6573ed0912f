"""The pack's checkpoint format and loader: round trips, refusals, exact rebuild of the network."""

import contextlib
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


@contextlib.contextmanager
def address_space_cap(extra_gib: float):
    """Cap this process's address space at its current size + ``extra_gib`` for the block, so a loader that tried
    to build a huge network fails at once instead of taking the machine's memory."""
    resource = pytest.importorskip("resource")
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + int(extra_gib * 2**30), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_metadata_claiming_a_huge_network_is_refused_before_anything_is_built(tmp_path):
    small = str(tmp_path / "small.safetensors")
    refiners.from_scratch(small)
    tensors, meta = checkpoint.load(small)
    meta["network"]["unet_config"]["model_channels"] = 8192  # about 60 GB of fp32 weights
    huge = str(tmp_path / "huge.safetensors")
    checkpoint.save(huge, tensors, meta)
    tensors, meta = checkpoint.load(huge)
    with address_space_cap(2.0), pytest.raises(checkpoint.CheckpointError,
                                               match=r"huge: tensors do not match the network in its metadata "
                                                     r"\(missing \[\], unexpected \[\], other shape \[.*the metadata "
                                                     r"says \[8192"):
        diffusion.model_patcher(tensors, meta, "huge")
    meta["network"]["unet_config"]["model_channels"] = "wide"
    with pytest.raises(checkpoint.CheckpointError, match="huge: the network in its metadata cannot be built"):
        diffusion.model_patcher(tensors, meta, "huge")


def test_estimator_metadata_claiming_a_huge_network_is_refused_before_anything_is_built(tmp_path):
    from stepwise.models.estimator import ArtifactEstimatorNet
    from stepwise.nodes.artifact import load_estimator

    net = ArtifactEstimatorNet(3, width=8)
    meta = {"kind": "estimator", "network": {"class": "artifact_estimator", "config": {**net.config(), "width": 60000}},
            "parameterisation": "eps", "latent_space": {"kind": "pixel", "channels": 3}, "timestep_range": [0, 1000],
            "conditioning": "none"}
    path = str(tmp_path / "huge-estimator.safetensors")
    checkpoint.save(path, net.state_dict(), meta)  # about 520 GB of fp32 weights claimed, 60 kB held
    with address_space_cap(2.0), pytest.raises(checkpoint.CheckpointError,
                                               match=r"huge-estimator.safetensors: tensors do not match the estimator "
                                                     r"in its metadata .*the metadata says \[60000"):
        load_estimator(path, "huge-estimator.safetensors")
    meta["network"]["config"]["depth"] = 3
    checkpoint.save(path, net.state_dict(), meta)
    with pytest.raises(checkpoint.CheckpointError, match=r"estimator config .* cannot be built \(TypeError"):
        load_estimator(path, "huge-estimator.safetensors")
    meta["network"]["config"] = net.config()
    checkpoint.save(path, net.state_dict(), meta)
    assert load_estimator(path, "ok").net.width == 8
