"""Quality experiment: do the pose tokens place the figure's joints where the keypoints say?

On the stick-figure world (each joint a dot of its own colour):

1. for each training seed of ``--train-seeds``, train two identical pose models (``train.py pose``, compact
   pixel-space UNet + Fourier keypoint encoder) for the same steps, batch and seed: ``pose`` with the usual 10 %
   condition dropout, and ``unconditioned`` with dropout 1.0 (it only ever sees the null pose: same size and
   training, no pose information);
2. for held-out random poses (another seed than the training figures), generate one image each through the
   host's sampler (CFG against the null pose);
3. find each joint in the generated image by its colour (:func:`kernels.keypoints.find_joints`) and report
   PCK@0.1 (:func:`kernels.keypoints.pck`: a joint is correct within 0.1 × the figure's size);
4. the same for the poses of the first training figures (unaugmented): a model that places joints it was shown but
   not new ones does not generalise; one that misses both has not learned enough.

The same joint finder on the held-out ground-truth renders gives the ceiling at this resolution (at 32 px the
face joints overlap). Writes ``eval/results/pose_quality.json``; ``make eval`` runs it. Whatever the outcome, the
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="PCK@0.1 of a pose model vs an unconditioned one (stick figures)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=1024)
    parser.add_argument("--test-poses", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--cfg", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--sampling-steps", type=int, default=20)
    parser.add_argument("--parameterisation", choices=["eps", "v", "flow"], default="flow",
                        help="flow reaches pure noise at the top of the schedule; eps/v with the SD schedule leave "
                             "the image's mean colour visible there (a train/sample mismatch at 32 px)")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[7, 8],
                        help="one pose model and one unconditioned model per training seed")
    parser.add_argument("--work", default=os.path.join(REPO, "eval", "work"))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "pose_quality.json"))
    args = parser.parse_args(argv)
    start_eval(args.out)
    import torch

    from stepwise.kernels.keypoints import find_joints, pck
    from stepwise.models import checkpoint, diffusion
    from stepwise.models.world import figure_image, make_data
    from stepwise.trainers.pose import generate

    data = os.path.join(args.work, f"figures_{args.resolution}")
    if not os.path.isdir(data) or len(os.listdir(data)) < 3 * args.train_images:
        make_data("figures", args.train_images, args.resolution, data, seed=1)
    train = os.path.join(REPO, "train.py")
    runs = {"pose": 0.1, "unconditioned": 1.0}
    suffix = "" if args.parameterisation == "eps" else f"_{args.parameterisation}"
    outs = {(seed, name): os.path.join(args.work, f"pose_{name}_{args.steps}{suffix}_s{seed}.safetensors")
            for seed in args.train_seeds for name in runs}
    timings = {}
    for seed in args.train_seeds:  # per seed, the two trainings run side by side, sharing the cores
        procs = {}
        start = time.perf_counter()
        todo = [name for name in runs if not os.path.isfile(outs[seed, name])]
        threads = str(max(1, (os.cpu_count() or 1) // max(1, len(todo))))
        for name in todo:
            env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
            out = outs[seed, name]
            procs[name] = subprocess.Popen(
                [sys.executable, train, "pose", "--data", data, "--out", out, "--arch", "compact",
                 "--space", "pixel", "--tokens", "fourier", "--parameterisation", args.parameterisation,
                 "--cond-dropout", str(runs[name]), "--steps", str(args.steps),
                 "--batch", str(args.batch), "--lr", "1e-3", "--ema", "0.995", "--resolution", str(args.resolution),
                 "--seed", str(seed), "--device", "cpu"], env=env, stdout=subprocess.DEVNULL,
                stderr=open(out + ".log", "w"))  # a file, not a pipe: a full pipe would stall the run
        for name, proc in procs.items():
            if proc.wait():
                with open(outs[seed, name] + ".log") as f:
                    raise SystemExit(f"training {name} (seed {seed}) failed:\n{f.read()[-3000:]}")
            timings[f"{name}_s{seed}"] = round(time.perf_counter() - start, 1)

    size = args.resolution
    truth, renders = [], []
    for i in range(args.test_poses):  # held out: another seed than the training figures
        image, k, _ = figure_image(size, 99, i)
        truth.append(np.concatenate([k, np.ones((17, 1))], 1))
        renders.append(find_joints(image))
    truth = np.stack(truth)
    ceiling, ceiling_joints = pck(np.stack(renders), truth)
    ceiling_loose, _ = pck(np.stack(renders), truth, 0.2)
    # the first training figures' poses (unaugmented): does the model place the joints of poses it was trained on?
    seen = np.stack([np.concatenate([figure_image(size, 1, i)[1], np.ones((17, 1))], 1)
                     for i in range(args.test_poses)])

    def judge(patcher, truth, cfg):
        poses = torch.from_numpy(truth).float()
        poses[..., :2] /= size
        poses = poses.unsqueeze(1)  # one person per image
        samples = generate(patcher, poses, seed=1000, steps=args.sampling_steps, cfg=cfg, shape=(3, size, size))
        pictures = ((samples.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        found = np.stack([find_joints(p) for p in pictures])
        return poses, pictures, found, *pck(found, truth), pck(found, truth, 0.2)[0]

    rows, training_poses = [], []
    for (seed, name), out in outs.items():
        tensors, meta = checkpoint.load(out, "pose")
        patcher = diffusion.model_patcher(tensors, meta, name)
        for cfg in args.cfg if name == "pose" else args.cfg[:1]:
            poses, pictures, found, score, per_joint, loose = judge(patcher, truth, cfg)
            rows.append({"model": name, "train_seed": seed, "cfg": cfg, "pck@0.1": round(score, 3),
                         "pck@0.2": round(loose, 3),
                         "joints_found": round(float(found[..., 2].mean()), 3),
                         "per_joint": [round(float(v), 2) for v in per_joint],
                         "final_loss": round(meta["training"]["final_loss"], 4)})
            log.info("seed %d %-13s cfg %.1f  PCK@0.1 %.3f  PCK@0.2 %.3f  joints found %.2f", seed, name, cfg, score,
                     loose, rows[-1]["joints_found"])
            if name == "pose" and cfg == args.cfg[-1] and seed == args.train_seeds[0]:
                from PIL import Image

                from stepwise.models.world import skeleton_image

                shown = min(8, len(pictures))
                grid = np.concatenate([np.concatenate([np.asarray(skeleton_image(p.numpy(), size, size))
                                                       for p in poses[:shown]], 1),
                                       np.concatenate(list(pictures[:shown]), 1)], 0)
                Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(
                    os.path.splitext(args.out)[0] + "_samples.png")
            if name == "pose" and cfg == args.cfg[-1]:
                *_, score, _, loose = judge(patcher, seen, cfg)
                training_poses.append({"train_seed": seed, "cfg": cfg, "pck@0.1": round(score, 3),
                                       "pck@0.2": round(loose, 3)})
                log.info("seed %d pose on training poses, cfg %.1f: PCK@0.1 %.3f  PCK@0.2 %.3f", seed, cfg, score,
                         loose)
    log.info("ground-truth renders (joint-finder ceiling): PCK@0.1 %.3f", ceiling)

    report = {"experiment": "pose_quality", "world": "figures", "resolution": size, "train_images": args.train_images,
              "test_poses": args.test_poses, "train_steps": args.steps, "batch": args.batch, "arch": "compact",
              "tokens": "fourier", "parameterisation": args.parameterisation, "sampler": "euler/karras",
              "sampling_steps": args.sampling_steps,
              "train_seeds": args.train_seeds, "train_seconds": timings, "ceiling_pck@0.1": round(ceiling, 3),
              "ceiling_pck@0.2": round(ceiling_loose, 3),
              "ceiling_per_joint": [round(float(v), 2) for v in ceiling_joints], "results": rows,
              "summary": over_seeds(rows, ("model", "cfg"), ("pck@0.1", "pck@0.2", "final_loss")),
              "training_poses": training_poses,
              "training_poses_summary": over_seeds(training_poses, ("cfg",), ("pck@0.1", "pck@0.2"))}
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
