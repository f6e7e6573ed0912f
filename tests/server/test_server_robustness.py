"""An outsider's stress test through the HTTP API: one malformed file in models/stepwise must not take Load Artifact
Estimator out of /object_info (nor drop its outputs from prompts), pose files that are too large or not UTF-8 are
refused naming the file, and input files follow the host's own rule on symlinks."""

import copy
import json
import os
import time

import numpy as np
import pytest
import torch

from stepwise_dev import paths, refiners, workflow
from stepwise_dev.server import ExecutionFailed

pytestmark = pytest.mark.server


def _load(name):
    return copy.deepcopy(workflow.load(os.path.join(paths.WORKFLOWS_API, name + ".api.json")))


def _options(info: dict, name: str) -> list:
    options = info["input"]["required"][name]
    return options[0] if isinstance(options[0], list) else options[1]["options"]


@pytest.fixture
def string_metadata_file(server):
    """A safetensors file in models/stepwise whose Stepwise metadata is a JSON string, not an object: an estimator's
    metadata encoded twice, so the string holds every field name."""
    from safetensors.torch import save_file

    meta = {"kind": "estimator", "format_version": 1, "network": {"class": "artifact_estimator", "config": {}},
            "parameterisation": "eps", "latent_space": {"kind": "pixel", "channels": 3}, "timestep_range": [0, 1000],
            "conditioning": "none"}
    path = os.path.join(server.base_dir, "models", "stepwise", "stepwise-robust-string-metadata.safetensors")
    save_file({"w": torch.zeros(1)}, path, metadata={"stepwise": json.dumps(json.dumps(meta))})
    yield path
    os.remove(path)


def test_a_file_with_string_metadata_leaves_the_estimator_loader_listed(server, string_metadata_file):
    info = server.object_info("StepwiseLoadArtifactEstimator")  # answered 500 before
    assert _options(info, "estimator_name") == [refiners.DEMO_ESTIMATOR]
    assert "StepwiseLoadArtifactEstimator" in server.object_info()


def test_a_file_with_string_metadata_does_not_drop_the_estimators_outputs(server, string_metadata_file):
    prompt = _load("artifact_estimator_trained")
    prompt["4"]["inputs"]["batch_size"] = 1
    prompt["5"]["inputs"]["steps"] = 2
    prompt["9"]["inputs"]["steps"] = 2
    entry = server.run(prompt, timeout=120)
    overlay = server.output_images(entry, "12")
    assert len(overlay) == 1 and overlay[0].shape == (32, 32, 3)  # the estimator's overlay came out


def test_choosing_the_malformed_file_names_it(server, string_metadata_file):
    prompt = _load("artifact_estimator_trained")
    prompt["6"]["inputs"]["estimator_name"] = os.path.basename(string_metadata_file)
    with pytest.raises(ExecutionFailed, match=r"stepwise-robust-string-metadata.safetensors: Stepwise metadata is a "
                                              r"JSON str"):
        server.run(prompt)


def _pose_prompt(pose_file: str) -> dict:
    """Load Pose Keypoints → KeypointCondition → its skeleton preview, saved (no sampling)."""
    prompt = _load("keypoint_condition_pose_keypoint")
    prompt = {k: prompt[k] for k in ("2", "3", "10")}
    prompt["2"]["inputs"]["pose_file"] = pose_file
    return prompt


@pytest.fixture
def input_file(server):
    made = []

    def make(name: str, data: bytes | None = None, link_to: str | None = None) -> str:
        path = os.path.join(server.base_dir, "input", name)
        if link_to is not None:
            os.symlink(link_to, path)
        else:
            with open(path, "wb") as f:
                f.write(data)
        made.append(path)
        return name

    yield make
    for path in made:
        os.remove(path)


def test_a_latin1_pose_file_is_refused_naming_the_file(server, input_file):
    name = input_file("robust_latin1.json", json.dumps({"people": [], "canvas_width": 512, "canvas_height": 512,
                                                         "note": "café"}, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(ExecutionFailed, match=r"pose_file 'robust_latin1.json': not UTF-8 text \(byte 0xe9"):
        server.run(_pose_prompt(name))


def test_an_oversized_pose_file_is_refused_at_once_naming_the_file(server, input_file):
    name = input_file("robust_huge.json", b"")
    with open(os.path.join(server.base_dir, "input", name), "wb") as f:
        f.truncate(50 * 1024 * 1024)  # 50 MB (sparse: nothing is written)
    start = time.monotonic()
    with pytest.raises(ExecutionFailed, match=r"pose_file 'robust_huge.json': 50.0 MiB; a pose file may be at most "
                                              r"16 MiB"):
        server.run(_pose_prompt(name))
    assert time.monotonic() - start < 10  # the whole prompt round trip; the refusal itself reads nothing


def test_input_symlinks_follow_the_hosts_rule(server, input_file, tmp_path):
    """A symlink in input/ is followed wherever it points, exactly as the host's LoadImage follows it; a name that
    leaves the input folder lexically is refused (as the host's upload and /view routes refuse it)."""
    outside = tmp_path / "outside_pose.json"
    with open(os.path.join(server.base_dir, "input", refiners.EXAMPLE_POSE), "rb") as f:
        outside.write_bytes(f.read())
    image = tmp_path / "outside.png"
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(image)
    linked_image = input_file("robust_linked.png", link_to=str(image))
    host = {"1": {"class_type": "LoadImage", "inputs": {"image": linked_image}},
            "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "stepwise/robust_link", "images": ["1", 0]}}}
    assert server.output_images(server.run(host), "2")[0].shape == (8, 8, 3)  # the host follows the link
    linked_pose = input_file("robust_linked_pose.json", link_to=str(outside))
    assert server.output_images(server.run(_pose_prompt(linked_pose)), "10")  # and so does the pack
    with pytest.raises(ExecutionFailed, match="not a JSON file in ComfyUI's input folder"):
        server.run(_pose_prompt(str(outside)))  # an absolute path leaves the folder


def test_an_estimator_chosen_as_a_model_is_named_in_english(server):
    prompt = _load("artifact_estimator_trained")
    prompt["1"]["inputs"]["ckpt_name"] = refiners.DEMO_ESTIMATOR
    with pytest.raises(ExecutionFailed, match=f"{refiners.DEMO_ESTIMATOR}: holds an estimator checkpoint; load it "
                                              "with Load Artifact Estimator"):
        server.run(prompt, timeout=120)
