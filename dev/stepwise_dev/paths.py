"""Where the development tools find the host, its Python, the zoo and the repository."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEV = os.path.join(REPO, "dev")
ZOO_NODE = os.path.join(DEV, "stepwise_zoo")
ZOO_BUILDER = os.path.join(DEV, "build_zoo.py")
WORKFLOWS_API = os.path.join(DEV, "workflows")
EXAMPLE_WORKFLOWS = os.path.join(REPO, "example_workflows")

TINY_SD15 = "stepwise-tiny-sd15.safetensors"
TINY_SDXL = "stepwise-tiny-sdxl.safetensors"
TINY_PIXEL = "stepwise-tiny-sd15_pixel.safetensors"
TINY = (TINY_SD15, TINY_SDXL, TINY_PIXEL)
FULL_SD15 = "stepwise-sd15-fullsize-random.safetensors"


def host_dir() -> str:
    return os.environ.get("COMFYUI_PATH") or os.path.expanduser("~/.cache/stepwise/ComfyUI")


def zoo_dir() -> str:
    return os.environ.get("STEPWISE_ZOO") or os.path.expanduser("~/.cache/stepwise/zoo")


def host_python() -> str:
    """The interpreter that runs the host: this one (the Makefile runs pytest inside the host's venv)."""
    return sys.executable
