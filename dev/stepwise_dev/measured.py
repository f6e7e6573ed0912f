"""What each example workflow's technique was measured to do, read from ``eval/results/*.json``.

``make demo`` writes the line into ``report.json`` and under each row of the contact sheet, so the picture and the
measured effect (against its naive baseline) sit side by side. The numbers are whatever the experiments last wrote;
nothing is computed here. A workflow whose experiment has no result file yet, or that makes no quality claim (a
schedule tool, a base model with random weights), says so.
"""

from __future__ import annotations

import json
import os

from . import paths

RESULTS = os.path.join(paths.REPO, "eval", "results")


def _load(name: str) -> dict | None:
    path = os.path.join(RESULTS, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _mean(runs: list[dict], *keys: str) -> float:
    values = []
    for run in runs:
        for k in keys:
            run = run[k]
        values.append(run)
    return sum(values) / len(values)


def _seeds(runs: list[dict]) -> str:
    return f"{len(runs)} training seed{'s' if len(runs) != 1 else ''}"


def _t2i(d: dict) -> str:
    h = d["summary"]["held_out"]
    return (f"held-out prompts ({_seeds(d['runs'])}): colour {h['colour']['mean']:.2f}, shape {h['shape']['mean']:.2f}, "
            f"position {h['position']['mean']:.2f}, background {h['background']['mean']:.2f} "
            f"(chance {h['colour']['chance']:.2f}, {h['shape']['chance']:.2f}, {h['position']['chance']:.2f}, "
            f"{h['background']['chance']:.2f})")


def _replace(d: dict) -> str:
    c = d["summary"]["colour"]
    return (f"colour swap: object IoU with the source {c['p2p_iou']['mean']:.2f} vs {c['baseline_iou']['mean']:.2f} "
            f"regenerating the target; background {c['p2p_background_psnr']['mean']:.1f} vs "
            f"{c['baseline_background_psnr']['mean']:.1f} dB; success {c['p2p_success']['mean']:.2f}")


def _maps(d: dict) -> str:
    r = d["runs"]
    return (f"word map IoU with the object (maps at {d.get('map_scale', '1/4')} of the latent): colour "
            f"{_mean(r, 'maps', 'iou_colour'):.2f}, shape {_mean(r, 'maps', 'iou_shape'):.2f}; whole image "
            f"{_mean(r, 'maps', 'iou_chance'):.2f}")


def _refine(d: dict) -> str:
    r = d["runs"]
    return (f"refine success {_mean(r, 'refine', 'p2p_success'):.2f} vs {_mean(r, 'refine', 'baseline_success'):.2f} "
            "regenerating the target")


def _reweight(d: dict) -> str:
    r = d["runs"]
    return (f"colour rising with the weight in {_mean(r, 'reweight', 'monotone'):.2f} of samples; outside the blend "
            f"{_mean(r, 'blend', 'psnr_outside_with_blend'):.1f} dB with, "
            f"{_mean(r, 'blend', 'psnr_outside_without_blend'):.1f} dB without")


def _views(kind: str, d: dict) -> str:
    s = d["summary"]
    return (f"both readings right {s[kind]['mean']:.2f} (one prompt alone {s[kind + '_baseline']['mean']:.2f}); "
            f"colours mixed in {s[kind + '_mixed_colour']['mean']:.2f} of images "
            f"({s[kind + '_mixed_colour_baseline']['mean']:.2f})")


def _refiner(d: dict) -> str:
    rows = [r for r in d["results"] if r["model"] == "late" and r["mask"] == "artifact mask"]
    best = max(rows, key=lambda r: r["start_t"])
    return (f"trained late-range refiner, masked, start_t {best['start_t']}: inside the artifact "
            f"{best['psnr_mask_before']:.1f} -> {best['psnr_mask_after']:.1f} dB, whole image "
            f"{best['psnr_before']:.1f} -> {best['psnr_after']:.1f} dB ({d['train_steps']}-step eval models)")


def _pose(d: dict) -> str:
    pose = max((r for r in d["results"] if r["model"] == "pose"), key=lambda r: r["pck@0.1"])
    plain = max((r for r in d["results"] if r["model"] == "unconditioned"), key=lambda r: r["pck@0.1"])
    return (f"PCK@0.1 {pose['pck@0.1']:.2f} (cfg {pose['cfg']:g}) vs {plain['pck@0.1']:.2f} unconditioned; "
            f"joint-finder ceiling {d['ceiling_pck@0.1']:.2f} ({d['train_steps']}-step eval model)")


def _estimator(d: dict) -> str:
    row = next(r for r in d["results"] if r["method"] == "trained" and r["probe"] == 0.5)
    return (f"trained estimator at half the schedule: image AUROC {row['image_auroc']:.2f}, pixel AUROC "
            f"{row['pixel_auroc']:.2f} (chance 0.50; {d['estimator_training']['steps']}-step eval model)")


SOURCES = {
    "text_to_image": ("world_t2i.json", _t2i),
    "prompt_to_prompt_replace": ("world_p2p.json", _replace),
    "prompt_to_prompt_attention_maps": ("world_p2p_modes.json", _maps),
    "prompt_to_prompt_refine": ("world_p2p_modes.json", _refine),
    "prompt_to_prompt_reweight_blend": ("world_p2p_modes.json", _reweight),
    "visual_anagram": ("world_views.json", lambda d: _views("anagram", d)),
    "hybrid_noise": ("world_views.json", lambda d: _views("hybrid", d)),
    "late_step_refine_with_refiner": ("refiner_quality.json", _refiner),
    "keypoint_condition_json": ("pose_quality.json", _pose),
    "keypoint_condition_pose_keypoint": ("pose_quality.json", _pose),
    "artifact_estimator_trained": ("artifact_quality.json", _estimator),
    "artifact_early_reject": ("artifact_quality.json", _estimator),
}
NO_CLAIM = {
    "split_sigmas_at_timestep": "a schedule tool: no quality claim (its cut's noise level is tested exactly)",
    "late_step_refine": "base-only repair on the random tiny pixel model: no quality claim (see the refiner row)",
}


def measured(name: str) -> dict:
    """``{"text": ..., "source": "eval/results/<file>" | None}`` for the example workflow ``name``."""
    if name in NO_CLAIM:
        return {"text": NO_CLAIM[name], "source": None}
    if name not in SOURCES:
        return {"text": "not measured", "source": None}
    file, describe = SOURCES[name]
    data = _load(file)
    if data is None:
        return {"text": f"not measured yet (no eval/results/{file}; see make eval)", "source": None}
    return {"text": describe(data), "source": f"eval/results/{file}"}
