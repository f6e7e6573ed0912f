"""How well does the analyser (models/analyser.py) read the captioned world (models/scenes.py) back?

For each resolution (32 and 64 px) and each condition, ``--n`` scenes of 1 to 3 objects (seed 2024, another seed
than the unit tests') are rendered, degraded and read:

- ``clean``: the render itself;
- ``noise_S``: Gaussian noise of σ = S per channel (image in [0, 1]), clipped and saved as 8-bit;
- ``blur_S``: a Gaussian blur of σ = S pixels (separable, edges repeated), saved as 8-bit.

Reported per condition: the accuracy of each attribute (shape, colour, size, position over the true objects; an
object not read counts wrong), of the background, of the object count, the accuracy over the four object
attributes together, the mean object-mask IoU (the read mask against the renderer's) and the reading speed.
Scenes with a stick figure (``--figures`` of them, clean and at the mildest noise) add the figure's detection and
its joints' PCK@0.1 against the true keypoints, beside the PCK of :func:`kernels.keypoints.find_joints` on the
figure drawn alone (the ceiling the drawing allows at that size).

No host is needed: the pack is imported alone. Writes ``eval/results/analyser.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import numpy as np
from common import HERE, log, write_report


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Returns an H×W×3 float image blurred by a Gaussian of ``sigma`` pixels (separable, edge pixels repeated)."""
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma * sigma))
    k /= k.sum()
    h, w = image.shape[:2]
    p = np.pad(image, ((r, r), (r, r), (0, 0)), mode="edge")
    p = sum(k[i] * p[:, i:i + w] for i in range(2 * r + 1))
    return sum(k[i] * p[i:i + h] for i in range(2 * r + 1))


def degrade(image: np.ndarray, condition: str, rng: np.random.Generator) -> np.ndarray:
    """Returns the uint8 image after ``condition`` (clean, noise_S or blur_S)."""
    x = image.astype(np.float64) / 255.0
    if condition.startswith("noise_"):
        x = x + rng.normal(0.0, float(condition[6:]), x.shape)
    elif condition.startswith("blur_"):
        x = blur(x, float(condition[5:]))
    elif condition != "clean":
        raise ValueError(f"unknown condition {condition!r}; use clean, noise_<sigma> or blur_<sigma>")
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="accuracy of the scene analyser on clean and degraded renders")
    parser.add_argument("--n", type=int, default=500, help="scenes per resolution and condition")
    parser.add_argument("--figures", type=int, default=100, help="scenes with a stick figure per resolution")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2])
    parser.add_argument("--blur", type=float, nargs="+", default=[0.5, 1.0, 1.5])
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "analyser.json"))
    args = parser.parse_args(argv)
    from stepwise_dev import host

    host.pack()
    logging.basicConfig(level=logging.INFO, format="eval: %(message)s", force=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    from stepwise.kernels.keypoints import find_joints, pck
    from stepwise.models import analyser, scenes

    conditions = ["clean"] + [f"noise_{s:g}" for s in args.noise] + [f"blur_{s:g}" for s in args.blur]
    report = {"method": "models/analyser.py read(): nearest palette colour per pixel (3x3 mode filter when the "
                        "estimated noise sigma > 0.04), 8-connected components, best of 6 shape templates x 5 "
                        "half-sides by IoU, size from the half-side, position from the nearest anchor",
              "scenes": f"models/scenes.py sample_scene(size, seed={args.seed}, i), 1 to 3 objects, no figure",
              "n_scenes": args.n, "conditions": conditions, "results": {}}
    for size in args.sizes:
        items = [scenes.sample_scene(size, args.seed, i) for i in range(args.n)]
        rendered = [scenes.render(s) for s in items]
        per = {}
        for condition in conditions:
            rng = np.random.default_rng([args.seed, size, conditions.index(condition)])
            images = [degrade(img, condition, rng) for img, _ in rendered]
            start = time.perf_counter()
            readings = [analyser.read(img) for img in images]
            seconds = time.perf_counter() - start
            acc = analyser.summarise([analyser.attribute_accuracy(r, s) for r, s in zip(readings, items)])
            ious = [iou for r, s, (_, lab) in zip(readings, items, rendered) for iou in analyser.object_ious(r, s, lab)]
            per[condition] = {k: round(v, 4) for k, v in acc.items() if v is not None and k != "figure"}
            per[condition]["mask_iou"] = round(float(np.mean(ious)), 4)
            per[condition]["images_per_s"] = round(len(images) / seconds, 1)
            log.info("%d px %-10s %s", size, condition, per[condition])
        figs = {}
        fig_scenes = [scenes.sample_scene(size, args.seed + 1, i, figure=1.0) for i in range(args.figures)]
        truth = np.stack([np.concatenate([np.asarray(s.figure.keypoints), np.ones((17, 1))], 1) for s in fig_scenes])
        alone = np.stack([find_joints(scenes.render(scenes.Scene(size, s.background, (), s.figure))[0])
                          for s in fig_scenes])
        for condition in ("clean", f"noise_{min(args.noise):g}"):
            rng = np.random.default_rng([args.seed, size, 99])
            readings = [analyser.read(degrade(scenes.render(s)[0], condition, rng)) for s in fig_scenes]
            acc = analyser.summarise([analyser.attribute_accuracy(r, s) for r, s in zip(readings, fig_scenes)])
            joints = np.stack([r.figure.joints if r.figure is not None else np.zeros((17, 3)) for r in readings])
            figs[condition] = {"figure_found_and_placed": round(acc["figure"], 4),
                               "object_attributes": round(acc["all_attributes"], 4) if acc["all_attributes"] else None,
                               "joints_pck@0.1": round(pck(joints, truth)[0], 4)}
            log.info("%d px figures %-10s %s", size, condition, figs[condition])
        figs["ceiling_pck@0.1_find_joints_on_the_figure_alone"] = round(pck(alone, truth)[0], 4)
        report["results"][f"{size}px"] = {"objects": per, "figures": figs, "n_figure_scenes": args.figures}
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
