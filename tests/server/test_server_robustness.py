"""An outsider's stress test through the HTTP API: one malformed file in models/stepwise must not take Load Artifact
Estimator out of /object_info (nor drop its outputs from prompts)."""

import copy
import json
import os

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



def test_an_estimator_chosen_as_a_model_is_named_in_english(server):
    prompt = _load("artifact_estimator_trained")
    prompt["1"]["inputs"]["ckpt_name"] = refiners.DEMO_ESTIMATOR
    with pytest.raises(ExecutionFailed, match=f"{refiners.DEMO_ESTIMATOR}: holds an estimator checkpoint; load it "
                                              "with Load Artifact Estimator"):
        server.run(prompt, timeout=120)
