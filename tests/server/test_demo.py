"""``make demo``'s script end to end, shortened: it trains the three demo models through train.py, runs workflows
through a real server, and writes the images, the contact sheet and the report."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from stepwise_dev import paths

pytestmark = pytest.mark.server


def test_demo_trains_runs_and_reports(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, os.path.join(paths.REPO, "scripts", "demo.py"), "--out", str(out),
           "--refiner-steps", "2", "--pose-steps", "2", "--estimator-steps", "2",
           "--only", "text_to_image", "keypoint_condition_pose_keypoint", "late_step_refine_with_refiner"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]

    report = json.loads((out / "report.json").read_text())
    assert set(report["training"]["seconds"]) == {"refiner", "pose", "estimator"}
    assert report["training"]["steps"] == {"refiner": 2, "pose": 2, "estimator": 2}
    for name in ("stepwise-demo-refiner-pixel", "stepwise-demo-pose-flow", "stepwise-demo-estimator"):
        assert (out / "models" / f"{name}.safetensors").is_file()
    runs = {w["name"]: w for w in report["workflows"]}
    assert list(runs) == ["text_to_image", "keypoint_condition_pose_keypoint", "late_step_refine_with_refiner"]
    assert runs["text_to_image"]["nodes"] == ["Load Stepwise World Checkpoint"]  # the plain baseline first
    assert runs["keypoint_condition_pose_keypoint"]["nodes"] == [
        "Load Stepwise Checkpoint", "Load Pose Keypoints", "Keypoint Condition"]
    assert runs["late_step_refine_with_refiner"]["nodes"] == ["Load Stepwise Checkpoint", "Late Step Refine"]
    for w in runs.values():
        assert w["images"] and all((out / f).is_file() for f in w["images"])
    assert len(runs["keypoint_condition_pose_keypoint"]["images"]) == 2  # the image and the skeleton preview
    # each row carries its technique's measured effect, read from the experiments' results
    assert runs["text_to_image"]["measured"]["source"] == "eval/results/world_t2i.json"
    assert runs["text_to_image"]["measured"]["text"].startswith("held-out prompts")
    assert runs["keypoint_condition_pose_keypoint"]["measured"]["source"] == "eval/results/pose_quality.json"

    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width >= 900 and sheet.height > 2 * 160
    md = (out / "report.md").read_text()
    assert "contact_sheet.png" in md and "late_step_refine_with_refiner" in md and "PCK@0.1" in md
