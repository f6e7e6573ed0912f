"""Does the world text-to-image model draw what its prompt says? (issue "A world the models understand", item 5)

Each checkpoint (``--checkpoint``, one per training seed) is loaded through the host's own checkpoint loader (the
world config registered as the demo and the tests register it) and asked for ``--prompts`` held-out prompts
(scenes of ``--objects`` objects with a held-out colour-and-shape pair, :data:`models.scenes.HELD_OUT`, drawn from
world seed 7007, which no training set uses) and, for comparison, as many prompts of the training distribution
(other scenes of the same world seed), each with ``--seeds`` sampler seeds, by the host's euler sampler
(``--steps`` steps, CFG ``--cfg`` against the empty prompt). The analyser (:mod:`models.analyser`) reads every image;
reported per checkpoint and as mean and spread over checkpoints: the accuracy of shape, colour, size, position
(over the prompt's objects), background and object count, and the chance level of each attribute (the naive
baseline: a model that ignores the prompt and draws the world's attributes uniformly).

Writes ``eval/results/world_t2i.json``.
"""

from __future__ import annotations

import time

import numpy as np
from common import earlier_runs, join_runs, load_world, log, run_record, start_world_eval, world_parser, write_report

WORLD_SEED = 7007
CHANCE = {"shape": 1 / 6, "colour": 1 / 8, "size": 1 / 2, "position": 1 / 5, "background": 1 / 3}


def prompts(n: int, objects: tuple[int, int], split: str) -> list[str]:
    from stepwise.models import scenes

    return [scenes.caption(scenes.sample_scene(32, WORLD_SEED, i, objects=objects, split=split)) for i in range(n)]


def evaluate(path: str, prompt_sets: dict[str, list[str]], seeds: list[int], steps: int, cfg: float) -> dict:

    from stepwise.trainers.world import generate, read_grid

    model, clip, _vae, meta = load_world(path)
    out = run_record(path, meta)
    for name, texts in prompt_sets.items():
        start = time.perf_counter()
        images = _vae.decode(generate(model, clip, texts, seeds, 32, steps, cfg)).permute(0, 3, 1, 2) * 2 - 1
        out[name] = read_grid(images, texts, len(seeds))
        out[name]["samples"] = len(texts) * len(seeds)
        log.info("%s %s: shape %.3f colour %.3f position %.3f (%d samples, %.0f s)", out["checkpoint"], name,
                 out[name]["shape"], out[name]["colour"], out[name]["position"], out[name]["samples"],
                 time.perf_counter() - start)
    return out


def main(argv=None) -> int:
    parser = world_parser(__doc__.split("\n\n")[0], "world_t2i.json")
    parser.add_argument("--objects", type=int, nargs=2, default=[1, 1])
    args = parser.parse_args(argv)
    start_world_eval(args.out)
    objects = tuple(args.objects)
    sets = {"held_out": prompts(args.prompts, objects, "held_out"), "train_like": prompts(args.prompts, objects, "train")}
    seeds = [1000 + s for s in range(args.seeds)]
    report = {"method": __doc__.split("\n\n")[1].replace("\n", " "), "prompts": sets, "sampler_seeds": seeds,
              "steps": args.steps, "cfg": args.cfg, "objects": list(objects), "goal": "shape, colour, position >= 0.9"}
    earlier = earlier_runs(args.add, args.out, report)
    runs = join_runs(earlier, [evaluate(p, sets, seeds, args.steps, args.cfg) for p in args.checkpoint])
    summary = {}
    for name in sets:
        summary[name] = {}
        for k in ("shape", "colour", "size", "position", "background", "count", "all_attributes"):
            vals = [r[name][k] for r in runs if r[name].get(k) is not None]
            summary[name][k] = {"mean": float(np.mean(vals)), "spread": float(np.max(vals) - np.min(vals)),
                                "chance": CHANCE.get(k)} if vals else None
    report.update(runs=runs, summary=summary)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
