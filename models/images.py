"""Reading training images: the file types the trainers accept, the square centre crop every model trains on, and a
folder of images with their captions."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

log = logging.getLogger("stepwise.train")


def square(im, resolution: int) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
    """A PIL image centre-cropped to a square and resized to ``resolution`` (3×R×R in [-1, 1]), and the crop box
    ``(x0, y0, x1, y1)`` normalised to the original image (for moving keypoints with it)."""
    from PIL import Image

    im = im.convert("RGB")
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    box = (left / im.width, top / im.height, (left + side) / im.width, (top + side) / im.height)
    im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1), box


def square_image(path: str, resolution: int) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
    """The image at ``path`` through :func:`square`."""
    from PIL import Image

    with Image.open(path) as im:
        return square(im, resolution)


def is_label_image(name: str) -> bool:
    """Whether ``name`` is a label image beside a sample (``<stem>_masks.png`` of ``train.py make-data --kind
    scenes``), which no trainer reads as a training image."""
    return os.path.splitext(name)[0].endswith("_masks")


def load_images(directory: str, resolution: int) -> tuple[torch.Tensor, list[str], int]:
    """All readable images under ``directory`` (label images apart: :func:`is_label_image`) as an N×3×R×R tensor in
    [-1, 1] (centre crop, then resize), their captions (the ``.txt`` beside each image, empty when missing) and the number of unreadable files skipped."""
    if not os.path.isdir(directory):
        raise ValueError(f"--data {directory!r} is not a folder of images")
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(directory) for f in names
                   if f.lower().endswith(IMAGE_EXTENSIONS) and not is_label_image(f))
    images, captions, skipped = [], [], 0
    for path in files:
        try:
            image, _ = square_image(path, resolution)
        except Exception as e:  # unreadable or truncated image: skip it and count it
            log.warning("skipping unreadable image %s (%s)", path, e)
            skipped += 1
            continue
        images.append(image)
        caption_path = os.path.splitext(path)[0] + ".txt"
        captions.append(open(caption_path).read().strip() if os.path.isfile(caption_path) else "")
    if not images:
        raise ValueError(f"--data {directory!r} has no readable images ({len(files)} image files, {skipped} "
                         f"unreadable); use a folder of PNG/JPEG/WebP images, e.g. from `train.py make-data`")
    return torch.stack(images), captions, skipped
