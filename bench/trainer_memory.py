"""Peak memory of a training step with and without gradient checkpointing (issue "The trainer at scale", item 5).

One training step (forward, backward, AdamW) of the ``small`` from-scratch UNet (with a 64-wide context, as a
pose model has) at ``--resolution`` px and ``--batch`` images, each setting in a fresh process so that the peaks do
not mix: on the CPU the process's peak resident set (VmHWM) above its resident set before the step, on CUDA the
peak of PyTorch's allocated memory above what was allocated before. The median of ``--repeats`` steps (the peak is
reset before each; the first step, which allocates AdamW's state, is not counted); the ratio checkpointed / plain
(``trainers.loop.checkpoint_blocks``). Writes ``bench/results/trainer_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "dev"))
sys.path.insert(0, HERE)

import report  # noqa: E402

log = logging.getLogger("bench")


def one_setting(checkpointing: bool, resolution: int, batch: int, repeats: int) -> dict:
    """Peak memory and seconds of a training step in this process (the child's work)."""
    from stepwise_dev import host

    host.setup()
    import torch

    from stepwise.models import diffusion
    from stepwise.models.init import seeded_init_
    from stepwise.trainers.loop import checkpoint_blocks

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model = diffusion.new_model(diffusion.unet_config("small", 3, context_dim=64), "flow", "pixel", device=device)
    seeded_init_(model.diffusion_model, 0)
    if checkpointing:
        checkpoint_blocks(model.diffusion_model)
    opt = torch.optim.AdamW(model.diffusion_model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, resolution, resolution, device=device)
    ctx = torch.randn(batch, 17, 64, device=device)
    peaks, seconds = [], []
    for i in range(repeats + 1):
        opt.zero_grad(set_to_none=True)
        peak = report.PeakMemory(cuda)
        start = time.perf_counter()
        model.apply_model(x, torch.rand(batch, device=device), c_crossattn=ctx).square().mean().backward()
        opt.step()
        mb = peak.megabytes()
        if i:
            peaks.append(mb)
            seconds.append(time.perf_counter() - start)
    return {"peak_mb": round(statistics.median(peaks), 1), "seconds": round(statistics.median(seconds), 3),
            "device": f"cuda: {torch.cuda.get_device_name(0)}" if cuda else "cpu"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["plain", "checkpointed"], help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "trainer_memory.json"))
    args = parser.parse_args(argv)
    if args.child:
        sys.stdout.write(json.dumps(one_setting(args.child == "checkpointed", args.resolution, args.batch,
                                                args.repeats)) + "\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    rows = {}
    for name in ("plain", "checkpointed"):
        run = subprocess.run([sys.executable, __file__, "--child", name, "--resolution", str(args.resolution),
                              "--batch", str(args.batch), "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True)
        rows[name] = json.loads(run.stdout.strip().splitlines()[-1])
        log.info("%s: peak %.1f MB, %.3f s a step", name, rows[name]["peak_mb"], rows[name]["seconds"])
    ratio = rows["checkpointed"]["peak_mb"] / max(rows["plain"]["peak_mb"], 1e-6)
    result = {"arch": "small", "resolution": args.resolution, "batch": args.batch, "plain": rows["plain"],
              "checkpointed": rows["checkpointed"], "memory_ratio": round(ratio, 3),
              "time_ratio": round(rows["checkpointed"]["seconds"] / rows["plain"]["seconds"], 3),
              "meets_target": ratio < 1.0}
    report.write(args.out, {"benchmark": "trainer_memory", "target": "checkpointed peak below plain",
                            "device": rows["plain"]["device"], "method": __doc__.split("\n\n")[1].replace("\n", " ")},
                 [result], log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
