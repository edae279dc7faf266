"""Synthetic RGB-D-T street scenes: the embedded dataset of SPEC section 2 (needs no files).

Scene model
-----------
A pinhole camera (focal length 0.9·W px, principal point at the image centre, no pitch or roll) stands
1.6 m above a flat ground plane, in a driving lane; the horizon row is drawn in [0.35, 0.48]·H. World
coordinates are metres: X to the right, Y up from the ground, Z forward (depth along the optical axis).
A ground pixel at row y below the horizon row y_h sees Z = f·1.6 / (y − y_h).

* **stuff**: sky (a vertical colour gradient with clouds); a road of one or two lanes per direction
  (dashed lane lines, solid centre and edge lines, optional parking lanes, sometimes a zebra crossing);
  sidewalks with kerbs and paving joints; building facades, vertical planes parallel to the road on both
  sides, split into blocks of random length, height and colour with window grids, some blocks being
  hedges (vegetation) or gaps that show the sky over grass; a distant skyline; street trees.
* **things** (instances): poles (street lamps and sign posts, often 1–3 px wide), cars (the face
  towards the camera and the visible side face, windows, wheels, lights), pedestrians (head, torso,
  arms, legs; 30 % of the garments close to a background colour), cyclists (a rider on a bicycle at any
  heading). Objects stand on the ground at depth Z with a size ∝ f/Z. Many stand far away (tiny
  targets, < 100 px) and several occlude each other on purpose: people on the kerb behind parked cars,
  groups, queues of parked cars.

Every surface is a *material* (class, RGB albedo, temperature, night-time emission). Stuff is painted
with whole-image array operations, things far to near inside their bounding windows, always with a
per-pixel z-test: the z-buffer gives the depth map, the material map the label map, and an object's
*visible* mask is the set of pixels it owns at the end, its *occluded* mask its whole silhouette (the
amodal mask) minus the visible pixels. Instances without a visible pixel are dropped. Cars, people
and trees are drawn from *part templates*: part maps rendered once, at import, from analytic shapes
(capsules, ellipses, boxes) on a fine grid and sampled per pixel (nearest neighbour), which keeps a
sprite at a few dozen array operations whatever its size.

Units
-----
* ``image``: RGB float32 in [0, 1], 8-bit quantised display values (night light is computed in linear
  light with a gamma of 2).
* ``depth`` (H×W×1 float32): metric depth Z / 80 m, clipped to [0, 1], with 1 % multiplicative noise;
  the sky and everything beyond 80 m read 1.
* ``thermal`` (H×W×1 float32 in [0, 1]): a normalised temperature. Sky 0.04–0.09 (cold); passive
  surfaces near the scene's ambient level a ∈ [0.36, 0.44] with distinct offsets (road a + 0.06,
  sidewalk a + 0.03, building a − 0.02, vegetation a − 0.08; poles, bicycles and parked cars ≈ a, so
  thermal alone cannot find a parked car); people 0.74–0.84 (clothes) and 0.92–0.97 (faces); running
  cars 0.5–0.6 (body) and ≈ 0.8 (engine end, wheels). Plus low-frequency variation (± 0.03), an
  optical blur (σ = 0.8 px at 480 px width) and noise (σ = 0.01).

Conditions
----------
A condition is a lighting, ``day`` | ``night`` | ``fog``, optionally joined with ``+no_depth``,
``+no_thermal`` or ``+sensor_failure`` (one requested modality, drawn at random, is absent); a bare
``no_depth`` / ``no_thermal`` / ``sensor_failure`` means daylight. An absent sensor is absent from
``RawSample.modalities`` (never zeros) and listed in ``meta["missing"]``.

* ``day``: textured albedo, a slight optical blur (σ = 0.5 px at 480 px width), noise σ = 0.01.
* ``night``: global illumination 0.05–0.15 (``meta["illumination"]``, display-referred: away from the
  lights the scene is 5–15 % as bright as by day), street lamps and the headlights of oncoming cars
  (Gaussian 3-D fall-off), glowing lamps, car lights and lit windows with bloom; Poisson–Gaussian
  noise in linear light (its heteroscedastic Gaussian approximation, variance a·x + b², a ∈ [0.01,
  0.03], b ∈ [0.002, 0.005]), gamma 2, 8-bit quantisation. Depth and thermal are unaffected.
* ``fog``: RGB = albedo·t + airlight·(1 − t), transmission t = exp(−β·Z), β ~ U(0.04, 0.09) per metre
  (``meta["fog_beta"]``); thermal is only slightly attenuated (β/20, towards the ambient level).

Determinism
-----------
Scene k of a dataset with seed s is drawn from ``np.random.default_rng([s, k, 0])`` alone: its
geometry, labels and instances do not depend on the conditions. Condition effects and sensor noise
come from a second stream ``default_rng([s, k, 1])`` whose first draws are the depth and thermal noise,
so depth and thermal of scene k are identical by day and at night. Zero-mean, unit-variance noise is
uniform (``(u − 0.5)·√12``), five times cheaper to draw than Gaussian noise.

Speed: ``benchmarks/synthetic_speed.py`` measures it; the figures are in BENCHMARKS.md.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import cv2
import numpy as np

from rgbxseg.data.base import SegDataset, Transform
from rgbxseg.data.sample import RawSample

CLASSES = ("sky", "road", "sidewalk", "building", "vegetation", "pole", "car", "pedestrian", "cyclist")
SKY, ROAD, SIDEWALK, BUILDING, VEGETATION, POLE, CAR, PEDESTRIAN, CYCLIST = range(len(CLASSES))
THING_CLASSES = (POLE, CAR, PEDESTRIAN, CYCLIST)
MODALITIES = ("depth", "thermal")
LIGHTINGS = ("day", "night", "fog")
SENSOR_DROPS = {"no_depth": "depth", "no_thermal": "thermal"}
SENSOR_FAILURE = "sensor_failure"

CAMERA_HEIGHT = 1.6  # metres above the ground plane
DEPTH_RANGE = 80.0  # metres mapped to depth 1
FAR = 1000.0  # metres that stand for "infinitely far" (the sky) in fog and lighting maths
SKYLINE_DEPTH = 400.0  # metres to the distant skyline

# Cityscapes colours for the classes they share, cyclist in orange (index = class id).
PALETTE = np.array(
    [[70, 130, 180], [128, 64, 128], [244, 35, 232], [70, 70, 70], [107, 142, 35],
     [153, 153, 153], [0, 0, 142], [220, 20, 60], [250, 170, 30]], dtype=np.uint8,
)  # fmt: skip

_F32 = np.float32
_SKY_BANDS = 24
# Texture amplitude per class: fine grain and medium-scale blotches (weathering, foliage).
_GRAIN = np.array([0.01, 0.08, 0.06, 0.05, 0.22, 0.03, 0.03, 0.06, 0.06], _F32)
_BLOTCH = np.array([0.0, 0.10, 0.08, 0.12, 0.35, 0.02, 0.03, 0.05, 0.05], _F32)

_BUILDING_RGB = [(0.76, 0.70, 0.58), (0.55, 0.55, 0.56), (0.58, 0.32, 0.24), (0.86, 0.85, 0.81),
                 (0.46, 0.37, 0.29), (0.80, 0.72, 0.48), (0.66, 0.65, 0.61), (0.46, 0.50, 0.57)]  # fmt: skip
_CAR_RGB = [(0.88, 0.88, 0.88), (0.70, 0.71, 0.73), (0.42, 0.43, 0.45), (0.07, 0.07, 0.08), (0.66, 0.08, 0.07),
            (0.12, 0.22, 0.55), (0.16, 0.30, 0.20), (0.74, 0.68, 0.55), (0.90, 0.75, 0.12)]  # fmt: skip
_CLOTHES_RGB = [(0.08, 0.08, 0.09), (0.10, 0.12, 0.25), (0.45, 0.45, 0.46), (0.86, 0.86, 0.84), (0.62, 0.10, 0.10),
                (0.20, 0.28, 0.45), (0.70, 0.62, 0.48), (0.20, 0.35, 0.20), (0.36, 0.25, 0.18),
                (0.86, 0.70, 0.15)]  # fmt: skip
_SKIN_RGB = [(0.93, 0.76, 0.63), (0.80, 0.60, 0.45), (0.56, 0.38, 0.26), (0.36, 0.24, 0.16)]
_HAIR_RGB = [(0.06, 0.05, 0.05), (0.28, 0.18, 0.10), (0.75, 0.62, 0.38), (0.62, 0.62, 0.62)]
_SIGN_RGB = [(0.10, 0.30, 0.72), (0.78, 0.10, 0.10), (0.90, 0.90, 0.90), (0.92, 0.78, 0.10)]


@dataclass(frozen=True)
class Condition:
    """A parsed condition string: lighting, explicitly dropped sensors, random sensor failure."""

    lighting: str = "day"
    dropped: tuple[str, ...] = ()
    failure: bool = False

    @classmethod
    def parse(cls, text: str) -> Condition:
        parts = str(text).split("+")
        lightings = [p for p in parts if p in LIGHTINGS]
        unknown = [p for p in parts if p not in LIGHTINGS and p not in SENSOR_DROPS and p != SENSOR_FAILURE]
        if unknown or len(lightings) > 1 or len(set(parts)) < len(parts):
            modifiers = (*SENSOR_DROPS, SENSOR_FAILURE)
            raise ValueError(
                f"unknown condition {text!r}: valid conditions are a lighting ({', '.join(LIGHTINGS)}), "
                f"optionally joined with {', '.join('+' + m for m in modifiers)} (e.g. 'night+no_thermal'), "
                f"or {', '.join(modifiers)} alone (= daylight)"
            )
        dropped = tuple(SENSOR_DROPS[p] for p in parts if p in SENSOR_DROPS)
        return cls(lightings[0] if lightings else "day", dropped, SENSOR_FAILURE in parts)


# ----------------------------------------------------------------------------------------------------------
# Small helpers


def _unit_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance uniform noise (float32)."""
    noise = rng.random(shape, dtype=_F32)
    noise -= 0.5
    noise *= math.sqrt(12.0)
    return noise


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cell: int) -> np.ndarray:
    """Low-frequency noise in [−1, 1]: a coarse random grid (a node every ``cell`` px) upscaled bilinearly."""
    h, w = size
    grid = rng.random((h // cell + 2, w // cell + 2), dtype=_F32) * 2 - 1
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)


def _quantise(channel: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and round to 8 bits, in place, as a camera stores it."""
    np.maximum(channel, 0, out=channel)
    np.minimum(channel, 1, out=channel)
    channel *= 255
    channel += 0.5
    np.floor(channel, out=channel)
    channel *= 1 / 255
    return channel


def _clamp(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """``np.clip`` without its Python overhead (it matters for the many small sprite windows)."""
    return np.minimum(np.maximum(x, low), high)


def _frac(x: np.ndarray) -> np.ndarray:
    """Fractional part (much faster than ``x % 1`` on float arrays)."""
    return x - np.floor(x)


def _jitter(rng: np.random.Generator, rgb: Sequence[float], amount: float) -> np.ndarray:
    """A colour scaled by a random factor in [1 − amount, 1 + amount]."""
    return np.asarray(rgb, _F32) * rng.uniform(1 - amount, 1 + amount)


def _index(rng: np.random.Generator, weights: Sequence[float] | int) -> int:
    """A random index: uniform over ``range(weights)``, or drawn with the given weights (summing to 1)."""
    draw = rng.random()
    if isinstance(weights, int):
        return int(draw * weights)
    for index, weight in enumerate(weights):
        draw -= weight
        if draw < 0:
            return index
    return len(weights) - 1


def _pick(rng: np.random.Generator, options: Sequence[Sequence[float]], amount: float) -> np.ndarray:
    """A colour of ``options`` at random, jittered."""
    return _jitter(rng, options[_index(rng, len(options))], amount)


def _along(rng: np.random.Generator, start: float, stop: float, gap: tuple[float, float]) -> Iterator[float]:
    """Positions along the road from ``start`` to ``stop`` with random gaps."""
    z = start
    while z < stop:
        yield z
        z += rng.uniform(*gap)


# ----------------------------------------------------------------------------------------------------------
# Camera, windows, shape primitives, materials


@dataclass(frozen=True)
class _Camera:
    height: int
    width: int
    focal: float
    horizon: float

    @property
    def cx(self) -> float:
        return self.width / 2

    def col(self, x: float, z: float) -> float:
        """Image column of lateral position ``x`` at depth ``z``."""
        return self.cx + self.focal * x / z

    def row(self, y: float, z: float) -> float:
        """Image row of height ``y`` at depth ``z``."""
        return self.horizon + self.focal * (CAMERA_HEIGHT - y) / z

    def heights(self, r0: int, r1: int, depth: float | np.ndarray) -> np.ndarray:
        """Height above the ground of rows r0..r1 (h×1) on a surface at ``depth`` (scalar or 1×w)."""
        rows = np.arange(r0, r1, dtype=_F32)[:, None] + (0.5 - self.horizon)
        return CAMERA_HEIGHT - rows * (depth / self.focal)


class _Window(NamedTuple):
    """A pixel window with metric coordinates: u (1×w, lateral from the anchor), v (h×1, height)."""

    y0: int
    x0: int
    u: np.ndarray
    v: np.ndarray


def _plane(cam: _Camera, x: float, z: float, left: float, right: float, top: float) -> _Window | None:
    """The window of a fronto-parallel rectangle [x + left, x + right] × [0, top] standing at depth ``z``."""
    c0 = max(math.floor(cam.col(x + left, z)), 0)
    c1 = min(math.ceil(cam.col(x + right, z)), cam.width)
    r0 = max(math.floor(cam.row(top, z)), 0)
    r1 = min(math.ceil(cam.row(0.0, z)), cam.height)
    if c0 >= c1 or r0 >= r1:
        return None
    u = (np.arange(c0, c1, dtype=_F32) + (0.5 - cam.cx)) * (z / cam.focal) - x
    return _Window(r0, c0, u[None, :], cam.heights(r0, r1, z))


def _capsule(u: np.ndarray, v: np.ndarray, p: tuple[float, float], q: tuple[float, float], radius: float) -> np.ndarray:
    """Pixels within ``radius`` metres of the segment p–q."""
    du, dv = q[0] - p[0], q[1] - p[1]
    scale = 1 / (du * du + dv * dv + 1e-9)
    pu, pv = u - p[0], v - p[1]
    t = pu * (du * scale) + pv * (dv * scale)
    np.maximum(t, 0, out=t)
    np.minimum(t, 1, out=t)
    return (pu - t * du) ** 2 + (pv - t * dv) ** 2 < radius * radius


def _ellipse(u: np.ndarray, v: np.ndarray, centre: tuple[float, float], ru: float, rv: float) -> np.ndarray:
    return ((u - centre[0]) * (1 / ru)) ** 2 + ((v - centre[1]) * (1 / rv)) ** 2 < 1


class _Shape(NamedTuple):
    """What a sprite paints: part ids (0 = empty) in a window, part -> material, depth, optional shading."""

    y0: int
    x0: int
    part: np.ndarray  # h×w uint8
    mats: np.ndarray  # part id -> material id
    depth: float | np.ndarray  # scalar or broadcastable to h×w
    shade: np.ndarray | None = None  # broadcastable to h×w


class _Materials:
    """The scene's surfaces: class, RGB albedo, temperature, night-time emission (linear light)."""

    def __init__(self) -> None:
        self._rows: list[tuple[float, ...]] = []

    def add(self, cls: int, rgb: Sequence[float], heat: float, glow: Sequence[float] = (0, 0, 0)) -> int:
        self._rows.append((cls, *rgb, heat, *glow))
        return len(self._rows) - 1

    def freeze(self) -> None:
        """Build the lookup tables (``rgb`` and ``glow`` are 3×M: one row per channel)."""
        table = np.asarray(self._rows, _F32)
        self.classes = table[:, 0].astype(np.uint8)
        self.rgb = np.ascontiguousarray(np.clip(table[:, 1:4], 0, 1).T)
        self.heat = np.ascontiguousarray(table[:, 4])
        self.glow = np.ascontiguousarray(table[:, 5:8].T)


# ----------------------------------------------------------------------------------------------------------
# Sprites: things and trees, each drawn inside its own window


# Part templates: part maps rendered once, at import, from the analytic shapes of a reference object on a
# fine grid (row 0 = ground, an extra empty last row); a sprite samples one with two index computations.


def _template_grid(rows: int, cols: int, width: float, height: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre coordinates (rows×cols each) of a template: u across [−width/2, width/2], v over [0, height]."""
    u = (np.arange(cols) + 0.5) * (width / cols) - width / 2
    v = (np.arange(rows) + 0.5) * (height / rows)
    return np.meshgrid(u, v)


def _with_empty_row(part: np.ndarray) -> np.ndarray:
    return np.vstack([part, np.zeros((1, part.shape[1]), np.uint8)])


def _sample(template: np.ndarray, fu: np.ndarray, fv: np.ndarray) -> np.ndarray:
    """Nearest-neighbour lookup of a part template at normalised coordinates; rows outside [0, 1) are empty."""
    rows, cols = template.shape[0] - 1, template.shape[1]
    iv = _clamp(np.floor(fv * rows), -1, rows).astype(np.intp)  # −1 and ``rows`` both index the empty row
    iu = _clamp((fu * cols).astype(np.intp), 0, cols - 1)
    return template[iv, iu]


@dataclass
class _Sprite(ABC):
    """An object standing on the ground at lateral position ``x`` and depth ``z`` (metres)."""

    x: float
    z: float
    mats: np.ndarray  # part id -> material id
    cls: ClassVar[int | None] = None  # a thing class, or None for stuff (trees)
    grounded: ClassVar[bool] = False  # casts a contact shadow

    @abstractmethod
    def shape(self, cam: _Camera) -> _Shape | None:
        """What to paint (None when the sprite is outside the image)."""


@dataclass
class _Pole(_Sprite):
    height: float = 7.0
    width: float = 0.16
    arm: int = 0  # direction of a street lamp's arm (−1 left, +1 right); 0 = a sign post
    cls: ClassVar[int | None] = POLE

    @property
    def lamp(self) -> tuple[float, float, float]:
        return (self.x + 1.5 * self.arm, self.height - 0.1, self.z)

    def shape(self, cam: _Camera) -> _Shape | None:
        reach = 1.9 if self.arm else 0.35
        win = _plane(cam, self.x, self.z, -reach, reach, self.height + 0.3)
        if win is None:
            return None
        u, v, pixel = win.u, win.v, self.z / cam.focal
        part = ((np.abs(u) < max(self.width / 2, pixel / 2)) & (v < self.height)).astype(np.uint8)  # ≥ 1 px wide
        if self.arm:  # a horizontal arm over the road and the lamp head at its end
            arm = np.abs(v - self.height) < max(0.05, pixel / 2)
            part[arm & (u * self.arm > 0) & (u * self.arm < 1.5)] = 1
            part[(np.abs(v - (self.height - 0.06)) < max(0.08, pixel / 2)) & (np.abs(u - 1.5 * self.arm) < 0.3)] = 2
        else:  # a sign plate at the top
            part[(np.abs(u) < 0.3) & (np.abs(v - (self.height - 0.4)) < 0.3)] = 3
        return _Shape(win.y0, win.x0, part, self.mats, self.z)


_TRUNK, _CROWN = 1, 2  # tree parts
_TREE_SIZE = (6.0, 7.3)  # width and height of the reference tree: a 2.5 m trunk under a crown of radius 2 m


def _tree_template(rng: np.random.Generator) -> np.ndarray:
    """A tree: a trunk and a crown of four overlapping ellipses drawn from ``rng``."""
    u, v = _template_grid(288, 240, *_TREE_SIZE)
    part = ((np.abs(u) < 0.14) & (v < 4.5)).astype(np.uint8) * _TRUNK
    crown = _ellipse(u, v, (0, 4.5), 2.0, 1.8)
    for bu, bv, br in zip(rng.uniform(-1.2, 1.2, 3), rng.uniform(-0.6, 1.0, 3), rng.uniform(1.0, 1.6, 3)):
        crown |= _ellipse(u, v, (bu, 4.5 + bv), br, 0.9 * br)
    part[crown] = _CROWN
    return _with_empty_row(part)


_TREES = [_tree_template(np.random.default_rng([7, variant])) for variant in range(8)]


@dataclass
class _Tree(_Sprite):
    height: float = 7.3
    template: np.ndarray = field(default_factory=lambda: _TREES[0])

    def shape(self, cam: _Camera) -> _Shape | None:
        half = _TREE_SIZE[0] / 2 * self.height / _TREE_SIZE[1]
        win = _plane(cam, self.x, self.z, -half, half, self.height)
        if win is None:
            return None
        fv = win.v * (1 / self.height)
        part = _sample(self.template, win.u * (0.5 / half) + 0.5, fv)
        shade = 0.85 + 0.25 * _clamp((fv - 0.62) * 4, -1, 1)  # the crown is lit from above
        return _Shape(win.y0, win.x0, part, self.mats, self.z, shade)


_LEGS, _TOP, _SKIN, _HAIR = range(1, 5)  # person parts
_PERSON_HALF_WIDTH = 0.45  # metres, for a 1.75 m person
_PERSON_STRIDES = (-0.2, -0.1, 0.0, 0.1, 0.2)  # lateral foot offsets of the walking poses, metres


def _person_template(stride: float, back: bool) -> np.ndarray:
    """A 1.75 m person: capsules for the legs, the torso and the arms (swinging against the legs), an
    elliptic head with hair on top (hair only when seen from the ``back``)."""
    u, v = _template_grid(320, 160, 2 * _PERSON_HALF_WIDTH, 1.75)
    hip, shoulder = 0.52 * 1.75, 0.81 * 1.75
    part = np.zeros(v.shape, np.uint8)
    for side in (-1, 1):
        part[_capsule(u, v, (side * 0.08, hip), (side * 0.08 + stride, 0.05), 0.075)] = _LEGS
    part[_capsule(u, v, (0, hip + 0.03), (0, shoulder - 0.1), 0.17)] = _TOP
    for side in (-1, 1):
        part[_capsule(u, v, (side * 0.2, shoulder - 0.06), (side * 0.24 - 0.5 * stride, hip), 0.055)] = _TOP
    head = _ellipse(u, v, (0, 0.93 * 1.75), 0.095, 0.12)
    part[head] = _HAIR if back else _SKIN
    part[head & (v > 0.955 * 1.75)] = _HAIR
    return _with_empty_row(part)


_PERSONS = [[_person_template(stride, back) for back in (False, True)] for stride in _PERSON_STRIDES]


@dataclass
class _Person(_Sprite):
    height: float = 1.75
    template: np.ndarray = field(default_factory=lambda: _PERSONS[2][0])  # a pose of _PERSONS
    cls: ClassVar[int | None] = PEDESTRIAN
    grounded: ClassVar[bool] = True

    def shape(self, cam: _Camera) -> _Shape | None:
        half = _PERSON_HALF_WIDTH * self.height / 1.75
        win = _plane(cam, self.x, self.z, -half, half, self.height)
        if win is None:
            return None
        part = _sample(self.template, win.u * (0.5 / half) + 0.5, win.v * (1 / self.height))
        return _Shape(win.y0, win.x0, part, self.mats, self.z)


@dataclass
class _Cyclist(_Sprite):
    heading: float = 0.0  # radians between the riding direction and the optical axis
    direction: int = 1  # +1 riding to the right, −1 to the left
    crank: float = 0.0  # pedal angle, radians
    cls: ClassVar[int | None] = CYCLIST
    grounded: ClassVar[bool] = True
    TYRE, FRAME, LEGS, TOP, SKIN, HELMET = range(1, 7)

    def _point(self, a: float, v: float, lateral: float = 0.0) -> tuple[float, float]:
        """(u, v) of a point ``a`` metres along the bicycle's axis and ``lateral`` metres to its side."""
        return (a * math.sin(self.heading) * self.direction + lateral * math.cos(self.heading), v)

    def shape(self, cam: _Camera) -> _Shape | None:
        reach = 0.95 * math.sin(self.heading) + 0.35
        win = _plane(cam, self.x, self.z, -reach, reach, 1.85)
        if win is None:
            return None
        u, v, pt = win.u, win.v, self._point
        part = self._bicycle(u, v)
        hip, shoulder = pt(-0.22, 1.0), pt(0.12, 1.52)
        for side in (-1, 1):
            angle = self.crank + (side > 0) * math.pi
            pedal = pt(-0.05 + 0.17 * math.cos(angle), 0.3 + 0.17 * math.sin(angle), 0.1 * side)
            part[_capsule(u, v, pt(-0.22, 1.0, 0.1 * side), pedal, 0.07)] = self.LEGS
        part[_capsule(u, v, hip, shoulder, 0.15)] = self.TOP
        part[_capsule(u, v, shoulder, pt(0.42, 1.05), 0.05)] = self.TOP
        head = pt(0.22, 1.7)
        part[_ellipse(u, v, head, 0.1, 0.12)] = self.SKIN
        part[_ellipse(u, v, (head[0], head[1] + 0.04), 0.12, 0.1)] = self.HELMET
        return _Shape(win.y0, win.x0, part, self.mats, self.z)

    def _bicycle(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Two tyres (ellipses foreshortened by the heading) and a diamond frame."""
        pt = self._point
        part = np.zeros((v.shape[0], u.shape[1]), np.uint8)
        ru = max(0.34 * math.sin(self.heading), 0.04)
        for a in (-0.52, 0.52):
            ring = _ellipse(u, v, pt(a, 0.34), ru, 0.34)
            if ru > 0.1:  # the wheel is seen through between its spokes
                ring &= ~_ellipse(u, v, pt(a, 0.34), ru * 0.8, 0.27)
            part[ring] = self.TYRE
        rear, front, bracket = pt(-0.52, 0.34), pt(0.52, 0.34), pt(-0.05, 0.3)
        seat, stem = pt(-0.2, 0.9), pt(0.38, 0.95)
        for p, q in ((rear, bracket), (bracket, seat), (seat, rear), (bracket, stem), (seat, stem), (stem, front)):
            part[_capsule(u, v, p, q, 0.03)] = self.FRAME
        return part


_BODY, _ENGINE, _GLASS, _WHEEL, _LIGHT, _PLATE = range(1, 7)  # car parts
_CAR_SIZE = (1.8, 4.5, 1.45)  # width, length, height of the reference car the templates are drawn for, metres
_BELT = 0.6 * _CAR_SIZE[2]  # height of the window line


def _car_face_template(oncoming: bool) -> np.ndarray:
    """The face towards the camera: rear (or front, warm engine behind it), tapered cabin with glass,
    dark bottom and wheels, lights, number plate, exhaust pipe at the rear. Columns span the width."""
    width, _, top = _CAR_SIZE
    u, v = _template_grid(192, 240, width, top)
    a, half = np.abs(u), width / 2
    cabin_half = (half - 0.1) - (v - _BELT) * (0.18 / (top - _BELT))
    part = ((v <= _BELT) | (a <= cabin_half)).astype(np.uint8) * _BODY
    if oncoming:
        part[v <= _BELT] = _ENGINE
    part[(v > _BELT + 0.06) & (v < top - 0.07) & (a <= cabin_half - 0.08)] = _GLASS
    part[(np.abs(v - (_BELT - 0.155)) < 0.085) & (np.abs(a - (half - 0.195)) < 0.145)] = _LIGHT
    part[(a < 0.26) & (np.abs(v - 0.39) < 0.07)] = _PLATE
    part[v < 0.22] = _WHEEL
    if not oncoming:
        part[_ellipse(u, v, (0.45 - half, 0.25), 0.07, 0.06)] = _ENGINE
    return _with_empty_row(part)


def _car_side_template() -> np.ndarray:
    """The side face, front at column 0: body (warm engine end), raked cabin with side windows and a
    pillar, two wheels. Columns span the length."""
    _, length, top = _CAR_SIZE
    u, v = _template_grid(192, 600, length, top)
    front = u + length / 2  # metres from the car's front
    taper = np.clip((v - _BELT) * (1 / (top - _BELT)), 0, 1)
    start, end = 1.0 + 0.5 * taper, (length - 0.7) - 0.35 * taper  # windscreen and rear window rake
    cabin = (v > _BELT) & (front > start) & (front < end)
    part = ((v <= _BELT) | cabin).astype(np.uint8) * _BODY
    part[(v <= _BELT) & (front < 1.0)] = _ENGINE
    glass = cabin & (v > _BELT + 0.06) & (v < top - 0.07) & (front > start + 0.1) & (front < end - 0.1)
    part[glass & (np.abs(front - (0.15 + length / 2)) >= 0.06)] = _GLASS
    for axle in (0.85, length - 0.85):
        part[(front - axle) ** 2 + (v - 0.32) ** 2 < 0.32**2] = _WHEEL
    return _with_empty_row(part)


_CAR_FACES = {1: _car_face_template(oncoming=False), -1: _car_face_template(oncoming=True)}
_CAR_SIDE = _car_side_template()


@dataclass
class _Car(_Sprite):
    """A box-shaped car: the face towards the camera (rear, or front when oncoming) and one side face."""

    width: float = 1.8
    length: float = 4.5
    height: float = 1.45
    facing: int = 1  # +1 driving away (rear visible), −1 oncoming (front visible)
    side_shade: float = 1.0
    cls: ClassVar[int | None] = CAR
    grounded: ClassVar[bool] = True

    def shape(self, cam: _Camera) -> _Shape | None:
        half, z = self.width / 2, self.z
        near0, near1 = (math.ceil(cam.col(self.x + offset, z) - 0.5) for offset in (-half, half))  # pixel columns
        side0 = side1 = near0  # the side face shows between its vanishing end and the near face
        if self.x > half:
            side0 = math.ceil(cam.col(self.x - half, z + self.length) - 0.5)
        elif self.x < -half:
            side0, side1 = near1, math.ceil(cam.col(self.x + half, z + self.length) - 0.5)
        c0, c1 = max(min(near0, side0), 0), min(max(near1, side1), cam.width)
        r0, r1 = max(math.floor(cam.row(self.height, z)), 0), min(math.ceil(cam.row(0, z)), cam.height)
        if c0 >= c1 or r0 >= r1:
            return None
        part = np.zeros((r1 - r0, c1 - c0), np.uint8)
        depth = np.full(c1 - c0, z, _F32)
        sunlit = np.ones(c1 - c0, _F32)  # 1 on the near face, ``side_shade`` on the side face
        v = cam.heights(r0, r1, z) * (1 / self.height)  # normalised height on the near face
        n0, n1 = max(near0, c0), min(near1, c1)
        if n0 < n1:
            scale = z / (cam.focal * self.width)
            fu = np.arange(n0, n1, dtype=_F32) * scale + ((0.5 - cam.cx) * scale + 0.5 - self.x / self.width)
            part[:, n0 - c0 : n1 - c0] = _sample(_CAR_FACES[self.facing], fu[None, :], v)
        s0, s1 = max(side0, c0), min(side1, c1)
        if s0 < s1:
            side_x = self.x - math.copysign(half, self.x)
            z_side = (cam.focal * side_x) / (np.arange(s0, s1, dtype=_F32) + (0.5 - cam.cx))
            behind = (z_side - z) * (1 / self.length)  # along the side, from the near face, normalised
            fu = behind if self.facing < 0 else 1 - behind  # the template's column 0 is the car's front
            fv = cam.heights(r0, r1, z_side[None, :]) * (1 / self.height)
            part[:, s0 - c0 : s1 - c0] = _sample(_CAR_SIDE, fu[None, :], fv)
            depth[s0 - c0 : s1 - c0] = z_side
            sunlit[s0 - c0 : s1 - c0] = self.side_shade
        shade = sunlit[None, :] * (0.8 + 0.2 * _clamp(v, 0, 1))
        return _Shape(r0, c0, part, self.mats, depth[None, :], shade)


class _Light(NamedTuple):
    """A point light for the night: position (x, y, z) in metres, strength, fall-off radius in metres."""

    position: tuple[float, float, float]
    strength: float
    radius: float


class _Thing(NamedTuple):
    cls: int
    window: tuple[slice, slice]
    amodal: np.ndarray


# ----------------------------------------------------------------------------------------------------------
# The road layout


@dataclass(frozen=True)
class _Road:
    lane_width: float
    lanes: int  # per direction
    divider: float  # X of the centre line
    parking: tuple[bool, bool]  # (left, right)
    edge: tuple[float, float]  # X of the left and right kerbs
    facade: tuple[float, float]  # X of the left and right facade planes
    crossing: float | None  # Z of a zebra crossing

    @classmethod
    def sample(cls, rng: np.random.Generator) -> _Road:
        lane_width, lanes = rng.uniform(3.0, 3.6), 1 + _index(rng, 2)
        divider = -(_index(rng, lanes) + 0.5) * lane_width  # the camera drives in one of our lanes
        parking = (bool(rng.random() < 0.6), bool(rng.random() < 0.6))
        left = divider - lanes * lane_width - 2.2 * parking[0]
        right = divider + lanes * lane_width + 2.2 * parking[1]
        walks = (rng.uniform(2.5, 5.0), rng.uniform(2.5, 5.0))
        crossing = rng.uniform(8, 35) if rng.random() < 0.35 else None
        return cls(lane_width, lanes, divider, parking, (left, right), (left - walks[0], right + walks[1]), crossing)

    def lanes_of(self, direction: int) -> list[float]:
        """Lane centres of our direction (+1, right of the divider) or the oncoming one (−1)."""
        return [self.divider + direction * (j + 0.5) * self.lane_width for j in range(self.lanes)]

    def lines(self) -> list[tuple[float, bool]]:
        """Painted lines as (X, dashed): the centre line, lane separators, edge lines."""
        lines = [(self.divider, False)]
        for j in range(1, self.lanes + 1):
            lines += [(self.divider + direction * j * self.lane_width, j < self.lanes) for direction in (-1, 1)]
        return lines


# ----------------------------------------------------------------------------------------------------------
# The scene


class _Scene:
    """One street scene drawn from its own random stream: materials, painted buffers, instances, lights.

    Buffers (H×W): ``mat`` material id, ``z`` metric depth (inf = sky), ``inst`` index into ``things``
    (−1 = stuff), ``shade`` a multiplicative shading and texture term on the material albedo.
    """

    def __init__(self, rng: np.random.Generator, size: tuple[int, int]) -> None:
        h, w = size
        self.rng, self.size = rng, size
        self.cam = _Camera(h, w, focal=0.9 * w, horizon=rng.uniform(0.35, 0.48) * h)
        self.road = _Road.sample(rng)
        self.ambient = rng.uniform(0.36, 0.44)
        self.sun = 1 if rng.random() < 0.5 else -1  # the sun shines from the right (+1) or the left (−1)
        self.mats = _Materials()
        self.mat = np.zeros(size, np.uint16)
        self.z = np.full(size, np.inf, _F32)
        self.inst = np.full(size, -1, np.int16)
        self.shade = np.ones(size, _F32)
        self.lights: list[_Light] = []
        self.things: list[_Thing] = []
        self.lit_table = rng.random(1024, dtype=_F32)  # hashed by window: lit at night, reflection by day
        self._stuff_materials()
        self._paint_sky()
        self._paint_skyline()
        self._paint_ground()
        for side in (0, 1):
            self._paint_facade(side)
        for sprite in sorted(self._layout(), key=lambda sprite: -sprite.z):
            self._paint_sprite(sprite)
        self.mats.freeze()
        self.label = np.take(self.mats.classes, self.mat)
        self._texture()

    # -- materials ------------------------------------------------------------------------------------------

    def _stuff_materials(self) -> None:
        """The scene's shared materials; temperatures relative to its ambient level ``a``."""
        rng, a, add = self.rng, self.ambient, self.mats.add
        self.rgb_road = _jitter(rng, (0.34, 0.34, 0.36), 0.15)
        self.rgb_walk = _pick(rng, [(0.62, 0.60, 0.56), (0.70, 0.64, 0.55), (0.55, 0.56, 0.58)], 0.08)
        self.m_road = add(ROAD, self.rgb_road, a + 0.06)
        self.m_marking = add(ROAD, (0.86, 0.86, 0.82), a + 0.04)
        self.m_walk = add(SIDEWALK, self.rgb_walk, a + 0.03)
        self.m_kerb = add(SIDEWALK, self.rgb_walk * 1.12, a + 0.03)
        self.m_grass = add(VEGETATION, _jitter(rng, (0.30, 0.44, 0.18), 0.15), a - 0.06)
        self.m_hedge = add(VEGETATION, _jitter(rng, (0.20, 0.34, 0.13), 0.15), a - 0.08)
        self.m_window = add(BUILDING, (0.17, 0.21, 0.27), a - 0.06)
        self.m_lit = add(BUILDING, (0.17, 0.21, 0.27), a - 0.05, glow=(0.50, 0.36, 0.18))
        self.m_glass = add(CAR, (0.10, 0.13, 0.16), a - 0.06)
        self.m_wheel = (add(CAR, (0.05, 0.05, 0.05), a), add(CAR, (0.05, 0.05, 0.05), 0.78))  # (cold, hot)
        self.m_plate = add(CAR, (0.85, 0.85, 0.80), a)
        self.m_tyre = add(CYCLIST, (0.06, 0.06, 0.06), a + 0.02)
        self.m_taillight = (add(CAR, (0.45, 0.05, 0.04), a), add(CAR, (0.85, 0.10, 0.08), 0.6, (0.9, 0.06, 0.04)))
        self.m_headlight = (add(CAR, (0.75, 0.75, 0.70), a), add(CAR, (1.0, 1.0, 0.9), 0.65, (3.0, 2.8, 2.4)))
        self.m_pole = add(POLE, _jitter(rng, (0.40, 0.42, 0.44), 0.2), a)
        self.m_lamp = add(POLE, (0.85, 0.85, 0.78), a + 0.1, glow=(3.0, 2.3, 1.4))
        self.m_trunk = add(VEGETATION, (0.32, 0.24, 0.16), a - 0.05)
        self.m_hair = [add(PEDESTRIAN, rgb, 0.82) for rgb in _HAIR_RGB]

    def _clothes(self) -> np.ndarray:
        """A garment colour; 30 % of them close to a background colour (hard to see in RGB)."""
        rng = self.rng
        if rng.random() < 0.3:
            backgrounds = (self.rgb_walk, self.rgb_road, _pick(rng, _BUILDING_RGB, 0.05))
            return backgrounds[_index(rng, 3)] + rng.uniform(-0.04, 0.04, 3).astype(_F32)
        return _pick(rng, _CLOTHES_RGB, 0.15)

    # -- stuff ----------------------------------------------------------------------------------------------

    def _paint_sky(self) -> None:
        """A gradient from the horizon colour to the zenith colour in bands (one material each), clouds."""
        rng, cam = self.rng, self.cam
        clear = rng.random() < 0.7
        zenith = _jitter(rng, (0.30, 0.50, 0.84) if clear else (0.58, 0.61, 0.66), 0.08)
        self.horizon_rgb = _jitter(rng, (0.78, 0.84, 0.92) if clear else (0.80, 0.82, 0.84), 0.04)
        levels = np.linspace(0, 1, _SKY_BANDS) ** 0.6
        colours = [self.horizon_rgb + (zenith - self.horizon_rgb) * t for t in levels]
        bands = np.array([self.mats.add(SKY, rgb, 0.09 - 0.05 * t) for rgb, t in zip(colours, levels)])
        t = np.clip((cam.horizon - 0.5 - np.arange(cam.height)) / max(cam.horizon, 1.0), 0, 1)
        self.mat[:] = bands[np.minimum((t * _SKY_BANDS).astype(int), _SKY_BANDS - 1)][:, None]
        self.shade[:] = 1 + (0.05 if clear else 0.1) * _smooth_noise(rng, self.size, max(self.size[1] // 12, 2))

    def _paint_skyline(self) -> None:
        """A distant, hazy row of buildings at 400 m."""
        rng, cam = self.rng, self.cam
        widths = rng.uniform(0.015, 0.07, 80) * cam.width
        heights = rng.uniform(4, 60, 80) * (rng.random(80) < 0.85)
        top = cam.row(heights[np.searchsorted(np.cumsum(widths), np.arange(cam.width) + 0.5)], SKYLINE_DEPTH)
        r0, r1 = max(math.floor(top.min()), 0), min(math.ceil(cam.row(0, SKYLINE_DEPTH)), cam.height)
        if r0 >= r1:
            return
        hit = (np.arange(r0, r1)[:, None] + 0.5 >= top[None, :]) & (self.z[r0:r1] > SKYLINE_DEPTH)
        rgb = 0.6 * self.horizon_rgb + 0.4 * np.array((0.45, 0.47, 0.52), _F32)
        np.copyto(self.mat[r0:r1], self.mats.add(BUILDING, rgb, self.ambient - 0.05), where=hit)
        np.copyto(self.z[r0:r1], SKYLINE_DEPTH, where=hit)

    def _paint_ground(self) -> None:
        """Road, kerbs, sidewalks and grass by lateral position X on the ground rows; markings, paving."""
        cam, road = self.cam, self.road
        r0 = max(math.floor(cam.horizon + 0.5), 0)
        if r0 >= cam.height:
            return
        dy = np.arange(r0, cam.height, dtype=_F32) + (0.5 - cam.horizon)
        z = (cam.focal * CAMERA_HEIGHT / np.maximum(dy, 1e-3))[:, None]  # Hg×1
        x = (np.arange(cam.width, dtype=_F32) + (0.5 - cam.cx))[None, :] * (z * (1 / cam.focal))
        left, right = road.edge
        bounds = (road.facade[0], left - 0.25, left, right, right + 0.25, road.facade[1])
        zones = np.array([self.m_grass, self.m_walk, self.m_kerb, self.m_road, self.m_kerb, self.m_walk, self.m_grass])
        zone = np.zeros(x.shape, np.uint8)
        for bound in bounds:  # the number of bounds left of x (much faster than np.searchsorted here)
            zone += x > bound
        mat = zones.astype(np.uint16)[zone]
        mat[self._markings(x, z)] = self.m_marking
        shade = self._paving(x, z, mat == self.m_walk)
        hit = z < self.z[r0:]
        np.copyto(self.mat[r0:], mat, where=hit)
        np.copyto(self.z[r0:], z, where=hit)
        np.copyto(self.shade[r0:], shade, where=hit)

    def _markings(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Lane lines (dashes of 3 m every 9 m) and the zebra crossing."""
        road = self.road
        dashes = _frac(z * (1 / 9)) < 0.35
        marks = np.zeros(x.shape, bool)
        for position, dashed in road.lines():
            line = np.abs(x - position) < 0.08
            marks |= line & dashes if dashed else line
        if road.crossing is not None:
            stripes = _frac((x - road.edge[0]) * (1 / 1.1)) < 0.5
            marks |= (np.abs(z - road.crossing) < 1.6) & stripes & (x > road.edge[0]) & (x < road.edge[1])
        return marks

    def _paving(self, x: np.ndarray, z: np.ndarray, walk: np.ndarray) -> np.ndarray:
        """Ground shading: darker joints between 1.2 m paving slabs on the sidewalk closer than 25 m."""
        shade = np.ones(x.shape, _F32)
        near = slice(int(np.searchsorted(-z[:, 0], -25.0)), None)
        joints = (_frac(z[near] * (1 / 1.2)) < 0.06) | (_frac(x[near] * (1 / 1.2)) < 0.06)
        shade[near][joints & walk[near]] = 0.82
        return shade

    def _facade_blocks(self) -> dict[str, np.ndarray]:
        """Blocks along one side of the road: start, end, top (m), material, storey height, window bay, kind."""
        rng, rows = self.rng, []
        start = rng.uniform(-30, 0)
        while start < 250:
            kind = _index(rng, (0.72, 0.16, 0.12))  # building, hedge, gap
            if kind == 0:
                heat = self.ambient - 0.02 + rng.uniform(-0.02, 0.02)
                material = self.mats.add(BUILDING, _pick(rng, _BUILDING_RGB, 0.1), heat)
                top, length = rng.uniform(6, 28), rng.uniform(8, 35)
            else:
                material, top, length = self.m_hedge, rng.uniform(1.5, 6.0) * (kind == 1), rng.uniform(3, 14)
            rows.append((start, start + length, top, material, rng.uniform(2.9, 3.6), rng.uniform(1.8, 3.2), kind))
            start += length
        columns = dict(zip(("start", "end", "top", "material", "storey", "bay", "kind"), zip(*rows)))
        return {key: np.array(column, np.uint16 if key == "material" else _F32) for key, column in columns.items()}

    def _paint_facade(self, side: int) -> None:
        """The facade plane X = facade[side], one depth per column: blocks, hedges with ragged tops, gaps."""
        cam, plane = self.cam, self.road.facade[side]
        blocks = self._facade_blocks()
        ragged = np.interp(np.arange(cam.width), np.linspace(0, cam.width, 40), self.rng.uniform(-0.7, 0.7, 40))
        xc = np.arange(cam.width, dtype=_F32) + (0.5 - cam.cx)
        columns = np.flatnonzero(xc * plane > 0)
        cols = slice(columns[0], columns[-1] + 1)
        zf = (cam.focal * plane) / xc[cols]
        index = np.maximum(np.searchsorted(blocks["start"], zf, side="right") - 1, 0)
        inside = (zf >= blocks["start"][index]) & (zf < blocks["end"][index])
        kind = blocks["kind"][index]
        top = np.where(inside, blocks["top"][index] + (kind == 1) * ragged[cols], -np.inf).astype(_F32)
        standing = top > 0
        if not standing.any():
            return
        r0 = max(math.floor(float(np.min(cam.row(top[standing], zf[standing])))), 0)
        r1 = min(math.ceil(float(np.max(cam.row(0.0, zf[standing])))), cam.height)
        y = cam.heights(r0, r1, zf[None, :])
        hit = (y < top) & (y >= 0) & (zf < self.z[r0:r1, cols])
        mat, shade = self._facade_surface(blocks, index, zf, y, top, kind == 0)
        if (plane < 0) != (self.sun > 0):  # this facade faces away from the sun
            shade *= 0.72
        np.copyto(self.mat[r0:r1, cols], mat, where=hit)
        np.copyto(self.z[r0:r1, cols], zf, where=hit)
        np.copyto(self.shade[r0:r1, cols], shade, where=hit)

    def _facade_surface(self, blocks: dict[str, np.ndarray], index: np.ndarray, zf: np.ndarray, y: np.ndarray,
                        top: np.ndarray, building: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Material and shading of facade pixels: walls, window grids (some lit at night), shop floor, cornice."""
        local = zf - blocks["start"][index]
        bay = local / blocks["bay"][index]
        columns = building & (np.abs(_frac(bay) - 0.5) < 0.25) & (local > 1) & (blocks["end"][index] - zf > 1)
        storey = y / blocks["storey"][index]
        rows, cols = np.nonzero((np.abs(_frac(storey) - 0.55) < 0.25) & (y > 1.0) & (y < top - 0.8) & columns)
        key = storey[rows, cols].astype(np.int32) * 7919 + bay[cols].astype(np.int32) * 104729 + index[cols] * 31
        lit = self.lit_table[key & 1023]  # a random number per window: lit at night, reflection by day
        mat = np.repeat(blocks["material"][index][None, :], y.shape[0], axis=0)
        mat[rows, cols] = np.where(lit < 0.25, self.m_lit, self.m_window)
        shade = np.where(building & (y < 3.2), _F32(0.82), _F32(1.0))  # darker shop floor
        shade[building & (y > top - 0.35)] = 1.12  # cornice
        shade[rows, cols] = 0.7 + 0.6 * lit
        return mat, shade

    # -- things ---------------------------------------------------------------------------------------------

    def _layout(self) -> list[_Sprite]:
        """Every sprite of the scene (registering the night's point lights on the way)."""
        parked: list[_Car] = []
        sprites: list[_Sprite] = [*self._layout_poles(), *self._layout_trees(), *self._layout_cars(parked)]
        return [*sprites, *self._layout_people(parked), *self._layout_cyclists()]

    def _layout_poles(self) -> list[_Pole]:
        """Street lamps (arm over the road; a light for the night) and sign posts along both kerbs."""
        rng, poles = self.rng, []
        for side, sign in ((0, -1), (1, 1)):
            x = self.road.edge[side] + sign * 0.45
            for z in _along(rng, rng.uniform(2, 15), 110, (14, 32)):
                if rng.random() < 0.6:
                    mats = np.array([0, self.m_pole, self.m_lamp, 0], np.uint16)
                    pole = _Pole(x, z, mats, rng.uniform(6.5, 9), rng.uniform(0.12, 0.22), -sign)
                    self.lights.append(_Light(pole.lamp, rng.uniform(0.25, 0.5), rng.uniform(4, 6)))
                else:
                    plate = self.mats.add(POLE, _pick(rng, _SIGN_RGB, 0.05), self.ambient)
                    mats = np.array([0, self.m_pole, 0, plate], np.uint16)
                    pole = _Pole(x, z, mats, rng.uniform(2.6, 3.4), rng.uniform(0.08, 0.12), 0)
                poles.append(pole)
        return poles

    def _layout_trees(self) -> list[_Tree]:
        """Rows of street trees on the wider sidewalks."""
        rng, trees = self.rng, []
        for side, sign in ((0, -1), (1, 1)):
            walk = abs(self.road.facade[side] - self.road.edge[side])
            if rng.random() > 0.65 or walk < 2.6:
                continue
            x = self.road.edge[side] + sign * rng.uniform(1.2, min(2.2, walk - 1.0))
            for z in _along(rng, rng.uniform(2, 10), 80, (8, 18)):
                crown = self.mats.add(VEGETATION, _jitter(rng, (0.24, 0.38, 0.14), 0.25), self.ambient - 0.08)
                mats = np.array([0, self.m_trunk, crown], np.uint16)
                trees.append(_Tree(x, z, mats, rng.uniform(5.0, 9.0), _TREES[_index(rng, len(_TREES))]))
        return trees

    def _car(self, x: float, z: float, length: float, facing: int, running: bool) -> _Car:
        """A car (small, saloon or van by its length); a running car is warm (engine end, wheels), lights on."""
        rng = self.rng
        width, height = ((1.6, 1.7), (1.45, 1.55)) if length < 4.1 else ((1.72, 1.85), (1.38, 1.5))
        if length > 4.5 and rng.random() < 0.5:
            width, height = (1.85, 2.0), (1.65, 1.95)
        paint = _pick(rng, _CAR_RGB, 0.08)
        body_heat = rng.uniform(0.5, 0.6) if running else self.ambient + 0.01
        engine_heat = rng.uniform(0.76, 0.88) if running else body_heat
        light = (self.m_headlight if facing < 0 else self.m_taillight)[running]
        body, engine = self.mats.add(CAR, paint, body_heat), self.mats.add(CAR, paint, engine_heat)
        mats = np.array([0, body, engine, self.m_glass, self.m_wheel[running], light, self.m_plate], np.uint16)
        side_shade = 1.0 if (x > 0) == (self.sun < 0) else 0.75  # its side towards the camera faces the sun?
        car = _Car(x, z, mats, rng.uniform(*width), length, rng.uniform(*height), facing, side_shade)
        if running and facing < 0:  # headlights light the road in front of an oncoming car
            self.lights.append(_Light((x, 0.6, z - 5.0), rng.uniform(0.3, 0.6), 4.0))
        return car

    def _car_row(self, x: float, facing: int, z: float, stop: float, parked: bool) -> list[_Car]:
        """Cars along one lane: parked ones bumper to bumper with a few gaps, moving ones spread out."""
        rng, cars = self.rng, []
        while z < stop:
            length = rng.uniform(3.6, 5.0)
            if z > 1.5 and (not parked or rng.random() < 0.75):  # a free parking space otherwise
                running = not parked or rng.random() < 0.1  # some parked cars have only just stopped
                cars.append(self._car(x + rng.uniform(-0.25, 0.25), z, length, facing, running))
            if parked:
                z += length + (rng.uniform(0.4, 2.5) if rng.random() < 0.8 else rng.uniform(6, 20))
            else:
                z += length + rng.uniform(10, 45)
        return cars

    def _layout_cars(self, parked: list[_Car]) -> list[_Car]:
        """Parked cars along the parking lanes (also appended to ``parked``) and traffic in every lane."""
        rng, road, moving = self.rng, self.road, []
        for side, sign in ((0, -1), (1, 1)):
            if road.parking[side]:
                parked += self._car_row(road.edge[side] - sign * 1.1, sign, rng.uniform(-3, 4), 90, parked=True)
        for direction in (-1, 1):
            for x in road.lanes_of(direction):
                start = rng.uniform(7, 25) if abs(x) < 1 else rng.uniform(-2, 20)  # keep a gap before the camera
                moving += self._car_row(x, direction, start, 100, parked=False)
        return [*parked, *moving]

    def _person(self, x: float, z: float) -> _Person:
        """An adult or a child (10 %), walking (70 %, random stride) or standing, facing or turning away."""
        rng, add = self.rng, self.mats.add
        height = rng.uniform(1.0, 1.35) if rng.random() < 0.1 else rng.uniform(1.55, 1.92)
        legs = add(PEDESTRIAN, self._clothes(), rng.uniform(0.74, 0.82))
        top = add(PEDESTRIAN, self._clothes(), rng.uniform(0.76, 0.84))
        skin = add(PEDESTRIAN, _pick(rng, _SKIN_RGB, 0.08), rng.uniform(0.92, 0.97))
        mats = np.array([0, legs, top, skin, self.m_hair[_index(rng, len(self.m_hair))]], np.uint16)
        pose = _index(rng, len(_PERSON_STRIDES)) if rng.random() < 0.7 else _PERSON_STRIDES.index(0.0)
        return _Person(x, z, mats, height, _PERSONS[pose][int(rng.random() < 0.5)])

    def _layout_people(self, parked: list[_Car]) -> list[_Person]:
        """Groups on the sidewalks near and far, people on the kerb behind parked cars, people crossing."""
        rng, road, people = self.rng, self.road, []
        for _ in range(3 + _index(rng, 6)):
            side = _index(rng, 2)
            sign = 1 if side else -1
            x = rng.uniform(*sorted((road.edge[side] + sign * 0.4, road.facade[side] - sign * 0.4)))
            z = rng.uniform(3, 100)
            for j in range(1 + _index(rng, (0.35, 0.35, 0.15, 0.15))):
                people.append(self._person(x + j * sign * rng.uniform(0.45, 0.8), z + rng.uniform(-0.6, 1.2)))
        for car in parked:
            if rng.random() < 0.2:
                x = car.x + math.copysign(rng.uniform(1.1, 1.6), car.x)
                people.append(self._person(x, car.z + rng.uniform(0.5, car.length + 0.5)))
        crossing = road.crossing if road.crossing is not None else (rng.uniform(6, 40) if rng.random() < 0.3 else None)
        if crossing is not None:
            for _ in range(1 + _index(rng, 4)):
                x = rng.uniform(road.edge[0] + 0.5, road.edge[1] - 0.5)
                people.append(self._person(x, crossing + rng.uniform(-1, 1)))
        return people

    def _layout_cyclists(self) -> list[_Cyclist]:
        """Riders along the outer lanes (seen almost from behind) or crossing the road (seen from the side)."""
        rng, road, cyclists = self.rng, self.road, []
        for _ in range(_index(rng, (0.2, 0.4, 0.2, 0.2))):
            along, direction = rng.random() < 0.6, 1 if rng.random() < 0.5 else -1
            x = road.lanes_of(direction)[-1] + direction * 1.0 if along else rng.uniform(*road.edge)
            heading = rng.uniform(0, 0.35) if along else rng.uniform(0.9, math.pi / 2)
            z, side = rng.uniform(4, 90), 1 if rng.random() < 0.5 else -1
            cyclists.append(_Cyclist(x, z, self._cyclist_materials(), heading, side, rng.uniform(0, 2 * math.pi)))
        return cyclists

    def _cyclist_materials(self) -> np.ndarray:
        """Tyres, a painted frame at ambient temperature, a warm rider (clothes, skin) and a helmet."""
        rng, add = self.rng, self.mats.add
        frame = add(CYCLIST, _pick(rng, _CAR_RGB, 0.1), self.ambient)
        legs = add(CYCLIST, self._clothes(), rng.uniform(0.74, 0.82))
        top = add(CYCLIST, self._clothes(), rng.uniform(0.76, 0.84))
        skin = add(CYCLIST, _pick(rng, _SKIN_RGB, 0.08), rng.uniform(0.92, 0.97))
        helmet = add(CYCLIST, _pick(rng, _CLOTHES_RGB, 0.1), 0.7)
        return np.array([0, self.m_tyre, frame, legs, top, skin, helmet], np.uint16)

    # -- painting -------------------------------------------------------------------------------------------

    def _paint_sprite(self, sprite: _Sprite) -> None:
        """Paint a sprite with the z-test; remember a thing's window and amodal mask."""
        shape = sprite.shape(self.cam)
        if shape is None:
            return
        h, w = shape.part.shape
        window = (slice(shape.y0, shape.y0 + h), slice(shape.x0, shape.x0 + w))
        if sprite.grounded and h >= 12 and shape.y0 + h < self.size[0]:
            self._contact_shadow(shape, window)
        inst = len(self.things) if sprite.cls is not None else -1
        amodal = shape.part > 0
        front = amodal & (shape.depth < self.z[window])
        np.copyto(self.z[window], shape.depth, where=front)
        np.copyto(self.mat[window], shape.mats[shape.part], where=front)
        np.copyto(self.inst[window], inst, where=front)
        np.copyto(self.shade[window], 1.0 if shape.shade is None else shape.shade, where=front)
        if sprite.cls is not None:
            self.things.append(_Thing(sprite.cls, window, amodal))

    def _contact_shadow(self, shape: _Shape, window: tuple[slice, slice]) -> None:
        """Darken the ground around the bottom row of an object standing on it (a soft sun shadow)."""
        bottom = window[0].stop
        band = max(1, (bottom - window[0].start) // 14)
        rows = slice(bottom - band, min(bottom + band, self.size[0]))
        feet = shape.part[-1] > 0
        z, depth = self.z[rows, window[1]], float(np.min(shape.depth))
        ground = feet & (self.inst[rows, window[1]] < 0) & (z > depth - 2.0) & (z < depth + 0.6)
        self.shade[rows, window[1]][ground] *= 0.62

    def _texture(self) -> None:
        """Fine grain and medium blotches on the albedo (amplitude per class); the heat variation's coarse grid."""
        h, w = self.size
        grain = self.rng.random(self.size, dtype=_F32)
        grain -= 0.5
        grain *= np.take(2 * _GRAIN, self.label)
        grain += np.take(_BLOTCH, self.label) * _smooth_noise(self.rng, self.size, max(min(h, w) // 60, 2))
        grain += 1
        self.shade *= grain
        self.heat_grid = self.rng.random((h // 20 + 2, w // 20 + 2), dtype=_F32)

    # -- sensors --------------------------------------------------------------------------------------------

    def _optics(self) -> Iterator[np.ndarray]:
        """The day-lit R, G and B channels (display values) through the camera optics (a slight blur).

        One buffer is refilled for every channel (it keeps the memory footprint small): use it before the next.
        """
        sigma = max(0.5 * self.size[1] / 480, 0.3)
        channel = np.empty(self.size, _F32)
        for rgb in self.mats.rgb:
            np.take(rgb, self.mat, out=channel, mode="clip")
            channel *= self.shade
            yield cv2.GaussianBlur(channel, (0, 0), sigma, dst=channel)

    def day(self, rng: np.random.Generator, fog_beta: float | None = None) -> np.ndarray:
        """Daylight, optionally in fog (Koschmieder's law: albedo·t + airlight·(1 − t), t = exp(−β·Z))."""
        image = np.empty((*self.size, 3), _F32)
        if fog_beta is not None:
            airlight = rng.uniform(0.72, 0.9) * np.array((0.97, 0.99, 1.02))
            transmission = np.exp(np.minimum(self.z, FAR) * -fog_beta)
            haze = 1 - transmission
        noise = _unit_noise(rng, self.size)
        noise *= 0.01  # the same on the three channels: luminance noise
        for c, channel in enumerate(self._optics()):
            if fog_beta is not None:
                channel *= transmission
                cv2.scaleAdd(haze, float(airlight[c]), channel, dst=channel)
            channel += noise
            image[..., c] = _quantise(channel)
        return image

    def night(self, rng: np.random.Generator, ambient: float) -> np.ndarray:
        """Linear light = albedo² × (ambient² + lamps + headlights) + emission + bloom, Poisson–Gaussian noise.

        ``ambient`` is display-referred: away from the lights the scene is ``ambient`` times as bright as by day.
        """
        light = self._illumination(ambient**2)
        light[self.label == SKY] = 0.5 * ambient**2
        shot, read = rng.uniform(0.01, 0.03), rng.uniform(0.002, 0.005)
        image = np.empty((*self.size, 3), _F32)
        glow = np.empty(self.size, _F32)
        for c, channel in enumerate(self._optics()):
            channel *= channel  # display -> linear light (gamma 2)
            channel *= light
            channel += np.take(self.mats.glow[c], self.mat, out=glow, mode="clip")
            channel += self._bloom(glow)
            np.maximum(channel, 0, out=channel)
            sigma = channel * shot  # the variance of the Poisson–Gaussian noise, then its standard deviation
            sigma += read * read
            np.sqrt(sigma, out=sigma)
            sigma *= _unit_noise(rng, self.size)
            channel += sigma
            np.maximum(channel, 0, out=channel)
            image[..., c] = _quantise(np.sqrt(channel, out=channel))  # linear -> display
        return image

    def _illumination(self, base: float) -> np.ndarray:
        """Linear illumination: ``base`` plus the point lights (Gaussian 3-D fall-off), on a 4× coarser grid."""
        cam = self.cam
        h, w = max(cam.height // 4, 1), max(cam.width // 4, 1)
        z = np.minimum(cv2.resize(self.z, (w, h), interpolation=cv2.INTER_NEAREST), FAR)
        columns = (np.arange(w, dtype=_F32) + 0.5) * (cam.width / w) - cam.cx
        rows = (np.arange(h, dtype=_F32) + 0.5) * (cam.height / h) - cam.horizon
        x = columns[None, :] * z * (1 / cam.focal)
        y = CAMERA_HEIGHT - rows[:, None] * z * (1 / cam.focal)
        light = np.full((h, w), base, _F32)
        for (lx, ly, lz), strength, radius in self.lights:
            light += strength * np.exp(((x - lx) ** 2 + (y - ly) ** 2 + (z - lz) ** 2) * (-0.5 / radius**2))
        return cv2.resize(light, (cam.width, cam.height), interpolation=cv2.INTER_LINEAR)

    def _bloom(self, glow: np.ndarray) -> np.ndarray:
        """Light scattered around bright sources (lamps, headlights, windows): a wide blur of one glow channel."""
        h, w = self.size
        small = cv2.resize(glow, (max(w // 4, 1), max(h // 4, 1)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigmaX=max(w / 480, 0.5))
        small *= 3.0
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    def depth(self, noise: np.ndarray) -> np.ndarray:
        """Metric depth / 80 m in [0, 1] with 1 % multiplicative noise (the sky reads 1)."""
        depth = noise * (0.01 / DEPTH_RANGE)
        depth += 1 / DEPTH_RANGE
        depth *= self.z
        return np.minimum(depth, 1, out=depth)

    def thermal(self, noise: np.ndarray, fog_beta: float | None = None) -> np.ndarray:
        """Normalised temperature in [0, 1]: material heat, low-frequency variation, fog, optical blur, noise."""
        heat = np.take(self.mats.heat, self.mat)
        variation = cv2.resize(self.heat_grid, self.size[::-1], interpolation=cv2.INTER_LINEAR)
        variation -= 0.5
        heat += variation * 0.06
        if fog_beta is not None:  # slight attenuation towards the ambient level
            transmission = np.exp(np.minimum(self.z, DEPTH_RANGE) * (-fog_beta / 20))
            heat -= self.ambient
            heat *= transmission
            heat += self.ambient
        cv2.GaussianBlur(heat, (0, 0), sigmaX=max(0.8 * self.size[1] / 480, 0.4), dst=heat)
        noise *= 0.01
        heat += noise
        np.maximum(heat, 0, out=heat)
        return np.minimum(heat, 1, out=heat)

    def instances(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Visible masks, occluded (amodal minus visible) masks and classes of the things that show."""
        counts = np.bincount(self.inst.ravel() + 1, minlength=len(self.things) + 1)[1:]
        shown = np.flatnonzero(counts)
        masks = np.zeros((len(shown), *self.size), bool)
        occluded = np.zeros((len(shown), *self.size), bool)
        for j, i in enumerate(shown):
            thing = self.things[i]
            visible = np.equal(self.inst[thing.window], i, out=masks[j][thing.window])
            np.greater(thing.amodal, visible, out=occluded[j][thing.window])  # amodal and not visible
        return masks, occluded, np.array([self.things[i].cls for i in shown], np.int64)


# ----------------------------------------------------------------------------------------------------------
# The dataset


class SyntheticStreets(SegDataset):
    """Deterministic synthetic RGB-D-T street scenes (the module docstring describes the scene model).

    Item k is scene k (drawn from ``seed`` and k only) rendered under ``conditions[k % len(conditions)]``;
    :meth:`render` renders any scene under any condition. Classes (index = id): sky, road, sidewalk,
    building, vegetation, pole, car, pedestrian, cyclist; the things pole, car, pedestrian and cyclist
    (ids 5–8) come with visible and occluded (amodal minus visible) instance masks. Modalities, each
    H×W×1 float32: ``depth`` (metres / 80, clipped to [0, 1]) and ``thermal`` (a normalised temperature
    in [0, 1]). ``size`` is (H, W).
    """

    name = "synthetic"
    classes = CLASSES
    thing_classes = THING_CLASSES

    def __init__(
        self,
        n: int = 200,
        size: tuple[int, int] = (360, 480),
        seed: int = 0,
        conditions: Sequence[str] = ("day",),
        modalities: Sequence[str] = MODALITIES,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform)
        if n < 0 or seed < 0:
            raise ValueError(f"SyntheticStreets: n and seed must be non-negative, got n={n}, seed={seed}")
        if len(size) != 2 or min(size) < 16:
            raise ValueError(f"SyntheticStreets: size must be (H, W), both at least 16, got {tuple(size)}")
        if isinstance(conditions, str) or not conditions:
            raise ValueError(f"SyntheticStreets: conditions must be a non-empty list of strings, got {conditions!r}")
        if isinstance(modalities, str) or set(modalities) - set(MODALITIES) or len(set(modalities)) < len(modalities):
            raise ValueError(f"SyntheticStreets: invalid modalities {modalities!r} (valid: {', '.join(MODALITIES)})")
        self._parsed = {condition: Condition.parse(condition) for condition in conditions}
        if not modalities and any(c.failure for c in self._parsed.values()):
            raise ValueError("SyntheticStreets: the 'sensor_failure' condition needs at least one modality")
        self.n, self.size, self.seed = int(n), (int(size[0]), int(size[1])), int(seed)
        self.conditions = tuple(conditions)
        self.modality_channels = {m: 1 for m in modalities}

    def __len__(self) -> int:
        return self.n

    @property
    def palette(self) -> np.ndarray:
        return PALETTE.copy()

    def condition(self, index: int) -> str:
        """The condition item ``index`` is rendered under."""
        return self.conditions[index % len(self.conditions)]

    def load(self, index: int) -> RawSample:
        return self.render(index, self.condition(index))

    def load_label(self, index: int) -> np.ndarray:
        return self._scene(index).label.astype(np.int64)

    def _scene(self, k: int) -> _Scene:
        if k < 0:
            raise ValueError(f"SyntheticStreets: scene index must be non-negative, got {k}")
        return _Scene(np.random.default_rng([self.seed, k, 0]), self.size)

    def _missing(self, condition: Condition, draw: float) -> list[str]:
        """Requested sensors absent under ``condition``; ``draw`` in [0, 1) picks the failed one."""
        missing = [m for m in self.modality_channels if m in condition.dropped]
        candidates = [m for m in self.modality_channels if m not in missing]
        if condition.failure and candidates:
            missing.append(candidates[int(draw * len(candidates))])
        return missing

    def render(self, k: int, condition: str) -> RawSample:
        """Scene ``k`` under ``condition`` (any valid condition string, not only the dataset's own)."""
        parsed = self._parsed.get(condition) or Condition.parse(condition)
        scene = self._scene(k)
        rng = np.random.default_rng([self.seed, k, 1])
        wanted = {m for m in self.modality_channels if m not in parsed.dropped}
        # Sensor noise first: depth and thermal of a scene are the same under every lighting.
        depth_noise = _unit_noise(rng, self.size)
        depth = scene.depth(depth_noise) if "depth" in wanted else None
        heat_noise = _unit_noise(rng, self.size)
        missing = self._missing(parsed, rng.random())
        meta = {"id": f"synthetic-{self.seed}-{k}", "dataset": "synthetic", "condition": condition, "missing": missing}
        if parsed.lighting == "night":
            meta["illumination"] = rng.uniform(0.05, 0.15)
        elif parsed.lighting == "fog":
            meta["fog_beta"] = rng.uniform(0.04, 0.09)
        modalities = {}
        if "depth" not in missing and "depth" in wanted:
            modalities["depth"] = depth[..., None]
        if "thermal" not in missing and "thermal" in wanted:
            modalities["thermal"] = scene.thermal(heat_noise, meta.get("fog_beta"))[..., None]
        del depth, depth_noise, heat_noise
        if parsed.lighting == "night":
            image = scene.night(rng, meta["illumination"])
        else:
            image = scene.day(rng, meta.get("fog_beta"))
        masks, occluded, classes = scene.instances()
        return RawSample(image, scene.label.astype(np.int64), modalities, masks, occluded, classes, meta)
