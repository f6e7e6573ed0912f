"""Training throughput of one process against several under torchrun (issue "The trainer at scale", item 5).

``train.py refiner`` from scratch (``--arch``, pixel space, ``--resolution`` px, global batch ``--batch``) on a
synthetic shapes set, as one plain process and as ``torchrun --nproc-per-node N`` (gloo on the CPU, each process
``--threads`` threads; the single process gets the same per-process threads, so the ratio is what adding processes
buys, not what adding threads buys). Start-up (host import, data loading, process group) is removed by timing each
setting at two run lengths and dividing the extra images by the extra seconds: images/s = (S2 − S1)·B / (T2 − T1).
The settings are interleaved over ``--repeats`` rounds and the median taken. Writes
``bench/results/trainer_processes.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import report  # noqa: E402

log = logging.getLogger("bench")
TRAIN_PY = os.path.join(REPO, "train.py")


def timed_run(processes: int, data: str, out: str, steps: int, args) -> float:
    """Wall seconds of one ``train.py refiner`` run of ``steps`` steps with ``processes`` processes."""
    launcher = [sys.executable] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    cmd = launcher + [TRAIN_PY, "refiner", "--data", data, "--out", out, "--arch", args.arch, "--resolution",
                      str(args.resolution), "--batch", str(args.batch), "--steps", str(steps), "--lr", "1e-4",
                      "--ema", "0", "--device", args.device]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="tiny", choices=["tiny"], help="the from-scratch refiner's network")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="global batch (split across the processes)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads of each process (OMP_NUM_THREADS)")
    parser.add_argument("--steps", type=int, nargs=2, default=[5, 25], metavar=("S1", "S2"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "trainer_processes.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    s1, s2 = args.steps
    if not 0 < s1 < s2:
        raise SystemExit(f"--steps {s1} {s2}: need 0 < S1 < S2")
    settings = (1, args.processes)
    rates: dict[int, list[float]] = {n: [] for n in settings}
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "shapes")
        subprocess.run([sys.executable, TRAIN_PY, "make-data", "--kind", "shapes", "--n", "256", "--size",
                        str(args.resolution), "--out", data, "--seed", "0"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        for _ in range(args.repeats):
            for n in settings:
                short = timed_run(n, data, os.path.join(tmp, f"p{n}a.safetensors"), s1, args)
                long = timed_run(n, data, os.path.join(tmp, f"p{n}b.safetensors"), s2, args)
                if long <= short:  # start-up noise larger than the extra steps: no rate from this round
                    log.warning("%d process(es): %d steps took no longer than %d; use more steps", n, s2, s1)
                    continue
                rates[n].append((s2 - s1) * args.batch / (long - short))
                log.info("%d process(es): %.1f images/s", n, rates[n][-1])
    if not all(rates[n] for n in settings):
        raise SystemExit(f"--steps {s1} {s2}: no round gave a positive time difference; use more steps")
    one, many = (statistics.median(rates[n]) for n in settings)
    result = {"arch": args.arch, "resolution": args.resolution, "batch": args.batch, "threads": args.threads,
              "processes": args.processes, "images_per_s_1": round(one, 2), f"images_per_s_{args.processes}":
              round(many, 2), "speedup": round(many / one, 3), "meets_target": many / one >= 0.75 * args.processes,
              "runs": {str(n): [round(r, 2) for r in rates[n]]
                                                                       for n in settings}}
    report.write(args.out, {"benchmark": "trainer_processes", "device": args.device,
                            "target": "speedup at least 0.75 x the number of processes (ideal: that number)",
                            "method": __doc__.split("\n\n")[1].replace("\n", " ")},
                 [result], log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
