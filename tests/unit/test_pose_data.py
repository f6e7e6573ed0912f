"""Pose training data: keypoints follow the image through loading, cropping and flipping (found by colour)."""

import json

import numpy as np
import pytest
import torch

from stepwise.kernels.keypoints import joint_colors
from stepwise.kernels.pose import FLIP_PAIRS
from stepwise.models.pose_data import augment, load_pose_data
from stepwise.models.world import make_data

SWAP = {a: b for a, b in FLIP_PAIRS} | {b: a for a, b in FLIP_PAIRS}


def colour_at(image: torch.Tensor, x: float, y: float) -> np.ndarray:
    """Mean RGB (0..255) of the 3×3 pixels around normalised (x, y) of a 3×H×W image in [-1, 1]."""
    _, h, w = image.shape
    cx, cy = int(x * w), int(y * h)
    patch = image[:, max(cy - 1, 0):cy + 2, max(cx - 1, 0):cx + 2]
    return ((patch.mean(dim=(1, 2)) + 1) * 127.5).numpy()


def joints_found(image, pose, labels) -> float:
    """Share of visible joints whose own colour (the colour of ``labels[j]``) is at their keypoint."""
    colours = np.array(joint_colors(), dtype=np.float64)
    hits = total = 0
    for j in range(17):
        if pose[j, 2] <= 0:
            continue
        total += 1
        hits += np.abs(colour_at(image, float(pose[j, 0]), float(pose[j, 1])) - colours[labels[j]]).max() < 60
    return hits / max(total, 1)


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    make_data("figures", 6, 128, str(out), seed=4)
    return str(out)


def test_loaded_keypoints_sit_on_their_joints(figures):
    images, poses, skipped = load_pose_data(figures, 128)
    assert images.shape == (6, 3, 128, 128) and poses.shape == (6, 1, 17, 3) and skipped == 0
    for image, pose in zip(images, poses):
        assert joints_found(image, pose[0], list(range(17))) > 0.75  # face dots overlap at 128 px


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_crop_and_flip_move_the_keypoints_with_the_image(figures, flip):
    images, poses, _ = load_pose_data(figures, 128)
    g = torch.Generator().manual_seed(0)
    # after a flip, the image's left-wrist dot is the mirrored person's right wrist
    labels = [SWAP.get(j, j) for j in range(17)] if flip else list(range(17))
    for i in range(12):
        out, moved = augment(images[i % 6], poses[i % 6], g, flip=flip, min_scale=0.7)
        assert joints_found(out, moved[0], labels) > 0.7, i
    # the unswapped labels do not fit a flipped image: the test sees the swap
    if flip:
        out, moved = augment(images[0], poses[0], torch.Generator().manual_seed(1), flip=1.0, min_scale=1.0)
        assert joints_found(out, moved[0], list(range(17))) < 0.5


def test_a_non_square_image_keeps_its_keypoints_through_the_centre_crop(tmp_path):
    from PIL import Image

    img = np.zeros((60, 120, 3), dtype=np.uint8)
    img[13:18, 73:78] = (255, 0, 0)  # a red dot at (75, 15) of a 120x60 image
    Image.fromarray(img).save(tmp_path / "a.png")
    flat = [0.0] * 51
    flat[0:3] = [75.0, 15.0, 2.0]
    (tmp_path / "a.json").write_text(json.dumps({"keypoints": flat, "width": 120, "height": 60}))
    images, poses, _ = load_pose_data(str(tmp_path), 60)
    x, y = float(poses[0, 0, 0, 0]), float(poses[0, 0, 0, 1])
    assert abs(x - 0.75) < 1e-6 and abs(y - 0.25) < 1e-6  # the square crop is x in 30..90: (75 - 30) / 60
    assert colour_at(images[0], x, y)[0] > 200


def test_bad_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="neither a folder"):
        load_pose_data(str(tmp_path / "nope"), 32)
    with pytest.raises(ValueError, match="no readable images with keypoints"):
        load_pose_data(str(tmp_path), 32)
    bad = tmp_path / "coco.json"
    bad.write_text("{\"images\": [")
    with pytest.raises(ValueError, match="malformed JSON at line 1"):
        load_pose_data(str(bad), 32)


def test_a_coco_file_gives_each_image_its_own_annotations_in_file_order(tmp_path):
    from PIL import Image

    from stepwise.models.pose_data import _pairs

    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    kp = [0.5, 0.5, 2] * 17
    coco = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"},
                       {"id": 3, "file_name": "c.png"}, {"id": 4, "file_name": "missing.png"}],
            "annotations": [{"id": 10, "image_id": 2, "keypoints": kp}, {"id": 11, "image_id": 1, "keypoints": kp},
                            {"id": 12, "image_id": 2, "keypoints": kp}, {"id": 13, "image_id": 3},  # no keypoints
                            {"id": 14, "image_id": 4, "keypoints": kp}]}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    pairs = _pairs(str(path))
    assert [p.rsplit("/", 1)[1] for p, _ in pairs] == ["a.png", "b.png"]  # c: no keypoints; missing: no file
    assert [[a["id"] for a in v["annotations"]] for _, v in pairs] == [[11], [10, 12]]
