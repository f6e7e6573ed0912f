"""Quality experiment: does a refiner trained only on late timesteps refine better per unit of training?

The seed claims that training on the late range (t < 500 here) refines artifact images better than spending
the same training on the whole schedule. On a synthetic world (``--world``: ``shapes``, one shape per image, or
``scenes``, the captioned world of 1 to 3 objects the world text-to-image model is trained on), for each training
seed of ``--train-seeds``:

1. train two identical tiny pixel-space networks for the same steps, batch and seed: ``full`` on t ∈ [0, 1000),
   ``late`` on t ∈ [0, 500) (``train.py refiner``);
2. corrupt held-out images with the synthetic artifact generator (each artifact kind), exact masks known;
3. refine each corrupted image with LateStepRefine at several ``start_t`` using each network alone;
4. report PSNR to the clean ground truth, over the whole image and inside the artifact mask, before and after,
   refining the whole image and, as ArtifactEstimator will drive it, only inside the (here exact) artifact mask.

Held-out test images come from another world seed than the training images. With several training seeds the
report adds the mean and spread (max - min) over seeds of each cell. Writes ``eval/results/refiner_quality.json``
(``refiner_quality_world.json`` for scenes); ``make eval`` runs it (minutes on a CPU). Whatever the outcome, the
numbers are reported as measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
from common import HERE, REPO, log, over_seeds, start_eval, write_report


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of images in [0, 1]; inside ``mask`` (H×W) when given."""
    err = (a - b) ** 2
    if mask is not None:
        err = err[mask.astype(bool)]
    mse = float(err.mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="late-range vs full-range refiner quality on the synthetic world")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=512)
    parser.add_argument("--test-images", type=int, default=40)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--start-t", type=int, nargs="+", default=[200, 350, 499])
    parser.add_argument("--sampling-steps", type=int, default=12)
    parser.add_argument("--world", choices=["shapes", "scenes"], default="shapes")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[7], help="one refiner pair per seed")
    parser.add_argument("--work", default=os.path.join(REPO, "eval", "work"))
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    args.out = args.out or os.path.join(HERE, "results", "refiner_quality.json" if args.world == "shapes"
                                        else "refiner_quality_world.json")
    start_eval(args.out)
    import torch

    from stepwise.models import checkpoint, diffusion, scenes
    from stepwise.models.world import ARTIFACTS, corrupt, make_data, shape_image
    from stepwise.nodes.refine import LateStepRefine

    os.makedirs(args.work, exist_ok=True)
    world = "" if args.world == "shapes" else "_scenes"
    data = os.path.join(args.work, "train" + world)
    if not os.path.isdir(data) or len([f for f in os.listdir(data) if f.endswith(".txt")]) < args.train_images:
        if args.world == "shapes":
            make_data("shapes", args.train_images, args.resolution, data, seed=1)
        else:
            scenes.write_dataset(data, args.train_images, args.resolution, seed=1)
    train = os.path.join(REPO, "train.py")
    models, timings = {}, {}
    for seed in args.train_seeds:
        for name, (lo, hi) in {"full": (0, 1000), "late": (0, 500)}.items():
            out = os.path.join(args.work, f"refiner{world}_{name}_{args.steps}_s{seed}.safetensors")
            if not os.path.isfile(out):
                start = time.perf_counter()
                subprocess.run([sys.executable, train, "refiner", "--data", data, "--out", out, "--arch", "tiny",
                                "--space", "pixel", "--t-range", str(lo), str(hi), "--steps", str(args.steps),
                                "--batch", str(args.batch), "--lr", "1e-3", "--ema", "0.995",
                                "--resolution", str(args.resolution), "--seed", str(seed)],
                               check=True, capture_output=True)
                timings[f"{name}_s{seed}"] = round(time.perf_counter() - start, 1)
            tensors, meta = checkpoint.load(out)
            models[(seed, name)] = (diffusion.model_patcher(tensors, meta, name), meta)
            log.info("seed %d %s: trained on [%d, %d), final loss %.4f", seed, name, lo, hi,
                     meta["training"]["final_loss"])

    cond = [[torch.zeros(1, 1, 8), {}]]
    rng = np.random.default_rng(2024)
    cases = []
    for i in range(args.test_images):
        if args.world == "shapes":  # held out: another world seed than the training set
            clean, _ = shape_image(args.resolution, seed=99, index=i)
        else:
            clean, _ = scenes.render(scenes.sample_scene(args.resolution, seed=99, index=i))
        kind = ARTIFACTS[i % len(ARTIFACTS)]
        for _ in range(50):  # an artifact on a flat region may change nothing: draw until it shows
            bad, mask, _ = corrupt(clean, rng, kind, region=0.4)
            if mask.mean() >= 0.02:
                break
        cases.append((clean.astype(np.float32) / 255, bad.astype(np.float32) / 255, mask, kind))

    rows = []
    for start_t, ((seed, name), (model, _)), masked in [(t, m, k) for t in args.start_t for m in models.items()
                                                          for k in (False, True)]:
        whole, inside, before_whole, before_inside = [], [], [], []
        by_kind: dict[str, list[float]] = {}
        for j, (clean, bad, mask, kind) in enumerate(cases):
            latent = {"samples": torch.from_numpy(bad * 2 - 1).permute(2, 0, 1).unsqueeze(0)}
            out = LateStepRefine.execute(model=None, refiner=model, positive=cond, negative=cond, latent=latent,
                                         seed=j, steps=args.sampling_steps, cfg=1.0, sampler_name="euler",
                                         scheduler="karras", start_t=start_t, split_t=0,
                                         mask=torch.from_numpy(mask) if masked else None).result[0]["samples"]
            refined = ((out[0].permute(1, 2, 0).clamp(-1, 1).numpy() + 1) / 2)
            whole.append(psnr(refined, clean))
            inside.append(psnr(refined, clean, mask))
            before_whole.append(psnr(bad, clean))
            before_inside.append(psnr(bad, clean, mask))
            by_kind.setdefault(kind, []).append(inside[-1] - before_inside[-1])
        rows.append({"model": name, "train_seed": seed, "start_t": start_t, "mask": "artifact mask" if masked else "none",
                     "psnr_before": round(float(np.mean(before_whole)), 2),
                     "psnr_after": round(float(np.mean(whole)), 2),
                     "psnr_mask_before": round(float(np.mean(before_inside)), 2),
                     "psnr_mask_after": round(float(np.mean(inside)), 2),
                     "mask_gain_by_artifact": {k: round(float(np.mean(v)), 2) for k, v in by_kind.items()}})
        log.info("start_t %d seed %d %-4s %-13s PSNR %.2f -> %.2f dB, in mask %.2f -> %.2f dB", start_t, seed, name,
                 rows[-1]["mask"],
                 rows[-1]["psnr_before"], rows[-1]["psnr_after"], rows[-1]["psnr_mask_before"],
                 rows[-1]["psnr_mask_after"])

    summary = over_seeds(rows, ("model", "start_t", "mask"),
                         ("psnr_before", "psnr_after", "psnr_mask_before", "psnr_mask_after"), digits=2)
    report = {"experiment": "refiner_quality", "world": args.world, "resolution": args.resolution,
              "train_images": args.train_images, "test_images": args.test_images, "train_steps": args.steps,
              "train_seeds": args.train_seeds, "batch": args.batch, "arch": "tiny", "sampler": "euler/karras",
              "sampling_steps": args.sampling_steps, "train_seconds": timings,
              "final_loss": {f"{name}_s{seed}": m[1]["training"]["final_loss"] for (seed, name), m in models.items()},
              "results": rows, "summary": summary}
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
