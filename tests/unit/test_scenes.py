"""The captioned world: vocabulary, seeded scenes, the caption grammar, exact masks and the placement rule."""

import json

import numpy as np
import pytest

from stepwise.models import scenes


def test_vocabulary_sizes_and_colour_distances():
    assert len(scenes.SHAPES) >= 6 and len(scenes.COLOURS) >= 8 and len(scenes.SIZES) == 2
    assert set(scenes.POSITIONS) == {"left", "right", "top", "bottom", "centre"}
    assert len(scenes.BACKGROUNDS) >= 2
    assert scenes.min_colour_distance() > 0.35  # RGB in [0, 1]: far apart, classifiable by the nearest colour


def test_same_seed_same_scene_and_seeds_differ():
    a, b = scenes.sample_scene(32, 3, 7, figure=0.5), scenes.sample_scene(32, 3, 7, figure=0.5)
    assert a == b and np.array_equal(scenes.render(a)[0], scenes.render(b)[0])
    others = [scenes.sample_scene(32, 4, 7, figure=0.5), scenes.sample_scene(32, 3, 8, figure=0.5)]
    assert all(o != a for o in others)


@pytest.mark.parametrize("size", [32, 64])
def test_grammar_round_trip_and_placement_rule(size):
    counts = set()
    for i in range(150):
        scene = scenes.sample_scene(size, 1, i, figure=0.2)
        text = scenes.caption(scene)
        assert scenes.parse_caption(text) == scenes.describe(scene), text
        assert scenes.placement_ok(scene)
        assert all(o.colour != scene.background for o in scene.objects)
        counts.add(len(scene.objects))
    assert counts == {0, 1, 2, 3} or counts == {1, 2, 3}


def test_caption_words_map_to_the_description():
    scene = scenes.Scene(32, "gray", (scenes.make_object("circle", "red", "large", "left", 32),
                                      scenes.make_object("square", "blue", "small", "centre", 32)))
    assert scenes.caption(scene) == ("a large red circle on the left and a small blue square in the centre "
                                     "on a gray background")
    assert scenes.Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


def test_hand_written_prompts_parse_with_missing_words_as_none():
    got = scenes.parse_caption("A red circle left of a blue square on a grey background.")
    assert got == {"background": "gray", "figure": None,
                   "objects": [{"size": None, "colour": "red", "shape": "circle", "position": "left"},
                               {"size": None, "colour": "blue", "shape": "square", "position": "right"}]}
    got = scenes.parse_caption("a stick figure in the center and an orange ring")
    assert got["figure"] == {"position": "centre"} and got["background"] is None
    assert got["objects"] == [{"size": None, "colour": "orange", "shape": "ring", "position": None}]
    with pytest.raises(ValueError, match="'hexagon'"):
        scenes.parse_caption("a red hexagon")
    with pytest.raises(ValueError, match="choose one of"):
        scenes.make_object("circle", "magenta", "small", "left", 32)


def test_masks_are_exact_and_disjoint():
    for i in range(40):
        scene = scenes.sample_scene(64, 2, i, figure=0.3)
        img, labels = scenes.render(scene)
        bg = np.asarray(scenes.BACKGROUNDS[scene.background], dtype=np.uint8)
        assert np.all(img[labels == 0] == bg)
        for k, o in enumerate(scene.objects, start=1):
            m = labels == k
            assert np.array_equal(m, scenes.shape_mask(o.shape, o.x, o.y, o.r, 64, 64))  # nothing hides it
            assert np.all(img[m] == np.asarray(scenes.COLOURS[o.colour], dtype=np.uint8))
        if scene.figure is not None:
            assert np.any(labels == 255)
    # A hand-worked case: a small square at 32 px covers 2r + 1 = 7 pixels across, centred on the anchor's pixel.
    sq = scenes.make_object("square", "red", "small", "centre", 32)
    assert (sq.x, sq.y, sq.r) == (16.5, 16.5, 3.0)
    _, labels = scenes.render(scenes.Scene(32, "black", (sq,)))
    ys, xs = np.nonzero(labels == 1)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (13, 19, 13, 19)


def test_held_out_split():
    pairs = scenes.HELD_OUT
    train = [scenes.sample_scene(32, 0, i, split="train") for i in range(60)]
    held = [scenes.sample_scene(32, 0, i, split="held_out") for i in range(30)]
    assert not any(scenes.is_held_out(s, pairs) for s in train)
    assert all(scenes.is_held_out(s, pairs) for s in held)
    assert scenes.is_held_out(scenes.parse_caption("a red triangle"))


def test_write_dataset(tmp_path):
    assert scenes.write_dataset(str(tmp_path), 3, 32, seed=5, figure=0.5) == 3
    img, scene, labels = scenes.read_sample(str(tmp_path / "scenes_00002"))
    assert scene == scenes.sample_scene(32, 5, 2, figure=0.5)
    again, again_labels = scenes.render(scene)
    assert np.array_equal(img, again) and np.array_equal(labels, again_labels)
    assert (tmp_path / "scenes_00002.txt").read_text().strip() == scenes.caption(scene)


def test_a_description_draws_back():
    desc = scenes.parse_caption("a large red circle on the left and a small blue ring at the top on a white background")
    scene = scenes.scene_from_description(desc, 64)
    assert scenes.describe(scene) == desc
    with pytest.raises(ValueError, match="no size"):
        scenes.scene_from_description(scenes.parse_caption("a red circle on the left on a gray background"), 64)
