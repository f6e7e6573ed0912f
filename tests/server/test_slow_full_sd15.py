"""Architecture smoke test: a full-size SD1.5 checkpoint (random weights) through the host's own detection."""

import os

import numpy as np
import pytest

from stepwise_dev import paths

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_full_size_sd15_samples_one_step_through_checkpoint_loader(server, full_zoo):
    server.add_checkpoint(paths.FULL_SD15, os.path.join(full_zoo, paths.FULL_SD15))
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": paths.FULL_SD15}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"seed": 0, "steps": 1, "cfg": 7.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["1", 0],
                                                   "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0]}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"filename_prefix": "stepwise/full_sd15", "images": ["6", 0]}},
    }
    images = server.output_images(server.run(prompt, timeout=900))
    assert images[0].shape == (64, 64, 3) and np.isfinite(images[0]).all()
    log = server.log()
    assert "model_type EPS" in log  # detected as SD1.5 by the host's own model detection
