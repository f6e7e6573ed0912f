"""The README's measured tables, built from the JSON the experiments write (``eval/results/*.json``).

Each table sits in the README between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``; ``make tables`` rewrites
those blocks from :data:`TABLES` and ``tests/unit/test_readme_tables.py`` fails when a block and its JSON disagree,
so a number in a table is always the one an experiment wrote. Nothing is measured here. Where an experiment ran
over several training seeds, a cell is ``mean ± spread`` (spread: max − min over the seeds, as in the JSON).
"""

from __future__ import annotations

import json
import os
import re

from . import paths

RESULTS = os.path.join(paths.REPO, "eval", "results")
README = os.path.join(paths.REPO, "README.md")


def _load(name: str) -> dict:
    with open(os.path.join(RESULTS, name)) as f:
        return json.load(f)


def _cell(values: list[float], digits: int = 2) -> str:
    """One measured value over the training seeds: the value, or ``mean ± spread`` over several."""
    mean = sum(values) / len(values)
    text = f"{mean:.{digits}f}"
    if len(values) > 1:
        text += f" ± {max(values) - min(values):.{digits}f}"
    return text


def _get(run: dict, path: str):
    for key in path.split("."):
        run = run[key]
    return run


def _cells(runs: list[dict], paths_: list[str], digits: int = 2, unit: str = "") -> str:
    """``a / b / c``: each of ``paths_`` (dotted keys of a run) over the runs, then ``unit``."""
    return " / ".join(_cell([_get(r, p) for r in runs], digits) for p in paths_) + unit


def _seeds(runs: list[dict]) -> tuple[int, ...]:
    return tuple(sorted(r["training_seed"] for r in runs))


def _same_seeds(files: dict[str, dict]) -> list[dict]:
    """The runs of the world experiments, checked to come from the same training seeds and steps."""
    seen = {name: (_seeds(d["runs"]), tuple(sorted({r["training_steps"] for r in d["runs"]})))
            for name, d in files.items()}
    if len(set(seen.values())) != 1:
        raise ValueError(f"the world results come from different checkpoints: {seen}; rerun the experiments on the "
                         "same shipped checkpoints (eval/world_*.py --checkpoint ... for each training seed)")
    return files["world_t2i.json"]["runs"]


def _views(runs: list[dict], kind: str, chance: float) -> list[tuple[str, str, str, str]]:
    keys = [kind, f"{kind}_colour", f"{kind}_colour_position"]
    name = {"anagram": "Visual Anagram", "hybrid": "Hybrid Noise"}[kind]
    what = {"anagram": " (upright and upside down)", "hybrid": " (low-pass A, up close B)"}[kind]
    return [
        (name + what, "both views read as their prompts: whole prompt / colour only / colour and position",
         _cells(runs, keys), _cells(runs, [k + "_baseline" for k in keys])
         + f" (one prompt alone; chance about {chance:.3f} for the whole prompt)"),
        (name, "the foreground painted in a mix of both prompts' colours", _cells(runs, [f"{kind}_mixed_colour"]),
         _cells(runs, [f"{kind}_mixed_colour_baseline"]) + " (one prompt alone)"),
    ]


QUARTER_MAPS = "world_p2p_modes_map_scale_1-4.json"  # the maps and the blend at the paper's 1/4 of the latent


def world() -> str:
    """Every technique on the shipped world text-to-image models against its naive baseline."""
    t2i, p2p, modes, views = (_load(f"world_{n}.json") for n in ("t2i", "p2p", "p2p_modes", "views"))
    quarter = _load(QUARTER_MAPS)
    runs = _same_seeds({"world_t2i.json": t2i, "world_p2p.json": p2p, "world_p2p_modes.json": modes,
                        "world_views.json": views, QUARTER_MAPS: quarter})
    if (modes["map_scale"], quarter["map_scale"]) != ("1/2", "1/4"):
        raise ValueError(f"world_p2p_modes.json should hold the maps at 1/2 and {QUARTER_MAPS} at 1/4 of the latent; "
                         f"they hold {modes['map_scale']} and {quarter['map_scale']}")
    seeds = _seeds(runs)
    steps = runs[0]["training_steps"]
    head = (f"world model, seed {seeds[0]} ({steps:,} steps)" if len(seeds) == 1 else
            f"world model, seeds {', '.join(map(str, seeds[:-1]))} and {seeds[-1]} ({steps:,} steps; mean ± spread)")
    chance = t2i["summary"]["held_out"]
    attrs = ("shape", "colour", "position", "background")
    chance_text = "chance " + " / ".join(f"{chance[a]['chance']:.2f}" for a in attrs)
    p2p_runs, mode_runs, view_runs = p2p["runs"], modes["runs"], views["runs"]
    weights = mode_runs[0]["reweight"]["weights"]
    strength = ", ".join(_cell([r["reweight"]["strength"][i] for r in mode_runs], 3) for i in range(len(weights)))
    rows = [
        ("text-to-image, held-out prompts", "shape / colour / position / background",
         _cells(runs, [f"held_out.{a}" for a in attrs]), chance_text),
        ("text-to-image, training-like prompts", "shape / colour / position / background",
         _cells(runs, [f"train_like.{a}" for a in attrs]), "chance as above"),
    ]
    for kind in ("colour", "shape"):
        rows.append((f"Prompt-to-Prompt replace, {kind} swap", "success / object IoU / background PSNR",
                     _cells(p2p_runs, [f"{kind}.p2p_success", f"{kind}.p2p_iou"]) + " / "
                     + _cells(p2p_runs, [f"{kind}.p2p_background_psnr"], 1, " dB"),
                     "regenerate target: " + _cells(p2p_runs, [f"{kind}.baseline_success", f"{kind}.baseline_iou"])
                     + " / " + _cells(p2p_runs, [f"{kind}.baseline_background_psnr"], 1, " dB")))
    rows += [
        ("Prompt-to-Prompt refine (the size word added)", "success / background PSNR to the source",
         _cells(mode_runs, ["refine.p2p_success"]) + " / " + _cells(mode_runs, ["refine.p2p_background_psnr"], 1, " dB"),
         "regenerate target: " + _cells(mode_runs, ["refine.baseline_success"]) + " / "
         + _cells(mode_runs, ["refine.baseline_background_psnr"], 1, " dB")),
        (f"Prompt-to-Prompt reweight (colour word × {', '.join(f'{w:g}' for w in weights)})",
         "colour strength (1 = exact colour) / share rising with the weight",
         f"{strength} / " + _cells(mode_runs, ["reweight.monotone"]), "weight 1 is the plain prompt"),
        ("Prompt-to-Prompt local blend (colour swap, shape word; maps at 1/2 of the latent, 16×16)",
         "PSNR outside the object, with / without the blend",
         _cells(mode_runs, ["blend.psnr_outside_with_blend", "blend.psnr_outside_without_blend"], 1, " dB"),
         "maps at 1/4 (8×8, the paper's share): "
         + _cells(quarter["runs"], ["blend.psnr_outside_with_blend", "blend.psnr_outside_without_blend"], 1, " dB")),
        ("Prompt-to-Prompt word maps (shape / colour / background word; 1/2 of the latent, 16×16)",
         "IoU of the map at half its maximum with the object",
         _cells(mode_runs, ["maps.iou_shape", "maps.iou_colour", "maps.iou_background"], 3),
         "whole image: " + _cells(mode_runs, ["maps.iou_chance"], 3) + "; maps at 1/4 (8×8): "
         + _cells(quarter["runs"], ["maps.iou_shape", "maps.iou_colour", "maps.iou_background"], 3)),
    ]
    rows += _views(view_runs, "anagram", views["chance"]) + _views(view_runs, "hybrid", views["chance"])
    rows += [_refiner_world_row(), _pose_world_row(), _estimator_world_row()]
    lines = [f"| technique | metric | {head} | naive baseline |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def _refiner_world_row() -> tuple[str, str, str, str]:
    d = _load("refiner_quality_world.json")
    row = next(r for r in d["summary"] if r["model"] == "late" and r["mask"] == "artifact mask"
               and r["start_t"] == max(s["start_t"] for s in d["summary"]))
    gain = row["psnr_mask_after"]["mean"] - row["psnr_mask_before"]["mean"]
    kept = row["psnr_after"]["mean"] >= row["psnr_before"]["mean"]
    met = "met" if gain >= 3 and kept else "missed"
    n = len(d["train_seeds"])
    return (f"Late Step Refine on world scenes (inside the artifact mask, start_t {row['start_t']}, late-range "
            f"refiner; {n} training seeds)", "PSNR inside the artifact / whole image",
            f"{_summary_cell(row['psnr_mask_after'])} / {_summary_cell(row['psnr_after'])} dB (goal +3 dB: {met})",
            f"the corrupted input: {row['psnr_mask_before']['mean']:.2f} / {row['psnr_before']['mean']:.2f} dB")


def _pose_world_row() -> tuple[str, str, str, str]:
    d = max((_load(n) for n in ("pose_quality.json", "pose_quality_3000.json")), key=lambda d: d["train_steps"])
    cfg = max(r["cfg"] for r in d["summary"])
    pose = next(r for r in d["summary"] if r["model"] == "pose" and r["cfg"] == cfg)
    plain = next(r for r in d["summary"] if r["model"] == "unconditioned")
    ceiling = d["ceiling_pck@0.1"]
    met = "met" if pose["pck@0.1"]["mean"] >= 0.8 * ceiling else "missed"
    return (f"Keypoint Condition on the world's stick figures ({d['resolution']} px, {d['train_steps']:,} steps, "
            f"CFG {cfg:g}; {len(d['train_seeds'])} training seeds)", "PCK@0.1 / PCK@0.2",
            f"{_summary_cell(pose['pck@0.1'], 3)} / {_summary_cell(pose['pck@0.2'], 3)} (goal {0.8 * ceiling:.2f}, "
            f"0.8 of the joint finder's ceiling {ceiling:.3f}: {met})",
            f"the same model never shown a pose: {_summary_cell(plain['pck@0.1'], 3)} / "
            f"{_summary_cell(plain['pck@0.2'], 3)}")


def _estimator_world_row() -> tuple[str, str, str, str]:
    d = _load("artifact_quality_world.json")
    half = {r["method"]: r for r in d["summary"]["auroc"] if r["probe"] == 0.5}
    trained, free = half["trained"], half["training-free discrepancy"]
    met = "met" if trained["image_auroc"]["mean"] >= 0.9 else "missed"
    return (f"Artifact Estimator on the world models' x0 estimates (half the schedule, σ = {trained['sigma']:g}; "
            f"{len(d['estimators'])} training seeds)", "image AUROC / pixel AUROC",
            f"{_summary_cell(trained['image_auroc'], 3)} / {_summary_cell(trained['pixel_auroc'], 3)} "
            f"(goal image 0.9: {met})",
            f"training-free discrepancy: {_summary_cell(free['image_auroc'], 3)} / "
            f"{_summary_cell(free['pixel_auroc'], 3)}; constant 0.500 / 0.500")


def artifact_world() -> str:
    """Artifact Estimator on the world models: AUROC per probe and method, mean ± spread over the training seeds."""
    d = _load("artifact_quality_world.json")
    lines = ["| probe | σ | artifact left in x0 | method | image AUROC | pixel AUROC | corrupted removed (keep 1 of 4) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    early = {(r["probe"], r["method"]): r for r in d["summary"]["early_rejection"]}
    left = {r["probe"]: _summary_cell(r["artifact_signal"]) for r in d["summary"]["artifact_signal"]}
    for r in d["summary"]["auroc"]:
        e = early.get((r["probe"], r["method"]))
        removed = f"{_summary_cell(e['corrupted_removed'])} ({e['model_calls']} / {e['model_calls_all_finished']} calls)" \
            if e else "—"
        lines.append(f"| {_probe(r['probe'], r['step'])} | {r['sigma']:.3f} | {left[r['probe']]} | {r['method']} | "
                     f"{_summary_cell(r['image_auroc'], 3)} | {_summary_cell(r['pixel_auroc'], 3)} | {removed} |")
    lines.append("| any | — | — | constant predictor | 0.500 | 0.500 | 0.00 |")
    return "\n".join(lines)


def world_levers() -> str:
    """What limits the world text-to-image model (``eval/world_levers.py``): CFG over the shipped seeds, and each seed
    trained longer (CFG 3, the workflows' scale); chance as the baseline."""
    d = _load("world_levers.json")
    lines = ["| model | CFG | held-out prompts: shape / colour / position | training-like prompts: shape / colour / "
             "position | held out: asked shape drawn as a circle / nothing drawn |",
             "| --- | --- | --- | --- | --- |"]
    cells = {(r["training_steps"], r["cfg"], r["prompts"]): r for r in d["summary"]}
    several = sorted({k[:2] for k, r in cells.items() if r["train_seeds"] > 1})

    def row(name: str, cfg: float, held: dict, train: dict) -> str:
        def three(r):
            return " / ".join(_summary_cell(r[k]) for k in ("shape", "colour", "position"))
        return (f"| {name} | {cfg:g} | {three(held)} | {three(train)} | {_summary_cell(held['drawn_circle'])} / "
                f"{_summary_cell(held['drawn_none'])} |")

    for steps, cfg in several:
        seeds = sorted({r["training_seed"] for r in d["runs"] if r["training_steps"] == steps})
        name = f"{steps:,} steps, seeds {', '.join(map(str, seeds))} (mean ± spread)"
        lines.append(row(name, cfg, cells[(steps, cfg, "held_out")], cells[(steps, cfg, "train_like")]))
    runs = {(r["training_seed"], r["training_steps"], r["cfg"], r["prompts"]): r for r in d["runs"]}
    steps_of = {seed: sorted({k[1] for k in runs if k[0] == seed}) for seed in sorted({k[0] for k in runs})}
    for seed, measured in steps_of.items():
        for steps in measured if len(measured) > 1 else ():  # the steps lever: a seed measured at several step counts
            if (seed, steps, 3.0, "held_out") in runs:
                lines.append(row(f"seed {seed}, {steps:,} steps", 3.0, runs[(seed, steps, 3.0, "held_out")],
                                 runs[(seed, steps, 3.0, "train_like")]))
    chance = " / ".join(f"{d['chance'][k]:.2f}" for k in ("shape", "colour", "position"))
    lines.append(f"| chance (a model that ignores the prompt) | — | {chance} | {chance} | — |")
    return "\n".join(lines)


def _summary_cell(value, digits: int = 2) -> str:
    """An experiment's cell: a number (one training seed) or ``{"mean", "spread"}`` (several)."""
    if isinstance(value, dict):
        return f"{value['mean']:.{digits}f} ± {value['spread']:.{digits}f}"
    return f"{value:.{digits}f}"


def _plain(value) -> float:
    return value["mean"] if isinstance(value, dict) else value


RANGES = {"full": "full [0, 1000)", "late": "late [0, 500)"}


def _refiner(name: str, whole_image_at_last_only: bool) -> str:
    """Late Step Refine with trained refiners (``eval/refiner_quality.py``): one row per start_t, range and mask
    (whole-image rows only at the largest start_t when ``whole_image_at_last_only``; the rest are in the JSON)."""
    d = _load(name)
    rows = d.get("summary") or d["results"]
    last = max(r["start_t"] for r in rows)
    rows = [r for r in rows if not whole_image_at_last_only or r["mask"] != "none" or r["start_t"] == last]
    rows.sort(key=lambda r: (r["start_t"], r["model"], r["mask"] != "none"))
    lines = ["| start_t | refined | model (trained on) | PSNR before | PSNR after | in-mask before | in-mask after |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        refined = "whole image" if r["mask"] == "none" else "inside the artifact mask"
        lines.append(f"| {r['start_t']} | {refined} | {RANGES[r['model']]} | {_plain(r['psnr_before']):.2f} | "
                     f"{_summary_cell(r['psnr_after'])} | {_plain(r['psnr_mask_before']):.2f} | "
                     f"{_summary_cell(r['psnr_mask_after'])} |")
    return "\n".join(lines)


def pose() -> str:
    """Keypoint Condition: PCK of the pose model against the unconditioned one, flow and eps (``pose_quality.py``)."""
    lines = ["| parameterisation | steps | training seeds | model | poses | cfg | PCK@0.1 | PCK@0.2 | final loss |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("pose_quality.json", "pose_quality_3000.json", "pose_quality_eps.json"):
        d = _load(name)
        head = f"| {d['parameterisation']} | {d['train_steps']} | {', '.join(map(str, d.get('train_seeds', [7])))} |"
        for r in d.get("summary") or d["results"]:  # a summary over training seeds, or one seed's rows
            lines.append(f"{head} {r['model']} | held out | {r['cfg']:g} | {_summary_cell(r['pck@0.1'], 3)} | "
                         f"{_summary_cell(r['pck@0.2'], 3)} | {_summary_cell(r['final_loss'], 4)} |")
        for r in d.get("training_poses_summary", []):
            lines.append(f"{head} pose | training | {r['cfg']:g} | {_summary_cell(r['pck@0.1'], 3)} | "
                         f"{_summary_cell(r['pck@0.2'], 3)} | — |")
    lines.append(f"| — | — | — | ground-truth renders (ceiling) | held out | — | {d['ceiling_pck@0.1']:.3f} | "
                 f"{d['ceiling_pck@0.2']:.3f} | — |")
    return "\n".join(lines)


def _probe(probe: float, step: int) -> str:
    return "end (σ = 0)" if probe >= 1 else f"{probe:g} (step {step})"


def artifact_auroc() -> str:
    """Artifact Estimator: image and pixel AUROC per probe and method, against a constant predictor."""
    d = _load("artifact_quality.json")
    lines = ["| probe | σ | method | image AUROC | pixel AUROC |", "| --- | --- | --- | --- | --- |"]
    for r in d["results"]:
        if r["probe"] is None:  # the constant predictor: the baseline at every probe
            lines.append(f"| any | — | {r['method']} predictor | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} |")
            continue
        lines.append(f"| {_probe(r['probe'], r['step'])} | {r['sigma']:.3f} | {r['method']} | "
                     f"{r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} |")
    return "\n".join(lines)


def artifact_rejection() -> str:
    """Artifact Estimator: simulated early rejection of candidates at each probe."""
    d = _load("artifact_quality.json")
    lines = ["| probe | method | corrupted share, random keep | corrupted share, kept | corrupted removed | model calls |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in d["early_rejection"]:
        lines.append(f"| {r['probe']:g} | {r['method']} | {r['corrupted_share_random_keep']:.2f} | "
                     f"{r['corrupted_share_kept']:.2f} | {r['corrupted_removed']:.2f} | "
                     f"{r['model_calls']} / {r['model_calls_all_finished']} |")
    return "\n".join(lines)


TABLES = {
    "pose": pose,
    "artifact-auroc": artifact_auroc,
    "artifact-rejection": artifact_rejection,
    "artifact-world": artifact_world,
    "refiner-shapes": lambda: _refiner("refiner_quality.json", whole_image_at_last_only=False),
    "refiner-world": lambda: _refiner("refiner_quality_world.json", whole_image_at_last_only=True),
    "world": world,
    "world-levers": world_levers,
}


def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- table:{re.escape(name)} -->\n)(.*?)(\n<!-- /table:{re.escape(name)} -->)", re.S)


def blocks(text: str) -> dict[str, str]:
    """The README's table blocks, by name (only the tables of :data:`TABLES`)."""
    found = {}
    for name in TABLES:
        m = _block(name).search(text)
        if m:
            found[name] = m.group(2)
    return found


def update(text: str) -> str:
    """``text`` (the README) with every table block rebuilt from its JSON; a missing block is a ``ValueError``."""
    for name, build in TABLES.items():
        pattern = _block(name)
        if not pattern.search(text):
            raise ValueError(f"README has no block for table {name!r}: add the lines '<!-- table:{name} -->' and "
                             f"'<!-- /table:{name} -->' where it belongs")
        table = build()
        text = pattern.sub(lambda m: m.group(1) + table + m.group(3), text)
    return text
