"""LoadPoseKeypoint: read a pose JSON file from ComfyUI's input folder as a ``POSE_KEYPOINT`` value.

Any format KeypointCondition reads (OpenPose JSON as saved by pose estimators, COCO person keypoints, a COCO
file, joint names) comes out in the layout comfyui_controlnet_aux's nodes use: one dict per image with
``people[].pose_keypoints_2d`` (OpenPose-18, pixels), ``canvas_width`` and ``canvas_height``. So a saved pose
feeds KeypointCondition, or any node that takes that pack's POSE_KEYPOINT.

Which files it reads is the host's rule for input files (``folder_paths.get_annotated_filepath`` joins the name to
the input folder; its upload and ``/view`` routes refuse a name whose absolute path leaves the folder, checked with
``os.path.abspath``, not ``realpath``; LoadImage and the model loaders open what the joined path points to): a name
is resolved inside ComfyUI's input folder lexically, so ``..`` and absolute paths are refused, and a symlink placed
in the input folder is followed wherever it points, as the host's own LoadImage follows it. Putting a link there is
the machine owner's choice to expose that file; nothing reachable over HTTP can create one.

Files over :data:`kernels.pose.MAX_BYTES` are refused before they are read, text that is not UTF-8 is refused
naming the file, and :func:`kernels.pose.parse` refuses more than ``MAX_PEOPLE`` people before building poses.
"""

from __future__ import annotations

import hashlib
import os

import folder_paths
from comfy_api.latest import io

from ..kernels.pose import MAX_BYTES, MAX_PEOPLE, parse, to_pose_keypoint
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
    """The file ``pose_file`` names in the input folder (the host's rule, see the module docstring)."""
    root = os.path.abspath(folder_paths.get_input_directory())
    if not isinstance(pose_file, str) or not pose_file:
        raise ValueError(f"pose_file {pose_file!r} is not a file name; choose a JSON file in ComfyUI's input folder "
                         f"({root})")
    path = os.path.normpath(os.path.join(root, pose_file))  # no way out by "..", symlinks inside are followed
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
            path = _path(pose_file)
            stat = os.stat(path)
            if stat.st_size > MAX_BYTES:
                return f"{pose_file}:{stat.st_size}:{stat.st_mtime_ns}"  # execute refuses it
            with open(path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except (ValueError, OSError):
            return pose_file  # execute reports the problem

    @classmethod
    def execute(cls, pose_file) -> io.NodeOutput:
        path = _path(pose_file)
        where = f"pose_file {pose_file!r}"
        size = os.path.getsize(path)
        if size > MAX_BYTES:  # refused before a byte is read
            raise ValueError(f"{where}: {size / 2**20:.1f} MiB; a pose file may be at most {MAX_BYTES / 2**20:g} MiB "
                             f"(a {MAX_PEOPLE:,}-person OpenPose file is about 3 MB): keep the images you need, or "
                             "split the file")
        with open(path, "rb") as f:
            data = f.read()
        return io.NodeOutput(to_pose_keypoint(parse(data, where)))
