"""Quality experiment: how well are artifacts seen from an early step's x0 estimate?

``--world shapes`` (default): the synthetic shapes world with a pixel-space diffusion model trained on the whole
schedule (the ``full`` network of ``refiner_quality.py``, trained here when missing), one estimator.
``--world scenes``: one-object scenes of the captioned world (the world text-to-image models' own distribution)
judged through the shipped world models (``--base``, seeds 0 and 1), one estimator per world model and training
seed, probes on the ``simple`` schedule the world workflows sample with (flow: σ runs from 1 to 0), mean and
spread over the seeds in the report's ``summary``. Both:

1. train the estimator (``train.py estimator``) on that model's x0 estimates of synthetic artifacts;
2. take held-out pairs (a clean image and its corrupted copy, every artifact kind, exact masks) and, at probe
   fractions 0.25, 0.5, 0.75 of a 20-step schedule and at the end (σ = 0), form the x0 estimate a
   sampler passing near the image would hold: the image noised to σ and denoised once by the model;
3. score every estimate with ``trained`` (the estimator), ``training-free discrepancy`` (re-noise x0 to
   ``probe_sigma`` and denoise once; per-pixel change) and ``training-free instability`` (x0 over the three
   Euler steps leading to the probe), next to a constant predictor (AUROC 0.5);
4. report image AUROC (corrupted vs clean) and pixel AUROC (artifact pixels of the corrupted images);
5. early rejection, simulated on the same pairs: groups of K candidates (half corrupted) judged at the probe,
   the best M kept; the share of corrupted outcomes removed against keeping M at random, and the model calls
   ``K·k + M·(N − k)`` against ``K·N``;
6. what any judge of the x0 estimate can see at most: the share of the artifact (mean absolute difference between
   the corrupted and the clean image inside the artifact) still there between their x0 estimates.

Writes ``eval/results/artifact_quality.json`` (shapes) or ``artifact_quality_world.json`` (scenes); ``make eval`` runs
both. Numbers are reported as measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
from common import HERE, REPO, log, over_seeds, start_eval, write_report

from stepwise_dev import paths

WORLD_MODELS = [os.path.join(paths.WORLD_MODELS, f"stepwise-world-s{seed}.safetensors") for seed in (0, 1)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="artifact estimation from early x0 estimates (shapes or world)")
    parser.add_argument("--world", choices=["shapes", "scenes"], default="shapes",
                        help="shapes: the tiny shapes network as the base; scenes: one-object world scenes judged "
                             "through the world text-to-image models (--base)")
    parser.add_argument("--base", action="append",
                        help="scenes: a world checkpoint whose x0 estimates are judged (repeat; default: the shipped "
                             "seeds 0 and 1); one estimator is trained per base, with the matching --train-seeds")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[7, 8],
                        help="estimator training seeds (shapes: the first; scenes: one per --base)")
    parser.add_argument("--steps", type=int, default=1500, help="estimator training steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--sampling-steps", type=int, default=20)
    parser.add_argument("--scheduler", help="the schedule the probes sit on (default: karras for shapes, simple for "
                                             "scenes: what the world evaluations and workflows sample the flow "
                                             "world models with)")
    parser.add_argument("--probe-sigma", type=float, default=None,
                        help="discrepancy re-noises to this σ (default 1.0 for shapes; 0.5 for the flow world models, "
                             "the same signal-to-noise ratio, 1, as σ = 1 on the SD schedule)")
    parser.add_argument("--group", type=int, default=4, help="early rejection: K candidates per group")
    parser.add_argument("--keep", type=int, default=1, help="early rejection: M kept per group")
    parser.add_argument("--work", default=os.path.join(REPO, "eval", "work"))
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    scenes_world = args.world == "scenes"
    args.out = args.out or os.path.join(HERE, "results", "artifact_quality_world.json" if scenes_world
                                        else "artifact_quality.json")
    args.scheduler = args.scheduler or ("simple" if scenes_world else "karras")
    args.probe_sigma = args.probe_sigma if args.probe_sigma is not None else (0.5 if scenes_world else 1.0)
    bases = args.base or WORLD_MODELS
    if scenes_world and len(bases) != len(args.train_seeds):
        raise SystemExit(f"--train-seeds {args.train_seeds}: give one seed per --base ({len(bases)})")
    start_eval(args.out)
    import torch

    from stepwise.models import checkpoint, scenes
    from stepwise.models.world import make_data, shape_image
    from stepwise.nodes.artifact import load_estimator
    from stepwise.trainers.base import DiffusionBase
    from stepwise.trainers.estimator import corrupted_pairs

    os.makedirs(args.work, exist_ok=True)
    train = os.path.join(REPO, "train.py")
    timings = {}
    if scenes_world:  # the world models' own distribution: one object on a plain background
        data = os.path.join(args.work, "train_scenes_1object")
        if not os.path.isdir(data) or len([f for f in os.listdir(data) if f.endswith(".txt")]) < args.train_images:
            scenes.write_dataset(data, args.train_images, args.resolution, seed=1, objects=(1, 1))
        runs = list(zip(bases, args.train_seeds))
    else:
        data = os.path.join(args.work, "train")
        if not os.path.isdir(data) or len(os.listdir(data)) < 2 * args.train_images:
            make_data("shapes", args.train_images, args.resolution, data, seed=1)
        base_path = os.path.join(args.work, "refiner_full_1500.safetensors")
        if not os.path.isfile(base_path):  # the full-schedule network of refiner_quality.py
            start = time.perf_counter()
            subprocess.run([sys.executable, train, "refiner", "--data", data, "--out", base_path, "--arch", "tiny",
                            "--space", "pixel", "--t-range", "0", "1000", "--steps", "1500", "--batch", "16",
                            "--lr", "1e-3", "--ema", "0.995", "--resolution", str(args.resolution), "--seed", "7"],
                           check=True, capture_output=True)
            timings["base"] = round(time.perf_counter() - start, 1)
        runs = [(base_path, args.train_seeds[0])]

    # the estimators train side by side, sharing the cores
    procs, est_paths = {}, {}
    threads = str(max(1, (os.cpu_count() or 1) // len(runs)))
    for base_path, seed in runs:
        # a world estimator is kept for the base it was trained on: the base's content, not its name, which a newly
        # shipped model keeps
        name = (f"estimator_{os.path.splitext(os.path.basename(base_path))[0]}-{checkpoint.sha256(base_path)[:12]}_"
                f"{args.steps}_s{seed}" if scenes_world else f"estimator_{args.steps}")
        est_paths[seed] = os.path.join(args.work, name + ".safetensors")
        if not os.path.isfile(est_paths[seed]):
            env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
            procs[seed] = (time.perf_counter(), subprocess.Popen(
                [sys.executable, train, "estimator", "--data", data, "--base", base_path, "--out", est_paths[seed],
                 "--arch", "small", "--steps", str(args.steps), "--batch", str(args.batch), "--lr", "1e-3",
                 "--ema", "0.99", "--resolution", str(args.resolution), "--seed", str(seed)], env=env,
                stdout=subprocess.DEVNULL, stderr=open(est_paths[seed] + ".log", "w")))  # a file: a pipe could fill
    for seed, (start, proc) in procs.items():
        if proc.wait():
            with open(est_paths[seed] + ".log") as f:
                raise SystemExit(f"estimator training (seed {seed}) failed:\n{f.read()[-3000:]}")
        timings[f"estimator_s{seed}"] = round(time.perf_counter() - start, 1)

    if scenes_world:  # held out: another world seed than the training scenes
        clean = np.stack([scenes.render(scenes.sample_scene(args.resolution, 99, i, objects=(1, 1)))[0]
                          for i in range(args.pairs)])
    else:
        clean = np.stack([shape_image(args.resolution, 99, i)[0] for i in range(args.pairs)])
    bad, masks = corrupted_pairs(clean, np.random.default_rng(2024))
    labels = torch.cat([torch.zeros(len(clean)), torch.ones(len(bad))])
    pixel_masks = torch.from_numpy(masks) > 0.5
    rows, early, signal, trained = [], [], [], []
    for base_path, seed in runs:
        measured = measure(args, DiffusionBase(base_path, None, torch.device("cpu")),
                           load_estimator(est_paths[seed], os.path.basename(est_paths[seed])), clean, bad, labels,
                           pixel_masks)
        for r in measured[0] + measured[1] + measured[2]:
            r.update({"train_seed": seed, "base": os.path.basename(base_path)} if scenes_world else {})
        rows += measured[0]
        early += measured[1]
        signal += measured[2]
        meta = checkpoint.read_metadata(est_paths[seed])
        trained.append({"estimator": os.path.basename(est_paths[seed]), "base": os.path.basename(base_path),
                        "train_seed": seed, "training": meta["training"], "held_out": meta.get("evaluation")})
    rows.append({"probe": None, "method": "constant", "image_auroc": 0.5, "pixel_auroc": 0.5})
    report = {"experiment": "artifact_quality", "world": args.world, "resolution": args.resolution,
              "pairs": args.pairs, "sampling": f"{args.scheduler}, {args.sampling_steps} steps",
              "probe_sigma": args.probe_sigma, "train_seconds": timings, "artifact_signal": signal}
    if scenes_world:
        report.update({"train_images": args.train_images, "estimator_steps": args.steps, "estimators": trained,
                       "results": rows, "early_rejection": early, "summary": {
                           "auroc": over_seeds([r for r in rows if r["probe"] is not None], ("probe", "method"),
                                               ("image_auroc", "pixel_auroc"), keep=("step", "sigma")),
                           "early_rejection": over_seeds(early, ("probe", "method"),
                                                         ("corrupted_share_kept", "corrupted_removed"),
                                                         keep=("model_calls", "model_calls_all_finished")),
                           "artifact_signal": over_seeds(signal, ("probe",), ("artifact_signal",), keep=("sigma",))}})
    else:  # the shapes report's layout, as the README's tables read it
        report.update({"base": trained[0]["base"], "estimator": trained[0]["estimator"],
                       "estimator_training": trained[0]["training"], "estimator_held_out": trained[0]["held_out"],
                       "results": rows, "early_rejection": early})
    write_report(args.out, report)
    return 0


def measure(args, base, estimator, clean, bad, labels, pixel_masks):
    """AUROC rows, simulated early-rejection rows and the artifact's share left in the x0 estimate (per probe) of one
    estimator on ``base``'s x0 estimates of the pairs."""
    import comfy.samplers
    import torch

    from stepwise.kernels import artifact
    from stepwise.trainers.estimator import mask_to_grid, to_tensor

    x = base.encode(to_tensor(np.concatenate([clean, bad])))
    gen = torch.Generator().manual_seed(7)
    noise = torch.randn((len(clean), *x.shape[1:]), generator=gen).repeat(2, 1, 1, 1)
    renoise = torch.randn((len(clean), *x.shape[1:]), generator=gen).repeat(2, 1, 1, 1)
    ms = base.model.model_sampling
    schedule = comfy.samplers.calculate_sigmas(ms, args.scheduler, args.sampling_steps).cpu()

    def methods(probe: float):
        step = int(round(probe * args.sampling_steps))
        sigma = float(schedule[step])
        x0 = base.x0(x, torch.full((len(x),), sigma), noise)
        # how much of the artifact the x0 estimate still shows: |x0(corrupted) − x0(clean)| inside the artifact,
        # as a share of |corrupted − clean| there (1: all of it; what any judge of x0 can see at most)
        inside = mask_to_grid(pixel_masks.float(), tuple(x.shape[-2:])) > 0.5
        n = len(clean)
        seen = (x0[n:] - x0[:n]).abs().mean(1)[inside].sum() / (x[n:] - x[:n]).abs().mean(1)[inside].sum()
        signal.append({"probe": probe, "sigma": round(sigma, 4), "artifact_signal": round(float(seen), 4)})
        out = {"trained": estimator(x0, sigma)}
        again = base.x0(x0, torch.full((len(x),), args.probe_sigma), renoise)
        raw = artifact.discrepancy(x0, again)
        out["training-free discrepancy"] = (raw, artifact.score(raw))
        if step >= 3:  # three Euler steps into the probe, starting from the image noised to σ[step − 3]
            s0 = float(schedule[step - 3])
            xs = ms.noise_scaling(torch.tensor(s0), noise, x)  # x_t in the model's own noising
            history = []
            for j in range(step - 3, step + 1):
                den = base.denoise(xs, torch.full((len(x),), float(schedule[j])))
                history.append(den)
                if j < step:
                    xs = xs + (xs - den) / float(schedule[j]) * float(schedule[j + 1] - schedule[j])
            raw = artifact.instability(history)
            out["training-free instability"] = (raw, artifact.score(raw))
        return sigma, step, out

    rows, early, signal = [], [], []
    for probe in (0.25, 0.5, 0.75, 1.0):
        sigma, step, out = methods(probe)
        log.info("%s: probe %.2f (sigma %.3f) the x0 estimate shows %.2f of the artifact", base.name, probe, sigma,
                 signal[-1]["artifact_signal"])
        for method, (heat, score) in out.items():
            grid = mask_to_grid(pixel_masks.float(), tuple(heat.shape[-2:])) > 0.5
            rows.append({"probe": probe, "step": step, "sigma": round(sigma, 4), "method": method,
                         "image_auroc": round(artifact.auroc(score, labels), 4),
                         "pixel_auroc": round(artifact.pixel_auroc(heat[len(clean):].float(), grid), 4)})
            log.info("%s: probe %.2f (sigma %.3f) %-26s image AUROC %.3f  pixel AUROC %.3f", base.name, probe, sigma,
                     method, rows[-1]["image_auroc"], rows[-1]["pixel_auroc"])
            if probe < 1.0:  # early rejection, simulated: groups of K candidates (half corrupted), best M kept
                sc = score.numpy()
                order = np.random.default_rng(5).permutation(len(sc))
                groups = [order[i:i + args.group] for i in range(0, len(order) - args.group + 1, args.group)]
                kept = [g[np.argsort(sc[g], kind="stable")[:args.keep]] for g in groups]
                corrupted_kept = float(np.mean([labels.numpy()[k].mean() for k in kept]))
                corrupted_random = float(labels.numpy()[np.concatenate(groups)].mean())
                early.append({"probe": probe, "method": method, "K": args.group, "M": args.keep,
                              "corrupted_share_random_keep": round(corrupted_random, 4),
                              "corrupted_share_kept": round(corrupted_kept, 4),
                              "corrupted_removed": round(1 - corrupted_kept / corrupted_random, 4),
                              "model_calls": artifact.early_reject_calls(args.group, step, args.keep,
                                                                         args.sampling_steps),
                              "model_calls_all_finished": args.group * args.sampling_steps})
    return rows, early, signal


if __name__ == "__main__":
    sys.exit(main())
