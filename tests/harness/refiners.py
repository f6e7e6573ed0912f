"""Refiner checkpoints for tests and the demo: copies of a base, untrained networks, and a small trained one."""

from __future__ import annotations

from stepwise.models import checkpoint, diffusion
from stepwise.models.init import seeded_init_


def copy_of_base(model, path: str, timestep_range=(0, 500), parameterisation: str = "eps") -> dict:
    """A 'refiner' holding the base model's own UNet weights, restricted to ``timestep_range``."""
    m = model.model
    latent = type(m.latent_format).__name__
    meta = {
        "kind": "refiner",
        "network": {"class": "comfy_unet", "unet_config": diffusion.json_safe(m.model_config.unet_config),
                    "model_class": "SDXL" if type(m).__name__ == "SDXL" else "BaseModel"},
        "parameterisation": parameterisation,
        "latent_space": {"kind": "vae", "latent_format": latent, "channels": m.latent_format.latent_channels},
        "timestep_range": list(timestep_range),
        "conditioning": "text",
        "base": {"name": "test base"},
        "training": {"steps": 0, "note": "weights copied from the base for tests"},
    }
    checkpoint.save(path, m.diffusion_model.state_dict(), meta)
    return meta


def from_scratch(path: str, arch: str = "tiny", channels: int = 3, latent: str = "pixel", timestep_range=(0, 300),
                 seed: int = 0) -> dict:
    """An untrained from-scratch refiner (seeded weights) in pixel space or a VAE's latent space."""
    unet = diffusion.unet_config(arch, channels)
    model = diffusion.new_model(unet, "eps", latent)
    seeded_init_(model.diffusion_model, seed)
    meta = {
        "kind": "refiner", "network": {"class": "comfy_unet", "unet_config": unet, "arch": arch},
        "parameterisation": "eps",
        "latent_space": {"kind": "pixel", "channels": channels} if latent == "pixel"
        else {"kind": "vae", "latent_format": latent, "channels": channels},
        "timestep_range": list(timestep_range), "conditioning": "none", "base": None,
        "training": {"steps": 0, "note": "untrained, for tests"},
    }
    checkpoint.save(path, model.diffusion_model.state_dict(), meta)
    return meta


DEMO_REFINER = "stepwise-demo-refiner-pixel.safetensors"
DEMO_POSE = "stepwise-demo-pose-flow.safetensors"
EXAMPLE_INPUT = "stepwise_example_corrupted.png"
EXAMPLE_POSE = "stepwise_example_pose.json"


def _cached(out: str) -> bool:
    import os

    if os.path.isfile(out):
        try:
            checkpoint.read_metadata(out)
            return True
        except checkpoint.CheckpointError:
            os.remove(out)
    return False


def demo_pose(directory: str) -> str:
    """A small pixel-space flow pose model (pose tokens only) trained on 32 px stick figures through train.py
    (cached)."""
    import os
    import subprocess
    import sys
    import tempfile

    from . import paths

    out = os.path.join(directory, DEMO_POSE)
    if _cached(out):
        return out
    train = os.path.join(paths.REPO, "train.py")
    with tempfile.TemporaryDirectory(prefix="stepwise-demo-figures-") as data:
        subprocess.run([sys.executable, train, "make-data", "--kind", "figures", "--n", "128", "--size", "32",
                        "--out", data, "--seed", "11"], check=True, capture_output=True)
        subprocess.run([sys.executable, train, "pose", "--data", data, "--out", out, "--arch", "compact",
                        "--space", "pixel", "--tokens", "fourier", "--parameterisation", "flow", "--steps", "300", "--batch", "8", "--lr", "1e-3",
                        "--ema", "0.99", "--resolution", "32", "--seed", "11"], check=True, capture_output=True)
    os.remove(out + ".train-state")
    return out


def example_pose(directory: str) -> str:
    """A stick-figure pose as an OpenPose JSON file (pixels on a 512 px canvas), as a pose estimator saves it."""
    import json
    import os

    import numpy as np
    import torch

    from stepwise.kernels.pose import coco_to_openpose
    from stepwise.models.world import figure_keypoints

    k = figure_keypoints(np.random.default_rng(5), 512)
    pose = coco_to_openpose(torch.cat([torch.from_numpy(k).float(), torch.ones(17, 1)], 1))
    value = {"version": 1.3, "people": [{"pose_keypoints_2d": [round(float(v), 2) for v in pose.flatten()]}],
             "canvas_width": 512, "canvas_height": 512}
    path = os.path.join(directory, EXAMPLE_POSE)
    with open(path, "w") as f:
        json.dump(value, f)
    return path


def demo_refiner(directory: str) -> str:
    """A small pixel-space refiner trained on [0, 500) of the shapes world through train.py (cached)."""
    import os
    import subprocess
    import sys
    import tempfile

    from . import paths

    out = os.path.join(directory, DEMO_REFINER)
    if _cached(out):
        return out
    train = os.path.join(paths.REPO, "train.py")
    with tempfile.TemporaryDirectory(prefix="stepwise-demo-data-") as data:
        subprocess.run([sys.executable, train, "make-data", "--kind", "shapes", "--n", "128", "--size", "32",
                        "--out", data, "--seed", "11"], check=True, capture_output=True)
        subprocess.run([sys.executable, train, "refiner", "--data", data, "--out", out, "--arch", "tiny",
                        "--space", "pixel", "--t-range", "0", "500", "--steps", "200", "--batch", "8",
                        "--lr", "1e-3", "--ema", "0.99", "--resolution", "32", "--seed", "11"],
                       check=True, capture_output=True)
    os.remove(out + ".train-state")
    return out


def example_input(directory: str, size: int = 64) -> str:
    """A shapes image with a synthetic artifact (from the world's generator), saved as a PNG for LoadImage."""
    import os

    import numpy as np
    from PIL import Image

    from stepwise.models.world import corrupt, shape_image

    image, _ = shape_image(size, 21, 0)
    corrupted, _, _ = corrupt(image, np.random.default_rng(4), "blotch", region=0.4)
    path = os.path.join(directory, EXAMPLE_INPUT)
    Image.fromarray(corrupted).save(path)
    return path
