"""Text-to-image on both zoo models through /prompt, and the host's validation errors."""

import copy
import os

import numpy as np
import pytest

from stepwise_dev import paths, workflow
from stepwise_dev.server import PromptRejected

GRAPHS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graphs")  # the mechanics graphs (tiny zoo)
pytestmark = pytest.mark.server


def _t2i(ckpt: str, seed: int = 1, size: int = 128) -> dict:
    prompt = copy.deepcopy(workflow.load(os.path.join(GRAPHS, "text_to_image.api.json")))
    prompt["1"]["inputs"]["ckpt_name"] = ckpt
    prompt["4"]["inputs"].update(width=size, height=size)
    prompt["5"]["inputs"].update(seed=seed, steps=4)
    return prompt


@pytest.mark.parametrize("ckpt", [paths.TINY_SD15, paths.TINY_SDXL])
def test_text_to_image_gives_a_finite_non_constant_image(server, ckpt):
    images = server.output_images(server.run(_t2i(ckpt)))
    assert len(images) == 1
    img = images[0]
    assert img.shape == (128, 128, 3)
    assert np.isfinite(img).all()
    assert img.std() > 0.01, "constant image (NaN latents decode to a flat image)"


def test_different_seeds_give_different_images_and_the_same_seed_repeats(server):
    a = server.output_images(server.run(_t2i(paths.TINY_SD15, seed=11, size=64)))[0]
    b = server.output_images(server.run(_t2i(paths.TINY_SD15, seed=12, size=64)))[0]
    prompt = _t2i(paths.TINY_SD15, seed=11, size=64)
    prompt["7"]["inputs"]["filename_prefix"] = "stepwise/repeat"  # a changed output node re-executes the graph
    c = server.output_images(server.run(prompt))[0]
    assert np.abs(a - b).mean() > 0.01
    np.testing.assert_array_equal(a, c)


def test_unknown_node_class_is_a_validation_error_and_the_server_goes_on(server):
    prompt = _t2i(paths.TINY_SD15)
    prompt["8"] = {"class_type": "StepwiseNoSuchNode", "inputs": {}}
    with pytest.raises(PromptRejected) as err:
        server.queue(prompt)
    assert err.value.body["error"]["type"] == "invalid_prompt"
    assert "StepwiseNoSuchNode" in err.value.body["error"]["message"]
    assert server.output_images(server.run(_t2i(paths.TINY_SD15, seed=5, size=64)))[0].std() > 0.01


def test_wrong_input_type_is_a_validation_error_and_the_server_goes_on(server):
    prompt = _t2i(paths.TINY_SD15)
    prompt["5"]["inputs"]["model"] = ["1", 1]  # CLIP wired into a MODEL input
    prompt["5"]["inputs"]["steps"] = "many"
    with pytest.raises(PromptRejected) as err:
        server.queue(prompt)
    errors = err.value.body["node_errors"]["5"]["errors"]
    kinds = {e["type"] for e in errors}
    assert "return_type_mismatch" in kinds and "invalid_input_type" in kinds, errors
    assert server.output_images(server.run(_t2i(paths.TINY_SDXL, seed=6, size=64)))[0].std() > 0.01


def test_stepwise_input_out_of_range_is_a_validation_error(server):
    prompt = workflow.load(os.path.join(GRAPHS, "split_sigmas_at_timestep.api.json"))
    prompt["6"]["inputs"]["timestep"] = 1000
    with pytest.raises(PromptRejected) as err:
        server.queue(prompt)
    errors = err.value.body["node_errors"]["6"]["errors"]
    assert errors[0]["type"] == "value_bigger_than_max" and "timestep" in errors[0]["details"]


def test_the_first_zoo_checkpoint_in_the_list_is_a_latent_model_whose_image_has_the_typed_size(server):
    """The host lists checkpoints sorted by name and artists pick the first: it must be a VAE-latent model, so a
    256x256 Empty Latent Image gives a 256x256 image (the pixel-space model once sorted first and gave 32x32).
    ``make serve`` and ``make demo`` show only the tiny zoo, so its order is the one an artist meets."""
    options = server.object_info("CheckpointLoaderSimple")["input"]["required"]["ckpt_name"][0]
    tiny = [name for name in options if name in paths.TINY]
    assert sorted(tiny) == sorted(paths.TINY), options
    assert options[0] != paths.TINY_PIXEL and tiny[0] != paths.TINY_PIXEL, options
    prompt = _t2i(tiny[0], size=256)
    prompt["5"]["inputs"]["steps"] = 1
    assert server.output_images(server.run(prompt))[0].shape == (256, 256, 3)
