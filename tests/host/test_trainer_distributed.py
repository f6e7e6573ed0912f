"""Every trainer under torchrun (gloo, 2 CPU processes): the global batch split across processes trains the
weights one process trains with the same batch; resume works when the number of processes changes; a run killed
at any moment leaves a loadable checkpoint; a batch the processes cannot split is refused naming both numbers.

Tolerance. The two runs make the same draws and average the same per-image losses, but they sum the gradient in
a different order (two half-batch means averaged by all-reduce instead of one mean), so gradients agree to float32
rounding (~1e-7 relative), not bit for bit. Adam divides each coordinate's step by its own gradient scale, so a
coordinate whose gradient is at rounding level can take a different step (at most 2·lr a step): the weights are
therefore compared as a whole, the distance between the two runs' weights against the distance the training moved
them (``RELATIVE``), and the losses step by step, which a missing gradient average moves far more (measured: 0.2 %
of the update for the refiner below, 1e-7 on the losses).
"""

import os
import random
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from stepwise.models import checkpoint
from stepwise.models.scenes import write_dataset
from stepwise.models.world import make_data
from stepwise_dev import paths, refiners

TRAIN_PY = os.path.join(paths.REPO, "train.py")
RELATIVE = 0.02  # distance between the 1- and 2-process weights, as a share of the distance training moved them
LOSS_RTOL = 1e-4


@pytest.fixture(scope="module")
def data(tmp_path_factory, zoo):
    root = tmp_path_factory.mktemp("ddp")
    make_data("shapes", 48, 32, str(root / "shapes"), seed=3)
    make_data("figures", 16, 32, str(root / "figures"), seed=3)
    write_dataset(str(root / "scenes"), 16, 32, seed=4, objects=(1, 2))
    return {"shapes": str(root / "shapes"), "figures": str(root / "figures"), "scenes": str(root / "scenes"),
            "base": refiners.demo_refiner(zoo)}


def _args(kind: str, data: dict) -> list[str]:
    """A few steps of each trainer on the CPU with raw (EMA-free) weights, so the written weights are the trained
    ones."""
    common = ["--ema", "0", "--resolution", "32", "--device", "cpu"]
    return {
        "refiner": ["refiner", "--data", data["shapes"], "--arch", "tiny", "--steps", "6", "--batch", "8", "--lr",
                    "1e-3", "--seed", "5"],
        "pose": ["pose", "--data", data["figures"], "--arch", "compact", "--steps", "3", "--batch", "4", "--lr",
                 "1e-3", "--seed", "5", "--context-dim", "32", "--bands", "4"],
        "estimator": ["estimator", "--data", data["shapes"], "--base", data["base"], "--arch", "tiny", "--t-range",
                      "0", "250", "--steps", "3", "--batch", "4", "--lr", "2e-3", "--seed", "4", "--clean-share",
                      "0.5", "--eval-steps", "2"],
        "world": ["world", "--data", data["scenes"], "--steps", "3", "--batch", "4", "--lr", "1e-3", "--seed", "2",
                  "--sample-steps", "2"],
        # a stream read in epochs by DataLoader workers: each process reads only its rows
        "refiner_streamed": ["refiner", "--data", data["shapes"], "--arch", "tiny", "--steps", "8", "--batch", "8",
                             "--lr", "1e-3", "--seed", "5", "--stream", "--workers", "1"],
    }[kind] + common


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1")


def _run(args: list[str], out: str, processes: int = 1, extra: list[str] = (), check: bool = True):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] \
        if processes > 1 else [sys.executable]
    proc = subprocess.run(launcher + [TRAIN_PY, *args, "--out", out, *extra], capture_output=True, text=True,
                          env=_env(), timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _with(args: list[str], **changes) -> list[str]:
    args = list(args)
    for name, value in changes.items():
        flag = "--" + name.replace("_", "-")
        args[args.index(flag) + 1] = str(value)
    return args


def _distance(a: dict, b: dict) -> float:
    return float(torch.cat([(a[k].double() - b[k].double()).flatten() for k in a]).norm())


@pytest.mark.parametrize("kind", ["refiner", "pose", "estimator", "world", "refiner_streamed"])
def test_two_processes_train_the_weights_of_one_process_with_the_same_global_batch(data, tmp_path, kind):
    args = _args(kind, data)
    start, one, two = (str(tmp_path / f"{n}.safetensors") for n in ("start", "one", "two"))
    _run(_with(args, lr=0, steps=1), start)  # the initial weights (AdamW with lr 0 moves nothing)
    _run(args, one)
    _run(args, two, processes=2)
    w0, w1, w2 = (checkpoint.load(p)[0] for p in (start, one, two))
    assert set(w1) == set(w2)
    moved = _distance(w1, w0)
    assert moved > 0 and _distance(w1, w2) <= RELATIVE * moved, (_distance(w1, w2), moved)
    l1, l2 = (load_file(p + ".train-state")["losses"] for p in (one, two))
    torch.testing.assert_close(l2, l1, rtol=LOSS_RTOL, atol=0)
    assert checkpoint.read_metadata(two)["training"]["processes"] == 2


def test_resume_from_two_processes_in_one_continues_the_same_run(data, tmp_path):
    args = _args("refiner", data)
    straight, split = str(tmp_path / "straight.safetensors"), str(tmp_path / "split.safetensors")
    _run(args, straight)
    _run(_with(args, steps=3), split, processes=2)
    _run(args, split, extra=["--resume"])
    l1, l2 = (load_file(p + ".train-state")["losses"] for p in (straight, split))
    assert len(l2) == 6
    torch.testing.assert_close(l2, l1, rtol=LOSS_RTOL, atol=0)
    w0 = checkpoint.load(straight)[0]
    assert _distance(w0, checkpoint.load(split)[0]) <= RELATIVE * float(
        torch.cat([w.double().flatten() for w in w0.values()]).norm())


@pytest.mark.parametrize("how", ["crash", "sigterm"])
def test_a_killed_multi_process_run_leaves_a_loadable_checkpoint(data, tmp_path, how):
    """Stop a 2-process run at a random moment after its first checkpoint, either as a crash (SIGKILL to torchrun and
    both workers at once) or as torchrun is told to stop (SIGTERM, which it forwards to its workers): the checkpoint
    and the training state are whole (each written to a temporary file and renamed) and the run resumes from them."""
    import psutil

    out = str(tmp_path / "killed.safetensors")
    args = _with(_args("refiner", data), steps=10_000) + ["--save-every", "1"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.Popen(launcher + [TRAIN_PY, *args, "--out", out], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env())
    tree = []
    try:
        deadline = time.monotonic() + 300
        while not os.path.isfile(out + ".train-state"):
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.05)
        time.sleep(random.Random(how).uniform(0.0, 2.0))
        tree = psutil.Process(proc.pid).children(recursive=True)  # torchrun starts its workers in their own sessions
        if how == "crash":
            for p in [psutil.Process(proc.pid), *tree]:
                p.kill()
        else:
            proc.terminate()
        proc.wait(timeout=120)
    finally:  # nothing outlives the test, whatever failed
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in tree:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(tree, timeout=60)
    tensors, meta = checkpoint.load(out, kind="refiner")
    done = load_file(out + ".train-state")["losses"].numel()
    assert meta["training"]["steps"] >= 1 and done >= 1
    _run(_with(args, steps=done + 1), out, extra=["--resume"])
    assert load_file(out + ".train-state")["losses"].numel() == done + 1


def test_a_batch_the_processes_cannot_split_is_refused(data, tmp_path):
    proc = _run(_with(_args("refiner", data), batch=7), str(tmp_path / "odd.safetensors"), processes=2, check=False)
    assert proc.returncode != 0
    assert "--batch 7 is not divisible by the 2 processes" in proc.stdout + proc.stderr
