"""The loader and LateStepRefine through /prompt: listing, refusals, errors naming the values."""

import copy
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
    out = server.output_images(entry)[0]
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
    prompt = _load("late_step_refine_with_refiner")
    del prompt["7"]["inputs"]["model"]
    prompt["7"]["inputs"]["start_t"] = 800
    with pytest.raises(ExecutionFailed, match=r"refiner on \[0, 500\)"):
        server.run(prompt)
