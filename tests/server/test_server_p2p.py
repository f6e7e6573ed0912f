"""PromptToPromptAttn and its attention-map node through /prompt: outputs, clear errors, and the server goes on."""

import copy
import os

import numpy as np
import pytest

from stepwise_dev import paths, workflow
from stepwise_dev.server import ExecutionFailed, PromptRejected

pytestmark = pytest.mark.server


def _load(name):
    return copy.deepcopy(workflow.load(os.path.join(paths.WORKFLOWS_API, name + ".api.json")))


def test_maps_workflow_gives_the_pair_and_one_labelled_map_per_word(server):
    entry = server.run(_load("prompt_to_prompt_attention_maps"))
    pair = server.output_images(entry, "7")
    maps = server.output_images(entry, "9")
    assert len(pair) == 2 and pair[0].shape == (256, 256, 3)
    assert np.abs(pair[0] - pair[1]).max() > 0.01  # the edit shows
    # "a cat sitting in a basket" and "a puppy sitting in a basket": 5 distinct words each
    assert len(maps) == 10 and all(m.shape == (256 + 20, 256, 3) for m in maps)


def test_replace_with_different_word_counts_is_an_error_naming_both(server):
    prompt = _load("prompt_to_prompt_replace")
    prompt["3"]["inputs"]["target"] = "a photo of a big dog riding a bicycle"
    with pytest.raises(ExecutionFailed) as err:
        server.run(prompt)
    assert "got 8 source and 9 target words" in str(err.value) and "use refine" in str(err.value)
    assert len(server.output_images(server.run(_load("prompt_to_prompt_replace")))) == 2


def test_unknown_mode_is_refused_naming_it(server):
    prompt = _load("prompt_to_prompt_refine")
    prompt["3"]["inputs"]["mode"] = "swap"
    with pytest.raises((PromptRejected, ExecutionFailed)) as err:
        server.run(prompt)
    assert "swap" in str(err.value)


def test_maps_of_a_plain_sampler_output_are_a_clear_error(server):
    prompt = _load("prompt_to_prompt_attention_maps")
    prompt["10"] = {"class_type": "KSampler", "inputs": {**prompt["5"]["inputs"], "latent_image": ["2", 0],
                                                         "model": ["1", 0], "positive": ["4", 0]}}
    prompt["8"]["inputs"]["samples"] = ["10", 0]
    with pytest.raises(ExecutionFailed) as err:
        server.run(prompt)
    assert "Prompt-to-Prompt node's LATENT" in str(err.value)
