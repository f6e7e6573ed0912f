"""Reading training images: the file types the trainer accepts and the square centre crop every model trains on."""

from __future__ import annotations

import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def square_image(path: str, resolution: int) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
    """The image at ``path`` centre-cropped to a square and resized to ``resolution`` (3×R×R in [-1, 1]), and the
    crop box ``(x0, y0, x1, y1)`` normalised to the original image (for moving keypoints with it)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        box = (left / im.width, top / im.height, (left + side) / im.width, (top + side) / im.height)
        im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
        arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1), box
