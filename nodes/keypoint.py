"""KeypointCondition: attach a body pose (17 COCO keypoints) to a CONDITIONING for a Stepwise pose model.

The pose comes as ``POSE_KEYPOINT`` (the type comfyui_controlnet_aux's OpenPose/DWPose nodes output, so they
connect directly) or as a JSON string in any format :func:`kernels.pose.parse` reads. The pose model (loaded with
Load Stepwise Checkpoint) turns it into cross-attention tokens (:mod:`models.pose`); a negative without a pose is
the null pose, which is what classifier-free guidance needs.
"""

from __future__ import annotations

import numpy as np
import torch
from comfy_api.latest import io
from PIL import ImageDraw

from ..kernels.pose import parse, select
from ..models.pose import POSE_KEY, STRENGTH_KEY
from .common import CATEGORY, check_finite

PoseKeypoint = io.Custom("POSE_KEYPOINT")


def preview(poses: torch.Tensor, width: int, height: int, size: int) -> torch.Tensor:
    """An IMAGE (1×H×W×3) of the parsed skeletons on black, the longer side ``size``; a null pose says so."""
    from ..models.world import skeleton_image  # the synthetic world's drawing (imported only when used)

    scale = size / max(width, height)
    img = skeleton_image(poses.numpy(), max(8, round(width * scale)), max(8, round(height * scale)))
    if not poses[..., 2].any():
        ImageDraw.Draw(img).text((8, 8), "null pose: no visible joints", fill=(255, 255, 255))
    return torch.from_numpy(np.asarray(img).astype(np.float32) / 255.0).unsqueeze(0)


class KeypointCondition(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwiseKeypointCondition",
            display_name="Keypoint Condition",
            category=CATEGORY,
            description=("Attach a body pose (17 COCO keypoints) to a conditioning for a Stepwise pose model: from "
                         "an OpenPose/DWPose POSE_KEYPOINT output or from JSON (OpenPose, COCO or joint-name "
                         "format). Use it on the positive; a negative without a pose means 'no pose'."),
            inputs=[
                io.Conditioning.Input("conditioning", optional=True,
                                      tooltip="The text conditioning (for pose models fine-tuned from a text model); "
                                              "leave empty for pose-only models."),
                PoseKeypoint.Input("pose_keypoint", optional=True,
                                   tooltip="Keypoints from an OpenPose/DWPose estimator node (POSE_KEYPOINT)."),
                io.String.Input("pose_json", multiline=True, default="", optional=True,
                                tooltip="Or the pose as JSON: OpenPose (people[].pose_keypoints_2d), COCO "
                                        "(keypoints [x, y, v] * 17) or the seed's {\"nose\": [row, col], ...} in a 512 px "
                                        "frame (row from the top first, as its files store it)."),
                io.Int.Input("image_index", default=0, min=0, max=4095,
                             tooltip="Which image of a multi-image pose input to use."),
                io.Int.Input("person", default=0, min=-1, max=63,
                             tooltip="Which person to use (0 = first); -1 = all, up to max_people."),
                io.Int.Input("max_people", default=4, min=1, max=64,
                             tooltip="With person = -1: at most this many people (the model's limit applies too)."),
                io.Float.Input("strength", default=1.0, min=0.0, max=2.0, step=0.05,
                               tooltip="0 = the null pose (no pose), 1 = the pose; in between interpolates the "
                                       "pose tokens."),
                io.Int.Input("preview_size", default=512, min=64, max=2048, step=64,
                             tooltip="Longer side of the skeleton preview image."),
            ],
            outputs=[
                io.Conditioning.Output("posed", display_name="conditioning",
                                       tooltip="The conditioning with the pose attached."),
                io.Image.Output("skeleton", display_name="preview",
                                tooltip="The parsed skeleton(s), as the model will read them."),
            ],
        )

    @classmethod
    def execute(cls, image_index, person, max_people, strength, preview_size, conditioning=None, pose_keypoint=None,
                pose_json="") -> io.NodeOutput:
        check_finite(strength=strength)
        has_json = bool(pose_json and pose_json.strip())
        if pose_keypoint is not None and has_json:
            raise ValueError("both pose_keypoint and pose_json are given; connect one of them")
        if pose_keypoint is None and not has_json:
            raise ValueError("no pose: connect a POSE_KEYPOINT or write the pose as JSON in pose_json")
        source = "pose_keypoint" if pose_keypoint is not None else "pose_json"
        frames = parse(pose_keypoint if pose_keypoint is not None else pose_json, source)
        if not 0 <= image_index < len(frames):
            raise ValueError(f"image_index {image_index} is out of range; {source} holds {len(frames)} image(s)")
        frame = frames[image_index]
        if person == -1:
            if not frame.people:
                raise ValueError(f"{source}: no people in the frame")
            poses = torch.stack(frame.people[:max_people])
        else:
            poses = select(frame, person, source).unsqueeze(0)
        extra = {POSE_KEY: poses.float(), STRENGTH_KEY: float(strength)}
        if conditioning:
            out = [[t, {**opts, **extra}] for t, opts in conditioning]
        else:
            out = [[torch.zeros(1, 1, 1), extra]]  # pose-only models build their whole context from the pose
        return io.NodeOutput(out, preview(poses, frame.width, frame.height, preview_size))
