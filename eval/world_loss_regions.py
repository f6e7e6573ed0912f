"""Where does the world model's training loss go? Objects against background, with the caption and without.

A measured limit of the world text-to-image model (issue "A world the models understand", item 5: "where a goal is
missed, say what limits it"). For ``--images`` training scenes of ``--data`` (the files ``train.py make-data --kind
scenes`` writes: image, caption, object labels), each checkpoint's flow loss (the training loss: squared error of
the prediction in the model's parameterisation) is computed per pixel at each of ``--timesteps`` with fixed noise,
once with the scene's caption and once with the empty prompt, and split by the labels into object and background
pixels. Reported per timestep and over all: the share of pixels that are objects, the mean loss on each, the share
of the whole loss that object pixels carry (what the gradient of a plain mean spends on them), and what the caption
saves on each (empty-prompt loss minus caption loss: zero where the model ignores the words).

Writes ``eval/results/world_loss_regions.json``.
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np
from common import load_world, log, run_record, start_world_eval, write_report

HERE = os.path.dirname(os.path.abspath(__file__))


def read_scenes(folder: str, n: int):
    """The first ``n`` scenes of ``folder``: images (N×H×W×3 in [0, 1]), captions and object masks (N×H×W bool)."""
    from stepwise.models import scenes

    stems = sorted(p[:-4] for p in glob.glob(os.path.join(folder, "*.png")) if not p.endswith("_masks.png"))[:n]
    if not stems:
        raise SystemExit(f"--data {folder}: no scenes (write them with train.py make-data --kind scenes)")
    images, captions, masks = [], [], []
    for stem in stems:
        image, _scene, labels = scenes.read_sample(stem)
        images.append(image.astype(np.float32) / 255.0)
        with open(stem + ".txt") as f:
            captions.append(f.read().strip())
        masks.append((labels > 0) & (labels < 255))
    return np.stack(images), captions, np.stack(masks)


def pixel_losses(model, clip, vae, images, captions, timesteps, seed: int, chunk: int = 64) -> dict:
    """Per-pixel flow loss (N×H×W) at each timestep, with the captions and with the empty prompt."""
    import torch

    inner = model.model
    ms = inner.model_sampling
    out = {}
    with torch.no_grad():
        x0 = torch.cat([inner.process_latent_in(vae.encode(torch.from_numpy(images[i:i + chunk])).float())
                        for i in range(0, len(images), chunk)])
        text = torch.cat([clip.encode_from_tokens(clip.tokenize(c)) for c in captions])
        empty = clip.encode_from_tokens(clip.tokenize("")).expand(len(captions), -1, -1)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
        for t in timesteps:
            sigma = ms.sigmas[t].expand(len(x0))
            s = sigma.view(-1, 1, 1, 1)
            xt = ms.noise_scaling(s, noise, x0)
            c_out = ms.calculate_denoised(s[:1], torch.ones_like(x0[:1]), torch.zeros_like(x0[:1]))
            for name, ctx in (("caption", text), ("empty", empty)):
                den = torch.cat([inner.apply_model(xt[i:i + chunk], sigma[i:i + chunk], c_crossattn=ctx[i:i + chunk])
                                 for i in range(0, len(x0), chunk)])
                out[(t, name)] = (((den.float() - x0) / c_out) ** 2).mean(1).numpy()
    return out


def regions(losses: dict, masks: np.ndarray, timesteps) -> dict:
    rows = {}
    obj, bg = masks, ~masks
    for t in list(timesteps) + ["all"]:
        ts = timesteps if t == "all" else [t]
        cap = np.stack([losses[(u, "caption")] for u in ts])
        emp = np.stack([losses[(u, "empty")] for u in ts])
        rows[str(t)] = {
            "object_loss": float(cap[:, obj].mean()), "background_loss": float(cap[:, bg].mean()),
            "object_loss_share": float(cap[:, obj].sum() / cap.sum()),
            "caption_saves_object": float(emp[:, obj].mean() - cap[:, obj].mean()),
            "caption_saves_background": float(emp[:, bg].mean() - cap[:, bg].mean()),
        }
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append", required=True, help="a world checkpoint (repeat)")
    parser.add_argument("--data", default=os.path.expanduser("~/.cache/stepwise/world/data"))
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[100, 300, 500, 700, 900])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "world_loss_regions.json"))
    args = parser.parse_args(argv)
    start_world_eval(args.out)
    images, captions, masks = read_scenes(args.data, args.images)
    runs = []
    for path in args.checkpoint:
        model, clip, vae, meta = load_world(path)
        rows = regions(pixel_losses(model, clip, vae, images, captions, args.timesteps, args.seed), masks,
                       args.timesteps)
        runs.append({**run_record(path, meta), "timesteps": rows})
        a = rows["all"]
        log.info("%s: object loss %.4f, background %.4f, objects carry %.1f %% of the loss; the caption saves %.4f "
                 "on objects, %.4f on background", runs[-1]["checkpoint"], a["object_loss"], a["background_loss"],
                 100 * a["object_loss_share"], a["caption_saves_object"], a["caption_saves_background"])
    write_report(args.out, {"method": __doc__.split("\n\n")[1].replace("\n", " "), "images": len(images),
                            "object_pixel_share": float(masks.mean()), "timesteps": args.timesteps, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
