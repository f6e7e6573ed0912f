"""The pack's checkpoint format without the host: metadata refused naming the field (the loader's round trips and
the network rebuild are in tests/host/test_checkpoint.py)."""

import json
import os

import pytest
import torch

from stepwise.models import checkpoint


def _meta(**over):
    base = {"kind": "refiner", "network": {"class": "comfy_unet", "unet_config": {}}, "parameterisation": "eps",
            "latent_space": {"kind": "pixel", "channels": 3}, "timestep_range": [0, 500], "conditioning": "none"}
    base.update(over)
    return base


@pytest.mark.parametrize("over,match", [({"kind": "vae"}, "unknown kind 'vae'"),
                                        ({"timestep_range": [500, 500]}, r"timestep_range \[500, 500\]"),
                                        ({"timestep_range": [0, 1001]}, "timestep_range"),
                                        ({"parameterisation": "x0"}, "parameterisation 'x0'"),
                                        ({"latent_space": {"kind": "rgb"}}, "latent_space"),
                                        ({"format_version": 99}, "newer than this Stepwise reads")])
def test_bad_metadata_is_refused_naming_the_field(tmp_path, over, match):
    with pytest.raises(checkpoint.CheckpointError, match=match):
        checkpoint.save(str(tmp_path / "x.safetensors"), {"w": torch.zeros(1)}, _meta(**over))
    assert not os.listdir(tmp_path)


def test_missing_fields_are_named():
    with pytest.raises(checkpoint.CheckpointError, match="lacks .*timestep_range"):
        checkpoint.validate_metadata({k: v for k, v in _meta().items() if k != "timestep_range"} | {"format_version": 1})


TWICE = json.dumps(json.dumps({"format_version": 1, **_meta()}))  # an object encoded twice: a string naming every field


@pytest.mark.parametrize("raw,kind", [(TWICE, "str"), ('"x"', "str"), ("[1, 2]", "list"), ("3", "int"),
                                      ("null", "NoneType")])
def test_metadata_that_is_not_a_json_object_is_refused_naming_the_file(tmp_path, raw, kind):
    from safetensors.torch import save_file

    path = str(tmp_path / "m.safetensors")
    save_file({"w": torch.zeros(1)}, path, metadata={checkpoint.META_KEY: raw})
    with pytest.raises(checkpoint.CheckpointError, match=rf"m.safetensors: Stepwise metadata is a JSON {kind} "
                                                           r"\(.*\), not an object"):
        checkpoint.read_metadata(path)


def test_the_wrong_kind_is_named_in_english(tmp_path):
    path = str(tmp_path / "r.safetensors")
    checkpoint.save(path, {"w": torch.zeros(1)}, _meta())
    with pytest.raises(checkpoint.CheckpointError, match="holds a refiner checkpoint, not an estimator"):
        checkpoint.load(path, kind="estimator")
    checkpoint.save(path, {"w": torch.zeros(1)}, _meta(kind="estimator"))
    with pytest.raises(checkpoint.CheckpointError, match="holds an estimator checkpoint, not a refiner"):
        checkpoint.load(path, kind="refiner")


def test_tensor_shapes_come_from_the_header_and_mismatches_are_named(tmp_path):
    path = str(tmp_path / "s.safetensors")
    checkpoint.save(path, {"a": torch.zeros(2, 3), "b": torch.zeros(4)}, _meta())
    found = checkpoint.tensor_shapes(path)
    assert found == {"a": (2, 3), "b": (4,)}
    checkpoint.check_tensors({"a": (2, 3), "b": (4,)}, found, "s")
    with pytest.raises(checkpoint.CheckpointError, match=r"s: tensors do not match .*other shape \['a \[2, 3\] "
                                                         r"\(the metadata says \[2048, 3\]\)'\]"):
        checkpoint.check_tensors({"a": (2048, 3), "b": (4,)}, found, "s")
    with pytest.raises(checkpoint.CheckpointError, match=r"missing \['c'\], unexpected \['b'\]"):
        checkpoint.check_tensors({"a": (2, 3), "c": (4,)}, found, "s")
