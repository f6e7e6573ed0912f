"""Artifact Early Reject and Artifact Estimator through /prompt: the kept image is the plain sampler's image for its
seed, the heatmap reaches LateStepRefine, and bad values are named."""

import copy
import os

import numpy as np
import pytest

from stepwise_dev import paths, workflow
from stepwise_dev.server import ExecutionFailed, PromptRejected

pytestmark = pytest.mark.server


def _load():
    return copy.deepcopy(workflow.load(os.path.join(paths.WORKFLOWS_API, "artifact_early_reject.api.json")))


def test_one_seed_kept_is_the_plain_ksampler_image(server):
    prompt = _load()
    prompt["5"]["inputs"].update(seeds=1, keep=1, seed=9)
    kept = server.output_images(server.run(prompt), "13")[0]
    plain = {k: prompt[k] for k in ("1", "2", "3", "4", "8")}
    plain["5"] = {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "seed": 9,
        "steps": 20, "cfg": 3.0, "sampler_name": "euler", "scheduler": "karras", "denoise": 1.0}}
    plain["12"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["8", 0]}}
    plain["13"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "stepwise/plain", "images": ["12", 0]}}
    assert np.array_equal(server.output_images(server.run(plain), "13")[0], kept)


def test_heatmap_and_refined_image_come_out(server):
    entry = server.run(_load())
    refined, overlay = server.output_images(entry, "10")[0], server.output_images(entry, "11")[0]
    kept = server.output_images(entry, "13")[0]
    assert refined.shape == overlay.shape == kept.shape == (32, 32, 3)
    assert np.abs(refined - kept).max() > 0  # the refine changed something inside the mask


def test_keep_above_seeds_is_named(server):
    prompt = _load()
    prompt["5"]["inputs"].update(seeds=2, keep=3)
    with pytest.raises(ExecutionFailed, match=r"keep \(3\) must not exceed seeds \(2\)"):
        server.run(prompt)


def test_probe_outside_the_range_is_refused(server):
    prompt = _load()
    prompt["5"]["inputs"]["probe"] = 1.5
    with pytest.raises((PromptRejected, ExecutionFailed), match="probe"):
        server.run(prompt)


def test_trained_mode_without_an_estimator_is_named(server):
    prompt = _load()
    prompt["6"]["inputs"]["mode"] = "trained"
    with pytest.raises(ExecutionFailed, match="mode 'trained' needs an estimator"):
        server.run(prompt)
