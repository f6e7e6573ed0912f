"""The loader and LateStepRefine through /prompt: listing, refusals, errors naming the values."""

import copy
import glob
import os

import numpy as np
import pytest

from stepwise_dev import paths, refiners, workflow
from stepwise_dev.server import ExecutionFailed

pytestmark = pytest.mark.server


def _load(name):
    return copy.deepcopy(workflow.load(os.path.join(paths.WORKFLOWS_API, name + ".api.json")))


def test_loader_lists_stepwise_checkpoints_only(server):
    options = server.object_info("StepwiseLoadCheckpoint")["input"]["required"]["ckpt_name"]
    names = options[0] if isinstance(options[0], list) else options[1]["options"]
    assert refiners.DEMO_REFINER in names and all(n.endswith(".safetensors") for n in names)


def test_refined_image_keeps_size_and_changes_the_input(server):
    from PIL import Image

    entry = server.run(_load("late_step_refine_with_refiner"))
    out = server.output_images(entry, "9")[0]  # the Save Image node; "11" previews it enlarged
    src = np.asarray(Image.open(os.path.join(server.base_dir, "input", refiners.EXAMPLE_INPUT)).convert("RGB")) / 255.0
    assert out.shape == src.shape and np.isfinite(out).all()
    assert np.abs(out - src).mean() > 0.005


@pytest.mark.parametrize("content,match", [("foreign", "without Stepwise metadata"),
                                           ("corrupt", "not a readable safetensors file")])
def test_foreign_and_corrupt_files_are_refused_and_the_server_goes_on(server, zoo, content, match):
    target = os.path.join(server.base_dir, "models", "stepwise", f"bad-{content}.safetensors")
    if content == "foreign":
        os.symlink(os.path.join(zoo, paths.TINY_SD15), target)
    else:
        with open(target, "wb") as f:
            f.write(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    prompt = _load("late_step_refine_with_refiner")
    prompt["6"]["inputs"]["ckpt_name"] = os.path.basename(target)
    with pytest.raises(ExecutionFailed, match=match):
        server.run(prompt)
    assert server.output_images(server.run(_load("late_step_refine")))


def test_split_above_start_is_an_error_naming_both(server):
    prompt = _load("late_step_refine")
    prompt["6"]["inputs"].update(start_t=200, split_t=300)
    with pytest.raises(ExecutionFailed, match=r"split_t \(300\) must not exceed start_t \(200\)"):
        server.run(prompt)


def test_refiner_alone_beyond_its_range_is_an_error(server):
    """A refiner alone is connected as the model (the first, required input); its trained range still holds."""
    prompt = _load("late_step_refine_with_refiner")
    prompt["7"]["inputs"]["model"] = ["6", 0]
    del prompt["7"]["inputs"]["refiner"]
    prompt["7"]["inputs"]["start_t"] = 800
    with pytest.raises(ExecutionFailed, match=r"timesteps 500 to 800 .*base on \[0, 500\)"):
        server.run(prompt)
    prompt["7"]["inputs"]["start_t"] = 400
    assert server.output_images(server.run(prompt))


def test_model_is_the_first_input(server):
    """The web UI lays out a node's required inputs before its optional ones, in ``input_order``."""
    info = server.object_info("StepwiseLateStepRefine")
    assert info["input_order"]["required"][0] == "model", info["input_order"]
    found = 0
    for path in glob.glob(os.path.join(paths.EXAMPLE_WORKFLOWS, "*.json")):
        for node in workflow.load(path)["nodes"]:
            if node["type"] == "StepwiseLateStepRefine":
                found += 1
                assert node["inputs"][0]["name"] == "model", (path, node["inputs"])
    assert found >= 2


def test_base_doing_a_refiner_stage_outside_its_range_is_noticed(server):
    """Both stages on the refiner (trained on [0, 500)) from start_t 999: the base does timesteps 999 to 500.
    That is no error (the base covers them) but no longer silent: a warning in the log and a text in the node's
    result (``/history`` outputs)."""
    prompt = _load("late_step_refine_with_refiner")
    prompt["7"]["inputs"].update(start_t=999, split_t=250, shape_model="refiner", detail_model="refiner", steps=4)
    entry = server.run(prompt)
    text = " ".join(entry["outputs"]["7"]["text"])
    assert "shape_model is refiner" in text and "[0, 500)" in text, text
    assert "the base model did timesteps 500 to 999 of the shape stage" in text, text
    assert "Late Step Refine: shape_model is refiner" in server.log()
    prompt["7"]["inputs"]["start_t"] = 400  # inside the refiner's range: nothing to say
    entry = server.run(prompt)
    assert "7" not in entry["outputs"], entry["outputs"]
