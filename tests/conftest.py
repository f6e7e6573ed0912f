"""Fixtures for Stepwise's tests: the real ComfyUI host, the zoo, the pack, and a real server.

Tests run inside the host's virtual environment (``make test``). Nothing of ComfyUI is mocked: in-process
tests import the host's modules, and server tests talk HTTP to ``main.py --cpu``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from harness import paths
from harness.server import stepwise_server

HOST = paths.host_dir()
if not os.path.isfile(os.path.join(HOST, "comfy", "sd.py")):
    pytest.exit(f"no ComfyUI host at {HOST}: run `make host` (or set COMFYUI_PATH)", returncode=4)
for p in (HOST, os.path.dirname(paths.ZOO_NODE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import comfy.cli_args  # noqa: E402  (host on sys.path first)

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    comfy.cli_args.args.cpu = True  # the in-process host runs as `main.py --cpu` does


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)


def _load_pack():
    """Import the repository as the package ``stepwise`` (as the host does, by path, with relative imports)."""
    if "stepwise" in sys.modules:
        return sys.modules["stepwise"]
    spec = importlib.util.spec_from_file_location("stepwise", os.path.join(paths.REPO, "__init__.py"),
                                                  submodule_search_locations=[paths.REPO])
    module = importlib.util.module_from_spec(spec)
    sys.modules["stepwise"] = module
    spec.loader.exec_module(module)
    return module


_load_pack()


def _ensure_zoo(full: bool) -> str:
    zoo = paths.zoo_dir()
    wanted = list(paths.TINY) + ([paths.FULL_SD15] if full else [])
    if not all(os.path.isfile(os.path.join(zoo, f)) for f in wanted):
        cmd = [sys.executable, paths.ZOO_BUILDER, "--out", zoo] + (["--full"] if full else [])
        subprocess.run(cmd, check=True, cwd=paths.REPO)
    return zoo


@pytest.fixture(scope="session")
def zoo() -> str:
    return _ensure_zoo(full=False)


@pytest.fixture(scope="session")
def full_zoo() -> str:
    return _ensure_zoo(full=True)


@pytest.fixture(scope="session")
def tiny_models(zoo):
    """The tiny checkpoints loaded in-process through the host's own loader (CPU, fp32)."""
    from stepwise_zoo.tiny import register
    import comfy.sd

    register()
    out = {}
    for name in paths.TINY:
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(os.path.join(zoo, name))
        out[name] = (model, clip, vae)
    return out


@pytest.fixture(scope="session")
def server(tmp_path_factory, zoo):
    """One real ComfyUI server for the session, with the pack, the zoo fixture node and the zoo checkpoints.

    The full-size checkpoint is linked in when it has been built (``make test`` builds it; the slow test
    builds it otherwise).
    """
    zoo_files = [*paths.TINY, paths.FULL_SD15]
    checkpoints = {f: os.path.join(zoo, f) for f in zoo_files if os.path.isfile(os.path.join(zoo, f))}
    srv = stepwise_server(str(tmp_path_factory.mktemp("comfy-base")), checkpoints)
    srv.start()
    yield srv
    srv.stop()
