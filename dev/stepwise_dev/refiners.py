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
DEMO_ESTIMATOR = "stepwise-demo-estimator.safetensors"
EXAMPLE_INPUT = "stepwise_example_corrupted.png"
EXAMPLE_POSE = "stepwise_example_pose.json"


def cached(out: str) -> bool:
    """Whether ``out`` holds a readable Stepwise checkpoint (an unreadable file there is removed)."""
    import os

    if os.path.isfile(out):
        try:
            checkpoint.read_metadata(out)
            return True
        except checkpoint.CheckpointError:
            os.remove(out)
    return False


# The demo models' recipes: (make-data arguments, train.py arguments). Tests train them with the default steps
# (cached in the zoo); ``make demo`` trains them afresh with more steps (scripts/demo.py).
DEMO_RECIPES = {
    "refiner": (["--kind", "shapes", "--n", "128", "--size", "32", "--seed", "11"],
                ["refiner", "--arch", "tiny", "--space", "pixel", "--t-range", "0", "500", "--batch", "8",
                 "--lr", "1e-3", "--ema", "0.99", "--resolution", "32", "--seed", "11"]),
    "pose": (["--kind", "figures", "--n", "128", "--size", "32", "--seed", "11"],
             ["pose", "--arch", "compact", "--space", "pixel", "--tokens", "fourier", "--parameterisation", "flow",
              "--batch", "8", "--lr", "1e-3", "--ema", "0.99", "--resolution", "32", "--seed", "11"]),
    # reads the demo pose model's x0 estimates (null pose) of stick figures with synthetic artifacts
    "estimator": (["--kind", "figures", "--n", "128", "--size", "32", "--seed", "12"],
                  ["estimator", "--arch", "tiny", "--batch", "8", "--lr", "2e-3", "--ema", "0.99", "--resolution",
                   "32", "--eval-steps", "4", "--seed", "12"]),
}
DEMO_STEPS = {"refiner": 200, "pose": 300, "estimator": 60}


def train_demo(kind: str, out: str, steps: int | None = None, base: str | None = None, cache: bool = True) -> str:
    """Train one demo model through train.py (make-data, then the trainer) into ``out``; with ``cache`` a readable
    checkpoint already there is kept."""
    import os
    import subprocess
    import sys
    import tempfile

    from stepwise.trainers.loop import state_path

    from . import paths

    if cache and cached(out):
        return out
    data_args, train_args = DEMO_RECIPES[kind]
    train = os.path.join(paths.REPO, "train.py")
    with tempfile.TemporaryDirectory(prefix=f"stepwise-demo-{kind}-") as data:
        subprocess.run([sys.executable, train, "make-data", *data_args, "--out", data], check=True,
                       capture_output=True)
        cmd = [sys.executable, train, *train_args, "--data", data, "--out", out,
               "--steps", str(steps or DEMO_STEPS[kind])] + (["--base", base] if base else [])
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"train.py {kind} failed:\n{done.stderr[-3000:]}")
    state = state_path(out)  # the trainer's resume state: not needed by a finished demo model
    if os.path.exists(state):
        os.remove(state)
    return out


def demo_pose(directory: str) -> str:
    """A small pixel-space flow pose model (pose tokens only) trained on 32 px stick figures (cached)."""
    import os

    return train_demo("pose", os.path.join(directory, DEMO_POSE))


def demo_estimator(directory: str) -> str:
    """A small artifact estimator for the demo pose model (cached)."""
    import os

    return train_demo("estimator", os.path.join(directory, DEMO_ESTIMATOR), base=demo_pose(directory))


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
    """A small pixel-space refiner trained on [0, 500) of the shapes world (cached)."""
    import os

    return train_demo("refiner", os.path.join(directory, DEMO_REFINER))


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
