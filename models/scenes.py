"""The captioned world: scenes of 1 to 3 coloured shapes (and optionally a stick figure) with exact captions,
scene descriptions and per-object masks, for models that must understand a prompt and metrics that judge exactly.

Vocabulary (:data:`SHAPES`, :data:`COLOURS`, :data:`SIZES`, :data:`POSITIONS`, :data:`BACKGROUNDS`):

- 6 shapes, each covering the pixels of the square of half-side ``r`` around its centre at most: circle (radius
  r + 0.5, so its outline has no lone-pixel nubs), square, triangle (apex up), diamond, cross (plus sign, arms
  0.7 r wide) and ring (a circle with a hole of radius 0.5 r);
- 8 object colours, pairwise at least 0.37 apart in RGB (channels in [0, 1]): red, green, blue, yellow, purple,
  orange, white, black; 3 background colours: gray, white, black (an object never takes the background's colour);
- 2 sizes: ``small`` (r = round(0.09 × image size): 3 px at 32, 6 px at 64) and ``large`` (r = round(0.14 × size):
  4 px at 32, 9 px at 64), the shape covering 2r + 1 pixels across, its centre on a pixel's centre;
- 5 positions, each an anchor point of the canvas: left (0.18, 0.5), right (0.82, 0.5), top (0.5, 0.18),
  bottom (0.5, 0.82), centre (0.5, 0.5) (x, y as shares of the image size); an object's centre lies within
  0.04 × size of its anchor, so the nearest anchor to its centre always names its position.

Placement rule: the items of a scene (objects and at most one figure) take distinct positions, lie inside the
canvas, and their bounding boxes are at least :func:`gap` pixels apart (2 px at 32 px, 4 px at 64 px): nothing
hides anything, and a blur of a pixel or two does not join two objects. :func:`sample_scene` draws jitter until
the rule holds, object by object (and draws new positions when an object fails 20 times).

Rendering (:func:`render`) is analytic and hard-edged: a pixel belongs to a shape when its centre
(``column + 0.5``, ``row + 0.5``) lies inside it, so every pixel has exactly one owner and the per-object masks are
exact and disjoint. A figure is drawn by :func:`models.world.draw_skeleton` (each joint a dot of its own colour),
scaled into a 0.34 × 0.84 box around its anchor (left, centre or right column).

Grammar (:func:`caption`, :func:`parse_caption`)::

    caption   := items " on a " BACKGROUND " background"
    items     := item | item " and " item | item ", " item " and " item     (the figure first, then the objects)
    item      := "a " SIZE " " COLOUR " " SHAPE " " where | "a stick figure " where
    where     := "on the left" | "on the right" | "at the top" | "at the bottom" | "in the centre"

e.g. ``a large red circle on the left and a small blue square in the centre on a gray background``. Each word maps
to one field of :func:`describe`'s description, so ``parse_caption(caption(s)) == describe(s)``. The parser also
reads hand-written prompts: size, position and background may be left out (``None`` in the description), "grey",
"center", "middle" and "an" are accepted, and two items may be related instead of placed ("a red circle left of a
blue square", "... right of / above / below ...": the first item takes left/right/top/bottom, the second the
opposite side).

Held-out splits: :func:`is_held_out` says whether a scene uses one of a set of (colour, shape) pairs
(:data:`HELD_OUT`, by default), and :func:`sample_scene`'s ``split`` draws only scenes outside (``train``) or
inside (``held_out``) that set.

Data sets (:func:`write_dataset`): per sample ``scenes_00000.png`` (RGB), ``.txt`` (the caption), ``.json``
(:meth:`Scene.to_dict`: the exact scene) and ``_masks.png`` (8-bit label image: 0 background, k the k-th object
of the JSON's ``objects`` (1-based), 255 the figure).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
COLOURS = {"red": (215, 25, 25), "green": (30, 160, 50), "blue": (40, 60, 230), "yellow": (245, 225, 20),
           "purple": (140, 50, 180), "orange": (245, 130, 0), "white": (250, 250, 250), "black": (15, 15, 15)}
BACKGROUNDS = {"gray": (128, 128, 128), "white": COLOURS["white"], "black": COLOURS["black"]}
SIZES = {"small": 0.09, "large": 0.14}
POSITIONS = {"left": (0.18, 0.5), "right": (0.82, 0.5), "top": (0.5, 0.18), "bottom": (0.5, 0.82),
             "centre": (0.5, 0.5)}
WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
         "centre": "in the centre"}
FIGURE_POSITIONS = ("left", "centre", "right")
FIGURE_BOX = (0.34, 0.84)  # width, height of the box a figure is scaled into (shares of the image size)
JITTER = 0.04
LIMB = (170, 170, 170)
# Held out by default: scenes with any of these (colour, shape) pairs (each colour and shape still appears in training).
HELD_OUT = frozenset({("red", "triangle"), ("blue", "ring"), ("green", "cross"), ("yellow", "diamond")})


def gap(size: int) -> float:
    """The least distance in pixels between two items' bounding boxes at image size ``size``: max(2, size / 16)."""
    return max(2.0, size / 16)


@dataclass(frozen=True)
class SceneObject:
    """One shape: its words and its exact geometry in pixels (centre ``x``, ``y``; half-side ``r``)."""

    shape: str
    colour: str
    size: str
    position: str
    x: float
    y: float
    r: float

    def box(self) -> tuple[float, float, float, float]:
        """Returns the bounding box (x0, y0, x1, y1) in pixels: the edges of the pixels the shape covers."""
        return (self.x - self.r - 0.5, self.y - self.r - 0.5, self.x + self.r + 0.5, self.y + self.r + 0.5)


@dataclass(frozen=True)
class Figure:
    """A stick figure: its position word and its 17 COCO joints (17×2 pixel coordinates, as a tuple of pairs)."""

    position: str
    keypoints: tuple

    def box(self) -> tuple[float, float, float, float]:
        """Returns the bounding box (x0, y0, x1, y1) in pixels, including the joint dots."""
        k = np.asarray(self.keypoints)
        return (float(k[:, 0].min() - 2), float(k[:, 1].min() - 2), float(k[:, 0].max() + 2),
                float(k[:, 1].max() + 2))


@dataclass(frozen=True)
class Scene:
    """A scene at ``resolution`` px: background word, objects (in caption order) and at most one figure."""

    resolution: int
    background: str
    objects: tuple[SceneObject, ...]
    figure: Figure | None = None

    def to_dict(self) -> dict:
        """Returns the scene as JSON-ready data (the ``.json`` of a data set; :meth:`from_dict` reads it back)."""
        return {"resolution": self.resolution, "background": self.background,
                "objects": [{"shape": o.shape, "colour": o.colour, "size": o.size, "position": o.position,
                             "x": round(o.x, 4), "y": round(o.y, 4), "r": round(o.r, 4)} for o in self.objects],
                "figure": None if self.figure is None else {
                    "position": self.figure.position,
                    "keypoints": [[round(float(x), 3), round(float(y), 3)] for x, y in self.figure.keypoints]},
                "caption": caption(self)}

    @staticmethod
    def from_dict(data: dict) -> Scene:
        """Returns the :class:`Scene` of :meth:`to_dict`'s data."""
        fig = data.get("figure")
        return Scene(int(data["resolution"]), data["background"],
                     tuple(SceneObject(o["shape"], o["colour"], o["size"], o["position"], float(o["x"]),
                                       float(o["y"]), float(o["r"])) for o in data["objects"]),
                     None if fig is None else Figure(fig["position"], tuple(tuple(p) for p in fig["keypoints"])))


def _check(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")


def make_object(shape: str, colour: str, size: str, position: str, resolution: int,
                dx: float = 0.0, dy: float = 0.0) -> SceneObject:
    """Returns the object of these words at ``resolution`` px, its centre ``(dx, dy)`` (shares of the image size,
    each within ±0.04) from its position's anchor. The geometry is snapped to the pixel grid: the centre to a
    pixel's centre, the half-side to whole pixels (round(share × resolution)), so a shape covers 2r + 1 pixels
    across and renders the same wherever it stands (no sub-pixel ambiguity between shapes at 32 px)."""
    _check("shape", shape, SHAPES)
    _check("colour", colour, COLOURS)
    _check("size", size, SIZES)
    _check("position", position, POSITIONS)
    if abs(dx) > JITTER + 1e-9 or abs(dy) > JITTER + 1e-9:
        raise ValueError(f"offset ({dx}, {dy}) too far from the anchor; keep each within ±{JITTER}")
    ax, ay = POSITIONS[position]
    return SceneObject(shape, colour, size, position, math.floor((ax + dx) * resolution) + 0.5,
                       math.floor((ay + dy) * resolution) + 0.5, float(max(1, round(SIZES[size] * resolution))))


def make_figure(position: str, resolution: int, rng: np.random.Generator) -> Figure:
    """Returns a stick figure (the slimmest of 8 poses of :func:`models.world.figure_keypoints`) scaled into the
    figure box at ``position`` (left, centre or right), its coordinates rounded to 1/1000 px (so its JSON reads back equal)."""
    from .world import figure_keypoints

    _check("figure position", position, FIGURE_POSITIONS)
    bw, bh = FIGURE_BOX[0] * resolution - 4, FIGURE_BOX[1] * resolution - 4
    best = None
    for _ in range(8):  # the slimmest of 8 poses: arms flung wide would shrink the figure to fit the box's width
        k = figure_keypoints(rng, 256)
        lo, hi = k.min(0), k.max(0)
        scale = min(bw / max(hi[0] - lo[0], 1e-6), bh / max(hi[1] - lo[1], 1e-6))
        if best is None or scale > best[0]:
            best = (scale, k, lo, hi)
    scale, k, lo, hi = best
    ax, ay = POSITIONS[position]
    k = (k - (lo + hi) / 2) * scale + np.array([ax, ay]) * resolution
    return Figure(position, tuple((round(float(x), 3), round(float(y), 3)) for x, y in k))  # as the JSON keeps


def _boxes_ok(items, resolution: int) -> bool:
    g = gap(resolution)
    boxes = [it.box() for it in items]
    for x0, y0, x1, y1 in boxes:
        if x0 < 0 or y0 < 0 or x1 > resolution or y1 > resolution:
            return False
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            dx = max(b[0] - a[2], a[0] - b[2], 0.0)
            dy = max(b[1] - a[3], a[1] - b[3], 0.0)
            if max(dx, dy) < g:
                return False
    return True


def placement_ok(scene: Scene) -> bool:
    """Returns whether ``scene`` keeps the placement rule: distinct positions, inside the canvas, bounding boxes at
    least :func:`gap` pixels apart."""
    items = list(scene.objects) + ([scene.figure] if scene.figure is not None else [])
    positions = [it.position for it in items]
    return len(set(positions)) == len(positions) and _boxes_ok(items, scene.resolution)


def is_held_out(scene, pairs=HELD_OUT) -> bool:
    """Returns whether ``scene`` (a :class:`Scene` or a :func:`describe` description) has an object whose
    (colour, shape) pair is in ``pairs``."""
    objects = describe(scene)["objects"] if isinstance(scene, Scene) else scene["objects"]
    return any((o.get("colour"), o.get("shape")) in pairs for o in objects)


def sample_scene(resolution: int, seed: int, index: int, objects: tuple[int, int] = (1, 3), figure: float = 0.0,
                 split: str = "all", held_out=HELD_OUT) -> Scene:
    """Returns scene ``index`` of the world ``seed`` (the same arguments always give the same scene).

    ``objects``: least and most objects (1 to 3, both included; with a figure, at most 2 and possibly 0);
    ``figure``: probability that the scene has a stick figure; ``split``: ``all``, ``train`` (no object with a pair
    of ``held_out``) or ``held_out`` (at least one such object).
    """
    lo, hi = objects
    if not (0 <= lo <= hi <= 3 and hi >= 1):
        raise ValueError(f"objects must be (least, most) with 0 <= least <= most <= 3 and most >= 1, got {objects}")
    if not 0.0 <= figure <= 1.0:
        raise ValueError(f"figure is a probability, got {figure}; use a value in [0, 1]")
    _check("split", split, ("all", "train", "held_out"))
    if resolution < 16:
        raise ValueError(f"resolution {resolution} too small; use 16 px or more (32 and 64 are the usual)")
    rng = np.random.default_rng([seed, index, 0x5CE7E])
    for _ in range(1000):
        scene = _draw(rng, resolution, lo, hi, figure)
        if scene is None:
            continue
        if split == "all" or (split == "train") != is_held_out(scene, held_out):
            return scene
    raise ValueError(f"no scene found for split {split!r} with held_out={sorted(held_out)}; "
                     "widen the held-out set or use split='all'")


def _draw(rng: np.random.Generator, resolution: int, lo: int, hi: int, figure_share: float) -> Scene | None:
    names = list(COLOURS)
    bg = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    fig = None
    if rng.random() < figure_share:
        fig = make_figure(FIGURE_POSITIONS[int(rng.integers(3))], resolution, rng)
        lo, hi = min(lo, 2), min(hi, 2)
    n = int(rng.integers(lo, hi + 1))
    if fig is None and n == 0:
        n = 1
    colours = [c for c in names if c != bg]
    words = [(SHAPES[int(rng.integers(len(SHAPES)))], colours[int(rng.integers(len(colours)))],
              list(SIZES)[int(rng.integers(len(SIZES)))]) for _ in range(n)]
    free = [p for p in POSITIONS if fig is None or p != fig.position]
    fixed = [] if fig is None else [_Box(fig.box())]
    for _ in range(50):
        slots = [free[i] for i in rng.permutation(len(free))[:n]]
        placed = []
        for (s, c, z), p in zip(words, slots):  # each object in turn: jitter until it keeps clear of the others
            for _ in range(20):
                obj = make_object(s, c, z, p, resolution, *rng.uniform(-JITTER, JITTER, size=2))
                if _boxes_ok(fixed + placed + [obj], resolution):
                    placed.append(obj)
                    break
            else:
                break
        if len(placed) == n:
            return Scene(resolution, bg, tuple(placed), fig)
    return None


class _Box:
    def __init__(self, box):
        self._box = box

    def box(self):
        return self._box


# --- rendering ---

def shape_mask(shape: str, x: float, y: float, r: float, height: int, width: int, ys=None, xs=None) -> np.ndarray:
    """Returns the H×W bool mask of pixels whose centres lie inside ``shape`` centred at (x, y) with half-side r
    (``ys``/``xs``: the pixel-centre rows/columns to test instead, broadcastable; then the mask has their shape)."""
    _check("shape", shape, SHAPES)
    if ys is None:
        ys, xs = np.arange(height)[:, None] + 0.5, np.arange(width)[None, :] + 0.5
    u, v = (xs - x) / r, (ys - y) / r
    e = 1e-9
    round_edge = (1 + 0.5 / r) ** 2  # circles reach r + 0.5: the pixel-centre test then leaves no lone-pixel nubs
    if shape == "circle":
        return u * u + v * v <= round_edge - e
    if shape == "square":
        return (np.abs(u) <= 1 + e) & (np.abs(v) <= 1 + e)
    if shape == "triangle":
        return (v <= 1 + e) & (np.abs(u) <= (v + 1) / 2 + e)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1 + e
    if shape == "cross":
        return ((np.abs(u) <= 0.35 + e) & (np.abs(v) <= 1 + e)) | ((np.abs(v) <= 0.35 + e) & (np.abs(u) <= 1 + e))
    d = u * u + v * v  # ring
    return (d <= round_edge - e) & (d >= 0.25 - e)


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``scene``. Returns (image H×W×3 uint8, labels H×W uint8): labels 0 background, k the k-th object
    (1-based, in ``scene.objects`` order), 255 the figure's pixels; exact and disjoint by construction."""
    s = scene.resolution
    img = np.empty((s, s, 3), dtype=np.uint8)
    img[:] = BACKGROUNDS[scene.background]
    labels = np.zeros((s, s), dtype=np.uint8)
    if scene.figure is not None:
        from PIL import Image, ImageDraw

        from .world import draw_skeleton

        pil = Image.fromarray(img)
        draw_skeleton(ImageDraw.Draw(pil), np.asarray(scene.figure.keypoints, dtype=np.float64),
                      np.ones(17, dtype=bool), s)
        drawn = np.asarray(pil)
        labels[np.any(drawn != img, axis=-1)] = 255
        img = drawn.copy()
    for k, o in enumerate(scene.objects, start=1):
        m = shape_mask(o.shape, o.x, o.y, o.r, s, s)
        img[m] = COLOURS[o.colour]
        labels[m] = k
    return img, labels


# --- grammar ---

def describe(scene: Scene) -> dict:
    """Returns the words of ``scene``: ``{"background", "objects": [{"size", "colour", "shape", "position"}],
    "figure": {"position"} | None}``; what a caption says, field for field."""
    return {"background": scene.background,
            "objects": [{"size": o.size, "colour": o.colour, "shape": o.shape, "position": o.position}
                        for o in scene.objects],
            "figure": None if scene.figure is None else {"position": scene.figure.position}}


def caption(scene) -> str:
    """Returns the canonical caption of ``scene`` (a :class:`Scene` or a complete :func:`describe` description)."""
    d = describe(scene) if isinstance(scene, Scene) else scene
    items = []
    if d.get("figure") is not None:
        items.append("a stick figure" + _where(d["figure"].get("position")))
    for o in d["objects"]:
        words = " ".join(w for w in (o.get("size"), o.get("colour"), o["shape"]) if w)
        items.append(f"a {words}" + _where(o.get("position")))
    if not items:
        raise ValueError("a caption needs at least one object or a figure")
    text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return text + (f" on a {d['background']} background" if d.get("background") else "")


def _where(position) -> str:
    return "" if position is None else " " + WHERE[position]


_SYNONYMS = {"grey": "gray", "center": "centre", "middle": "centre"}
_WHERE_RE = {phrase: pos for pos, phrase in WHERE.items()}
_WHERE_RE.update({"in the center": "centre", "in the middle": "centre", "on top": "top", "on the top": "top",
                  "on the bottom": "bottom", "at the centre": "centre", "at the center": "centre"})
_RELATIONS = {"left of": ("left", "right"), "right of": ("right", "left"), "above": ("top", "bottom"),
              "below": ("bottom", "top"), "to the left of": ("left", "right"), "to the right of": ("right", "left")}


def parse_caption(text: str) -> dict:
    """Read a caption (canonical or hand-written, see the module's grammar). Returns a :func:`describe`-style
    description; words the caption leaves out are ``None``. Raises ValueError naming the words it cannot read."""
    t = " ".join(text.lower().replace(",", " , ").split()).rstrip(" .")
    background = None
    m = re.search(r"\s+on an? (\w+) background$", t)
    if m:
        background = _SYNONYMS.get(m.group(1), m.group(1))
        _check("background", background, BACKGROUNDS)
        t = t[:m.start()]
    rel = None
    for phrase in sorted(_RELATIONS, key=len, reverse=True):
        parts = re.split(rf"\s+{phrase}\s+", t)
        if len(parts) == 2:
            rel, t = _RELATIONS[phrase], parts
            break
    chunks = t if rel else [c for c in re.split(r"\s*,\s*|\s+and\s+", t) if c]
    out = {"background": background, "objects": [], "figure": None}
    for i, chunk in enumerate(chunks):
        item = _parse_item(chunk.strip(), text)
        if rel:
            item["position"] = rel[i]
        if item.pop("figure"):
            if out["figure"] is not None:
                raise ValueError(f"{text!r} has two stick figures; a scene has at most one")
            out["figure"] = {"position": item["position"]}
        else:
            out["objects"].append(item)
    return out


def _parse_item(chunk: str, text: str) -> dict:
    position = None
    for phrase in sorted(_WHERE_RE, key=len, reverse=True):
        if chunk.endswith(" " + phrase):
            position, chunk = _WHERE_RE[phrase], chunk[:-len(phrase) - 1]
            break
    words = [_SYNONYMS.get(w, w) for w in chunk.split()]
    if not words or words[0] not in ("a", "an"):
        raise ValueError(f"cannot read {chunk!r} in {text!r}: each item starts with 'a' or 'an'")
    words = words[1:]
    if words == ["stick", "figure"]:
        if position is not None and position not in FIGURE_POSITIONS:
            raise ValueError(f"a stick figure stands {', '.join(FIGURE_POSITIONS)}, not {position!r} in {text!r}")
        return {"figure": True, "position": position}
    item = {"figure": False, "size": None, "colour": None, "shape": None, "position": position}
    for w in words:
        for key, vocab in (("size", SIZES), ("colour", COLOURS), ("shape", SHAPES)):
            if w in vocab and item[key] is None:
                item[key] = w
                break
        else:
            raise ValueError(f"cannot read {w!r} in {text!r}; sizes {', '.join(SIZES)}, colours "
                             f"{', '.join(COLOURS)}, shapes {', '.join(SHAPES)}")
    if item["shape"] is None:
        raise ValueError(f"no shape in {chunk!r} of {text!r}; name one of {', '.join(SHAPES)}")
    return item


def scene_from_description(desc: dict, resolution: int, seed: int = 0) -> Scene:
    """Returns a scene that draws a complete description (every word given): objects at their anchors, a figure
    drawn from ``seed``. Raises ValueError if a word is missing or the placement rule cannot hold."""
    for o in desc["objects"]:
        for key in ("size", "colour", "shape", "position"):
            if o.get(key) is None:
                raise ValueError(f"object {o} has no {key}; every word is needed to draw a scene")
    if desc.get("background") is None:
        raise ValueError("the description has no background; name one of " + ", ".join(BACKGROUNDS))
    fig = None
    if desc.get("figure") is not None:
        fig = make_figure(desc["figure"]["position"] or "centre", resolution, np.random.default_rng(seed))
    objs = tuple(make_object(o["shape"], o["colour"], o["size"], o["position"], resolution) for o in desc["objects"])
    scene = Scene(resolution, desc["background"], objs, fig)
    if not placement_ok(scene):
        raise ValueError(f"{caption(desc)!r} breaks the placement rule at {resolution} px (positions must differ, "
                         "and two large objects side by side need more room); choose other positions or sizes")
    return scene


# --- data sets ---

def write_dataset(out: str, n: int, resolution: int, seed: int = 0, objects: tuple[int, int] = (1, 3),
                  figure: float = 0.0, split: str = "all") -> int:
    """Write ``n`` scenes (:func:`sample_scene`) into ``out`` as ``scenes_00000.png`` + ``.txt`` caption + ``.json``
    scene + ``_masks.png`` labels (see the module's docstring). Returns the number written."""
    from PIL import Image

    if n < 1:
        raise ValueError(f"need n >= 1, got {n}")
    os.makedirs(out, exist_ok=True)
    for i in range(n):
        scene = sample_scene(resolution, seed, i, objects, figure, split)
        img, labels = render(scene)
        stem = os.path.join(out, f"scenes_{i:05d}")
        Image.fromarray(img).save(stem + ".png")
        Image.fromarray(labels, mode="L").save(stem + "_masks.png")
        with open(stem + ".txt", "w") as f:
            f.write(caption(scene) + "\n")
        with open(stem + ".json", "w") as f:
            json.dump(scene.to_dict(), f)
    return n


def read_sample(stem: str) -> tuple[np.ndarray, Scene, np.ndarray]:
    """Returns (image, scene, labels) of one written sample (``stem`` without extension)."""
    from PIL import Image

    with open(stem + ".json") as f:
        scene = Scene.from_dict(json.load(f))
    return np.asarray(Image.open(stem + ".png").convert("RGB")), scene, np.asarray(Image.open(stem + "_masks.png"))


def min_colour_distance() -> float:
    """Returns the least RGB distance (channels in [0, 1]) between two object colours."""
    c = np.asarray(list(COLOURS.values()), dtype=np.float64) / 255
    d = np.linalg.norm(c[:, None] - c[None], axis=-1)
    return float(d[~np.eye(len(c), dtype=bool)].min())


__all__ = ["SHAPES", "COLOURS", "BACKGROUNDS", "SIZES", "POSITIONS", "HELD_OUT", "Scene", "SceneObject", "Figure",
           "sample_scene", "render", "caption", "parse_caption", "describe", "is_held_out", "placement_ok",
           "write_dataset", "read_sample", "scene_from_description", "shape_mask", "gap"]
