"""The synthetic world: procedural images with exact ground truth, and a synthetic artifact generator.

- ``shapes``: one or two simple coloured shapes (circle, square, triangle) on a plain background, with a caption.
- ``figures``: stick figures with the 17 COCO joints, each joint a dot of its own colour (see
  :func:`kernels.keypoints.joint_colors`), limbs as grey lines; the keypoints are saved beside each image.
- :func:`corrupt`: local warps, duplicated patches, blotches, blur or autoencoder degradation applied to part of
  an image, returning the corrupted image and the exact mask of the pixels it changed.

Everything is drawn from ``numpy.random.Generator(seed)`` per image, so the same seed gives the same data.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from ..kernels.keypoints import COCO_17, SKELETON, joint_colors

COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (235, 210, 40),
          "purple": (150, 60, 190), "orange": (245, 140, 30), "white": (245, 245, 245), "black": (20, 20, 20)}
SHAPES = ("circle", "square", "triangle")
ARTIFACTS = ("warp", "duplicate", "blotch", "blur", "autoencoder")


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def shape_image(size: int, seed: int, index: int) -> tuple[np.ndarray, str]:
    from PIL import Image, ImageDraw

    rng = _rng(seed, index)
    names = list(COLORS)
    bg = names[rng.integers(len(names))]
    img = Image.new("RGB", (size, size), COLORS[bg])
    draw = ImageDraw.Draw(img)
    parts = []
    for _ in range(int(rng.integers(1, 3))):
        color = names[rng.integers(len(names))]
        while color == bg:
            color = names[rng.integers(len(names))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        r = rng.uniform(0.12, 0.3) * size
        cx, cy = rng.uniform(r, size - r, size=2)
        if shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=COLORS[color])
        elif shape == "square":
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=COLORS[color])
        else:
            a = rng.uniform(0, 2 * math.pi)
            pts = [(cx + r * math.cos(a + k * 2 * math.pi / 3), cy + r * math.sin(a + k * 2 * math.pi / 3)) for k in range(3)]
            draw.polygon(pts, fill=COLORS[color])
        parts.append(f"a {color} {shape}")
    return np.asarray(img), " and ".join(parts) + f" on a {bg} background"


def figure_keypoints(rng: np.random.Generator, size: int) -> np.ndarray:
    """A plausible standing/moving stick-figure pose as a 17×2 array of pixel coordinates inside the canvas."""
    h = rng.uniform(0.55, 0.85) * size  # body height
    cx = rng.uniform(0.3, 0.7) * size
    top = rng.uniform(0.05 * size, size - h - 0.05 * size)
    u = h / 8.0  # head units
    neck = np.array([cx, top + 1.2 * u])
    hip_c = neck + np.array([rng.uniform(-0.3, 0.3) * u, 2.8 * u])
    sh_w, hip_w = rng.uniform(0.8, 1.1) * u, rng.uniform(0.5, 0.75) * u
    k = np.zeros((17, 2))
    k[0] = neck + [rng.uniform(-0.2, 0.2) * u, -0.7 * u]  # nose
    k[1], k[2] = k[0] + [0.2 * u, -0.2 * u], k[0] + [-0.2 * u, -0.2 * u]  # eyes (left = image right)
    k[3], k[4] = k[0] + [0.45 * u, -0.05 * u], k[0] + [-0.45 * u, -0.05 * u]  # ears
    k[5], k[6] = neck + [sh_w, 0], neck - [sh_w, 0]
    k[11], k[12] = hip_c + [hip_w, 0], hip_c - [hip_w, 0]

    def limb(start, angle, length):
        return start + length * np.array([math.sin(angle), math.cos(angle)])

    for sh, el, wr, side in ((5, 7, 9, 1), (6, 8, 10, -1)):
        a1 = side * rng.uniform(0.1, 2.2)
        k[el] = limb(k[sh], a1, 1.4 * u)
        k[wr] = limb(k[el], a1 + side * rng.uniform(-0.8, 1.2), 1.3 * u)
    for hp, kn, an, side in ((11, 13, 15, 1), (12, 14, 16, -1)):
        a1 = side * rng.uniform(-0.15, 0.6)
        k[kn] = limb(k[hp], a1, 1.9 * u)
        k[an] = limb(k[kn], a1 + rng.uniform(-0.5, 0.5), 1.8 * u)
    return np.clip(k, 1, size - 2)


def figure_image(size: int, seed: int, index: int) -> tuple[np.ndarray, np.ndarray, str]:
    from PIL import Image, ImageDraw

    rng = _rng(seed, index)
    bg = tuple(int(v) for v in rng.integers(0, 60, size=3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    k = figure_keypoints(rng, size)
    draw_skeleton(draw, k, np.ones(17, dtype=bool), size)
    return np.asarray(img), k, "a stick figure"


def draw_skeleton(draw, k: np.ndarray, visible: np.ndarray, size: int) -> None:
    """Draw a COCO-17 stick figure (pixel coordinates ``k``, 17×2) on a PIL ``ImageDraw``: grey limbs between
    visible joints, each visible joint a dot of its own colour (:func:`kernels.keypoints.joint_colors`)."""
    width = max(1, size // 64)
    for a, b in SKELETON:
        if visible[a] and visible[b]:
            draw.line([tuple(k[a]), tuple(k[b])], fill=(170, 170, 170), width=width)
    r = max(1.5, size / 64)
    for (x, y), color, seen in zip(k, joint_colors(), visible):
        if seen:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)


def skeleton_image(poses, width: int, height: int):
    """A PIL image (``width``×``height``, black) of the skeletons ``poses`` (people×17×3, x/y normalised to [0, 1],
    visibility > 0 drawn), as the world draws its figures."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    for pose in np.asarray(poses, dtype=np.float64).reshape(-1, 17, 3):
        draw_skeleton(draw, pose[:, :2] * np.array([width, height]), pose[:, 2] > 0, min(width, height))
    return img


def coco_annotation(k: np.ndarray, size: int) -> dict:
    """COCO person annotation of 17 keypoints (``[x, y, v] * 17``, v = 2 visible) in a size×size frame."""
    flat = []
    for x, y in k:
        flat += [round(float(x), 2), round(float(y), 2), 2]
    return {"keypoints": flat, "num_keypoints": 17, "names": list(COCO_17), "width": size, "height": size}


def make_data(kind: str, n: int, size: int, out: str, seed: int = 0) -> int:
    """Write ``n`` images of ``kind`` (shapes | figures) as PNG with ``.txt`` captions (``.json`` keypoints for
    figures) into ``out``; returns the number written."""
    from PIL import Image

    if kind not in ("shapes", "figures"):
        raise ValueError(f"unknown kind {kind!r}; choose shapes or figures")
    if n < 1 or size < 16:
        raise ValueError(f"need n >= 1 and size >= 16, got n={n}, size={size}")
    os.makedirs(out, exist_ok=True)
    for i in range(n):
        stem = os.path.join(out, f"{kind}_{i:05d}")
        if kind == "shapes":
            img, caption = shape_image(size, seed, i)
        else:
            img, k, caption = figure_image(size, seed, i)
            with open(stem + ".json", "w") as f:
                json.dump(coco_annotation(k, size), f)
        Image.fromarray(img).save(stem + ".png")
        with open(stem + ".txt", "w") as f:
            f.write(caption + "\n")
    return n


# --- synthetic artifacts ---

def corrupt(image: np.ndarray, rng: np.random.Generator, kind: str | None = None,
            region: float = 0.3) -> tuple[np.ndarray, np.ndarray, str]:
    """Corrupt part of an H×W×3 uint8 image. Returns (corrupted, mask, kind); the mask (H×W float32 in {0, 1})
    marks exactly the pixels whose values changed."""
    if kind is None:
        kind = ARTIFACTS[rng.integers(len(ARTIFACTS))]
    if kind not in ARTIFACTS:
        raise ValueError(f"unknown artifact {kind!r}; choose one of {', '.join(ARTIFACTS)}")
    h, w = image.shape[:2]
    img = image.astype(np.float32)
    rh, rw = max(4, int(h * region)), max(4, int(w * region))
    y0, x0 = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
    out = img.copy()
    sl = (slice(y0, y0 + rh), slice(x0, x0 + rw))
    if kind == "warp":
        yy, xx = np.mgrid[0:rh, 0:rw].astype(np.float32)
        amp = rng.uniform(0.15, 0.3) * min(rh, rw)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        dy = amp * np.sin(2 * np.pi * xx / rw + phase[0]) * np.sin(np.pi * yy / rh)
        dx = amp * np.sin(2 * np.pi * yy / rh + phase[1]) * np.sin(np.pi * xx / rw)
        sy = np.clip(np.rint(yy + dy), 0, rh - 1).astype(int)
        sx = np.clip(np.rint(xx + dx), 0, rw - 1).astype(int)
        out[sl] = img[sl][sy, sx]
    elif kind == "duplicate":
        sy0, sx0 = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
        out[sl] = img[sy0:sy0 + rh, sx0:sx0 + rw]
    elif kind == "blotch":
        yy, xx = np.mgrid[0:rh, 0:rw]
        blob = ((yy - rh / 2) / (rh / 2)) ** 2 + ((xx - rw / 2) / (rw / 2)) ** 2 <= rng.uniform(0.5, 1.0)
        color = rng.integers(0, 256, size=3).astype(np.float32)
        patch = out[sl]
        patch[blob] = 0.25 * patch[blob] + 0.75 * color
    elif kind == "blur":
        k = max(3, (min(rh, rw) // 4) | 1)
        pad = np.pad(img, ((k, k), (k, k), (0, 0)), mode="reflect")
        box = np.cumsum(np.cumsum(pad, 0), 1)
        box = np.pad(box, ((1, 0), (1, 0), (0, 0)))
        ys, xs = np.arange(y0, y0 + rh) + k - k // 2, np.arange(x0, x0 + rw) + k - k // 2
        s = (box[ys[:, None] + k, xs[None, :] + k] - box[ys[:, None], xs[None, :] + k]
             - box[ys[:, None] + k, xs[None, :]] + box[ys[:, None], xs[None, :]])
        out[sl] = s / (k * k)
    else:  # autoencoder: what a lossy autoencoder does to a region: lose detail (4x down) and quantise colour
        patch = img[sl]
        f = 4
        ph, pw = (rh // f) * f, (rw // f) * f
        small = patch[:ph, :pw].reshape(ph // f, f, pw // f, f, 3).mean(axis=(1, 3))
        small = np.round(small / 32) * 32
        out[y0:y0 + ph, x0:x0 + pw] = np.repeat(np.repeat(small, f, 0), f, 1)
    corrupted = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    mask = np.any(corrupted != image, axis=-1).astype(np.float32)
    return corrupted, mask, kind
