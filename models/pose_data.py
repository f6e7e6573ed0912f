"""Training data for pose models: images with their keypoints, and augmentations that move the keypoints with
the image (the seed's code cropped the image but not its keypoints).

Data: a folder of images, each with a keypoint JSON beside it (``<stem>.json``, any format
:func:`kernels.pose.parse` reads, e.g. what ``train.py make-data figures`` writes), or a COCO person-keypoints
annotation file whose images sit beside it (``file_name`` relative to the file's folder or an ``images/`` folder).
Images are centre-cropped to a square and resized; the keypoints follow the crop.
"""

from __future__ import annotations

import json
import logging
import os

import torch

from ..kernels.pose import crop, flip_horizontal, parse
from .images import IMAGE_EXTENSIONS, square_image

log = logging.getLogger("stepwise.train")


def _pairs(data: str) -> list[tuple[str, object]]:
    """(image path, pose value) pairs from a folder or a COCO file."""
    if os.path.isfile(data):
        with open(data) as f:
            try:
                coco = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"--data {data}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}")
        if not isinstance(coco, dict) or "annotations" not in coco or "images" not in coco:
            raise ValueError(f"--data {data}: not a COCO annotation file (needs images and annotations)")
        root = os.path.dirname(os.path.abspath(data))
        by_image: dict = {}  # indexed once: scanning every annotation for each image is quadratic on COCO
        for a in coco["annotations"]:
            if "keypoints" in a:
                by_image.setdefault(a.get("image_id"), []).append(a)
        pairs = []
        for image in coco["images"]:
            anns = by_image.get(image.get("id"), [])
            if not anns:
                continue
            name = image.get("file_name", "")
            path = next((p for p in (os.path.join(root, name), os.path.join(root, "images", name))
                         if os.path.isfile(p)), None)
            if path is None:
                log.warning("skipping %s: image file not found next to %s", name, data)
                continue
            pairs.append((path, {"images": [image], "annotations": anns}))
        return pairs
    if not os.path.isdir(data):
        raise ValueError(f"--data {data!r} is neither a folder of images with keypoint JSON nor a COCO file")
    pairs = []
    for root, _, names in os.walk(data):
        for name in sorted(names):
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = os.path.join(root, name)
            keypoints = os.path.splitext(path)[0] + ".json"
            if os.path.isfile(keypoints):
                with open(keypoints) as f:
                    pairs.append((path, f.read()))
    return sorted(pairs, key=lambda p: p[0])


def load_pose_data(data: str, resolution: int, max_people: int = 1) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(images N×3×R×R in [-1, 1], poses N×max_people×17×3 normalised, skipped)``; images with fewer people
    are padded with null poses, more are cut to the first ``max_people``. Unreadable files are skipped and
    counted; a pose file that does not parse is an error naming it."""
    images, poses, _, skipped = load_pose_samples(data, resolution, max_people)
    return images, poses, skipped


def people_in(value, where: str, box, max_people: int) -> torch.Tensor:
    """The first ``max_people`` people of a keypoint value (a JSON text or a COCO dict, as
    :func:`~stepwise.kernels.pose.parse` reads them) moved into the crop ``box``, padded with null poses
    (max_people×17×3)."""
    frame = parse(value, where)[0]
    people = [crop(p, box) for p in frame.people[:max_people]]
    people += [torch.zeros(17, 3)] * (max_people - len(people))
    return torch.stack(people)


def load_pose_samples(data: str, resolution: int, max_people: int = 1):
    """:func:`load_pose_data` plus each image's caption (the ``.txt`` beside it, or empty):
    ``(images, poses, captions, skipped)``."""
    images, poses, captions, skipped = [], [], [], 0
    pairs = _pairs(data)
    for path, value in pairs:
        try:
            image, box = square_image(path, resolution)
        except Exception as e:  # unreadable or truncated image
            log.warning("skipping unreadable image %s (%s)", path, e)
            skipped += 1
            continue
        images.append(image)
        poses.append(people_in(value, os.path.splitext(path)[0] + ".json" if isinstance(value, str) else path, box,
                               max_people))
        caption = os.path.splitext(path)[0] + ".txt"
        captions.append(open(caption).read().strip() if os.path.isfile(caption) else "")
    if not images:
        raise ValueError(f"--data {data!r} has no readable images with keypoints ({len(pairs)} found, {skipped} "
                         "unreadable); use `train.py make-data figures` or images with <stem>.json keypoints")
    return torch.stack(images), torch.stack(poses), captions, skipped


def draw_augment(generator: torch.Generator, height: int, width: int, flip: float = 0.5,
                 min_scale: float = 0.8) -> tuple[int, int, int, bool]:
    """The random crop and flip of :func:`augment` (``(top, left, side, flipped)``), drawn from ``generator`` in
    :func:`augment`'s order; they depend on the image's size only, so a multi-process run can draw them for the
    whole batch and apply them to its own rows."""
    scale = float(min_scale + (1 - min_scale) * torch.rand((), generator=generator))
    side = max(1, int(round(scale * min(height, width))))
    top = int(torch.randint(0, height - side + 1, (), generator=generator))
    left = int(torch.randint(0, width - side + 1, (), generator=generator))
    return top, left, side, float(torch.rand((), generator=generator)) < flip


def apply_augment(image: torch.Tensor, pose: torch.Tensor, drawn: tuple[int, int, int, bool]):
    """Crop ``image`` (3×H×W) to the drawn square, resize it back, flip it if drawn; the keypoints move with it."""
    top, left, side, flipped = drawn
    _, h, w = image.shape
    out = image[:, top:top + side, left:left + side]
    out = torch.nn.functional.interpolate(out.unsqueeze(0), size=(h, w), mode="bilinear", align_corners=False)[0]
    box = (left / w, top / h, (left + side) / w, (top + side) / h)
    moved = torch.stack([crop(p, box) for p in pose])
    if flipped:
        out = out.flip(-1)
        moved = torch.stack([flip_horizontal(p) for p in moved])
    return out, moved


def augment(image: torch.Tensor, pose: torch.Tensor, generator: torch.Generator, flip: float = 0.5,
            min_scale: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """A random square crop (side ``min_scale``..1 of the image, resized back) and a horizontal flip with
    probability ``flip`` that swaps left and right joints; the keypoints (people×17×3) move with the image."""
    _, h, w = image.shape
    return apply_augment(image, pose, draw_augment(generator, h, w, flip, min_scale))
