"""Resident memory of the streamed reader at 1,000 and at 50,000 images (issue "The trainer at scale", item 5).

For each size, webdataset tar shards of that many small PNG samples (``--size`` px, a caption each, 10,000 samples a
shard) are written, then a fresh process imports the trainer (the host and the pack, as ``train.py`` does), indexes
the shards (``trainers.data.TarSource``) and reads ``--batches`` batches of ``--batch`` through a ``Stream`` in epoch
order (workers 0: everything in the measured process). Reported: that process's peak resident set (VmHWM) and what
indexing and reading added to it; the ratio of the peaks, 50,000 over 1,000 (target at most 1.1: memory flat in the
size of the data set). The in-memory reader (``--order``'s default data path) holds every image as float32 instead:
3·R² values an image. Writes ``bench/results/reader_memory.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "dev"))
sys.path.insert(0, HERE)

import report  # noqa: E402

log = logging.getLogger("bench")
PER_SHARD = 10_000


def write_shards(folder: str, n: int, size: int) -> None:
    """``n`` samples (<key>.png, <key>.txt) in shards of PER_SHARD; eight distinct images repeat."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pngs = []
    for _ in range(8):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    os.makedirs(folder, exist_ok=True)
    for s in range(0, n, PER_SHARD):
        with tarfile.open(os.path.join(folder, f"shard-{s // PER_SHARD:05d}.tar"), "w") as tar:
            for i in range(s, min(n, s + PER_SHARD)):
                for ext, data in ((".png", pngs[i % 8]), (".txt", f"sample {i}".encode())):
                    info = tarfile.TarInfo(f"{i:08d}{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def measure(folder: str, size: int, batches: int, batch: int) -> dict:
    """The child's work: import the trainer, index the shards, read the batches; peak and added resident memory."""
    from stepwise_dev import host

    host.setup()
    from stepwise.trainers.data import EpochOrder, Stream, TarSource

    before = report.status_kb("VmRSS")
    source = TarSource(folder)
    indexed = report.status_kb("VmRSS")
    order = EpochOrder(len(source), 0, batch)
    stream = Stream(source, size, order, workers=0)
    stream.begin(0, batches, slice(None))
    for step in range(batches):
        stream.take(order.indices(step))
    return {"samples": len(source), "peak_mb": round(report.status_kb("VmHWM") / 1024, 1),
            "index_mb": round((indexed - before) / 1024, 2),
            "added_mb": round((report.status_kb("VmRSS") - before) / 1024, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 50000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "reader_memory.json"))
    args = parser.parse_args(argv)
    if args.child:
        sys.stdout.write(json.dumps(measure(args.child, args.size, args.batches, args.batch)) + "\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            folder = os.path.join(tmp, str(n))
            write_shards(folder, n, args.size)
            run = subprocess.run([sys.executable, __file__, "--child", folder, "--size", str(args.size), "--batches",
                                  str(args.batches), "--batch", str(args.batch)], capture_output=True, text=True,
                                 check=True)
            rows[n] = json.loads(run.stdout.strip().splitlines()[-1])
            log.info("%d samples: peak %.1f MB, index %.2f MB, indexing and reading added %.2f MB", n,
                     rows[n]["peak_mb"], rows[n]["index_mb"], rows[n]["added_mb"])
    small, large = args.sizes
    ratio = rows[large]["peak_mb"] / rows[small]["peak_mb"]
    result = {"image_size": args.size, "batches": args.batches, "batch": args.batch, str(small): rows[small],
              str(large): rows[large], "peak_ratio": round(ratio, 3), "meets_target": ratio <= 1.1,
              "in_memory_mb_at_large": round(large * 3 * args.size ** 2 * 4 / 2**20, 1)}
    report.write(args.out, {"benchmark": "reader_memory", "target": f"peak at {large} / peak at {small} <= 1.1",
                            "method": __doc__.split("\n\n")[1].replace("\n", " ")}, [result], log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
