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
    return parser


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
