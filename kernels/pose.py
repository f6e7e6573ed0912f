"""Body poses as COCO-17 keypoint arrays: the formats artists' tools write, the OpenPose-18 ↔ COCO-17 mapping,
geometric augmentations that move keypoints with the image, and the pose tokens of a pose-conditioned model.

A pose is a ``17×3`` float tensor of ``(x, y, visible)`` with ``x, y`` normalised to the canvas (0..1, origin at
the top left) and ``visible`` 1 or 0; a missing joint is ``(0, 0, 0)``. A :class:`Frame` holds the people of one
image and its canvas size in pixels. Nothing here imports ComfyUI.

Formats read by :func:`parse` (a JSON string, or the already-decoded value):

- ``POSE_KEYPOINT`` (comfyui_controlnet_aux) and OpenPose JSON: a dict, or a list of dicts (one per image), with
  ``people[].pose_keypoints_2d`` (OpenPose-18 ``[x, y, c] * 18``; 17 triples are read as COCO order),
  ``canvas_width``, ``canvas_height``; coordinates normalised when every present |x|, |y| ≤ 1, else pixels;
  a joint with confidence ≤ 0 is missing.
- COCO person annotations: ``{"keypoints": [x, y, v] * 17, ...}`` (``v = 0`` missing), a list of them, or a COCO
  file (``images`` + ``annotations``); the canvas from ``width``/``height`` or the annotation's image.
- The name-keyed dict of the seed's dataset: ``{"nose": [row, col], "eye_left": [row, col], ...}`` in a 512 px
  frame (COCO names such as ``left_eye`` are accepted too); absent names are missing joints. See :data:`SEED_ORDER`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch

from .keypoints import COCO_17

OPENPOSE_18 = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye",
    "right_ear", "left_ear",
)
# OpenPose-18 index of each COCO-17 joint (the neck, OpenPose index 1, has no COCO joint).
COCO_FROM_OPENPOSE = tuple(OPENPOSE_18.index(name) for name in COCO_17)
# Left/right joint pairs swapped by a horizontal flip (COCO-17 indices).
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
# The seed's joint names (its dataset's keys), in COCO order.
SEED_NAMES = ("nose", "eye_left", "eye_right", "ear_left", "ear_right", "shoulder_left", "shoulder_right",
              "elbow_left", "elbow_right", "wrist_left", "wrist_right", "hip_left", "hip_right", "knee_left",
              "knee_right", "ankle_left", "ankle_right")
SEED_CANVAS = 512
# Which element of a keypoint in the seed's name-keyed files is which axis. The seed's code calls element 0 ``x``,
# but its data say otherwise: the seed's published example file (the output of bizarre-pose-estimator, which writes
# (row, column)) has element 0 growing from the head down, nose 176.8, shoulders 238.4/264.8, elbows 348.4/361.6,
# wrists 445.2/388.0, hips 533.2/414.4, and its article reads hips at "y >= 512" as "out of the image scope" (below
# the frame), which is element 0 = 533.2. So element 0 is the row (distance from the top) and element 1 the column.
# The seed's grid token (:func:`grid_token`) is computed on the elements in that order, so it stays token-exact.
SEED_ORDER = ("row", "col")
MISSING_TOKEN = -1
# Limits no real pose file reaches (a crowd photo has tens of people, a pose video some thousands of frames; a
# 10,000-person OpenPose file is about 3 MB): larger inputs are refused before parsing (size) or while parsing
# (counts), so a huge file is refused at once instead of tying up the queue.
MAX_BYTES = 16 * 1024 * 1024
MAX_PEOPLE = 10_000
MAX_IMAGES = 10_000
MAX_DEPTH = 8  # lists of lists of poses, nested deeper than any format here uses
# A present joint may lie outside the picture (a body cut by the frame), but not by more than this many canvas
# sizes: -1e6 px is a broken file, not a pose.
MAX_OUTSIDE = 1.0


@dataclass
class Frame:
    """The people of one image: each a 17×3 normalised pose; ``width``/``height`` the canvas in pixels."""

    people: list[torch.Tensor]
    width: int
    height: int


def empty_pose() -> torch.Tensor:
    return torch.zeros(17, 3)


# --- OpenPose-18 <-> COCO-17 ---

def openpose_to_coco(pose18: torch.Tensor) -> torch.Tensor:
    """18×3 OpenPose pose → 17×3 COCO pose (the neck is dropped)."""
    return pose18[list(COCO_FROM_OPENPOSE)].clone()


def coco_to_openpose(pose17: torch.Tensor) -> torch.Tensor:
    """17×3 COCO pose → 18×3 OpenPose pose; the neck is the mean of the shoulders when both are visible."""
    out = torch.zeros(18, 3, dtype=pose17.dtype)
    out[list(COCO_FROM_OPENPOSE)] = pose17
    left, right = pose17[5], pose17[6]
    if left[2] > 0 and right[2] > 0:
        out[1, :2] = (left[:2] + right[:2]) / 2
        out[1, 2] = 1.0
    return out


# --- parsing ---

def _fail(message: str):
    raise ValueError(message)


def _not_bool(values, where: str) -> None:
    for i, v in enumerate(values):
        if isinstance(v, bool):
            _fail(f"{where}: value {i} is {str(v).lower()}; coordinates, confidences and canvas sizes must be "
                  "numbers")


def _canvas(width, height, where: str) -> tuple[int, int]:
    _not_bool((width, height), f"{where} canvas size")
    try:
        w, h = float(width), float(height)
    except (TypeError, ValueError):
        _fail(f"{where}: canvas size {width!r}×{height!r} is not a number")
    if not (math.isfinite(w) and math.isfinite(h)) or w <= 0 or h <= 0:
        _fail(f"{where}: canvas size {width!r}×{height!r} must be positive (set canvas_width/canvas_height)")
    return int(round(w)), int(round(h))


def _triples(flat, where: str) -> torch.Tensor:
    if not isinstance(flat, (list, tuple)) or len(flat) % 3:
        _fail(f"{where}: keypoints must be a flat list of x, y, confidence triples, got "
              f"{type(flat).__name__} of length {len(flat) if hasattr(flat, '__len__') else '?'}")
    _not_bool(flat, f"{where} keypoints")
    try:
        t = torch.tensor([float(v) for v in flat], dtype=torch.float64).view(-1, 3)
    except (TypeError, ValueError):
        _fail(f"{where}: keypoints hold a value that is not a number")
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).any(dim=1).nonzero()[0])
        _fail(f"{where}: joint {bad} has a NaN or infinite coordinate")
    if t.shape[0] not in (17, 18):
        _fail(f"{where}: {t.shape[0]} joints; expected 18 (OpenPose) or 17 (COCO) x, y, confidence triples")
    return t


def _normalise(points: torch.Tensor, width: int | None, height: int | None,
               where: str) -> tuple[torch.Tensor, int, int]:
    """points: J×3 (x, y, visible in {0, 1}) in pixels or normalised → normalised, canvas."""
    present = points[:, 2] > 0
    xy = points[present, :2]
    normalised = bool((xy.abs() <= 1).all()) if len(xy) else True
    if normalised:
        width, height = (width or SEED_CANVAS), (height or SEED_CANVAS)
    elif width is None or height is None:
        _fail(f"{where}: pixel coordinates need the canvas size (canvas_width and canvas_height)")
    out = points.clone()
    if not normalised:
        out[:, 0] /= width
        out[:, 1] /= height
    far = present & ((out[:, :2] < -MAX_OUTSIDE) | (out[:, :2] > 1 + MAX_OUTSIDE)).any(dim=1)
    if far.any():
        j = int(far.nonzero()[0])
        x, y = (float(v) for v in points[j, :2])
        _fail(f"{where}: joint {j} at ({x:g}, {y:g}) lies more than one canvas ({width}×{height} px) outside the "
              f"picture; present joints must lie within -{width}..{2 * width} × -{height}..{2 * height} px (or "
              f"-1..2 normalised); mark a joint that is not in the picture missing (confidence 0)")
    out[~present] = 0.0
    out[present, 2] = 1.0
    return out.float(), width, height


def _openpose_frame(d: dict, where: str) -> Frame:
    width, height = d.get("canvas_width"), d.get("canvas_height")
    if width is not None or height is not None:
        width, height = _canvas(width, height, where)
    people = d.get("people")
    if not isinstance(people, list):
        _fail(f"{where}: 'people' must be a list of people with pose_keypoints_2d")
    poses = []
    for i, person in enumerate(people):
        at = f"{where} person {i}"
        if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
            _fail(f"{at}: has no pose_keypoints_2d")
        t = _triples(person["pose_keypoints_2d"], at)
        t[:, 2] = (t[:, 2] > 0).double()
        pose, width, height = _normalise(t, width, height, at)
        poses.append(openpose_to_coco(pose) if len(pose) == 18 else pose)
    return Frame(poses, width or SEED_CANVAS, height or SEED_CANVAS)


def _coco_annotation(a: dict, width, height, where: str) -> tuple[torch.Tensor, int, int]:
    t = _triples(a["keypoints"], where)
    if t.shape[0] != 17:
        _fail(f"{where}: a COCO annotation has 17 keypoints, got {t.shape[0]}")
    t[:, 2] = (t[:, 2] > 0).double()
    width = a.get("width", width)
    height = a.get("height", height)
    if width is not None or height is not None:
        width, height = _canvas(width, height, where)
    return _normalise(t, width, height, where)


def _named(d: dict, where: str) -> Frame:
    pose = torch.zeros(17, 3, dtype=torch.float64)
    for j, (seed_name, coco_name) in enumerate(zip(SEED_NAMES, COCO_17)):
        value = d.get(seed_name, d.get(coco_name))
        if value is None:
            continue
        if not isinstance(value, (list, tuple)) or len(value) < 2:
            _fail(f"{where}: joint {seed_name!r} must be [row, col] (pixels from the top, from the left), "
                  f"got {value!r}")
        _not_bool(value, f"{where} joint {seed_name!r}")
        try:
            y, x = float(value[0]), float(value[1])  # SEED_ORDER: element 0 is the row
        except (TypeError, ValueError):
            _fail(f"{where}: joint {seed_name!r} has a value that is not a number: {value!r}")
        if not (math.isfinite(x) and math.isfinite(y)):
            _fail(f"{where}: joint {seed_name!r} has a NaN or infinite coordinate")
        visible = float(value[2]) > 0 if len(value) > 2 else True
        pose[j] = torch.tensor([x, y, 1.0 if visible else 0.0], dtype=torch.float64)
    width, height = _canvas(d.get("canvas_width", SEED_CANVAS), d.get("canvas_height", SEED_CANVAS), where)
    out, width, height = _normalise(pose, width, height, where)
    return Frame([out], width, height)


def _frames(value, where: str) -> list[Frame]:
    if isinstance(value, list):
        if value and all(isinstance(v, dict) and "keypoints" in v for v in value):  # a list of COCO annotations
            poses, size = [], (None, None)
            for i, a in enumerate(value):
                pose, w, h = _coco_annotation(a, None, None, f"{where} annotation {i}")
                poses.append(pose)
                size = (w, h)
            return [Frame(poses, *size)]
        frames = []
        for i, v in enumerate(value):
            frames += _frames(v, f"{where} image {i}")
        return frames
    if not isinstance(value, dict):
        _fail(f"{where}: expected a pose object or a list of them, got {type(value).__name__}")
    if "people" in value:
        return [_openpose_frame(value, where)]
    if "annotations" in value:  # a COCO file: one frame per image
        images = {im.get("id"): im for im in value.get("images", []) if isinstance(im, dict)}
        frames: dict = {}
        for i, a in enumerate(value["annotations"]):
            if not isinstance(a, dict) or "keypoints" not in a:
                continue
            image = images.get(a.get("image_id"), {})
            pose, w, h = _coco_annotation(a, image.get("width"), image.get("height"), f"{where} annotation {i}")
            frames.setdefault(a.get("image_id"), Frame([], w, h)).people.append(pose)
        if not frames:
            _fail(f"{where}: the COCO file has no person keypoint annotations")
        return list(frames.values())
    if "keypoints" in value:
        pose, w, h = _coco_annotation(value, None, None, where)
        return [Frame([pose], w, h)]
    if any(k in value for k in SEED_NAMES + COCO_17):
        return [_named(value, where)]
    _fail(f"{where}: not a pose: expected people[].pose_keypoints_2d (OpenPose), keypoints (COCO) or joint names "
          f"such as 'nose' (got keys {sorted(value)[:8]})")


def _census(value, where: str, depth: int = 0, counts: list | None = None) -> list:
    """[images, people] in a decoded value, counted before any pose is built; refuses nesting deeper than
    :data:`MAX_DEPTH` and counts over :data:`MAX_IMAGES` / :data:`MAX_PEOPLE` as soon as they are passed."""
    counts = [0, 0] if counts is None else counts
    if depth > MAX_DEPTH:
        _fail(f"{where}: lists nested more than {MAX_DEPTH} deep; a pose file is a pose object or a list of them")
    if isinstance(value, list):
        if value and all(isinstance(v, dict) and "keypoints" in v for v in value):
            counts[0] += 1
            counts[1] += len(value)
        else:
            for v in value:
                _census(v, where, depth + 1, counts)
    elif isinstance(value, dict):
        counts[0] += 1
        group = value.get("people", value.get("annotations"))
        counts[1] += len(group) if isinstance(group, list) else 1
    if counts[0] > MAX_IMAGES:
        _fail(f"{where}: more than {MAX_IMAGES:,} images; a pose file holds at most {MAX_IMAGES:,} (split it into "
              "smaller files)")
    if counts[1] > MAX_PEOPLE:
        _fail(f"{where}: more than {MAX_PEOPLE:,} people; a pose file holds at most {MAX_PEOPLE:,} (keep the images "
              "you need, or split it into smaller files)")
    return counts


def parse(value, where: str = "pose") -> list[Frame]:
    """Frames (one per image) from a JSON string (or UTF-8 bytes) or a decoded POSE_KEYPOINT/OpenPose/COCO/name-keyed
    value. Text over :data:`MAX_BYTES` is refused before it is decoded, more than :data:`MAX_PEOPLE` people or
    :data:`MAX_IMAGES` images before any pose is built."""
    if isinstance(value, (str, bytes)):
        size = len(value) if isinstance(value, bytes) else len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_BYTES:
            _fail(f"{where}: {size / 2**20:.1f} MiB of pose JSON; at most {MAX_BYTES / 2**20:g} MiB is read (a "
                  f"{MAX_PEOPLE:,}-person file is about 3 MB): keep the images you need, or split the file")
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8-sig")
            except UnicodeDecodeError as e:
                _fail(f"{where}: not UTF-8 text (byte 0x{value[e.start]:02x} at offset {e.start}); save the file "
                      "as UTF-8, as JSON requires")
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            _fail(f"{where}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}")
        except RecursionError:
            _fail(f"{where}: JSON nested too deeply to read; a pose file is a pose object or a list of them")
    _census(value, where)
    frames = _frames(value, where)
    if not frames:
        _fail(f"{where}: no images in the pose data")
    return frames


def to_pose_keypoint(frames: list[Frame]) -> list[dict]:
    """Frames as a ``POSE_KEYPOINT`` value (comfyui_controlnet_aux's layout): one dict per image with
    ``people[].pose_keypoints_2d`` (OpenPose-18, ``[x, y, c] * 18`` in pixels, missing joints ``0, 0, 0``),
    ``canvas_width`` and ``canvas_height``. :func:`parse` reads it back to the same frames."""
    out = []
    for frame in frames:
        scale = torch.tensor([float(frame.width), float(frame.height), 1.0])
        people = []
        for pose in frame.people:
            op = coco_to_openpose(pose.float())
            op = torch.where(op[:, 2:3] > 0, op * scale, torch.zeros_like(op))
            people.append({"pose_keypoints_2d": [round(float(v), 3) for v in op.flatten()]})
        out.append({"people": people, "canvas_width": int(frame.width), "canvas_height": int(frame.height)})
    return out


def select(frame: Frame, person: int, where: str = "pose") -> torch.Tensor:
    """One person's pose; ``IndexError`` becomes a ``ValueError`` naming the index and the count."""
    if not frame.people:
        _fail(f"{where}: no people in the frame")
    if not 0 <= person < len(frame.people):
        _fail(f"{where}: person index {person} is out of range; the frame has {len(frame.people)} people "
              f"(0..{len(frame.people) - 1})")
    return frame.people[person]


# --- augmentations that move keypoints with the image ---

def flip_horizontal(pose: torch.Tensor) -> torch.Tensor:
    """Mirror a normalised pose left-right: x → 1 − x and left/right joints swapped (missing joints stay (0,0,0))."""
    out = pose.clone()
    present = out[:, 2] > 0
    out[present, 0] = 1.0 - out[present, 0]
    for a, b in FLIP_PAIRS:
        out[[a, b]] = out[[b, a]]
    return out


def crop(pose: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """A normalised pose in the crop ``box = (x0, y0, x1, y1)`` (normalised to the old canvas), renormalised to the
    crop; joints that fall outside it become missing. Resizing the crop afterwards leaves normalised coordinates
    unchanged."""
    x0, y0, x1, y1 = box
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"crop box {box} is empty")
    out = pose.clone()
    out[:, 0] = (out[:, 0] - x0) / (x1 - x0)
    out[:, 1] = (out[:, 1] - y0) / (y1 - y0)
    inside = (out[:, 2] > 0) & (out[:, 0] >= 0) & (out[:, 0] <= 1) & (out[:, 1] >= 0) & (out[:, 1] <= 1)
    out[~inside] = 0.0
    return out


# --- tokens ---

def grid_token(row: float, col: float, dim: int, canvas: int = SEED_CANVAS) -> int:
    """The seed's grid token of a point (pixels in a ``canvas``-px frame), bit-exact with its code: floor-divide by
    the cell size (not when ``dim == canvas``), clip to ``[0, dim − 1]``, round, ``first + second·dim``.

    The seed's code names its arguments ``x, y`` and passes elements 0 and 1 of its keypoints, which are the row and
    the column (:data:`SEED_ORDER`); the arguments here are named for what they hold."""
    if dim != canvas:
        row = row // (canvas / dim)
        col = col // (canvas / dim)
    row = min(max(row, 0), dim - 1)
    col = min(max(col, 0), dim - 1)
    return int(round(row)) + int(round(col) * dim)


def grid_tokens(pose: torch.Tensor, dim: int = 32, canvas: int = SEED_CANVAS) -> torch.Tensor:
    """The 17 grid tokens of a normalised pose (one context token of 17 values, as in the seed: row cell + column
    cell · dim); a missing joint is :data:`MISSING_TOKEN`."""
    out = []
    for x, y, v in pose.tolist():
        out.append(grid_token(y * canvas, x * canvas, dim, canvas) if v > 0 else MISSING_TOKEN)
    return torch.tensor(out, dtype=torch.float32)


def fourier_features(xy: torch.Tensor, bands: int = 8) -> torch.Tensor:
    """Fourier features of normalised coordinates (…×2) → …×(4·bands): sin and cos of ``2^k·π·(x, y)``, k < bands
    (the positional encoding GLIGEN uses for grounding points)."""
    freqs = (2.0 ** torch.arange(bands, dtype=xy.dtype, device=xy.device)) * math.pi
    angles = xy.unsqueeze(-1) * freqs  # …×2×bands
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)
