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


def find_joints(image, max_distance: float = 0.35, margin: float = 0.08):
    """Locate each joint of a drawn stick figure by its colour (:func:`joint_colors`).

    ``image``: H×W×3, uint8 or float in [0, 1] (numpy or torch). A pixel can belong to joint ``j`` when ``j``'s
    colour is the nearest of the 17 (RGB distance, colours in [0, 1]) and nearer than ``max_distance``; joint
    ``j`` is at the centroid of its pixels whose distance is within ``margin`` of the best one (the dot's core,
    so a background that happens to be near the colour does not drag the centroid). Returns a 17×3 float array
    ``(x, y, found)`` in pixels (pixel centres at ``column + 0.5``); ``found`` is 0 and x, y are NaN when no
    pixel is near the colour.
    """
    import numpy as np

    arr = np.asarray(image.detach().cpu().numpy() if hasattr(image, "detach") else image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"image must be H×W×3, got shape {arr.shape}")
    rgb = arr.astype(np.float64) / (255.0 if arr.dtype == np.uint8 else 1.0)
    colours = np.asarray(joint_colors(), dtype=np.float64) / 255.0
    dist = np.linalg.norm(rgb[..., None, :] - colours, axis=-1)  # H×W×17
    nearest = dist.argmin(-1)
    out = np.full((len(colours), 3), np.nan)
    out[:, 2] = 0
    for j in range(len(colours)):
        d = np.where((nearest == j) & (dist[..., j] < max_distance), dist[..., j], np.inf)
        best = d.min()
        if not np.isfinite(best):
            continue
        ys, xs = np.nonzero(d <= best + margin)
        out[j] = (xs.mean() + 0.5, ys.mean() + 0.5, 1.0)
    return out


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
