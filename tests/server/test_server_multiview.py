"""VisualAnagram and HybridNoise through /prompt: bad input is a clear error and the server goes on."""

import copy
import os

import pytest

from stepwise_dev import paths, workflow
from stepwise_dev.server import ExecutionFailed, PromptRejected

GRAPHS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graphs")  # the mechanics graphs (tiny zoo)
pytestmark = pytest.mark.server


def _load(name):
    return copy.deepcopy(workflow.load(os.path.join(GRAPHS, name + ".api.json")))


def _error(err) -> dict:
    return next(m[1] for m in err.value.messages if m[0] == "execution_error")


def test_rotation_on_a_non_square_image_is_an_error_naming_the_node_and_the_typed_size(server):
    """The anagram node sees only the model and the prompts, so the size is checked when sampling starts, in the
    sampler's node (the host titles and highlights the node that was running); the message names the Visual
    Anagram node and its view, and gives the size in the pixels typed into Empty Latent Image, not latent units."""
    prompt = _load("visual_anagram")
    prompt["5"]["inputs"]["view_2"] = "rot90"
    prompt["6"]["inputs"].update(width=384, height=256)
    with pytest.raises(ExecutionFailed) as err:
        server.run(prompt)
    message = _error(err)["exception_message"]
    assert message.startswith("Visual Anagram (node 5): view_2 is rot90, which needs a square image"), message
    assert "got 256x384 px (height x width; a 32x48 latent, 8 px per latent pixel for this model)" in message
    assert "e.g. 384x384 in Empty Latent Image" in message and "first known when sampling starts" in message
    assert _error(err)["node_id"] == "7" and _error(err)["node_type"] == "KSampler"  # the host's choice
    assert server.output_images(server.run(_load("hybrid_noise")))


def test_patch_grid_that_does_not_divide_the_image_names_pixels(server):
    prompt = _load("visual_anagram")
    prompt["5"]["inputs"].update(view_2="patch_permute", patch_grid=4)
    prompt["6"]["inputs"].update(width=264, height=256)
    with pytest.raises(ExecutionFailed) as err:
        server.run(prompt)
    message = _error(err)["exception_message"]
    assert message.startswith("Visual Anagram (node 5): view_2 is patch_permute with patch_grid 4"), message
    assert "got 256x264 px" in message and "multiples of 32 px" in message


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
