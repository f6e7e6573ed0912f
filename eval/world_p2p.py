"""Does Prompt-to-Prompt replace edit a world image and keep its layout? (issue "A world the models understand", 5)

For each world checkpoint (``--checkpoint``, one per training seed; loaded by the host's checkpoint loader), each
held-out source prompt (1-object scenes with a held-out colour-and-shape pair, world seed 7007; never in training)
and each sampler seed, two edits swap one word: the colour (to the next colour of :data:`models.scenes.COLOURS`
that is not the background) and the shape (to the next shape). Each edit is made two ways from the same noise:

- **Prompt-to-Prompt** (the pack's node, ``replace``, cross-replace ``--cross``, self-replace ``--self``): row 1
  is the source image, row 2 the edit;
- **the paper's baseline**: the target prompt sampled alone by the plain model.

The analyser reads the source and both results. Reported per edit kind, per checkpoint and as mean and spread:

- ``success``: the result is read as the target prompt, every attribute (shape, colour, size, position): the new
  word present and the prompt's other words kept;
- ``iou``: the object-mask IoU of the result's object with the source image's object (structure preservation);
- ``background_psnr``: PSNR of the pixels outside both objects' masks, result against source (dB);

each over all samples and over the samples whose source image the analyser reads as its prompt (``_source_ok``).
The euler sampler, ``--steps`` steps, CFG ``--cfg``; writes ``eval/results/world_p2p.json``.
"""

from __future__ import annotations

import numpy as np
from common import earlier_runs, join_runs, load_world, log, run_record, start_world_eval, world_parser, write_report

WORLD_SEED = 7007


def edits(prompt: str) -> dict[str, str]:
    """The colour swap and the shape swap of a 1-object world prompt (same word count: Prompt-to-Prompt replace)."""
    from stepwise.models import scenes

    d = scenes.parse_caption(prompt)
    o = d["objects"][0]
    colours = [c for c in scenes.COLOURS if c != d["background"]]
    colour = colours[(colours.index(o["colour"]) + 1) % len(colours)]
    shape = scenes.SHAPES[(scenes.SHAPES.index(o["shape"]) + 1) % len(scenes.SHAPES)]
    return {"colour": prompt.replace(f" {o['colour']} {o['shape']}", f" {colour} {o['shape']}"),
            "shape": prompt.replace(f" {o['colour']} {o['shape']}", f" {o['colour']} {shape}")}


def _pixels(vae, samples):
    return vae.decode(samples).cpu().numpy()  # B×H×W×3 in [0, 1]


def _object(reading):
    return reading.objects[0] if len(reading.objects) == 1 else None


def score(source_img, result_img, target_prompt: str) -> dict:
    """Success, mask IoU and background PSNR of one result against its source image."""
    from stepwise.models import analyser, scenes

    src, res = analyser.read(source_img), analyser.read(result_img)
    want = scenes.parse_caption(target_prompt)["objects"][0]
    o_src, o_res = _object(src), _object(res)
    ok = o_res is not None and all(o_res.words()[k] == want[k] for k in analyser.ATTRIBUTES)
    iou = analyser.mask_iou(o_src.mask, o_res.mask) if o_src is not None and o_res is not None else 0.0
    outside = np.ones(source_img.shape[:2], bool)
    for o in (o_src, o_res):
        if o is not None:
            outside &= ~o.mask
    mse = float(np.mean((source_img[outside] - result_img[outside]) ** 2)) if outside.any() else 0.0
    psnr = 10 * np.log10(1.0 / max(mse, 1e-10))
    return {"success": float(ok), "iou": iou, "background_psnr": min(psnr, 60.0)}


def evaluate(path: str, sources: list[str], seeds: list[int], steps: int, cfg: float, cross: float,
             self_replace: float) -> dict:
    import comfy.sample
    import comfy.sd
    import torch

    from stepwise.models import analyser, scenes
    from stepwise.nodes.p2p import PromptToPromptAttn
    from stepwise_dev.inprocess import encode

    model, clip, vae, meta = load_world(path)
    negative = encode(clip, "")
    empty = {"samples": torch.zeros(1, 3, 32, 32)}
    rows = {kind: {"p2p": [], "baseline": [], "source_ok": []} for kind in ("colour", "shape")}
    for source in sources:
        for kind, target in edits(source).items():
            kw = dict(mode="replace", cross_replace=cross, word_cross_replace="", self_replace=self_replace,
                      reweight="", blend_words="", blend_threshold=0.3, blend_start=0.2, record_maps=False)
            m, pos, lat = PromptToPromptAttn.execute(model=model, clip=clip, source=source, target=target,
                                                     latent=empty, **kw).result
            for seed in seeds:
                noise = comfy.sample.prepare_noise(lat["samples"], seed, lat["batch_index"])
                pair = _pixels(vae, comfy.sample.sample(m, noise, steps, cfg, "euler", "simple", pos, negative,
                                                         lat["samples"], disable_pbar=True, seed=seed))
                plain = _pixels(vae, comfy.sample.sample(model, noise[:1], steps, cfg, "euler", "simple",
                                                          encode(clip, target), negative, empty["samples"],
                                                          disable_pbar=True, seed=seed))
                src_reading = analyser.read(pair[0])
                truth = scenes.parse_caption(source)["objects"][0]
                o = _object(src_reading)
                rows[kind]["source_ok"].append(o is not None and all(o.words()[k] == truth[k]
                                                                     for k in analyser.ATTRIBUTES))
                rows[kind]["p2p"].append(score(pair[0], pair[1], target))
                rows[kind]["baseline"].append(score(pair[0], plain[0], target))
    out = run_record(path, meta)
    for kind, r in rows.items():
        ok = np.asarray(r["source_ok"])
        out[kind] = {"samples": len(ok), "source_read_as_prompt": float(ok.mean())}
        for method in ("p2p", "baseline"):
            for metric in ("success", "iou", "background_psnr"):
                vals = np.asarray([s[metric] for s in r[method]])
                out[kind][f"{method}_{metric}"] = float(vals.mean())
                out[kind][f"{method}_{metric}_source_ok"] = float(vals[ok].mean()) if ok.any() else None
        log.info("%s %s: success p2p %.2f base %.2f | iou p2p %.2f base %.2f | bg psnr p2p %.1f base %.1f (%d)",
                 out["checkpoint"], kind, out[kind]["p2p_success"], out[kind]["baseline_success"],
                 out[kind]["p2p_iou"], out[kind]["baseline_iou"], out[kind]["p2p_background_psnr"],
                 out[kind]["baseline_background_psnr"], len(ok))
    return out


def main(argv=None) -> int:
    parser = world_parser(__doc__.split("\n\n")[0], "world_p2p.json")
    parser.add_argument("--cross", type=float, default=0.8)
    parser.add_argument("--self", dest="self_replace", type=float, default=0.4)
    args = parser.parse_args(argv)
    start_world_eval(args.out)
    from stepwise.models import scenes

    sources = [scenes.caption(scenes.sample_scene(32, WORLD_SEED, i, objects=(1, 1), split="held_out"))
               for i in range(args.prompts)]
    seeds = [2000 + s for s in range(args.seeds)]
    report = {"method": " ".join(__doc__.split("\n\n")[1:4]).replace("\n", " "), "sources": sources,
              "sampler_seeds": seeds, "steps": args.steps, "cfg": args.cfg, "cross_replace": args.cross,
              "self_replace": args.self_replace,
              "goal": "success >= 0.85 with iou >= 0.85; the baseline's iou far lower"}
    earlier = earlier_runs(args.add, args.out, report)
    runs = join_runs(earlier, [evaluate(p, sources, seeds, args.steps, args.cfg, args.cross, args.self_replace)
                               for p in args.checkpoint])
    summary = {}
    for kind in ("colour", "shape"):
        summary[kind] = {}
        for key in runs[0][kind]:
            vals = [r[kind][key] for r in runs if r[kind][key] is not None]
            summary[kind][key] = ({"mean": float(np.mean(vals)), "spread": float(np.max(vals) - np.min(vals))}
                                  if vals and key != "samples" else sum(r[kind]["samples"] for r in runs))
    report.update(runs=runs, summary=summary)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
