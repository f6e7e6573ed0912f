"""The analyser reads the captioned world back into words, masks and joints."""

import numpy as np
import pytest

from stepwise.kernels.keypoints import find_joints
from stepwise.models import analyser, scenes


@pytest.mark.parametrize("size", [32, 64])
def test_attribute_accuracy_on_clean_renders(size):
    results, ious = [], []
    for i in range(500):
        scene = scenes.sample_scene(size, 11, i)
        img, labels = scenes.render(scene)
        reading = analyser.read(img)
        results.append(analyser.attribute_accuracy(reading, scene))
        ious += analyser.object_ious(reading, scene, labels)
    acc = analyser.summarise(results)
    for key in ("shape", "colour", "size", "position", "background", "count"):
        assert acc[key] >= 0.99, (key, acc)
    assert np.mean(ious) >= 0.99  # the masks read back are the renderer's


def test_a_known_scene_reads_back_exactly():
    scene = scenes.Scene(32, "gray", (scenes.make_object("triangle", "red", "large", "left", 32),
                                      scenes.make_object("ring", "blue", "small", "top", 32),
                                      scenes.make_object("cross", "white", "small", "right", 32)))
    img, labels = scenes.render(scene)
    reading = analyser.read(img.astype(np.float32) / 255)  # float input too
    assert reading.describe() == {"background": "gray", "figure": None, "objects": [
        {"size": "large", "colour": "red", "shape": "triangle", "position": "left"},
        {"size": "small", "colour": "blue", "shape": "ring", "position": "top"},
        {"size": "small", "colour": "white", "shape": "cross", "position": "right"}]}
    assert [round(o.fit, 6) for o in reading.objects] == [1.0, 1.0, 1.0]
    assert analyser.object_ious(reading, scene, labels) == [1.0, 1.0, 1.0]
    assert reading.objects[1].centre == (16.5, 5.5) and reading.objects[1].r == 3.0


def test_figures_read_as_well_as_the_joint_finder_alone():
    found = 0
    for i in range(40):
        scene = scenes.sample_scene(64, 3, i, figure=1.0)
        img, _ = scenes.render(scene)
        reading = analyser.read(img)
        acc = analyser.attribute_accuracy(reading, scene)
        assert acc["figure"] == [1, 1] and acc["count"] == [1, 1]
        alone = scenes.render(scenes.Scene(64, scene.background, (), scene.figure))[0]
        ref = find_joints(alone)
        same = (ref[:, 2] == reading.figure.joints[:, 2]) & (
            np.nan_to_num(np.abs(ref[:, :2] - reading.figure.joints[:, :2]), nan=0).max(-1) < 0.5)
        found += same.sum()
    assert found >= 0.99 * 40 * 17


def test_a_caption_judges_a_reading():
    scene = scenes.sample_scene(64, 0, 4)
    reading = analyser.read(scenes.render(scene)[0])
    prompt = scenes.parse_caption(scenes.caption(scene))
    acc = analyser.attribute_accuracy(reading, prompt)
    assert all(c == n for c, n in acc.values())
    wrong = dict(prompt, objects=[dict(o, colour="black" if o["colour"] != "black" else "white")
                                  for o in prompt["objects"]])
    assert analyser.attribute_accuracy(reading, wrong)["colour"][0] == 0


def test_mask_iou_and_errors():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    a[:2], b[1:3] = True, True
    assert analyser.mask_iou(a, b) == pytest.approx(4 / 12)
    assert analyser.mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        analyser.mask_iou(a, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="H×W×3"):
        analyser.read(np.zeros((32, 32)))


def test_components_label_separate_blobs():
    m = np.zeros((6, 6), bool)
    m[0, 0] = m[1, 1] = True  # diagonal neighbours: one component (8-connected)
    m[4:, 4:] = True
    lab = analyser.components(m)
    assert len(np.unique(lab[m])) == 2 and lab[0, 0] == lab[1, 1] and lab[0, 0] != lab[5, 5]
