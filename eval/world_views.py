"""Do Visual Anagram and Hybrid Noise make illusions on the world model? (issue "A world the models understand", 5)

For each world checkpoint (``--checkpoint``; loaded by the host's checkpoint loader) and ``--pairs`` prompt pairs
(A, B) of one object each on the same background, both objects ``at the top`` in their own prompt, with different
colours and shapes (drawn from world seed 7007 without the held-out pairs' restriction, never a training set), and
``--seeds`` sampler seeds:

- **Visual Anagram** (views identity and rot180): success when the image read upright holds an object with A's
  shape, colour and position and the image turned upside down holds one with B's. Baseline: prompt A sampled
  alone by the plain model from the same noise, judged the same way (the upside-down view should not read as B).
- **Hybrid Noise** (low_high, the node's automatic blur): success when the image low-passed by the node's blur
  (:func:`kernels.frequency.lowpass`) holds an object with A's colour and position, and the image itself (seen up
  close: the high frequencies on top of the low) holds one with B's shape, colour and position. Baseline: prompt B
  sampled alone (its low-passed image should not read as A).
- The same judgements on the words a model has learnt (``*_colour``: colour only; ``*_colour_position``: colour
  and position): the world model reads colour words long before shape words (``world_t2i.json``), so these say
  whether the technique makes its illusion out of what the model does know. For the anagram the upright image
  must hold an object with A's words (colour; or colour and position "top") and the image turned upside down one
  with B's; for the hybrid the low-passed image A's and the image itself B's. Same baselines.
- ``*_mixed_colour``: the share of images whose foreground (pixels more than 0.25 from the background colour) has
  a mean colour nearer the average of A's and B's colours than either colour: the two prompts painted over the same
  pixels instead of each its own object.

The analyser reads every image (:mod:`models.analyser`). Chance of a view reading as a prompt by accident: about
1/8 colour × 1/6 shape × 1/5 position = 0.004. The euler sampler, ``--steps`` steps, CFG ``--cfg``; writes
``eval/results/world_views.json``.
"""

from __future__ import annotations

import numpy as np
from common import earlier_runs, join_runs, load_world, log, run_record, start_world_eval, world_parser, write_report

WORLD_SEED = 7007


def pairs(n: int) -> list[tuple[str, str]]:
    """``n`` prompt pairs (A, B): one object each at the top, same background and size, other colour and shape."""
    from stepwise.models import scenes

    rng = np.random.default_rng(WORLD_SEED)
    out = []
    while len(out) < n:
        bg = list(scenes.BACKGROUNDS)[rng.integers(3)]
        colours = [c for c in scenes.COLOURS if c != bg]
        ca, cb = rng.choice(colours, 2, replace=False)
        sa, sb = rng.choice([s for s in scenes.SHAPES if s != "triangle"], 2, replace=False)
        size = ("small", "large")[rng.integers(2)]
        out.append((f"a {size} {ca} {sa} at the top on a {bg} background",
                    f"a {size} {cb} {sb} at the top on a {bg} background"))
    return out


def holds(image: np.ndarray, prompt: str, keys=("shape", "colour", "position")) -> bool:
    """Whether the analyser finds in ``image`` an object with the prompt's words ``keys``."""
    from stepwise.models import analyser, scenes

    want = scenes.parse_caption(prompt)["objects"][0]
    return any(all(o.words()[k] == want[k] for k in keys) for o in analyser.read(image).objects)


def mixed_colour(image: np.ndarray, a: str, b: str) -> bool:
    """Whether the foreground of ``image`` (H×W×3 in [0, 1]) is painted in a mixture of A's and B's colours: its mean
    colour is nearer their average than either of them (False when there is no foreground)."""
    from stepwise.models import scenes

    want_a, want_b = scenes.parse_caption(a), scenes.parse_caption(b)
    background = np.asarray(scenes.BACKGROUNDS[want_a["background"]], dtype=np.float64) / 255
    foreground = np.linalg.norm(image - background, axis=-1) > 0.25
    if foreground.sum() < 4:
        return False
    mean = image[foreground].mean(0)
    ca, cb = (np.asarray(scenes.COLOURS[w["objects"][0]["colour"]], dtype=np.float64) / 255 for w in (want_a, want_b))
    return bool(np.linalg.norm(mean - (ca + cb) / 2) < min(np.linalg.norm(mean - ca), np.linalg.norm(mean - cb)))


def evaluate(path: str, prompt_pairs, seeds: list[int], steps: int, cfg: float) -> dict:
    import comfy.sample
    import comfy.sd
    import torch

    from stepwise.kernels.frequency import auto_kernel, auto_sigma, lowpass
    from stepwise.nodes.anagram import VisualAnagram
    from stepwise.nodes.hybrid import HybridNoise
    from stepwise_dev.inprocess import encode

    model, clip, vae, meta = load_world(path)
    negative = encode(clip, "")
    latent = torch.zeros(1, 3, 32, 32)
    sigma = auto_sigma(32, 32)
    kernel = (auto_kernel(sigma[0]), auto_kernel(sigma[1]))

    def sample(m, positive, seed):
        noise = comfy.sample.prepare_noise(latent, seed)
        out = comfy.sample.sample(m, noise, steps, cfg, "euler", "simple", positive, negative, latent,
                                  disable_pbar=True, seed=seed)
        return out

    def pixels(samples):
        return vae.decode(samples).cpu().numpy()[0]

    levels = {"": ("shape", "colour", "position"), "_colour": ("colour",),
              "_colour_position": ("colour", "position")}
    rows = {f"{k}{level}{base}": [] for k in ("anagram", "hybrid") for level in [*levels, "_mixed_colour"]
            for base in ("", "_baseline")}
    for a, b in prompt_pairs:
        ca, cb = encode(clip, a), encode(clip, b)
        anagram, pos_anagram = VisualAnagram.execute(model=model, positive_1=ca, view_1="identity", positive_2=cb,
                                                     view_2="rot180").result
        hybrid, pos_hybrid = HybridNoise.execute(model=model, positive_a=ca, positive_b=cb).result
        for seed in seeds:
            img = pixels(sample(anagram, pos_anagram, seed))
            plain_a = pixels(sample(model, ca, seed))
            raw = sample(hybrid, pos_hybrid, seed)
            low = pixels(lowpass(raw, sigma, kernel))
            plain_b = sample(model, cb, seed)
            low_b = pixels(lowpass(plain_b, sigma, kernel))
            raw, plain_b = pixels(raw), pixels(plain_b)
            rows["anagram_mixed_colour"].append(mixed_colour(img, a, b))
            rows["anagram_mixed_colour_baseline"].append(mixed_colour(plain_a, a, b))
            rows["hybrid_mixed_colour"].append(mixed_colour(raw, a, b))
            rows["hybrid_mixed_colour_baseline"].append(mixed_colour(plain_b, a, b))
            for level, keys in levels.items():
                low_keys = tuple(k for k in keys if k != "shape") if level == "" else keys
                rows[f"anagram{level}"].append(holds(img, a, keys) and holds(np.rot90(img, 2).copy(), b, keys))
                rows[f"anagram{level}_baseline"].append(holds(plain_a, a, keys)
                                                        and holds(np.rot90(plain_a, 2).copy(), b, keys))
                rows[f"hybrid{level}"].append(holds(low, a, low_keys) and holds(raw, b, keys))
                rows[f"hybrid{level}_baseline"].append(holds(low_b, a, low_keys)
                                                       and holds(plain_b, b, keys))
    out = {**run_record(path, meta), "samples": len(rows["anagram"])}
    out.update({k: float(np.mean(v)) for k, v in rows.items()})
    log.info("%s: anagram %.2f (one prompt %.2f), hybrid %.2f (one prompt %.2f); colour only: anagram %.2f (%.2f), "
             "hybrid %.2f (%.2f); mixed colours: anagram %.2f (%.2f), hybrid %.2f (%.2f); %d samples",
             out["checkpoint"], out["anagram"], out["anagram_baseline"], out["hybrid"], out["hybrid_baseline"],
             out["anagram_colour"], out["anagram_colour_baseline"], out["hybrid_colour"],
             out["hybrid_colour_baseline"], out["anagram_mixed_colour"], out["anagram_mixed_colour_baseline"],
             out["hybrid_mixed_colour"], out["hybrid_mixed_colour_baseline"], out["samples"])
    return out


def main(argv=None) -> int:
    parser = world_parser(__doc__.split("\n\n")[0], "world_views.json", "--pairs")
    args = parser.parse_args(argv)
    start_world_eval(args.out)
    prompt_pairs = pairs(args.pairs)
    seeds = [3000 + s for s in range(args.seeds)]
    report = {"method": " ".join(__doc__.split("\n\n")[1:4]).replace("\n", " "), "pairs": prompt_pairs,
              "sampler_seeds": seeds, "steps": args.steps, "cfg": args.cfg, "chance": 1 / 8 * 1 / 6 * 1 / 5}
    earlier = earlier_runs(args.add, args.out, report)
    runs = join_runs(earlier, [evaluate(p, prompt_pairs, seeds, args.steps, args.cfg) for p in args.checkpoint])
    summary = {k: {"mean": float(np.mean([r[k] for r in runs])),
                   "spread": float(np.max([r[k] for r in runs]) - np.min([r[k] for r in runs]))}
               for k in runs[0] if k.startswith(("anagram", "hybrid"))}
    report.update(runs=runs, summary=summary)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
