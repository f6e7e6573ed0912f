"""Benchmark VisualAnagram and HybridNoise against a plain KSampler doing the same rows (``make bench``).

For each case: model calls per sampling step (must be 1: all views/bands and negatives in one batched call)
and the wall-time ratio against the host's plain sampler on the same number of rows per step:

- anagram with N views, CFG: 2N rows; plain = a batch of N latents with one prompt (2N rows);
- hybrid with K bands, CFG: K + 1 rows; plain = one latent with the K prompts combined (ConditioningCombine,
  K + 1 rows).

Same steps, sampler and scheduler; the zoo's tiny models on the CPU at 32×32 latents (256 px). Timings are
medians of interleaved repeats. Writes ``bench/results/multiview.json``; target ratio <= 1.10.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "dev"))
sys.path.insert(0, HERE)

import report  # noqa: E402

log = logging.getLogger("bench")
TARGET = 1.10


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="VisualAnagram/HybridNoise overhead against a plain sampler")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--latent", type=int, default=32, help="latent side (32 = 256 px images)")
    parser.add_argument("--models", choices=["tiny", "full"], default="tiny",
                        help="tiny: the tiny zoo's SD1.5 and SDXL shapes; full: the full-size SD1.5 architecture "
                             "(make bench-full)")
    parser.add_argument("--cases", nargs="+", help="only these cases (e.g. anagram_2_views hybrid_2_bands)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    args.out = args.out or os.path.join(HERE, "results",
                                        "multiview.json" if args.models == "tiny" else "multiview_full.json")
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)  # the host's INFO lines (one per model load) stay quiet

    from stepwise_dev import host

    host.setup()  # the host on sys.path (CPU as --cpu without CUDA), the pack importable as `stepwise`
    import comfy.sample
    import comfy.sd
    import nodes
    import torch

    from stepwise.nodes.anagram import VisualAnagram
    from stepwise.nodes.hybrid import HybridNoise
    from stepwise_dev import paths
    from stepwise_dev.inprocess import counting, encode, noise_for
    from stepwise_zoo.tiny import register

    register()
    zoo = paths.zoo_dir()
    ckpts = (paths.TINY_SD15, paths.TINY_SDXL) if args.models == "tiny" else (paths.FULL_SD15,)
    if not all(os.path.isfile(os.path.join(zoo, f)) for f in ckpts):
        raise SystemExit(f"{', '.join(ckpts)} missing in {zoo}: run `make zoo-tiny` (tiny) or `make zoo` (full)")
    side = args.latent

    def run(model, pos, neg, batch):
        latent = torch.zeros(batch, 4, side, side)
        noise = noise_for(latent.shape, 0)
        start = time.perf_counter()
        comfy.sample.sample(model, noise, args.steps, 7.0, "euler", "normal", pos, neg, latent, disable_pbar=True,
                            seed=0)
        if torch.cuda.is_available():  # the host samples on CUDA when it has it: wait for the device
            torch.cuda.synchronize()
        return time.perf_counter() - start

    results = []
    for ckpt in ckpts:
        model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(os.path.join(zoo, ckpt))
        texts = ["a cat", "a dog", "a ship", "a house"]
        c = [encode(clip, t) for t in texts]
        neg = encode(clip, "")
        views = ["identity", "flip_ud", "rot90", "flip_lr"]
        cases = []
        for n in (2, 3, 4):
            kw = {}
            for i in range(n):
                kw[f"positive_{i + 1}"], kw[f"view_{i + 1}"] = c[i], views[i]
            m, pos = VisualAnagram.execute(model=model, **kw).result
            cases.append((f"anagram_{n}_views", m, pos, 1, model, c[0], n, 2 * n))
        for k, split in ((2, "low_high"), (3, "low_mid_high")):
            kw = {"positive_a": c[0], "positive_b": c[1], "split": split}
            if k == 3:
                kw["positive_c"] = c[2]
            m, pos = HybridNoise.execute(model=model, **kw).result
            combined = c[0]
            for extra in c[1:k]:
                combined = nodes.ConditioningCombine().combine(combined, extra)[0]
            cases.append((f"hybrid_{k}_bands", m, pos, 1, model, combined, 1, k + 1))

        for name, m, pos, batch, plain_model, plain_pos, plain_batch, rows in cases:
            if args.cases and name not in args.cases:
                continue
            counted, calls = counting(m)
            run(counted, pos, neg, batch)
            per_step = len(calls) / args.steps
            ours, plain = [], []
            run(m, pos, neg, batch), run(plain_model, plain_pos, neg, plain_batch)  # warm up
            for _ in range(args.repeats):
                ours.append(run(m, pos, neg, batch))
                plain.append(run(plain_model, plain_pos, neg, plain_batch))
            ratio = statistics.median(ours) / statistics.median(plain)
            row = {"model": ckpt, "case": name, "rows_per_step": rows, "model_calls_per_step": per_step,
                   "rows_per_call": sorted(set(calls)), "seconds_median": round(statistics.median(ours), 4),
                   "plain_seconds_median": round(statistics.median(plain), 4), "wall_ratio": round(ratio, 3),
                   "meets_target": per_step == 1 and ratio <= TARGET}
            results.append(row)
            log.info("%-28s %-16s calls/step %.2f rows %s ratio %.3f", ckpt, name, per_step, row["rows_per_call"], ratio)

    report.write(args.out, {
        "benchmark": "multiview", "target_wall_ratio": TARGET, "steps": args.steps, "repeats": args.repeats,
        "latent": [side, side], "sampler": "euler", "cfg": 7.0, "device": f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu",
    }, results, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
