"""Quality experiment: how well are artifacts seen from an early step's x0 estimate?

On the synthetic shapes world with a pixel-space diffusion model trained on the whole schedule (the ``full``
network of ``refiner_quality.py``, trained here when missing):

1. train the estimator (``train.py estimator``) on that model's x0 estimates of synthetic artifacts;
2. take held-out pairs (a clean image and its corrupted copy, every artifact kind, exact masks) and, at probe
   fractions 0.25, 0.5, 0.75 of a 20-step karras schedule and at the end (σ = 0), form the x0 estimate a
   sampler passing near the image would hold: the image noised to σ and denoised once by the model;
3. score every estimate with ``trained`` (the estimator), ``training-free discrepancy`` (re-noise x0 to
   ``probe_sigma`` and denoise once; per-pixel change) and ``training-free instability`` (x0 over the three
   Euler steps leading to the probe), next to a constant predictor (AUROC 0.5);
4. report image AUROC (corrupted vs clean) and pixel AUROC (artifact pixels of the corrupted images);
5. early rejection, simulated on the same pairs: groups of K candidates (half corrupted) judged at the probe,
   the best M kept; the share of corrupted outcomes removed against keeping M at random, and the model calls
   ``K·k + M·(N − k)`` against ``K·N``.

Writes ``eval/results/artifact_quality.json``; ``make eval`` runs it. Numbers are reported as measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
from common import HERE, REPO, log, start_eval, write_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="artifact estimation from early x0 estimates (shapes world)")
    parser.add_argument("--steps", type=int, default=1500, help="estimator training steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--sampling-steps", type=int, default=20)
    parser.add_argument("--probe-sigma", type=float, default=1.0)
    parser.add_argument("--group", type=int, default=4, help="early rejection: K candidates per group")
    parser.add_argument("--keep", type=int, default=1, help="early rejection: M kept per group")
    parser.add_argument("--work", default=os.path.join(REPO, "eval", "work"))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "artifact_quality.json"))
    args = parser.parse_args(argv)
    start_eval(args.out)
    import torch

    from stepwise.kernels import artifact
    from stepwise.models import checkpoint
    from stepwise.models.world import make_data, shape_image
    from stepwise.nodes.artifact import load_estimator
    from stepwise.trainers.base import DiffusionBase
    from stepwise.trainers.estimator import corrupted_pairs, mask_to_grid, to_tensor

    os.makedirs(args.work, exist_ok=True)
    data = os.path.join(args.work, "train")
    if not os.path.isdir(data) or len(os.listdir(data)) < 2 * args.train_images:
        make_data("shapes", args.train_images, args.resolution, data, seed=1)
    train = os.path.join(REPO, "train.py")
    base_path = os.path.join(args.work, "refiner_full_1500.safetensors")
    timings = {}
    if not os.path.isfile(base_path):  # the full-schedule network of refiner_quality.py
        start = time.perf_counter()
        subprocess.run([sys.executable, train, "refiner", "--data", data, "--out", base_path, "--arch", "tiny",
                        "--space", "pixel", "--t-range", "0", "1000", "--steps", "1500", "--batch", "16", "--lr", "1e-3",
                        "--ema", "0.995", "--resolution", str(args.resolution), "--seed", "7"], check=True,
                       capture_output=True)
        timings["base"] = round(time.perf_counter() - start, 1)
    est_path = os.path.join(args.work, f"estimator_{args.steps}.safetensors")
    if not os.path.isfile(est_path):
        start = time.perf_counter()
        with open(est_path + ".log", "w") as logf:
            subprocess.run([sys.executable, train, "estimator", "--data", data, "--base", base_path, "--out", est_path,
                            "--arch", "small", "--steps", str(args.steps), "--batch", str(args.batch), "--lr", "1e-3",
                            "--ema", "0.99", "--resolution", str(args.resolution), "--seed", "7"], check=True,
                           stdout=logf, stderr=logf)
        timings["estimator"] = round(time.perf_counter() - start, 1)
    estimator = load_estimator(est_path, os.path.basename(est_path))
    train_meta = checkpoint.read_metadata(est_path)

    device = torch.device("cpu")
    base = DiffusionBase(base_path, None, device)
    ms = base.model.model_sampling
    rng = np.random.default_rng(2024)
    clean = np.stack([shape_image(args.resolution, 99, i)[0] for i in range(args.pairs)])  # held out: another seed
    bad, masks = corrupted_pairs(clean, rng)
    x = base.encode(to_tensor(np.concatenate([clean, bad])))
    labels = torch.cat([torch.zeros(len(clean)), torch.ones(len(bad))])
    pixel_masks = torch.from_numpy(masks) > 0.5
    gen = torch.Generator().manual_seed(7)
    noise = torch.randn((len(clean), *x.shape[1:]), generator=gen).repeat(2, 1, 1, 1)
    renoise = torch.randn((len(clean), *x.shape[1:]), generator=gen).repeat(2, 1, 1, 1)
    import comfy.samplers

    schedule = comfy.samplers.calculate_sigmas(ms, "karras", args.sampling_steps).cpu()

    def measures(probe: float):
        step = int(round(probe * args.sampling_steps))
        sigma = float(schedule[step])
        s = torch.full((len(x),), sigma)
        x0 = base.x0(x, s, noise)
        out = {}
        heat, score = estimator(x0, sigma)
        out["trained"] = (heat, score)
        again = base.x0(x0, torch.full((len(x),), args.probe_sigma), renoise)
        raw = artifact.discrepancy(x0, again)
        out["training-free discrepancy"] = (raw, artifact.score(raw))
        if step >= 3:  # three Euler steps into the probe, starting from the image noised to σ[step − 3]
            xs = x + float(schedule[step - 3]) * noise  # an eps model's x_t
            history = []
            for j in range(step - 3, step + 1):
                den = base.x0(xs, torch.full((len(x),), float(schedule[j])), torch.zeros_like(xs))
                history.append(den)
                if j < step:
                    xs = xs + (xs - den) / float(schedule[j]) * float(schedule[j + 1] - schedule[j])
            raw = artifact.instability(history)
            out["training-free instability"] = (raw, artifact.score(raw))
        return sigma, step, out

    rows, early = [], []
    for probe in (0.25, 0.5, 0.75, 1.0):
        sigma, step, out = measures(probe)
        for method, (heat, score) in out.items():
            grid = mask_to_grid(pixel_masks.float(), tuple(heat.shape[-2:])) > 0.5
            rows.append({"probe": probe, "step": step, "sigma": round(sigma, 4), "method": method,
                         "image_auroc": round(artifact.auroc(score, labels), 4),
                         "pixel_auroc": round(artifact.pixel_auroc(heat[len(clean):].float(), grid), 4)})
            log.info("probe %.2f (sigma %.3f) %-26s image AUROC %.3f  pixel AUROC %.3f", probe, sigma, method,
                     rows[-1]["image_auroc"], rows[-1]["pixel_auroc"])
            if probe < 1.0:  # early rejection, simulated: groups of K candidates (half corrupted), best M kept
                sc = score.numpy()
                order = np.random.default_rng(5).permutation(len(sc))
                groups = [order[i:i + args.group] for i in range(0, len(order) - args.group + 1, args.group)]
                kept = [g[np.argsort(sc[g], kind="stable")[:args.keep]] for g in groups]
                corrupted_kept = float(np.mean([labels.numpy()[k].mean() for k in kept]))
                corrupted_random = float(labels.numpy()[np.concatenate(groups)].mean())
                k = step
                early.append({"probe": probe, "method": method, "K": args.group, "M": args.keep,
                              "corrupted_share_random_keep": round(corrupted_random, 4),
                              "corrupted_share_kept": round(corrupted_kept, 4),
                              "corrupted_removed": round(1 - corrupted_kept / corrupted_random, 4),
                              "model_calls": artifact.early_reject_calls(args.group, k, args.keep, args.sampling_steps),
                              "model_calls_all_finished": args.group * args.sampling_steps})
    rows.append({"probe": None, "method": "constant", "image_auroc": 0.5, "pixel_auroc": 0.5})
    report = {"experiment": "artifact_quality", "world": "shapes", "resolution": args.resolution,
              "base": os.path.basename(base_path), "estimator": os.path.basename(est_path),
              "estimator_training": train_meta["training"], "estimator_held_out": train_meta.get("evaluation"),
              "pairs": args.pairs, "sampling": f"karras, {args.sampling_steps} steps", "probe_sigma": args.probe_sigma,
              "train_seconds": timings, "results": rows, "early_rejection": early}
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
