"""The machine-readable report every benchmark writes: its own fields, the machine's, and the results."""

from __future__ import annotations

import json
import logging
import os
import platform


def write(path: str, fields: dict, results: list[dict], log: logging.Logger) -> dict:
    """Write ``fields`` + machine facts + ``results`` (rows with ``meets_target``) as JSON to ``path``."""
    import torch

    report = {**fields, "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "machine": platform.machine(), "results": results,
              "all_meet_target": all(r["meets_target"] for r in results)}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    log.info("wrote %s (all meet target: %s)", path, report["all_meet_target"])
    return report
