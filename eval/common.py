"""What every quality experiment shares: the host set up for in-process use, and the JSON report it writes."""

from __future__ import annotations

import json
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if os.path.join(REPO, "dev") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "dev"))

log = logging.getLogger("eval")


def start_eval(out: str) -> None:
    """Set up the host (and the pack as ``stepwise``) and logging; make the report's folder."""
    from stepwise_dev import host

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    host.setup()
    logging.basicConfig(level=logging.INFO, format="eval: %(message)s", force=True)


def write_report(path: str, report: dict) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    log.info("wrote %s", path)


def world_parser(description: str, results: str, count: str = "--prompts"):
    """The options every world-model experiment takes: the checkpoints (one per training seed), how many prompts
    (``count``) and sampler seeds, the sampler's steps and CFG, and the report path (``eval/results/<results>``)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--checkpoint", action="append", required=True, help="a world checkpoint (repeat per seed)")
    parser.add_argument(count, type=int, default=16)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", results))
    parser.add_argument("--add", action="store_true",
                        help="keep the runs already in --out (other training seeds, the same prompts, seeds, steps and "
                             "cfg) and add these checkpoints' runs: one training seed measured at a time")
    return parser


#: Report keys that describe the text, not the measurement: they may differ between the runs ``--add`` joins.
_DESCRIPTIVE = ("method", "goal", "runs", "summary")


def earlier_runs(add: bool, out: str, settings: dict) -> list[dict]:
    """With ``add`` (``--add``): the runs already in the report ``out``, after checking that it was measured with the
    same ``settings`` (the report's keys other than its method, goal, runs and summary); otherwise ``[]``.

    Called before anything is sampled, so a mismatch costs nothing. A missing report is a ``ValueError`` too: ``--add``
    says there is something to add to."""
    if not add:
        return []
    if not os.path.isfile(out):
        raise ValueError(f"--add: there is no report at {out!r} to add to; run without --add first")
    with open(out) as f:
        old = json.load(f)
    settings = json.loads(json.dumps(settings))  # as the report holds them (tuples become lists)
    differ = {k: (old.get(k), v) for k, v in settings.items() if k not in _DESCRIPTIVE and old.get(k) != v}
    differ.update({k: (v, None) for k, v in old.items() if k not in _DESCRIPTIVE and k not in settings})
    if differ:
        raise ValueError(f"--add: {out!r} was measured with other settings ({sorted(differ)} differ: "
                         f"{ {k: differ[k] for k in sorted(differ)} }); rerun every checkpoint without --add, or pass "
                         "the settings it used")
    return old["runs"]


def join_runs(earlier: list[dict], new: list[dict], key: tuple[str, ...] = ("training_seed",)) -> list[dict]:
    """``earlier`` runs with ``new`` ones added, a run measured again (the same values of the fields ``key``: by default
    the training seed) replacing its earlier run; in the order of ``key``."""
    place = lambda r: tuple(r[k] for k in key)  # noqa: E731
    again = {place(r) for r in new}
    return sorted([r for r in earlier if place(r) not in again] + new, key=place)


def start_world_eval(out: str) -> None:
    """:func:`start_eval`, then the world model's config registered with the host's detection (as the demo does)."""
    start_eval(out)
    from stepwise_zoo.tiny import register

    register()


def load_world(path: str):
    """A world checkpoint through the host's own loader (fp32): ``(model patcher, clip, vae, stepwise metadata)``."""
    import comfy.sd
    import torch

    from stepwise.models import checkpoint

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(path, model_options={"dtype": torch.float32})
    return model, clip, vae, checkpoint.read_metadata(path)


def run_record(path: str, meta: dict) -> dict:
    """The head of one checkpoint's entry in a report: file, training seed and steps."""
    return {"checkpoint": os.path.basename(path), "training_seed": meta["training"]["seed"],
            "training_steps": meta["training"]["steps"]}


def over_seeds(rows: list[dict], by: tuple[str, ...], values: tuple[str, ...], digits: int = 4,
               keep: tuple[str, ...] = ()) -> list[dict]:
    """Rows measured once per training seed, grouped by the keys ``by`` (groups in first-seen order): per group its
    ``by`` values, ``keep`` (copied from the group's first row: the same for every seed), ``train_seeds`` (how many
    rows) and, for each of ``values``, ``{"mean", "spread"}`` over the seeds (spread: max − min), rounded to
    ``digits``."""
    out = []
    for key in dict.fromkeys(tuple(r[k] for k in by) for r in rows):
        cell = [r for r in rows if tuple(r[k] for k in by) == key]
        entry = {**dict(zip(by, key)), **{k: cell[0][k] for k in keep if k in cell[0]}, "train_seeds": len(cell)}
        for name in values:
            vals = [float(r[name]) for r in cell]
            entry[name] = {"mean": round(sum(vals) / len(vals), digits), "spread": round(max(vals) - min(vals), digits)}
        out.append(entry)
    return out
