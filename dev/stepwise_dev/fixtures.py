"""Pytest fixtures of the tiers that need the host (``tests/host``, ``tests/server``): the zoo, the tiny models
loaded in-process, and one real server per session. Their conftests call :func:`setup_host` and import these.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from . import host, paths
from .server import example_assets, stepwise_server


def setup_host() -> None:
    """The host imported in this process; a run without it stops at once with the reason (exit code 4)."""
    try:
        host.setup()
    except RuntimeError as e:
        pytest.exit(str(e), returncode=4)


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
    import comfy.sd

    from stepwise_zoo.tiny import register

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
    srv = stepwise_server(str(tmp_path_factory.mktemp("comfy-base")), checkpoints, **example_assets(zoo))
    srv.start()
    yield srv
    srv.stop()
