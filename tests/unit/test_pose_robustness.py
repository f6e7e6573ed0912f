"""kernels.pose.parse under an outsider's stress test: size and count limits refused fast and before the work,
deep nesting and non-UTF-8 bytes refused naming the input, and values no pose holds (true/false, joints a million
pixels away) refused instead of read silently."""

import json
import time

import pytest

from stepwise.kernels import pose

PERSON = [float(i % 300) + 0.5 if i % 3 != 2 else 0.9 for i in range(54)]  # 18 joints in pixels


def _openpose(people, **extra) -> dict:
    return {"people": [{"pose_keypoints_2d": p} for p in people], "canvas_width": 512, "canvas_height": 512, **extra}


def test_text_over_the_size_limit_is_refused_before_it_is_decoded():
    text = b" " * (16 * 2**20 + 1)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"pose_file 'big.json': 16.0 MiB of pose JSON; at most 16 MiB is read"):
        pose.parse(text, "pose_file 'big.json'")
    assert time.perf_counter() - start < 0.2


def test_more_people_than_the_limit_are_refused_before_any_pose_is_built():
    text = json.dumps(_openpose([PERSON] * 10_001))
    assert len(text) < 16 * 2**20  # the count, not the size, refuses it
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"pose: more than 10,000 people; a pose file holds at most 10,000"):
        pose.parse(text)
    assert time.perf_counter() - start < 0.5  # parsing them all takes seconds


def test_more_images_than_the_limit_are_refused():
    with pytest.raises(ValueError, match=r"more than 10,000 images"):
        pose.parse(json.dumps([_openpose([])] * 10_001))


def test_a_file_at_the_limits_is_read():
    frames = pose.parse(json.dumps(_openpose([PERSON] * 3)))
    assert len(frames) == 1 and len(frames[0].people) == 3


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a": ' * 100_000 + "1" + "}" * 100_000])
def test_deeply_nested_json_is_refused_naming_the_input(text):
    with pytest.raises(ValueError, match=r"pose_file 'deep.json': JSON nested too deeply"):
        pose.parse(text, "pose_file 'deep.json'")


def test_lists_nested_deeper_than_any_format_are_refused():
    value = _openpose([PERSON])
    for _ in range(10):
        value = [value]
    with pytest.raises(ValueError, match="lists nested more than 8 deep"):
        pose.parse(value)


def test_latin1_bytes_are_refused_naming_the_input_and_the_byte():
    data = json.dumps(_openpose([], note="café"), ensure_ascii=False).encode("latin-1")
    with pytest.raises(ValueError, match=r"pose_file 'x.json': not UTF-8 text \(byte 0xe9 at offset \d+\); save"):
        pose.parse(data, "pose_file 'x.json'")
    assert pose.parse(data.decode("latin-1").encode("utf-8"))[0].people == []  # the same file as UTF-8 is read
    assert pose.parse(b"\xef\xbb\xbf" + json.dumps(_openpose([])).encode())[0].people == []  # a BOM is fine


@pytest.mark.parametrize("x,y", [(-1e6, 10.0), (10.0, 1e6), (1200.0, 10.0)])
def test_joints_far_outside_the_canvas_are_refused(x, y):
    person = list(PERSON)
    person[3:5] = [x, y]
    with pytest.raises(ValueError, match=r"person 0: joint 1 at \(.*\) lies more than one canvas \(512×512 px\) "
                                         r"outside the picture"):
        pose.parse(_openpose([person]))


def test_joints_just_outside_the_canvas_and_missing_joints_far_away_are_read():
    person = list(PERSON)
    person[3:6] = [-100.0, 600.0, 0.9]  # a body cut by the frame
    person[6:9] = [-1e6, -1e6, 0.0]  # missing: its coordinates are not read
    frame = pose.parse(_openpose([person]))[0]
    assert len(frame.people) == 1
    assert pose.parse({"nose": [533.2, 250.0]})[0].people[0][0, 2] == 1  # the seed's hips-below-frame case


@pytest.mark.parametrize("value,match", [
    (lambda: _openpose([[True] + PERSON[1:]]), r"person 0 keypoints: value 0 is true"),
    (lambda: _openpose([PERSON[:-1] + [False]]), r"person 0 keypoints: value 53 is false"),
    (lambda: {"nose": [True, 3.0]}, r"joint 'nose': value 0 is true"),
    (lambda: {**_openpose([PERSON]), "canvas_width": True}, r"canvas size: value 0 is true"),
    (lambda: {"keypoints": [1.0, 2.0, True] * 17, "width": 10, "height": 10}, "value 2 is true"),
])
def test_booleans_are_not_numbers(value, match):
    with pytest.raises(ValueError, match=match):
        pose.parse(json.dumps(value()))

