"""Fixtures shared by Stepwise's three test tiers, each a folder:

- ``tests/unit``: no host. Kernels and the pure parts of ``models``; ``make check`` runs this tier alone, with
  only the virtual environment (ComfyUI need not exist).
- ``tests/host``: the real ComfyUI imported in-process with the tiny zoo (``tests/host/conftest.py`` sets it up).
- ``tests/server``: a real ``main.py --cpu`` server and the host's web UI in headless Chromium.

Nothing of ComfyUI is mocked. The development package ``dev/stepwise_dev`` (on ``sys.path`` through the pytest
``pythonpath`` setting) holds the harness the tests share with ``scripts/``, ``bench/`` and ``eval/``.
"""

from __future__ import annotations

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)
