"""Training images from a folder: every readable image, centre-cropped and resized, with its caption."""

from __future__ import annotations

import logging
import os

import torch

from ..models.images import IMAGE_EXTENSIONS, square_image

log = logging.getLogger("stepwise.train")


def load_images(directory: str, resolution: int) -> tuple[torch.Tensor, list[str], int]:
    """All readable images under ``directory`` as an N×3×R×R tensor in [-1, 1] (centre crop, then resize), their
    captions (the ``.txt`` beside each image, empty when missing) and the number of unreadable files skipped."""
    if not os.path.isdir(directory):
        raise ValueError(f"--data {directory!r} is not a folder of images")
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(directory) for f in names
                   if f.lower().endswith(IMAGE_EXTENSIONS))
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
