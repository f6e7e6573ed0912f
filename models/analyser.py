"""Read an image of the captioned world (:mod:`models.scenes`) back into objects and a figure, and compare readings.

Method (pure numpy, no learning):

1. the background is the palette colour (the 8 object colours, gray, the limbs' grey) nearest to most of the
   image's border pixels;
2. every pixel is read as a blend ``background + α (colour - background)`` of the background and one object
   colour, as blur and anti-aliasing make edges (:func:`_blend_classes`): the colour whose blend line passes
   nearest, when α ≥ 0.5 and the pixel lies near that line; background when α < 0.5; "other" when no line
   passes near (a figure's limbs and joint dots). Under noise (σ estimated from neighbouring-pixel differences,
   :func:`noise_level`) the tolerance widens and isolated pixels take their neighbours' class
   (:func:`_despeckle`: thin lines and rings stay); under heavy noise (σ > 0.12) the image is first averaged 3×3;
3. the non-background pixels fall into 8-connected components (the placement rule keeps items at least 2 px
   apart); a component of at least ``min_area`` pixels whose commonest object colour holds 60 % of its coloured
   pixels and whose outline a shape template fits (IoU ≥ ``min_fit``) is an object: its colour that commonest
   colour; its shape and half-side the best by IoU of the six shape templates (:func:`models.scenes.shape_mask`)
   drawn at the component's box centre over five half-sides around half the box's side, compared with the
   unfiltered pixels of its colour; its size word from that half-side (threshold halfway between small and
   large); its position word from the anchor nearest the box centre;
4. what is left (many colours: the limbs and joint dots of a stick figure) is the figure; its joints come from
   :func:`kernels.keypoints.find_joints` on the image with everything outside the figure painted background.

:func:`read` returns a :class:`Reading`; :func:`attribute_accuracy`, :func:`match_objects`, :func:`mask_iou`,
:func:`object_ious` and :func:`summarise` compare readings with scenes or captions for the metrics built on them.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from ..kernels.keypoints import find_joints, pck
from . import scenes as world

_PALETTE_NAMES = list(world.COLOURS) + ["gray", "limb"]
_PALETTE = np.asarray(list(world.COLOURS.values()) + [world.BACKGROUNDS["gray"], world.LIMB],
                      dtype=np.float64) / 255.0
_OBJECT_CLASSES = len(world.COLOURS)
_COLOUR_TABLE = np.asarray(list(world.COLOURS.values()), dtype=np.float64) / 255.0
ATTRIBUTES = ("shape", "colour", "size", "position")


@dataclass
class ObjectReading:
    """An object read from an image: its words, its mask (H×W bool), centroid (x, y) and box centre in pixels,
    half-side ``r`` and the IoU of its best shape template (``fit``)."""

    shape: str
    colour: str
    size: str
    position: str
    mask: np.ndarray
    centroid: tuple[float, float]
    centre: tuple[float, float]
    r: float
    fit: float

    def words(self) -> dict:
        """Returns the words (size, colour, shape, position) as in :func:`models.scenes.describe`."""
        return {"size": self.size, "colour": self.colour, "shape": self.shape, "position": self.position}


@dataclass
class FigureReading:
    """A stick figure read from an image: position word, joints (17×3 ``x, y, found`` from
    :func:`kernels.keypoints.find_joints`) and mask (H×W bool)."""

    position: str
    joints: np.ndarray
    mask: np.ndarray


@dataclass
class Reading:
    """What :func:`read` finds: background word, objects (left to right, then top to bottom) and a figure or None."""

    background: str
    objects: list[ObjectReading]
    figure: FigureReading | None

    def describe(self) -> dict:
        """Returns the reading as a :func:`models.scenes.describe` description (comparable with a parsed caption)."""
        return {"background": self.background, "objects": [o.words() for o in self.objects],
                "figure": None if self.figure is None else {"position": self.figure.position}}


def _as_float(image) -> np.ndarray:
    arr = np.asarray(image.detach().cpu().numpy() if hasattr(image, "detach") else image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"image must be H×W×3 (uint8, or float in [0, 1]), got shape {arr.shape}")
    if arr.shape[0] < 16 or arr.shape[1] < 16:
        raise ValueError(f"image {arr.shape[1]}×{arr.shape[0]} too small; the world is drawn at 16 px or more")
    return arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)


def _box3(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, ((1, 1), (1, 1)) + ((0, 0),) * (a.ndim - 2), mode="edge")
    h, w = a.shape[:2]
    return sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0


_BACKGROUND, _OTHER = _OBJECT_CLASSES, _OBJECT_CLASSES + 1


def _blend_classes(rgb: np.ndarray, bg: int, nearest: np.ndarray, tolerance: float = 0.05) -> np.ndarray:
    """Class of each pixel as a blend ``background + α (colour - background)`` of the background and one object
    colour (what blur and anti-aliasing make of an edge): the object colour ``c`` (0..7) whose blend line passes
    nearest, when α ≥ 0.5 and the squared distance to the line is within ``tolerance``; the background when α < 0.5
    (or the pixel's ``nearest`` palette colour is the background's); otherwise ``_OTHER`` (a figure's limbs and joints).
    Returns (classes H×W int, α H×W×8: each pixel's blend weight of each object colour)."""
    b = _PALETTE[bg]
    dirs = _COLOUR_TABLE - b  # 8×3
    norm = (dirs ** 2).sum(-1)
    diff = rgb - b
    proj = diff @ dirs.T  # H×W×8
    alpha = np.clip(proj / np.maximum(norm, 1e-12), 0.0, 1.0)
    res = (diff * diff).sum(-1)[..., None] - 2 * alpha * proj + alpha * alpha * norm  # |diff - α dir|²
    res[..., norm < 1e-6] = np.inf  # the background's own colour is no object colour
    best = res.argmin(-1)
    r = np.take_along_axis(res, best[..., None], -1)[..., 0]
    a = np.take_along_axis(alpha, best[..., None], -1)[..., 0]
    out = np.where(r <= tolerance, np.where(a >= 0.5, best, _BACKGROUND), _OTHER)
    return np.where(nearest == bg, _BACKGROUND, out), alpha


def _despeckle(cls: np.ndarray, k: int) -> np.ndarray:
    """Returns the classes with specks removed: a pixel that shares its class with at most one of its 8
    neighbours takes its neighbours' commonest class when 5 or more of them have it (thin lines and rings stay)."""
    onehot = (cls[..., None] == np.arange(k)).astype(np.float64)
    others = np.rint(_box3(onehot) * 9) - onehot  # neighbours per class
    own = np.take_along_axis(others, cls[..., None], -1)[..., 0]
    top = others.argmax(-1)
    return np.where((own <= 1) & (others.max(-1) >= 5), top, cls)


def noise_level(rgb: np.ndarray) -> float:
    """Returns an estimate of the per-channel noise σ (in [0, 1] units) of an H×W×3 float image: the median
    absolute difference of horizontal neighbours / (0.6745·√2) (flat regions dominate the world's images)."""
    d = np.abs(np.diff(rgb, axis=1)).ravel()
    return float(np.median(d) / (0.6745 * np.sqrt(2)))


def components(mask: np.ndarray) -> np.ndarray:
    """Label the 8-connected components of an H×W bool mask. Returns an H×W int array: 0 off the mask, and one
    positive label (the largest flat index + 1 of the component's pixels) per component."""
    h, w = mask.shape
    flat_ids = np.arange(1, h * w + 1).reshape(h, w)
    lab = np.where(mask, flat_ids, 0)
    while True:
        p = np.pad(lab, 1)
        nb = lab.copy()
        for dy in range(3):
            for dx in range(3):
                np.maximum(nb, p[dy:dy + h, dx:dx + w], out=nb)
        nb = np.where(mask, nb, 0)
        flat = nb.ravel()
        for _ in range(4):  # pointer jumping: adopt the label of the pixel a label names
            jumped = np.where(flat > 0, flat[np.maximum(flat - 1, 0)], 0)
            flat = np.maximum(flat, jumped)
        nb = flat.reshape(h, w)
        if np.array_equal(nb, lab):
            return lab
        lab = nb


def _fit_shape(mask: np.ndarray, pixels: np.ndarray) -> tuple[str, float, float, float, float]:
    """Best template for a component: its box from ``mask``, the template's IoU with ``pixels`` (the raw pixels
    of the component's colour near it). Returns (shape, IoU, half-side, centre x, centre y)."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    cx, cy = (x0 + x1 + 1) / 2.0, (y0 + y1 + 1) / 2.0
    half = max(x1 - x0 + 1, y1 - y0 + 1) / 2.0
    pad = int(np.ceil(half)) + 2
    wy0, wx0 = max(0, int(cy) - pad), max(0, int(cx) - pad)
    win = pixels[wy0:int(cy) + pad + 1, wx0:int(cx) + pad + 1]
    h, w = win.shape
    best = ("circle", -1.0, half)
    area = win.sum()
    for r in (half - 0.5, half - 0.25, half, half + 0.25, half + 0.5):
        if r <= 0.5:
            continue
        for shape in world.SHAPES:
            t = _template(shape, float(r), float(cx - wx0), float(cy - wy0), h, w) > 0
            inter = np.count_nonzero(t & win)
            iou = inter / (area + np.count_nonzero(t) - inter)
            if iou > best[1] + 1e-9:
                best = (shape, iou, r)
    return best[0], best[1], best[2], cx, cy


@functools.lru_cache(maxsize=1 << 16)
def _template(shape: str, r: float, x: float, y: float, h: int, w: int) -> np.ndarray:
    """Returns the h×w float32 mask of ``shape`` (half-side r) centred at (x, y) in window coordinates (cached:
    the centres the analyser tries sit on a half-pixel grid, so the same templates come back)."""
    gy, gx = (np.arange(h) + 0.5)[:, None], (np.arange(w) + 0.5)[None, :]
    t = world.shape_mask(shape, x, y, r, 0, 0, ys=gy, xs=gx).astype(np.float32)
    t.setflags(write=False)
    return t


@functools.lru_cache(maxsize=256)
def _gauss(n: int, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return np.eye(n, dtype=np.float32)
    i = np.arange(n)
    k = np.exp(-(i[:, None] - i[None, :]) ** 2 / (2 * sigma * sigma))
    return (k / k.sum(1, keepdims=True)).astype(np.float32)


def _fit_soft(alpha: np.ndarray, cx: float, cy: float, half: float) -> tuple[str, float]:
    """Best template for a blurred component: the shape, half-side, centre (up to 1 px from the box centre: blur
    eats a triangle's apex) and blur (σ 0 to 1.8 px) whose blurred template is nearest (squared error) to
    ``alpha``, the component's blend weights of its colour; coarse (templates shifted up or not) then fine (the
    three best shapes, shifted either way). Returns (shape, r)."""
    pad = int(np.ceil(half)) + 4
    wy0, wx0 = max(0, int(cy) - pad), max(0, int(cx) - pad)
    win = alpha[wy0:int(cy) + pad + 1, wx0:int(cx) + pad + 1].astype(np.float32)
    h, w = win.shape
    sigmas = (0.0, 0.6, 1.0, 1.4, 1.8)
    kernels = [(_gauss(win.shape[0], s), _gauss(win.shape[1], s)) for s in sigmas]

    def errors(keys, which):
        t = np.stack([_template(k[0], k[1], cx + k[2] - wx0, cy + k[3] - wy0, h, w) for k in keys])
        return np.stack([(((kernels[i][0] @ t @ kernels[i][1].T) - win) ** 2).sum((1, 2)) for i in which])

    radii = [float(r) for r in np.round(half) + np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]) if r >= 1]
    coarse = [(shape, r, 0.0, dy) for shape in world.SHAPES for r in radii for dy in (-1.0, -0.5, 0.0)]
    err = errors(coarse, range(len(sigmas)))
    blur_i = int(np.unravel_index(err.argmin(), err.shape)[0])
    per_shape = {}
    for (shape, r, _, _), e in zip(coarse, err.min(0)):
        if e < per_shape.get(shape, (np.inf,))[0]:
            per_shape[shape] = (e, r)
    best = sorted(per_shape.items(), key=lambda kv: kv[1][0])[:3]
    fine = [(shape, r + dr, dx, dy) for shape, (_, r) in best for dr in (-0.5, 0.0, 0.5) if r + dr >= 1
            for dy in (-1.0, -0.5, 0.0, 0.5) for dx in (-0.5, 0.0, 0.5)]
    which = [i for i in (blur_i - 1, blur_i, blur_i + 1) if 0 <= i < len(sigmas)]
    k = fine[int(errors(fine, which).min(0).argmin())]
    return k[0], k[1]


def _position(x: float, y: float, size: int, names=tuple(world.POSITIONS)) -> str:
    pts = np.asarray([world.POSITIONS[n] for n in names]) * size
    return names[int(np.argmin(((pts - (x, y)) ** 2).sum(-1)))]


def read(image, min_area: float | None = None, min_fit: float = 0.5, denoise: float | None = 0.04) -> Reading:
    """Read an image of the captioned world (H×W×3, uint8 or float in [0, 1], numpy or torch; square).

    ``min_area``: the least pixels of an object (default: a third of a small circle's area); ``min_fit``: the least
    IoU of its shape template; ``denoise``: despeckle the pixel classes when the image's estimated noise σ
    (:func:`noise_level`, [0, 1] units) exceeds this, and average the image 3×3 first above 3 times this
    (None: never). Returns a :class:`Reading`.
    """
    rgb = _as_float(image)
    h, w = rgb.shape[:2]
    size = min(h, w)
    sigma = noise_level(rgb)
    if denoise is not None and sigma > 3 * denoise:  # heavy noise: average 3×3 first (the blur is fitted later)
        rgb, sigma = _box3(rgb), sigma / 3
    nearest = ((_PALETTE ** 2).sum(-1) - 2 * rgb @ _PALETTE.T).argmin(-1)  # nearest palette colour
    border = np.concatenate([nearest[0], nearest[-1], nearest[:, 0], nearest[:, -1]])
    bg = int(np.bincount(border, minlength=len(_PALETTE)).argmax())
    background = _PALETTE_NAMES[bg]
    raw, alpha = _blend_classes(rgb, bg, nearest, 0.05 + 4 * sigma ** 2)
    cls = raw
    if denoise is not None and sigma > denoise:
        cls = _despeckle(raw, _OBJECT_CLASSES + 2)
    fg = cls != _BACKGROUND
    if min_area is None:
        min_area = np.pi * (world.SIZES["small"] * size) ** 2 / 3
    lab = components(fg)
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    objects, figure_mask = [], np.zeros((h, w), dtype=bool)
    threshold = (world.SIZES["small"] + world.SIZES["large"]) / 2 * size
    for i, n in zip(ids, counts):
        m = lab == i
        if n < min_area:
            if n >= 3:
                figure_mask |= m
            continue
        votes = np.bincount(cls[m], minlength=_OBJECT_CLASSES + 2)[:_OBJECT_CLASSES]
        top = int(votes.argmax())
        if votes[top] >= 0.6 * votes.sum() and votes[top] >= min_area / 2:
            near = _box3(m.astype(np.float64)) > 0
            shape, fit, r, cx, cy = _fit_shape(m, near & (raw == top) | m & (raw == top))
            if fit >= min_fit:
                near = _box3(_box3(near.astype(np.float64)) > 0) > 0
                soft = np.where(near, alpha[..., top], 0.0)
                if np.count_nonzero((soft > 0.15) & (soft < 0.85)) > 0.1 * n:  # not crisp: blurred, noisy or
                    shape, r = _fit_soft(soft, cx, cy, r)  # drawn by a model; fit blurred templates
                colour = list(world.COLOURS)[top]
                ys, xs = np.nonzero(m)
                objects.append(ObjectReading(shape, colour, "large" if r >= threshold else "small",
                                             _position(cx, cy, size), m, (float(xs.mean() + 0.5),
                                                                          float(ys.mean() + 0.5)),
                                             (float(cx), float(cy)), float(r), float(fit)))
                continue
        figure_mask |= m
    objects.sort(key=lambda o: (o.centre[0], o.centre[1]))
    figure = None
    if figure_mask.sum() >= min_area:
        near = _box3(figure_mask.astype(np.float64)) > 0
        near = _box3(near.astype(np.float64)) > 0
        clean = np.where(near[..., None], rgb, _PALETTE[bg])
        joints = find_joints(clean)
        if joints[:, 2].sum() >= 9:
            ys, xs = np.nonzero(figure_mask)
            figure = FigureReading(_position((xs.min() + xs.max() + 1) / 2, size / 2, size, world.FIGURE_POSITIONS),
                                   joints, figure_mask)
    return Reading(background, objects, figure)


# --- comparisons ---

def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Returns the IoU of two H×W masks (bool, or anything > 0.5); 1.0 when both are empty."""
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    if a.shape != b.shape:
        raise ValueError(f"masks must have the same shape, got {a.shape} and {b.shape}")
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else float(np.count_nonzero(a & b) / union)


def match_objects(found: list, truth: list) -> list[tuple[int, int]]:
    """Pair found objects with true ones one-to-one. ``truth``: :class:`models.scenes.SceneObject` (then pairs
    minimise the summed centre distances) or word dicts (then pairs maximise the agreeing words, position
    first). Returns (found index, truth index) pairs; the surplus of the longer list stays unpaired."""
    if not found or not truth:
        return []
    geometric = isinstance(truth[0], world.SceneObject) and all(hasattr(f, "centre") for f in found)

    def cost(f, t):
        if geometric:
            return float(np.hypot(f.centre[0] - t.x, f.centre[1] - t.y))
        fw = f.words() if hasattr(f, "words") else f
        tw = {k: getattr(t, k) for k in ATTRIBUTES} if isinstance(t, world.SceneObject) else t
        return -sum((2 if k == "position" else 1) for k in ATTRIBUTES
                    if tw.get(k) is not None and fw.get(k) == tw.get(k))

    best, best_cost = [], None
    if len(found) <= len(truth):
        for perm in itertools.permutations(range(len(truth)), len(found)):
            c = sum(cost(found[i], truth[j]) for i, j in enumerate(perm))
            if best_cost is None or c < best_cost - 1e-9:
                best, best_cost = list(enumerate(perm)), c
    else:
        for perm in itertools.permutations(range(len(found)), len(truth)):
            c = sum(cost(found[i], truth[j]) for j, i in enumerate(perm))
            if best_cost is None or c < best_cost - 1e-9:
                best, best_cost = [(i, j) for j, i in enumerate(perm)], c
    return sorted(best, key=lambda p: p[1])


def attribute_accuracy(reading: Reading, truth) -> dict:
    """Compare a reading with the truth: a :class:`models.scenes.Scene` or a description (:func:`models.scenes.
    parse_caption` of the prompt; words left ``None`` are not scored). Returns ``{attribute: [correct, total]}``
    for shape, colour, size, position (over the true objects; an unmatched true object counts wrong for each),
    background, count (the number of objects) and figure (present or not, and its position when the truth has
    one); with a Scene that has a figure also ``joints`` (PCK@0.1 numerator and denominator)."""
    if isinstance(truth, world.Scene):
        scene, desc = truth, world.describe(truth)
        truth_objects = list(truth.objects)
    else:
        scene, desc = None, truth
        truth_objects = list(truth["objects"])
    out = {k: [0, 0] for k in ATTRIBUTES + ("background", "count", "figure")}
    pairs = dict((t, f) for f, t in match_objects(reading.objects, truth_objects))
    for j, o in enumerate(desc["objects"]):
        got = reading.objects[pairs[j]].words() if j in pairs else {}
        for k in ATTRIBUTES:
            if o.get(k) is not None:
                out[k][0] += int(got.get(k) == o[k])
                out[k][1] += 1
    if desc.get("background") is not None:
        out["background"] = [int(reading.background == desc["background"]), 1]
    out["count"] = [int(len(reading.objects) == len(desc["objects"])), 1]
    want = desc.get("figure")
    if want is None:
        out["figure"] = [int(reading.figure is None), 1]
    else:
        ok = reading.figure is not None and (want.get("position") is None or reading.figure.position == want["position"])
        out["figure"] = [int(ok), 1]
        if scene is not None:
            truth_k = np.concatenate([np.asarray(scene.figure.keypoints), np.ones((17, 1))], axis=1)
            found = reading.figure.joints if reading.figure is not None else np.zeros((17, 3))
            score, _ = pck(found, truth_k)
            out["joints"] = [round(score * 17), 17]
    return out


def summarise(results: list[dict]) -> dict:
    """Returns the accuracy per attribute (correct / total over ``results`` of :func:`attribute_accuracy`; None
    where nothing was scored) and ``all_attributes``: the accuracy over shape, colour, size and position together."""
    keys = sorted({k for r in results for k in r})
    tot = {k: [sum(r[k][0] for r in results if k in r), sum(r[k][1] for r in results if k in r)] for k in keys}
    acc = {k: (c / n if n else None) for k, (c, n) in tot.items()}
    c = sum(tot[k][0] for k in ATTRIBUTES if k in tot)
    n = sum(tot[k][1] for k in ATTRIBUTES if k in tot)
    acc["all_attributes"] = c / n if n else None
    return acc


def object_ious(reading: Reading, scene, labels: np.ndarray) -> list[float]:
    """IoU of each true object's mask (``labels`` from :func:`models.scenes.render`: k for the k-th object) with
    the mask of the object read at its place. Returns one IoU per object of ``scene`` (0.0 where none was read)."""
    pairs = dict((t, f) for f, t in match_objects(reading.objects, list(scene.objects)))
    return [mask_iou(reading.objects[pairs[k]].mask, labels == k + 1) if k in pairs else 0.0
            for k in range(len(scene.objects))]
