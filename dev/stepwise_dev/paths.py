"""Where the development tools find the host, its Python, the zoo and the repository."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEV = os.path.join(REPO, "dev")
ZOO_NODE = os.path.join(DEV, "stepwise_zoo")
ZOO_BUILDER = os.path.join(DEV, "build_zoo.py")
WORKFLOWS_API = os.path.join(DEV, "workflows")
EXAMPLE_WORKFLOWS = os.path.join(REPO, "example_workflows")
WORLD_MODELS = os.path.join(DEV, "world_models")  # the shipped world text-to-image models (make world-models --ship)

TINY_SD15 = "stepwise-tiny-sd15.safetensors"
TINY_SDXL = "stepwise-tiny-sdxl.safetensors"
TINY_PIXEL = "stepwise-tiny-sd15_pixel.safetensors"
TINY = (TINY_SD15, TINY_SDXL, TINY_PIXEL)
FULL_SD15 = "stepwise-sd15-fullsize-random.safetensors"
WORLD = "stepwise-world-s0.safetensors"  # the world model the example workflows load


def world_models() -> dict[str, str]:
    """The shipped world text-to-image checkpoints by file name; the example workflows need :data:`WORLD`."""
    found = {f: os.path.join(WORLD_MODELS, f) for f in sorted(os.listdir(WORLD_MODELS)) if f.endswith(".safetensors")} \
        if os.path.isdir(WORLD_MODELS) else {}
    if WORLD not in found:
        raise FileNotFoundError(f"{WORLD} is not in {WORLD_MODELS}: the example workflows need the shipped world model "
                                "(make world-models WORLD_ARGS=--ship writes it)")
    return found


def host_dir() -> str:
    return os.environ.get("COMFYUI_PATH") or os.path.expanduser("~/.cache/stepwise/ComfyUI")


def zoo_dir() -> str:
    return os.environ.get("STEPWISE_ZOO") or os.path.expanduser("~/.cache/stepwise/zoo")


def host_python() -> str:
    """The interpreter that runs the host: this one (the Makefile runs pytest inside the host's venv)."""
    return sys.executable
