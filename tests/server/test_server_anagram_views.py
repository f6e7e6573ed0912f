"""Visual Anagram's views 3 and 4 through the real server: no view is shown for a prompt that is not connected, and
saved workflows that still carry the old defaults (rot90, flip_lr) load and run unchanged."""

import copy
import os

import pytest

from stepwise_dev import workflow
from stepwise_dev.server import ExecutionFailed

GRAPHS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graphs")  # the mechanics graphs (tiny zoo)
pytestmark = pytest.mark.server


def _load():
    return copy.deepcopy(workflow.load(os.path.join(GRAPHS, "visual_anagram.api.json")))


def _view(info, name):
    spec = info["input"]["required"][name]
    return spec[1]["options"] if "options" in spec[1] else spec[0], spec[1].get("default")


def test_views_3_and_4_default_to_unused_in_their_old_places(server):
    info = server.object_info("StepwiseVisualAnagram")
    for name in ("view_3", "view_4"):
        options, default = _view(info, name)
        assert default == "unused" and options[0] == "unused" and {"rot90", "flip_lr"} <= set(options), name
    for name in ("view_1", "view_2"):
        assert "unused" not in _view(info, name)[0], name
    # Required and in the same order as before: saved workflows' widget values keep their places.
    assert info["input_order"]["required"][:7] == ["model", "positive_1", "view_1", "positive_2", "view_2", "view_3",
                                                   "view_4"]


def test_a_saved_workflow_with_the_old_defaults_still_runs_the_same(server):
    saved = _load()
    saved["5"]["inputs"].update(view_3="rot90", view_4="flip_lr")
    saved["7"]["inputs"]["steps"] = 2
    fresh = _load()
    fresh["7"]["inputs"]["steps"] = 2
    old = server.output_images(server.run(saved), "10")[0]
    new = server.output_images(server.run(fresh), "10")[0]
    assert (old == new).all()  # views of unconnected prompts are ignored, as they always were


def test_a_connected_prompt_with_an_unused_view_is_an_error_naming_both(server):
    prompt = _load()
    prompt["12"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a rabbit", "clip": ["1", 1]}}
    prompt["5"]["inputs"]["positive_3"] = ["12", 0]
    prompt["7"]["inputs"]["steps"] = 2
    with pytest.raises(ExecutionFailed) as err:
        server.run(prompt)
    assert "positive_3 is connected but view_3 is 'unused'" in str(err.value)
    prompt["5"]["inputs"]["view_3"] = "rot90"
    assert server.output_images(server.run(prompt), "10")
