"""Quality experiment: do the pose tokens place the figure's joints where the keypoints say?

On the stick-figure world (each joint a dot of its own colour):

1. train two identical pose models (``train.py pose``, compact pixel-space UNet + Fourier keypoint encoder) for
   the same steps, batch and seed: ``pose`` with the usual 10 % condition dropout, and ``unconditioned`` with
   dropout 1.0 (it only ever sees the null pose: same size and training, no pose information);
2. for held-out random poses (another seed than the training figures), generate one image each through the
   host's sampler (CFG against the null pose);
3. find each joint in the generated image by its colour (:func:`kernels.keypoints.find_joints`) and report
   PCK@0.1 (:func:`kernels.keypoints.pck`: a joint is correct within 0.1 × the figure's size).

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
from common import HERE, REPO, log, start_eval, write_report


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
    outs = {name: os.path.join(args.work, f"pose_{name}_{args.steps}{suffix}.safetensors") for name in runs}
    procs, timings = {}, {}
    start = time.perf_counter()
    todo = [name for name in runs if not os.path.isfile(outs[name])]
    threads = str(max(1, (os.cpu_count() or 1) // max(1, len(todo))))
    for name, dropout in runs.items():  # the trainings run side by side, sharing the cores
        if name in todo:
            env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
            procs[name] = subprocess.Popen(
                [sys.executable, train, "pose", "--data", data, "--out", outs[name], "--arch", "compact",
                 "--space", "pixel", "--tokens", "fourier", "--parameterisation", args.parameterisation,
                 "--cond-dropout", str(dropout), "--steps", str(args.steps),
                 "--batch", str(args.batch), "--lr", "1e-3", "--ema", "0.995", "--resolution", str(args.resolution),
                 "--seed", "7", "--device", "cpu"], env=env, stdout=subprocess.DEVNULL,
                stderr=open(outs[name] + ".log", "w"))  # a file, not a pipe: a full pipe would stall the run
    for name, proc in procs.items():
        if proc.wait():
            with open(outs[name] + ".log") as f:
                raise SystemExit(f"training {name} failed:\n{f.read()[-3000:]}")
        timings[name] = round(time.perf_counter() - start, 1)

    size = args.resolution
    truth, renders = [], []
    for i in range(args.test_poses):  # held out: another seed than the training figures
        image, k, _ = figure_image(size, 99, i)
        truth.append(np.concatenate([k, np.ones((17, 1))], 1))
        renders.append(find_joints(image))
    truth = np.stack(truth)
    ceiling, ceiling_joints = pck(np.stack(renders), truth)
    ceiling_loose, _ = pck(np.stack(renders), truth, 0.2)
    poses = torch.from_numpy(truth).float()
    poses[..., :2] /= size
    poses = poses.unsqueeze(1)  # one person per image

    rows = []
    for name, out in outs.items():
        tensors, meta = checkpoint.load(out, "pose")
        patcher = diffusion.model_patcher(tensors, meta, name)
        for cfg in args.cfg if name == "pose" else args.cfg[:1]:
            samples = generate(patcher, poses, seed=1000, steps=args.sampling_steps, cfg=cfg,
                               shape=(3, size, size))
            pictures = ((samples.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
            found = np.stack([find_joints(p) for p in pictures])
            score, per_joint = pck(found, truth)
            loose, _ = pck(found, truth, 0.2)
            rows.append({"model": name, "cfg": cfg, "pck@0.1": round(score, 3), "pck@0.2": round(loose, 3),
                         "joints_found": round(float(found[..., 2].mean()), 3),
                         "per_joint": [round(float(v), 2) for v in per_joint],
                         "final_loss": round(meta["training"]["final_loss"], 4)})
            log.info("%-13s cfg %.1f  PCK@0.1 %.3f  PCK@0.2 %.3f  joints found %.2f", name, cfg, score, loose,
                     rows[-1]["joints_found"])
            if name == "pose" and cfg == args.cfg[-1]:
                from PIL import Image

                from stepwise.models.world import skeleton_image

                shown = min(8, len(pictures))
                grid = np.concatenate([np.concatenate([np.asarray(skeleton_image(p.numpy(), size, size))
                                                       for p in poses[:shown]], 1),
                                       np.concatenate(list(pictures[:shown]), 1)], 0)
                Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(
                    os.path.splitext(args.out)[0] + "_samples.png")
    log.info("ground-truth renders (joint-finder ceiling): PCK@0.1 %.3f", ceiling)

    report = {"experiment": "pose_quality", "world": "figures", "resolution": size, "train_images": args.train_images,
              "test_poses": args.test_poses, "train_steps": args.steps, "batch": args.batch, "arch": "compact",
              "tokens": "fourier", "parameterisation": args.parameterisation, "sampler": "euler/karras",
              "sampling_steps": args.sampling_steps,
              "train_seconds": timings, "ceiling_pck@0.1": round(ceiling, 3),
              "ceiling_pck@0.2": round(ceiling_loose, 3),
              "ceiling_per_joint": [round(float(v), 2) for v in ceiling_joints], "results": rows}
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
