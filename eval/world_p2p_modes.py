"""Prompt-to-Prompt's other edits on the world model: refine, reweight, local blend, attention maps (issue "A world
the models understand", item 5).

For each world checkpoint (``--checkpoint``, one per training seed), each held-out 1-object source prompt (world seed
7007, a held-out colour-and-shape pair: never in training) and each sampler seed, from the same noise:

- **refine** (an added word): the source without its size word, the target with it ("a red circle ..." -> "a large
  red circle ..."); ``success``: the result is read with the target's size and the source image's colour, shape and
  position; ``background_psnr`` against the source image outside both objects. Baseline: the target sampled alone.
- **reweight**: the source prompt with its colour word weighted ``--weights`` (1 is the plain prompt); the
  attribute's strength is how close the object's mean colour is to the named colour (1 − distance / √3, over the
  object's pixels as the analyser reads them in the result, else in the source); reported: mean strength per
  weight and the share of samples whose strength never falls as the weight rises (``monotone``).
- **local blend**: the colour swap of ``world_p2p.py`` with the shape word as blend word; PSNR outside the source
  object's mask, result against source, with the blend and without it (the same replace edit).
- **attention maps**: the source row's cross-attention map of the shape word, the colour word and the background
  colour word (control), each thresholded at half its maximum and upsampled to the image; IoU with the object's mask
  as the analyser reads it in the source image; chance: the IoU of a map covering the whole image (the object's
  share of the image).

``--blend-only`` measures local blend alone, at ``--blend-threshold`` (a lever on its settings). Local blend and the
maps are taken at ``--map-scale`` of the latent's side (the node's ``map_scale``). The euler
sampler, ``--steps`` steps, CFG ``--cfg``. Writes ``eval/results/world_p2p_modes.json``.
"""

from __future__ import annotations

import numpy as np
from common import earlier_runs, join_runs, load_world, log, run_record, start_world_eval, world_parser, write_report

WORLD_SEED = 7007


def _strength(img: np.ndarray, mask: np.ndarray | None, colour: str) -> float | None:
    from stepwise.models import scenes

    if mask is None or not mask.any():
        return None
    mean = img[mask].mean(0)
    target = np.asarray(scenes.COLOURS[colour], dtype=np.float64) / 255.0
    return float(1 - np.linalg.norm(mean - target) / np.sqrt(3))


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    if not where.any():
        return 60.0
    mse = float(np.mean((a[where] - b[where]) ** 2))
    return min(10 * np.log10(1.0 / max(mse, 1e-10)), 60.0)


def _one(reading):
    return reading.objects[0] if len(reading.objects) == 1 else None


def evaluate(path: str, sources: list[str], seeds: list[int], steps: int, cfg: float, weights: list[float],
             map_scale: str, blend_threshold: float = 0.3, blend_only: bool = False) -> dict:
    import comfy.sample
    import torch

    from stepwise.models import analyser, scenes
    from stepwise.nodes.p2p import PromptToPromptAttn
    from stepwise.nodes.p2p_handover import find_record
    from stepwise.nodes.p2p_maps import word_maps
    from stepwise_dev.inprocess import encode

    model, clip, vae, meta = load_world(path)
    negative = encode(clip, "")
    empty = {"samples": torch.zeros(1, 3, 32, 32)}
    base = dict(mode="replace", cross_replace=0.8, word_cross_replace="", self_replace=0.4, reweight="",
                blend_words="", blend_threshold=blend_threshold, blend_start=0.2, record_maps=False,
                map_scale=map_scale)

    def pair(source, seed, **kw):
        m, pos, lat = PromptToPromptAttn.execute(model=model, clip=clip, source=source, latent=empty,
                                                 **{**base, **kw}).result
        noise = comfy.sample.prepare_noise(lat["samples"], seed, lat["batch_index"])
        out = comfy.sample.sample(m, noise, steps, cfg, "euler", "simple", pos, negative, lat["samples"],
                                  disable_pbar=True, seed=seed)
        return vae.decode(out).cpu().numpy(), lat, out

    def alone(prompt, seed):
        noise = comfy.sample.prepare_noise(empty["samples"], seed, None)
        out = comfy.sample.sample(model, noise, steps, cfg, "euler", "simple", encode(clip, prompt), negative,
                                  empty["samples"], disable_pbar=True, seed=seed)
        return vae.decode(out).cpu().numpy()[0]

    rows = {"refine": {"p2p": [], "baseline": []}, "reweight": [], "blend": {"with": [], "without": []},
            "maps": {"shape": [], "colour": [], "background": [], "chance": []}}
    for source in sources:
        d = scenes.parse_caption(source)
        o = d["objects"][0]
        bare = source.replace(f" {o['size']} ", " ", 1)  # the source of the refine edit: no size word
        colours = [c for c in scenes.COLOURS if c != d["background"]]
        swapped = source.replace(f" {o['colour']} {o['shape']}", f" {colours[(colours.index(o['colour']) + 1) % len(colours)]} {o['shape']}")
        for seed in seeds:
            if not blend_only:  # refine and reweight do not depend on the blend settings
                # refine: add the size word
                imgs, _, _ = pair(bare, seed, mode="refine", target=source)
                src, res = analyser.read(imgs[0]), analyser.read(imgs[1])
                plain = alone(source, seed)
                for name, img, reading in (("p2p", imgs[1], res), ("baseline", plain, analyser.read(plain))):
                    a, b = _one(src), _one(reading)
                    ok = a is not None and b is not None and b.words()["size"] == o["size"] and all(
                        b.words()[k] == a.words()[k] for k in ("shape", "colour", "position"))
                    outside = np.ones(imgs[0].shape[:2], bool)
                    for x in (a, b):
                        if x is not None:
                            outside &= ~x.mask
                    rows["refine"][name].append({"success": float(ok), "background_psnr": _psnr(imgs[0], img, outside)})
                # reweight the colour word
                strengths = []
                for w in weights:
                    imgs, _, _ = pair(source, seed, mode="reweight", target="", reweight=f"{o['colour']}:{w}")
                    ref = _one(analyser.read(imgs[1])) or _one(analyser.read(imgs[0]))
                    strengths.append(_strength(imgs[1], ref.mask if ref is not None else None, o["colour"]))
                rows["reweight"].append(strengths)
            # local blend on the colour swap, and the maps of the source row
            blended, lat, out = pair(source, seed, target=swapped, blend_words=o["shape"], record_maps=True)
            unblended, _, _ = pair(source, seed, target=swapped)
            obj = _one(analyser.read(blended[0]))
            outside = ~obj.mask if obj is not None else np.ones(blended.shape[1:3], bool)
            rows["blend"]["with"].append(_psnr(blended[0], blended[1], outside))
            rows["blend"]["without"].append(_psnr(unblended[0], unblended[1], outside))
            if obj is not None:
                record = find_record({**lat, "samples": out})
                labels, maps = word_maps(record, 0, [o["shape"], o["colour"], d["background"]])
                up = torch.nn.functional.interpolate(maps.unsqueeze(1).float(), size=obj.mask.shape, mode="bilinear",
                                                     align_corners=False).squeeze(1).numpy()
                for key, m in zip(("shape", "colour", "background"), up):
                    rows["maps"][key].append(analyser.mask_iou(m >= 0.5 * m.max(), obj.mask))
                rows["maps"]["chance"].append(float(obj.mask.mean()))
    out = run_record(path, meta)
    if blend_only:
        out["blend"] = {"samples": len(rows["blend"]["with"]),
                        "psnr_outside_with_blend": float(np.mean(rows["blend"]["with"])),
                        "psnr_outside_without_blend": float(np.mean(rows["blend"]["without"]))}
        log.info("%s: blend outside PSNR %.2f vs %.2f dB", out["checkpoint"], out["blend"]["psnr_outside_with_blend"],
                 out["blend"]["psnr_outside_without_blend"])
        return out
    out["refine"] = {f"{n}_{k}": float(np.mean([r[k] for r in rows["refine"][n]]))
                     for n in ("p2p", "baseline") for k in ("success", "background_psnr")}
    out["refine"]["samples"] = len(rows["refine"]["p2p"])
    usable = [s for s in rows["reweight"] if all(v is not None for v in s)]
    out["reweight"] = {"weights": weights, "samples": len(rows["reweight"]), "readable": len(usable),
                       "strength": [float(np.mean([s[i] for s in usable])) if usable else None
                                    for i in range(len(weights))],
                       "monotone": float(np.mean([all(b >= a for a, b in zip(s, s[1:])) for s in usable]))
                       if usable else None}
    out["blend"] = {"samples": len(rows["blend"]["with"]), "psnr_outside_with_blend": float(np.mean(rows["blend"]["with"])),
                    "psnr_outside_without_blend": float(np.mean(rows["blend"]["without"]))}
    out["maps"] = {"samples": len(rows["maps"]["chance"]),
                   **{f"iou_{k}": float(np.mean(v)) if v else None for k, v in rows["maps"].items()}}
    log.info("%s: refine success %.2f (baseline %.2f); reweight strength %s monotone %s; blend outside PSNR %.1f vs "
             "%.1f dB; map IoU shape %s colour %s background %s chance %s", out["checkpoint"],
             out["refine"]["p2p_success"], out["refine"]["baseline_success"], out["reweight"]["strength"],
             out["reweight"]["monotone"], out["blend"]["psnr_outside_with_blend"],
             out["blend"]["psnr_outside_without_blend"], out["maps"]["iou_shape"], out["maps"]["iou_colour"],
             out["maps"]["iou_background"], out["maps"]["iou_chance"])
    return out


def main(argv=None) -> int:
    parser = world_parser(__doc__.split("\n\n")[0], "world_p2p_modes.json")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--map-scale", default="1/2", choices=["1/4", "1/2"],
                        help="where the maps and the blend mask are taken (the node's map_scale): 1/2 of the 32 px "
                             "latent's side is 16x16, the world workflows' setting; 1/4 (8x8) is the paper's")
    parser.add_argument("--blend-threshold", type=float, default=0.3, help="the node's blend_threshold (default 0.3)")
    parser.add_argument("--blend-only", action="store_true",
                        help="measure local blend alone (a blend-settings lever; refine and reweight are skipped, the maps not reported)")
    args = parser.parse_args(argv)
    start_world_eval(args.out)
    from stepwise.models import scenes

    sources = [scenes.caption(scenes.sample_scene(32, WORLD_SEED, i, objects=(1, 1), split="held_out"))
               for i in range(args.prompts)]
    seeds = [3000 + s for s in range(args.seeds)]
    report = {"method": " ".join(__doc__.split("\n\n")[1:3]).replace("\n", " "), "sources": sources,
              "sampler_seeds": seeds, "steps": args.steps, "cfg": args.cfg, "map_scale": args.map_scale,
              "blend_threshold": args.blend_threshold, "blend_only": args.blend_only,
              "goal": "refine success >= 0.85; reweight monotone; blend raises the PSNR outside the object; word maps "
                      "overlap their object far above chance"}
    earlier = earlier_runs(args.add, args.out, report)
    report["runs"] = join_runs(earlier, [evaluate(p, sources, seeds, args.steps, args.cfg, args.weights, args.map_scale,
                                                  args.blend_threshold, args.blend_only)
                                         for p in args.checkpoint])
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
