"""What limits the world text-to-image model? (issue "A world the models understand", item 5: a missed goal says
what limits it, measured)

For each ``--checkpoint`` (the shipped training seeds, and the same seed trained longer where given: a checkpoint's
training seed and steps come from its metadata) and each ``--cfg`` value, the prompts and sampler seeds of
``world_t2i.py`` (held-out and training-like one-object prompts, euler, ``--steps`` steps on the ``simple``
schedule) are drawn and read by the analyser: the accuracy of shape, colour, size, position and object count, and
what was drawn where a shape was asked (the share of images read as each shape, or with no object at all). Two
levers are measured this way: CFG (every checkpoint at every scale) and training steps (each seed at several step
counts: ``train.py world --resume --steps N`` continues a recipe seed bit for bit, the learning rate being
constant). ``summary`` is the mean ± spread over the training seeds of each (training steps, CFG, prompt set);
``--add`` measures more checkpoints or scales into an existing report (the same prompts, sampler seeds and steps).

Writes ``eval/results/world_levers.json``.
"""

from __future__ import annotations

import time

from common import (
    earlier_runs,
    join_runs,
    load_world,
    log,
    over_seeds,
    run_record,
    start_world_eval,
    world_parser,
    write_report,
)
from world_t2i import CHANCE, prompts

ATTRIBUTES = ("shape", "colour", "size", "position", "count")
SETS = {"held_out": "held_out", "train_like": "train"}


def measure(path: str, texts: dict[str, list[str]], seeds: list[int], steps: int, cfgs: list[float]) -> list[dict]:
    """One row per (CFG, prompt set) of the checkpoint at ``path``."""
    from stepwise.trainers.world import generate, read_grid

    model, clip, vae, meta = load_world(path)
    head = run_record(path, meta)
    rows = []
    for cfg in cfgs:
        for name, prompt_list in texts.items():
            start = time.perf_counter()
            images = vae.decode(generate(model, clip, prompt_list, seeds, 32, steps, cfg)).permute(0, 3, 1, 2) * 2 - 1
            acc = read_grid(images, prompt_list, len(seeds), drawn=True)
            drawn = {k: round(v, 4) for k, v in acc["drawn"].items()}
            row = {**head, "cfg": cfg, "prompts": name, "samples": len(prompt_list) * len(seeds),
                   **{k: round(acc[k], 4) for k in ATTRIBUTES}, "drawn": drawn,
                   "drawn_circle": drawn.get("circle", 0.0), "drawn_none": drawn.get("none", 0.0)}
            rows.append(row)
            log.info("%s (%d steps) cfg %g %s: shape %.3f colour %.3f position %.3f; drawn %s (%.0f s)",
                     head["checkpoint"], head["training_steps"], cfg, name, row["shape"], row["colour"],
                     row["position"], row["drawn"], time.perf_counter() - start)
    return rows


KEY = ("training_seed", "training_steps", "cfg", "prompts")  # a row's place; --add replaces a row measured again


def main(argv=None) -> int:
    parser = world_parser(__doc__.split("\n\n")[0], "world_levers.json")
    parser.add_argument("--cfgs", type=float, nargs="+", default=[1.0, 3.0, 6.0],
                        help="CFG scales, each measured (--cfg is not used); with --add, rows of other checkpoints and "
                             "scales already in --out are kept")
    args = parser.parse_args(argv)
    start_world_eval(args.out)
    texts = {name: prompts(args.prompts, (1, 1), split) for name, split in SETS.items()}
    seeds = [1000 + s for s in range(args.seeds)]
    report = {"method": __doc__.split("\n\n")[1].replace("\n", " "), "prompts": texts, "sampler_seeds": seeds,
              "steps": args.steps, "chance": {k: CHANCE[k] for k in ATTRIBUTES if k in CHANCE}}
    earlier = earlier_runs(args.add, args.out, report)
    rows = join_runs(earlier, [r for p in args.checkpoint for r in measure(p, texts, seeds, args.steps, args.cfgs)],
                     KEY)
    summary = over_seeds(rows, ("training_steps", "cfg", "prompts"), ATTRIBUTES + ("drawn_circle", "drawn_none"))
    report.update(runs=rows, summary=summary)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
