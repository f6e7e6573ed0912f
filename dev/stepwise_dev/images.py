"""Output images as pictures for people: the demo's contact sheet and the template thumbnails."""

from __future__ import annotations


def tile(array, size: int):
    """An HxWxC float image in [0, 1] as a PIL image fitting ``size`` x ``size``: shrunk when larger, enlarged by a
    whole factor with nearest-neighbour otherwise (the demo models draw 32 px pictures)."""
    import numpy as np
    from PIL import Image

    im = Image.fromarray((np.clip(array, 0, 1) * 255).round().astype("uint8"))
    if max(im.size) > size:
        im.thumbnail((size, size))
    scale = max(1, size // max(im.size))
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST)
