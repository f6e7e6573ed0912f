"""Reference tests for kernels.pose: formats, OpenPose-18 <-> COCO-17, augmentations and pose tokens."""

import json
import math

import pytest
import torch

from stepwise.kernels.keypoints import COCO_17
from stepwise.kernels.pose import (
    FLIP_PAIRS,
    MISSING_TOKEN,
    OPENPOSE_18,
    SEED_NAMES,
    coco_to_openpose,
    crop,
    flip_horizontal,
    fourier_features,
    grid_token,
    grid_tokens,
    openpose_to_coco,
    parse,
    select,
)


def seed_tokenize(x, y, dim):
    """The seed's code, transcribed (its 512-px frame): build_tensor_from_kps + tokenize_coordinates."""
    if dim != 512:
        x = x // (512 / dim)
        y = y // (512 / dim)
    if x > (dim - 1):
        x = (dim - 1)
    if y > (dim - 1):
        y = (dim - 1)
    if x < 0:
        x = 0
    if y < 0:
        y = 0
    return int(round(x)) + int(round(y) * dim)


def reference_pose(width=640, height=480):
    """A pose in pixels (COCO order, all visible except the left ear) and its normalised form."""
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(17, 2, generator=g) * torch.tensor([width, height])
    visible = torch.ones(17)
    visible[3] = 0
    xy[3] = 0
    norm = torch.cat([xy / torch.tensor([width, height]), visible[:, None]], dim=1)
    return xy, visible, norm


def test_grid_tokens_equal_the_seeds_algorithm_at_edges_and_sizes():
    points = [(0, 0), (511, 511), (512, 512), (600, -5), (-1, 700), (255.5, 256.49), (16, 15.99), (31.9, 32.0),
              (100.3, 400.7), (511.99, 0.5)]
    for dim in (4, 16, 32, 64, 512):
        for x, y in points:
            assert grid_token(x, y, dim) == seed_tokenize(x, y, dim), (x, y, dim)
    assert grid_token(16, 0, 32) == 1 and grid_token(0, 16, 32) == 32 and grid_token(512, 512, 32) == 32 * 32 - 1
    pose = torch.zeros(17, 3)
    pose[0] = torch.tensor([0.5, 0.25, 1.0])
    tokens = grid_tokens(pose, dim=16)  # x 0.5 (column cell 8), y 0.25 (row cell 4): the seed's row + column·dim
    assert tokens.shape == (17,) and tokens[0] == 4 + 8 * 16 and (tokens[1:] == MISSING_TOKEN).all()


def test_every_format_parses_to_the_same_coco_array():
    w, h = 640, 480
    xy, visible, norm = reference_pose(w, h)
    coco_flat = [v for j in range(17) for v in (float(xy[j, 0]), float(xy[j, 1]), 2.0 * float(visible[j]))]
    op = coco_to_openpose(torch.cat([xy, visible[:, None]], dim=1))
    op_flat = op.flatten().tolist()
    op_norm = coco_to_openpose(norm)
    formats = {
        "pose_keypoint_pixels": [{"people": [{"pose_keypoints_2d": op_flat}], "canvas_width": w, "canvas_height": h}],
        "pose_keypoint_normalised": {"people": [{"pose_keypoints_2d": op_norm.flatten().tolist()}],
                                     "canvas_width": w, "canvas_height": h},
        "openpose_json_string": json.dumps({"people": [{"pose_keypoints_2d": op_flat}], "canvas_width": w,
                                            "canvas_height": h}),
        "coco_annotation": {"keypoints": coco_flat, "width": w, "height": h},
        "coco_file": {"images": [{"id": 7, "width": w, "height": h}],
                      "annotations": [{"image_id": 7, "keypoints": coco_flat, "num_keypoints": 16}]},
    }
    for name, value in formats.items():
        frames = parse(value)
        assert len(frames) == 1 and (frames[0].width, frames[0].height) == (w, h), name
        torch.testing.assert_close(select(frames[0], 0), norm, atol=1e-5, rtol=0, msg=name)
    # the seed's name-keyed dict in a 512-px frame
    named = {name: [float(norm[j, 1]) * 512, float(norm[j, 0]) * 512] for j, name in enumerate(SEED_NAMES) if j != 3}
    torch.testing.assert_close(select(parse(named)[0], 0), norm, atol=1e-5, rtol=0)


def test_normalised_versus_pixel_detection():
    one = [0.5, 0.5, 1.0] + [0.0] * 51
    frame = parse({"people": [{"pose_keypoints_2d": one}], "canvas_width": 100, "canvas_height": 50})[0]
    assert select(frame, 0)[0].tolist() == [0.5, 0.5, 1.0]
    pixels = [50.0, 25.0, 1.0] + [0.0] * 51
    frame = parse({"people": [{"pose_keypoints_2d": pixels}], "canvas_width": 100, "canvas_height": 50})[0]
    assert select(frame, 0)[0].tolist() == [0.5, 0.5, 1.0]
    with pytest.raises(ValueError, match="pixel coordinates need the canvas size"):
        parse({"people": [{"pose_keypoints_2d": pixels}]})


def test_openpose_coco_round_trip_and_neck():
    _, _, norm = reference_pose()
    op = coco_to_openpose(norm)
    assert op.shape == (18, 3)
    torch.testing.assert_close(op[1, :2], (norm[5, :2] + norm[6, :2]) / 2)
    assert torch.equal(openpose_to_coco(op), norm)
    assert sorted(OPENPOSE_18[i] for i in range(18) if i != 1) == sorted(COCO_17)
    no_shoulder = norm.clone()
    no_shoulder[5] = 0
    assert coco_to_openpose(no_shoulder)[1].tolist() == [0.0, 0.0, 0.0]


def test_flip_swaps_left_and_right_and_mirrors_x():
    _, _, norm = reference_pose()
    flipped = flip_horizontal(norm)
    for a, b in FLIP_PAIRS:
        assert COCO_17[a].replace("left", "right") == COCO_17[b]
        if norm[a, 2] > 0:
            torch.testing.assert_close(flipped[b, 0], 1 - norm[a, 0])
            torch.testing.assert_close(flipped[b, 1], norm[a, 1])
    assert flipped[4].tolist() == [0.0, 0.0, 0.0]  # the missing left ear is now the missing right ear
    assert torch.allclose(flip_horizontal(flipped), norm)


def test_crop_moves_keypoints_with_the_image_and_drops_the_outside():
    pose = torch.zeros(17, 3)
    pose[0] = torch.tensor([0.5, 0.5, 1.0])
    pose[1] = torch.tensor([0.1, 0.9, 1.0])
    out = crop(pose, (0.25, 0.25, 0.75, 0.75))
    assert out[0].tolist() == [0.5, 0.5, 1.0] and out[1].tolist() == [0.0, 0.0, 0.0]
    out = crop(pose, (0.0, 0.5, 0.5, 1.0))
    torch.testing.assert_close(out[1], torch.tensor([0.2, 0.8, 1.0]))
    with pytest.raises(ValueError, match="empty"):
        crop(pose, (0.5, 0.5, 0.5, 1.0))


def test_fourier_features():
    xy = torch.tensor([[0.25, 0.5]])
    f = fourier_features(xy, bands=3)
    assert f.shape == (1, 12)
    expected_x = [math.sin(math.pi * 0.25 * 2 ** k) for k in range(3)] + [math.cos(math.pi * 0.25 * 2 ** k) for k in range(3)]
    torch.testing.assert_close(f[0, :6], torch.tensor(expected_x))


BAD = [
    ('{"people": [', "malformed JSON at line 1, column 13"),
    ({"people": [{"pose_keypoints_2d": [1.0, 2.0, 1.0] * 25}], "canvas_width": 9, "canvas_height": 9},
     "25 joints; expected 18"),
    ({"people": [{"pose_keypoints_2d": [float("nan"), 2.0, 1.0] * 18}], "canvas_width": 9, "canvas_height": 9},
     "joint 0 has a NaN"),
    ({"people": [{"pose_keypoints_2d": [0.5, 0.5, 1.0] * 18}], "canvas_width": 0, "canvas_height": 9},
     "canvas size 0.9 must be positive|canvas size 0×9 must be positive"),
    ({"foo": 1}, "not a pose"),
]


@pytest.mark.parametrize("value,message", BAD, ids=[b[1][:20] for b in BAD])
def test_bad_pose_input_is_a_clear_error(value, message):
    with pytest.raises(ValueError, match=message):
        parse(value)


def test_person_selection_and_null_pose():
    frame = parse({"people": [], "canvas_width": 10, "canvas_height": 10})[0]
    with pytest.raises(ValueError, match="no people in the frame"):
        select(frame, 0)
    two = {"people": [{"pose_keypoints_2d": [0.0] * 54}] * 2, "canvas_width": 10, "canvas_height": 10}
    frame = parse(two)[0]
    assert not select(frame, 1).any()  # all-missing joints: the null pose, valid
    with pytest.raises(ValueError, match="person index 2 is out of range; the frame has 2 people"):
        select(frame, 2)


def test_pose_keypoint_value_round_trips_through_parse():
    from stepwise.kernels.pose import Frame, to_pose_keypoint

    g = torch.Generator().manual_seed(3)
    a = torch.cat([torch.rand(17, 2, generator=g) * 0.8 + 0.1, torch.ones(17, 1)], 1)
    a[[3, 10], :] = 0  # two missing joints stay missing
    b = torch.cat([torch.rand(17, 2, generator=g), torch.ones(17, 1)], 1)
    frames = [Frame([a, b], 640, 480), Frame([], 64, 64)]
    value = to_pose_keypoint(frames)
    assert value[0]["canvas_width"] == 640 and len(value[0]["people"][0]["pose_keypoints_2d"]) == 54
    assert value[0]["people"][0]["pose_keypoints_2d"][3 * OPENPOSE_18.index(COCO_17[3]):][:3] == [0, 0, 0]
    back = parse(json.loads(json.dumps(value)))
    assert [(f.width, f.height, len(f.people)) for f in back] == [(640, 480, 2), (64, 64, 0)]
    for got, want in zip(back[0].people, (a, b)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_find_joints_locates_every_joint_of_a_drawn_figure():
    import numpy as np

    from stepwise.kernels.keypoints import find_joints, pck
    from stepwise.models.world import figure_image

    found, truth = [], []
    for i in range(12):
        image, k, _ = figure_image(128, 7, i)
        found.append(find_joints(image))
        truth.append(np.concatenate([k, np.ones((17, 1))], 1))
    found, truth = np.stack(found), np.stack(truth)
    assert np.abs(found[..., :2] - truth[..., :2]).max() < 1.5  # pixel-centre centroids of the dots
    score, per_joint = pck(found, truth)
    assert score == 1.0 and per_joint.shape == (17,)
    blank = find_joints(np.zeros((16, 16, 3), np.uint8))
    assert not blank[:, 2].any() and np.isnan(blank[:, :2]).all()


def test_pck_counts_distance_against_the_figure_size_and_missing_joints_as_wrong():
    import numpy as np

    from stepwise.kernels.keypoints import pck

    truth = np.zeros((17, 3))
    truth[:, 0] = np.linspace(0, 100, 17)  # a figure 100 wide: threshold 10 at PCK@0.1
    truth[:, 2] = 1
    found = truth.copy()
    found[0, 0] += 9.9  # within
    found[1, 0] += 10.5  # outside
    found[2] = (np.nan, np.nan, 0)  # not found
    score, per_joint = pck(found, truth)
    assert score == pytest.approx(15 / 17) and list(per_joint[:3]) == [1.0, 0.0, 0.0]
    truth[5, 2] = 0  # an invisible ground-truth joint is not counted
    assert pck(found, truth)[0] == pytest.approx(14 / 16)
    with pytest.raises(ValueError, match="same shape"):
        pck(found[:16], truth)


# The seed's published example keypoint file (its dataset post; the output of bizarre-pose-estimator).
SEED_EXAMPLE = {
    "nose": [176.8, 256.0], "eye_left": [150.4, 282.4], "eye_right": [168.0, 247.2], "ear_left": [150.4, 322.0],
    "ear_right": [181.2, 234.0], "shoulder_left": [238.4, 374.8], "shoulder_right": [264.8, 251.6],
    "elbow_left": [348.4, 361.6], "elbow_right": [361.6, 251.6], "wrist_left": [445.2, 427.6],
    "wrist_right": [388.0, 225.2], "hip_left": [533.2, 401.2], "hip_right": [414.4, 286.8],
    "knee_left": [352.8, 220.8], "knee_right": [405.6, 150.4], "ankle_left": [396.8, 128.4],
    "ankle_right": [392.4, 128.4],
}


def test_the_seeds_files_hold_row_then_column():
    """Element 0 of the seed's keypoints is the row: in its example the head is above the shoulders, the shoulders
    above the elbows, the elbows above the hips, and a hip lies below the 512-px frame (533.2), which the seed's
    article reads as "y >= 512" (out of the image scope)."""
    pose = select(parse(SEED_EXAMPLE)[0], 0)
    x, y = pose[:, 0], pose[:, 1]
    nose, shoulders, elbows, hips = 0, [5, 6], [7, 8], [11, 12]
    assert y[nose] < y[shoulders].min() and y[shoulders].max() < y[elbows].max() < y[hips].max()
    assert abs(float(y[11]) - 533.2 / 512) < 1e-6 and abs(float(x[11]) - 401.2 / 512) < 1e-6
    assert abs(float(x[nose]) - 256.0 / 512) < 1e-6 and abs(float(y[nose]) - 176.8 / 512) < 1e-6


def test_a_flip_of_a_seed_file_mirrors_its_columns():
    """A horizontal flip moves element 1 (the column) of the seed's keypoints and swaps left and right."""
    mirrored = {name: [row, 512 - col] for name, (row, col) in SEED_EXAMPLE.items()}
    swapped = {}
    for name, value in mirrored.items():
        other = name.replace("_left", "_tmp").replace("_right", "_left").replace("_tmp", "_right")
        swapped[other] = value
    flipped = flip_horizontal(select(parse(SEED_EXAMPLE)[0], 0))
    torch.testing.assert_close(flipped, select(parse(swapped)[0], 0), atol=1e-6, rtol=0)
    assert torch.equal(flipped[:, 1], select(parse(SEED_EXAMPLE)[0], 0)[[0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11,
                                                                          14, 13, 16, 15], 1])


def test_the_skeleton_preview_of_a_seed_file_draws_each_joint_at_its_row_and_column():
    """The preview draws a seed file's joints where the file puts them: x from element 1, y from element 0."""
    import numpy as np

    from stepwise.kernels.keypoints import find_joints
    from stepwise.models.world import skeleton_image

    inside = {k: v for k, v in SEED_EXAMPLE.items() if v[0] < 512}  # a hip lies below the frame
    pose = select(parse(inside)[0], 0)
    found = find_joints(np.asarray(skeleton_image(pose[None].numpy(), 512, 512)))
    for j, name in enumerate(SEED_NAMES):
        if name in inside and name not in ("ankle_left", "ankle_right"):  # the two ankles overlap in this pose
            row, col = inside[name]
            assert found[j, 2] == 1 and abs(found[j, 0] - col) < 3 and abs(found[j, 1] - row) < 3, name
