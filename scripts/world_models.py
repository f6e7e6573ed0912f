"""``make world-models``: the recipe of the world text-to-image models, run in resumable parts.

Each call does the next part of the recipe and stops within ``--part-minutes`` (default 110: a part fits the
2-hour limit on 2 CPU cores); call it again until it says the recipe is complete. Parts never repeat work: the
data is made once, each training seed resumes bit-exactly from its last checkpoint (``train.py world --resume``),
and a finished seed is not touched again.

Recipe (``RECIPE``; the work folder is ``--work``, default ``~/.cache/stepwise/world``):

1. data: ``train.py make-data --kind scenes`` of 1-object scenes at 32 px without the held-out colour-and-shape
   pairs (``--split train``), world seed ``DATA_SEED``;
2. for each training seed of ``SEEDS``: ``train.py world`` for ``STEPS`` steps (batch 32, lr 3e-4, EMA 0.999, the
   text encoder trained with the UNet, PyTorch attention; the README gives the times on 2 CPU threads);
3. each time a seed finishes, and when every seed is done: with ``--ship`` each finished checkpoint is written at
   once in fp16 to ``--ship-dir`` (default ``dev/world_models``) with the recipe, the data seed, its first logged
   losses and the machine in its metadata; then ``eval/world_t2i.py`` on the finished checkpoints (the shipped fp16
   copies where there are some: the weights users load; held-out prompts and sampler seeds) ->
   ``eval/results/world_t2i.json``, and each shipped copy gets the metrics measured on it in its metadata.

A seed whose checkpoint is shipped counts as done even where the work folder is empty (a new machine): its shipped
file is what the report reads, so a recipe run over several machines or sessions never trains a seed twice once
it is committed. The part's own training state (``.train-state``) lives only in the work folder; a seed cut off in
the middle resumes only where that folder survived.

On a CUDA machine add ``--device cuda`` (and more threads do nothing there): the parts then take minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TRAIN_PY = os.path.join(REPO, "train.py")

DATA_SEED = 1
DATA = {"kind": "scenes", "n": 20000, "size": 32, "split": "train", "objects": (1, 1)}
SEEDS = (0, 1)
STEPS = 8000
TRAIN = {"batch": 32, "lr": 3e-4, "ema": 0.999, "save_every": 250, "sample_every": 500}
RECIPE = (f"make world-models: {DATA['n']} {DATA['objects'][0]}-object scenes at {DATA['size']} px, split "
          f"{DATA['split']}, world seed {DATA_SEED}; train.py world --steps {STEPS} --batch {TRAIN['batch']} --lr "
          f"{TRAIN['lr']} --ema {TRAIN['ema']} (text encoder trained), seeds {', '.join(map(str, SEEDS))}")

log = logging.getLogger("world-models")


def data_command(folder: str) -> list[str]:
    return [sys.executable, TRAIN_PY, "make-data", "--kind", DATA["kind"], "--n", str(DATA["n"]), "--size",
            str(DATA["size"]), "--out", folder, "--seed", str(DATA_SEED), "--split", DATA["split"], "--objects",
            *map(str, DATA["objects"])]


def train_command(data: str, out: str, seed: int, minutes: float, device: str, steps: int = STEPS) -> list[str]:
    cmd = [sys.executable, TRAIN_PY, "world", "--data", data, "--out", out, "--steps", str(steps), "--seed", str(seed),
           "--batch", str(TRAIN["batch"]), "--lr", str(TRAIN["lr"]), "--ema", str(TRAIN["ema"]),
           "--save-every", str(TRAIN["save_every"]), "--sample-every", str(TRAIN["sample_every"]),
           "--device", device, "--recipe", RECIPE]
    if minutes > 0:
        cmd += ["--max-minutes", f"{minutes:.2f}"]
    if os.path.isfile(out + ".train-state"):
        cmd.append("--resume")
    return cmd


def steps_done(out: str) -> int:
    """Steps of the checkpoint at ``out`` (0 when there is none yet)."""
    if not os.path.isfile(out):
        return 0
    from safetensors import safe_open

    with safe_open(out, framework="pt") as f:
        return int(json.loads(f.metadata()["stepwise"])["training"]["steps"])


def ship(paths: list[str], ship_dir: str, trained_on: str = "") -> list[str]:
    """Write each checkpoint in fp16 to ``ship_dir`` with the recipe, data seed, first logged losses and the machine it
    was trained on (``trained_on``) in its metadata; :func:`stamp` adds the metrics once the fp16 copy is measured."""
    os.makedirs(ship_dir, exist_ok=True)
    written = []
    for path in paths:
        tensors, meta = _read(path)
        tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
        meta["training"].update({"recipe": RECIPE, "data_seed": DATA_SEED, "data": DATA | {"objects": list(DATA["objects"])},
                                 "first_losses": _losses(path)[:20], "trained_on": trained_on})
        out = shipped(path, ship_dir)
        _write(out, tensors, meta)
        written.append(out)
        log.info("shipped %s (%.1f MB)", out, os.path.getsize(out) / 2**20)
    return written


def stamp(paths: list[str], report: dict) -> None:
    """Add to each shipped checkpoint of ``paths`` that has none yet its metrics as ``report`` measured them on that
    very file (the fp16 weights users load, not the fp32 ones they were rounded from)."""
    for path in paths:
        tensors, meta = _read(path)
        if "metrics" in meta["training"]:
            continue
        run = next(r for r in report["runs"] if r["checkpoint"] == os.path.basename(path))
        meta["training"]["metrics"] = {k: run[k] for k in ("held_out", "train_like")}
        _write(path, tensors, meta)


def _read(path: str) -> tuple[dict, dict]:
    """A checkpoint's tensors and its Stepwise metadata."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["stepwise"])


def _write(out: str, tensors: dict, meta: dict) -> None:
    from safetensors.torch import save_file

    save_file(tensors, out + ".tmp", metadata={"stepwise": json.dumps(meta, sort_keys=True)})
    os.replace(out + ".tmp", out)


def _losses(path: str) -> list[float]:
    from safetensors.torch import load_file

    return load_file(path + ".train-state")["losses"].tolist()


def shipped(out: str, ship_dir: str) -> str:
    """Where the shipped fp16 copy of the work folder's checkpoint ``out`` lives."""
    return os.path.join(ship_dir, os.path.basename(out))


def finished(out: str, ship_dir: str) -> str | None:
    """The finished checkpoint of one seed: its shipped fp16 copy when there is one (the weights users load, so the
    ones measured), else the work folder's fp32 checkpoint when it is complete; ``None`` while the seed is still to
    train."""
    copy = shipped(out, ship_dir)
    if steps_done(copy) >= STEPS:
        return copy
    return out if steps_done(out) >= STEPS else None


def report(paths: list[str], env: dict) -> dict:
    """``eval/world_t2i.py`` on the finished checkpoints ``paths`` -> ``eval/results/world_t2i.json`` (returned)."""
    results = os.path.join(REPO, "eval", "results", "world_t2i.json")
    cmd = [sys.executable, os.path.join(REPO, "eval", "world_t2i.py"), "--out", results]
    for path in paths:
        cmd += ["--checkpoint", path]
    subprocess.run(cmd, check=True, env=env)
    with open(results) as f:
        return json.load(f)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.expanduser("~/.cache/stepwise/world"))
    parser.add_argument("--part-minutes", type=float, default=110.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ship", action="store_true", help="write each finished checkpoint in fp16 to --ship-dir")
    parser.add_argument("--ship-dir", default=os.path.join(REPO, "dev", "world_models"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="world-models: %(message)s")
    start = time.monotonic()
    left = lambda: args.part_minutes - (time.monotonic() - start) / 60  # noqa: E731
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    data = os.path.join(args.work, "data")
    outs = [os.path.join(args.work, f"stepwise-world-s{seed}.safetensors") for seed in SEEDS]

    def unshipped() -> list[str]:
        return [o for o in outs if steps_done(o) >= STEPS > steps_done(shipped(o, args.ship_dir))]

    def finish() -> dict:
        """With ``--ship``, ship every seed finished in the work folder and not shipped yet; then report on every
        finished seed (the shipped copies where there are some) and stamp the shipped copies with their metrics."""
        if args.ship:
            ship(unshipped(), args.ship_dir, f"{args.device}, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
        done = [p for p in (finished(o, args.ship_dir) for o in outs) if p]
        summary = report(done, env)
        stamp([p for p in done if p not in outs], summary)
        return summary

    # a seed finished in an earlier part (or by hand) and not shipped yet: ship it before training on
    summary = finish() if args.ship and unshipped() else None
    for seed, out in zip(SEEDS, outs):
        if finished(out, args.ship_dir):
            continue
        if left() < 5:
            log.info("part over; run again to continue (seed %d at step %d of %d)", seed, steps_done(out), STEPS)
            return 0
        if not os.path.isfile(os.path.join(data, f"scenes_{DATA['n'] - 1:05d}.txt")):
            subprocess.run(data_command(data), check=True, env=env)
        subprocess.run(train_command(data, out, seed, left(), args.device), check=True, env=env)
        if steps_done(out) < STEPS:
            log.info("part over; run again to continue (seed %d at step %d of %d)", seed, steps_done(out), STEPS)
            return 0
        summary = finish()  # the seed is done: ship and report it now, before the next seed's part can be cut off
    if summary is None:  # nothing trained or shipped in this part: report on what is there
        summary = finish()
    log.info("recipe complete: %s", json.dumps(summary["summary"]["held_out"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
