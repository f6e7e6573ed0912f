"""``eval/common.py``: ``eval/world_*.py --add`` joins one training seed at a time to the runs already in a report only
when the report was measured the same way; ``over_seeds`` summarises per-seed rows as mean and spread."""

import importlib.util
import json
import os

import pytest

from stepwise_dev import paths


def _common():
    spec = importlib.util.spec_from_file_location("eval_common", os.path.join(paths.REPO, "eval", "common.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _common()
SETTINGS = {"method": "text", "pairs": [("a red circle", "a blue square")], "sampler_seeds": [3000, 3001],
            "steps": 20, "cfg": 3.0}


def _report(tmp_path, **changes):
    report = json.loads(json.dumps({**SETTINGS, "goal": "g", "summary": {},
                                    "runs": [{"training_seed": 0, "training_steps": 4000, "score": 0.5}]}))
    report.update(changes)
    path = tmp_path / "world_views.json"
    path.write_text(json.dumps(report))
    return str(path)


def test_without_add_nothing_earlier_is_kept(tmp_path):
    assert common.earlier_runs(False, _report(tmp_path, steps=10), SETTINGS) == []


def test_add_keeps_the_runs_of_a_report_measured_the_same_way(tmp_path):
    out = _report(tmp_path, method="reworded text", goal="another goal")  # descriptions may change
    assert common.earlier_runs(True, out, SETTINGS) == [{"training_seed": 0, "training_steps": 4000, "score": 0.5}]


@pytest.mark.parametrize("key,value", [("steps", 10), ("sampler_seeds", [3000]), ("pairs", [["a", "b"]])])
def test_add_refuses_a_report_measured_otherwise(tmp_path, key, value):
    with pytest.raises(ValueError, match=f"'{key}'"):
        common.earlier_runs(True, _report(tmp_path, **{key: value}), SETTINGS)


def test_add_refuses_a_report_with_a_setting_this_run_does_not_have(tmp_path):
    with pytest.raises(ValueError, match="'cross_replace'"):
        common.earlier_runs(True, _report(tmp_path, cross_replace=0.8), SETTINGS)


def test_add_needs_a_report(tmp_path):
    with pytest.raises(ValueError, match="no report"):
        common.earlier_runs(True, str(tmp_path / "missing.json"), SETTINGS)


def test_a_seed_measured_again_replaces_its_run_and_runs_follow_the_seeds():
    earlier = [{"training_seed": 0, "v": 1}, {"training_seed": 2, "v": 2}]
    joined = common.join_runs(earlier, [{"training_seed": 1, "v": 3}, {"training_seed": 2, "v": 4}])
    assert joined == [{"training_seed": 0, "v": 1}, {"training_seed": 1, "v": 3}, {"training_seed": 2, "v": 4}]


def test_runs_keyed_by_several_fields_replace_only_the_same_place():
    """``world_levers.py`` keys a run by seed, training steps, CFG and prompt set: one seed measured again at a new
    step count adds rows and keeps that seed's earlier step counts."""
    key = ("training_seed", "training_steps", "cfg")
    earlier = [{"training_seed": 1, "training_steps": 4000, "cfg": 3.0, "v": 1},
               {"training_seed": 1, "training_steps": 4000, "cfg": 6.0, "v": 2},
               {"training_seed": 0, "training_steps": 4000, "cfg": 3.0, "v": 3}]
    new = [{"training_seed": 1, "training_steps": 8000, "cfg": 3.0, "v": 4},
           {"training_seed": 1, "training_steps": 4000, "cfg": 6.0, "v": 5}]
    assert [r["v"] for r in common.join_runs(earlier, new, key)] == [3, 1, 5, 4]


def test_over_seeds_gives_mean_and_spread_per_group_in_first_seen_order():
    rows = [{"probe": 0.5, "method": "trained", "step": 10, "auroc": 0.6, "pixel": 0.7},
            {"probe": 0.5, "method": "free", "step": 10, "auroc": 0.5, "pixel": 0.9},
            {"probe": 0.5, "method": "trained", "step": 10, "auroc": 0.8, "pixel": 0.7}]
    out = common.over_seeds(rows, ("probe", "method"), ("auroc", "pixel"), digits=3, keep=("step", "missing"))
    assert out == [{"probe": 0.5, "method": "trained", "step": 10, "train_seeds": 2,
                    "auroc": {"mean": 0.7, "spread": 0.2}, "pixel": {"mean": 0.7, "spread": 0.0}},
                   {"probe": 0.5, "method": "free", "step": 10, "train_seeds": 1,
                    "auroc": {"mean": 0.5, "spread": 0.0}, "pixel": {"mean": 0.9, "spread": 0.0}}]
