"""The machine-readable report every benchmark writes: its own fields, the machine's, and the results."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import platform
import re


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


def status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+)", f.read(), re.M).group(1))


def reset_peak() -> bool:
    """Give freed heap pages back to the OS (else the allocator's cache hides a run's allocations), then reset
    the peak resident set to the current one."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """The peak memory of the work between construction and :meth:`megabytes`: on CUDA the peak of PyTorch's allocated
    memory above what was allocated before, on the CPU the process's peak resident set (VmHWM, reset by
    :func:`reset_peak`) above its resident set before."""

    def __init__(self, cuda: bool):
        import torch

        self.cuda = cuda
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            reset_peak()
            self.before = status_kb("VmRSS") * 1024

    def megabytes(self) -> float:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - self.before) / 2**20
        return (status_kb("VmHWM") * 1024 - self.before) / 2**20
