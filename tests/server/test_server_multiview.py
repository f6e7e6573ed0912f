"""VisualAnagram and HybridNoise through /prompt: bad input is a clear error and the server goes on."""

import copy
import os

import pytest

from stepwise_dev import paths, workflow
from stepwise_dev.server import ExecutionFailed, PromptRejected

pytestmark = pytest.mark.server


def _load(name):
    return copy.deepcopy(workflow.load(os.path.join(paths.WORKFLOWS_API, name + ".api.json")))


def test_rotation_on_a_non_square_image_is_an_error_naming_the_size(server):
    prompt = _load("visual_anagram")
    prompt["5"]["inputs"]["view_2"] = "rot90"
    prompt["6"]["inputs"].update(width=128, height=64)
    with pytest.raises(ExecutionFailed) as err:
        server.run(prompt)
    assert "rot90 needs a square latent, got 8x16" in str(err.value)
    assert server.output_images(server.run(_load("hybrid_noise")))


def test_negate_on_a_latent_model_is_an_error(server):
    prompt = _load("visual_anagram")
    prompt["5"]["inputs"]["view_2"] = "negate"
    with pytest.raises(ExecutionFailed) as err:
        server.run(prompt)
    assert "view_2 is negate" in str(err.value) and "pixel-space" in str(err.value)


def test_unknown_view_is_refused_naming_it(server):
    """The pinned host does not check V3 combo values at /prompt; the node then refuses the value itself."""
    prompt = _load("visual_anagram")
    prompt["5"]["inputs"]["view_2"] = "spin"
    with pytest.raises((PromptRejected, ExecutionFailed)) as err:
        server.run(prompt)
    assert "spin" in str(err.value)


def test_gray_color_hybrid_on_the_pixel_space_model(server):
    prompt = _load("hybrid_noise")
    prompt["1"]["inputs"]["ckpt_name"] = paths.TINY_PIXEL
    prompt["5"]["inputs"]["split"] = "gray_color"
    prompt["6"] = {"class_type": "EmptyChromaRadianceLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    images = server.output_images(server.run(prompt))
    assert images[0].shape == (64, 64, 3) and images[0].std() > 0.01
