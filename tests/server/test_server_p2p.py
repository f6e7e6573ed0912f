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


def test_one_node_feeding_two_samplers_hands_each_maps_node_its_own_run(server):
    """The hand-over through the real executor: one Prompt-to-Prompt output feeds a KSampler and a SamplerCustom
    (output and denoised_output); each maps node finds its own run, and a maps node run again later, with its
    sampler's output taken from the cache, still finds it."""
    prompt = _load("prompt_to_prompt_attention_maps")
    prompt["8"]["inputs"].pop("image")
    prompt["8"]["inputs"]["height"] = 64
    prompt["10"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    prompt["11"] = {"class_type": "BasicScheduler", "inputs": {"model": ["3", 0], "scheduler": "karras", "steps": 6,
                                                               "denoise": 1.0}}
    prompt["12"] = {"class_type": "SamplerCustom", "inputs": {
        "model": ["3", 0], "add_noise": True, "noise_seed": 42, "cfg": 7.0, "positive": ["3", 1],
        "negative": ["4", 0], "sampler": ["10", 0], "sigmas": ["11", 0], "latent_image": ["3", 2]}}
    for node, output in (("13", 0), ("15", 1)):
        prompt[node] = {"class_type": "StepwisePromptToPromptMaps", "inputs": {"samples": ["12", output], "row": "both",
                                                                               "words": "", "height": 64}}
        prompt[str(int(node) + 1)] = {"class_type": "SaveImage", "inputs": {"filename_prefix": f"stepwise/p2p_{node}",
                                                                            "images": [node, 0]}}
    entry = server.run(prompt)
    ksampler, custom, denoised = (server.output_images(entry, n) for n in ("9", "14", "16"))
    assert len(ksampler) == len(custom) == len(denoised) == 10
    assert max(np.abs(a - b).max() for a, b in zip(ksampler, custom)) > 1e-3  # two runs, two sets of maps
    prompt["8"]["inputs"]["words"] = "cat, puppy"  # only the maps node runs again
    again = server.output_images(server.run(prompt), "9")
    assert len(again) == 2 and np.abs(again[0] - ksampler[1]).max() < 1e-6  # the cached run's "cat" map
