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


@pytest.fixture(params=[torch.float32, torch.float16, torch.bfloat16], ids=lambda d: str(d).split(".")[-1])
def qkv(request):
    """Source and target queries, keys and values of one attention call (the Prompt-to-Prompt edit tests of the
    host-free and the in-process tier): ``([q_s, k_s, q_t, k_t, v_t], dtype)``, 2 rows × 3 heads × 16 queries,
    77 tokens, head width 8."""
    g = torch.Generator().manual_seed(0)
    shape = (2, 3, 16, 8)  # batch, heads, queries, dim
    q_s, q_t = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    k_s, k_t, v_t = (torch.randn(2, 3, 77, 8, generator=g) for _ in range(3))
    return [x.to(request.param) for x in (q_s, k_s, q_t, k_t, v_t)], request.param
