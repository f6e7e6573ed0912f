"""The synthetic world: deterministic data with exact ground truth, and artifacts with exact masks."""

import json

import numpy as np
import pytest

from stepwise.kernels.keypoints import COCO_17, joint_colors
from stepwise.models import world


def test_make_data_writes_images_captions_and_keypoints(tmp_path):
    from PIL import Image

    assert world.make_data("figures", 3, 64, str(tmp_path / "f"), seed=1) == 3
    assert world.make_data("shapes", 2, 32, str(tmp_path / "s"), seed=1) == 2
    img = np.asarray(Image.open(tmp_path / "f" / "figures_00000.png"))
    ann = json.loads((tmp_path / "f" / "figures_00000.json").read_text())
    assert img.shape == (64, 64, 3) and ann["names"] == list(COCO_17) and len(ann["keypoints"]) == 51
    assert (tmp_path / "s" / "shapes_00001.txt").read_text().strip().startswith("a ")


def test_each_joint_is_drawn_in_its_colour_at_its_keypoint(tmp_path):
    img, k, _ = world.figure_image(128, seed=5, index=0)
    for (x, y), color in zip(k, joint_colors()):
        assert tuple(img[int(round(y)), int(round(x))]) == color or \
            np.abs(img[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2].astype(int) - color).sum(-1).min() < 30


def test_same_seed_same_data_and_seeds_differ():
    a, b, c = world.shape_image(32, 3, 7), world.shape_image(32, 3, 7), world.shape_image(32, 4, 7)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], c[0]) or a[1] != c[1]


@pytest.mark.parametrize("kind", world.ARTIFACTS)
def test_artifact_masks_mark_exactly_the_changed_pixels(kind):
    img, _ = world.shape_image(64, 0, 1)
    img, _, _ = world.figure_image(64, 0, 2)
    corrupted, mask, got = world.corrupt(img, np.random.default_rng(3), kind)
    assert got == kind and corrupted.shape == img.shape and mask.shape == img.shape[:2]
    changed = np.any(corrupted != img, axis=-1)
    assert np.array_equal(mask.astype(bool), changed) and changed.any()


def test_unknown_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown kind 'cats'"):
        world.make_data("cats", 1, 32, str(tmp_path))
    with pytest.raises(ValueError, match="unknown artifact 'fog'"):
        world.corrupt(np.zeros((32, 32, 3), np.uint8), np.random.default_rng(0), "fog")
