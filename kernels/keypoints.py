"""COCO-17 body keypoints: names, skeleton and left/right pairs (Lin et al. 2014, the COCO keypoint task)."""

COCO_17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)

# Limbs as pairs of joint indices (0-based; COCO's own list is 1-based).
SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)


def joint_colors() -> list[tuple[int, int, int]]:
    """One distinct, saturated RGB colour per joint (hues evenly spaced), for drawing and finding joints."""
    import colorsys

    return [tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(i / len(COCO_17), 1.0, 1.0))
            for i in range(len(COCO_17))]


def find_joints(image, min_saturation: float = 0.5, min_value: float = 0.4):
    """Locate each joint of a drawn stick figure by its colour (:func:`joint_colors`).

    ``image``: H×W×3, uint8 or float in [0, 1] (numpy or torch). A pixel counts for joint ``j`` when it is
    saturated and bright enough to be a dot (HSV saturation ≥ ``min_saturation``, value ≥ ``min_value``; limbs
    are grey, backgrounds dark) and ``j``'s hue is the nearest of the 17. Returns a 17×3 float array
    ``(x, y, found)`` in pixels (x, y at pixel centres: ``column + 0.5``), the centroid of joint ``j``'s
    pixels; ``found`` is 0 and x, y are NaN when no pixel has its colour.
    """
    import numpy as np

    arr = np.asarray(image.detach().cpu().numpy() if hasattr(image, "detach") else image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"image must be H×W×3, got shape {arr.shape}")
    rgb = arr.astype(np.float64) / (255.0 if arr.dtype == np.uint8 else 1.0)
    hi, lo = rgb.max(-1), rgb.min(-1)
    sat = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-12), 0.0)
    hue = _hue(rgb, hi, lo)
    n = len(COCO_17)
    centres = np.arange(n) / n
    diff = np.abs(hue[..., None] - centres)
    nearest = np.minimum(diff, 1 - diff).argmin(-1)
    dot = (sat >= min_saturation) & (hi >= min_value)
    out = np.full((n, 3), np.nan)
    out[:, 2] = 0
    ys, xs = np.nonzero(dot)
    labels = nearest[ys, xs]
    for j in range(n):
        sel = labels == j
        if sel.any():
            out[j] = (xs[sel].mean() + 0.5, ys[sel].mean() + 0.5, 1.0)
    return out


def _hue(rgb, hi, lo):
    """HSV hue in [0, 1) of an H×W×3 float image (0 where the pixel is grey)."""
    import numpy as np

    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    span = np.maximum(hi - lo, 1e-12)
    h = np.where(hi == r, (g - b) / span % 6, np.where(hi == g, (b - r) / span + 2, (r - g) / span + 4))
    return np.where(hi > lo, h / 6.0, 0.0) % 1.0


def pck(found, truth, threshold: float = 0.1):
    """Percentage of correct keypoints (Yang & Ramanan 2013): the share of ``truth``'s visible joints whose
    ``found`` position lies within ``threshold`` × the figure's size (the longer side of the bounding box of
    its visible ground-truth joints). ``found``/``truth``: N×17×3 (or 17×3) arrays of ``(x, y, visible)`` in the
    same units; a joint not found (visible 0 or NaN) counts as wrong. Returns ``(pck, per_joint[17])``."""
    import numpy as np

    f, t = np.asarray(found, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if f.shape != t.shape or f.shape[-2:] != (len(COCO_17), 3):
        raise ValueError(f"found {f.shape} and truth {t.shape} must have the same shape, (N×)17×3")
    f, t = f.reshape(-1, len(COCO_17), 3), t.reshape(-1, len(COCO_17), 3)
    visible = t[..., 2] > 0
    correct = np.zeros(visible.shape, dtype=bool)
    for i in range(len(t)):
        pts = t[i, visible[i], :2]
        if not len(pts):
            continue
        size = float((pts.max(0) - pts.min(0)).max())
        dist = np.linalg.norm(f[i, :, :2] - t[i, :, :2], axis=-1)
        ok = (f[i, :, 2] > 0) & np.isfinite(dist) & (dist <= threshold * size)
        correct[i] = ok & visible[i]
    total = visible.sum()
    per_joint = np.where(visible.sum(0) > 0, correct.sum(0) / np.maximum(visible.sum(0), 1), np.nan)
    return (float(correct.sum() / total) if total else float("nan")), per_joint
