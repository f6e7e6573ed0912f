"""LoadPoseKeypoint: read a pose JSON file from ComfyUI's input folder as a ``POSE_KEYPOINT`` value.

Any format KeypointCondition reads (OpenPose JSON as saved by pose estimators, COCO person keypoints, a COCO
file, joint names) comes out in the layout comfyui_controlnet_aux's nodes use: one dict per image with
``people[].pose_keypoints_2d`` (OpenPose-18, pixels), ``canvas_width`` and ``canvas_height``. So a saved pose
feeds KeypointCondition, or any node that takes that pack's POSE_KEYPOINT.
"""

from __future__ import annotations

import hashlib
import os

import folder_paths
from comfy_api.latest import io

from ..kernels.pose import parse, to_pose_keypoint
from .common import CATEGORY
from .keypoint import PoseKeypoint


def pose_files() -> list[str]:
    """JSON files under the input folder (relative paths, sorted)."""
    root = folder_paths.get_input_directory()
    found = []
    for base, _, names in os.walk(root):
        found += [os.path.relpath(os.path.join(base, n), root) for n in names if n.lower().endswith(".json")]
    return sorted(found)


def _path(pose_file: str) -> str:
    root = os.path.abspath(folder_paths.get_input_directory())
    if not isinstance(pose_file, str) or not pose_file:
        raise ValueError(f"pose_file {pose_file!r} is not a file name; choose a JSON file in ComfyUI's input folder "
                         f"({root})")
    path = os.path.normpath(os.path.join(root, pose_file))  # no way out by "..", symlinks inside are fine
    if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
        raise ValueError(f"pose_file {pose_file!r} is not a JSON file in ComfyUI's input folder ({root}); put the "
                         "pose file there")
    return path


class LoadPoseKeypoint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwiseLoadPoseKeypoint",
            display_name="Load Pose Keypoints",
            category=CATEGORY,
            description=("Load a pose JSON file (OpenPose, COCO keypoints or joint names) from the input folder as "
                         "POSE_KEYPOINT, the type OpenPose/DWPose estimator nodes output."),
            inputs=[
                io.Combo.Input("pose_file", options=pose_files(),
                               tooltip="A .json pose file in ComfyUI's input folder."),
            ],
            outputs=[
                PoseKeypoint.Output("pose_keypoint", display_name="pose_keypoint",
                                    tooltip="One entry per image: people[].pose_keypoints_2d (OpenPose-18, pixels) "
                                            "with canvas_width and canvas_height."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, pose_file):
        try:
            with open(_path(pose_file), "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except (ValueError, OSError):
            return pose_file  # execute reports the problem

    @classmethod
    def execute(cls, pose_file) -> io.NodeOutput:
        path = _path(pose_file)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        return io.NodeOutput(to_pose_keypoint(parse(text, f"pose_file {pose_file!r}")))
