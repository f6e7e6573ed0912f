"""KeypointCondition with a trained pose checkpoint through /prompt: the pose steers the image, CFG against the
null pose, POSE_KEYPOINT from a file, and errors that name the value."""

import copy
import json
import os

import numpy as np
import pytest

from stepwise_dev import paths, refiners, workflow
from stepwise_dev.server import ExecutionFailed

pytestmark = pytest.mark.server


def _load(name):
    return copy.deepcopy(workflow.load(os.path.join(paths.WORKFLOWS_API, name + ".api.json")))


def _image(server, prompt):
    return server.output_images(server.run(prompt), "9")[0]


def test_the_pose_steers_the_sample(server):
    prompt = _load("keypoint_condition_json")
    first = _image(server, prompt)
    pose = json.loads(prompt["3"]["inputs"]["pose_json"])
    prompt["3"]["inputs"]["pose_json"] = json.dumps({k: [row, 512 - col] for k, (row, col) in pose.items()})  # mirrored
    mirrored = _image(server, prompt)
    assert first.shape == (32, 32, 3) and np.abs(first - mirrored).mean() > 0.01


def test_cfg_with_a_null_positive_changes_nothing(server):
    """Strength 0 makes the positive the null pose, the negative's: the guided image equals the cfg-1 image."""
    prompt = _load("keypoint_condition_json")
    prompt["3"]["inputs"]["strength"] = 0.0
    guided = _image(server, prompt)
    prompt["6"]["inputs"]["cfg"] = 1.0
    plain = _image(server, prompt)
    assert np.abs(guided - plain).max() <= 2 / 255
    prompt["3"]["inputs"]["strength"] = 1.0
    assert np.abs(_image(server, prompt) - plain).mean() > 0.005


def test_pose_file_gives_the_same_image_as_its_json(server):
    """The POSE_KEYPOINT workflow (pose from a file) and the JSON workflow with the file's text agree."""
    from_file = _image(server, _load("keypoint_condition_pose_keypoint"))
    prompt = _load("keypoint_condition_json")
    with open(os.path.join(server.base_dir, "input", refiners.EXAMPLE_POSE)) as f:
        text = f.read()
    prompt["3"]["inputs"]["pose_json"] = prompt["4"]["inputs"]["pose_json"] = text
    assert np.abs(_image(server, prompt) - from_file).max() <= 1 / 255


@pytest.mark.parametrize("change,match", [
    (("3", "pose_json", "{\"people\": [1,"), "malformed JSON at line 1"),
    (("3", "person", 3), "person index 3 is out of range"),
    (("3", "pose_json", "{\"nose\": [\"NaN\", 3]}"), "NaN or infinite"),
])
def test_bad_pose_input_is_named(server, change, match):
    prompt = _load("keypoint_condition_json")
    node, key, value = change
    prompt[node]["inputs"][key] = value
    with pytest.raises(ExecutionFailed, match=match):
        server.run(prompt)


def test_pose_file_outside_the_input_folder_is_refused(server):
    prompt = _load("keypoint_condition_pose_keypoint")
    prompt["2"]["inputs"]["pose_file"] = "../user/x.json"
    with pytest.raises(Exception, match="not a JSON file in ComfyUI's input folder|pose_file"):
        server.run(prompt)
