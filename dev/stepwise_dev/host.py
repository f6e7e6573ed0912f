"""Make the real host and the pack importable in this process (tests, benchmarks, scripts).

The same setup as ``train.py``'s (which ships with the pack): the host first on ``sys.path``, its options parsed
by the host itself as under ``main.py`` (``--cpu`` without CUDA), and the repository imported as the package
``stepwise`` by path, as the host's loader imports it (relative imports inside). :func:`pack` imports the
package alone, without the host (the host-free test tier).
"""

from __future__ import annotations

import importlib.util
import os
import sys

from . import paths


def _train_cli():
    module = sys.modules.get("stepwise_train_cli")
    if module is None:
        spec = importlib.util.spec_from_file_location("stepwise_train_cli", os.path.join(paths.REPO, "train.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["stepwise_train_cli"] = module
        spec.loader.exec_module(module)
    return module


def setup():
    host = paths.host_dir()
    if not os.path.isfile(os.path.join(host, "comfy", "sd.py")):
        raise RuntimeError(f"no ComfyUI host at {host}: run `make host` (or set COMFYUI_PATH)")
    os.environ.setdefault("COMFYUI_PATH", host)
    if paths.DEV not in sys.path:
        sys.path.insert(0, paths.DEV)
    return _train_cli().import_host_and_pack()


def pack():
    """The repository as the package ``stepwise``, without the host."""
    return _train_cli().import_pack()
