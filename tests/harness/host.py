"""Make the real host and the pack importable in this process (tests, benchmarks, scripts).

The host goes first on ``sys.path``; without CUDA it runs as ``main.py --cpu`` does; the repository is
imported as the package ``stepwise`` by path, as the host's loader imports it (relative imports inside).
"""

from __future__ import annotations

import importlib.util
import os
import sys

from . import paths


def setup():
    host = paths.host_dir()
    if not os.path.isfile(os.path.join(host, "comfy", "sd.py")):
        raise RuntimeError(f"no ComfyUI host at {host}: run `make host` (or set COMFYUI_PATH)")
    for p in (host, os.path.dirname(paths.ZOO_NODE)):
        if p not in sys.path:
            sys.path.insert(0, p)
    import torch

    import comfy.cli_args

    if not torch.cuda.is_available():
        comfy.cli_args.args.cpu = True
    if "stepwise" not in sys.modules:
        spec = importlib.util.spec_from_file_location("stepwise", os.path.join(paths.REPO, "__init__.py"),
                                                      submodule_search_locations=[paths.REPO])
        module = importlib.util.module_from_spec(spec)
        sys.modules["stepwise"] = module
        spec.loader.exec_module(module)
    return sys.modules["stepwise"]
