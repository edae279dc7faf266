"""DAMCSeg's extra augmentations (paper section IV-A-4, "data augmentation"; SPEC 5): random occlusion and
upscaled crops of tiny targets, on :class:`~rgbxseg.data.sample.RawSample` (numpy, H×W×C), plus a
:class:`Pipeline` that chains them with the joint transforms and reseeds every step.

The paper names the two augmentations only ("random occlusion", "super-resolution enhancement (for tiny
targets)"). Decisions:

* :class:`RandomOcclusion` paints 1..``max_boxes`` rectangles over the RGB image only; each side is a
  uniform share ``size`` of the image side (height and width drawn independently), the position is uniform
  inside the image, and the fill is, with even odds, one flat random colour or uniform per-pixel noise.
  Label, modalities and instance masks are unchanged: the model must see through a synthetic occluder,
  with the help of the other sensors, which still see the scene.
* :class:`TinyTargetZoom` is an upscaled crop, not a learned super-resolution: it picks one instance
  with ``0 < visible area < max_area`` uniformly, draws ``zoom`` uniformly, and crops a window of
  ``(round(H/zoom), round(W/zoom))`` placed uniformly among the positions that keep the instance's box
  inside it (centred on the box, clipped to the image, when the box does not fit), then resizes it back to
  H×W through :class:`~rgbxseg.data.transforms.JointTransform` (image and modalities bilinear, label and
  instance masks nearest), so alignment follows the repository's one convention.
* Each step draws from its own ``numpy.random.Generator`` seeded with ``(seed, stream)``, ``stream`` a
  constant of the class: :class:`Pipeline` gives step i the seed ``seed + i``, and JointTransform already
  uses ``seed`` and ``seed + 1``, so plain ``seed`` generators would repeat one another's draws.
* The decision to apply (probability ``p``) is always the first draw, so a sample with nothing to do
  consumes the same draws as any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

import albumentations as A
import cv2
import numpy as np

from rgbxseg.data.sample import RawSample, boxes_from_masks
from rgbxseg.data.transforms import JointTransform

OCCLUSION_STREAM = 1
ZOOM_STREAM = 2


@runtime_checkable
class SeededTransform(Protocol):
    """A RawSample transform whose randomness is fixed by :meth:`reseed`."""

    def __call__(self, raw: RawSample) -> RawSample: ...

    def reseed(self, seed: int) -> None: ...


def _generator(seed: int | None, stream: int) -> np.random.Generator:
    return np.random.default_rng(None if seed is None else (seed, stream))


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability p must lie in [0, 1], got {p}")


class RandomOcclusion:
    """Paint random flat-colour or noise rectangles over the RGB image (label and modalities unchanged).

    Args:
        p: probability of occluding a sample.
        max_boxes: at most this many rectangles (1..max_boxes, uniform).
        size: (min, max) side of a rectangle as a share of the image side, 0 < min <= max <= 1.
        seed: seed of the generator (None: random); :meth:`reseed` replaces it.
    """

    def __init__(
        self, p: float = 0.5, max_boxes: int = 3, size: tuple[float, float] = (0.05, 0.2), seed: int | None = None
    ) -> None:
        _check_probability(p)
        if max_boxes < 1:
            raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
        if not 0.0 < size[0] <= size[1] <= 1.0:
            raise ValueError(f"size must satisfy 0 < min <= max <= 1, got {size}")
        self.p = p
        self.max_boxes = max_boxes
        self.size = size
        self.rng = _generator(seed, OCCLUSION_STREAM)

    def reseed(self, seed: int) -> None:
        """Restart the generator from ``seed``."""
        self.rng = _generator(seed, OCCLUSION_STREAM)

    def _paint(self, image: np.ndarray) -> None:
        """Paint one rectangle in place."""
        height, width = image.shape[:2]
        box_h = max(1, round(self.rng.uniform(*self.size) * height))
        box_w = max(1, round(self.rng.uniform(*self.size) * width))
        top = int(self.rng.integers(0, height - box_h + 1))
        left = int(self.rng.integers(0, width - box_w + 1))
        flat = self.rng.random() < 0.5
        shape = (3,) if flat else (box_h, box_w, 3)
        image[top : top + box_h, left : left + box_w] = self.rng.random(shape, dtype=np.float32)

    def __call__(self, raw: RawSample) -> RawSample:
        if self.rng.random() >= self.p:
            return raw
        image = raw.image.astype(np.float32, copy=True)
        for _ in range(int(self.rng.integers(1, self.max_boxes + 1))):
            self._paint(image)
        return replace(raw, image=image)


class TinyTargetZoom:
    """Crop a window around one tiny instance and resize it back to the sample's size.

    Args:
        p: probability of zooming a sample that has a tiny instance.
        max_area: an instance is tiny when its visible area is below this many pixels (SPEC 5: 1024).
        zoom: (min, max) magnification, 1 <= min <= max; the window is (H/zoom, W/zoom).
        seed: seed of the generator (None: random); :meth:`reseed` replaces it.
    """

    def __init__(
        self, p: float = 0.5, max_area: int = 1024, zoom: tuple[float, float] = (1.5, 3.0), seed: int | None = None
    ) -> None:
        _check_probability(p)
        if max_area < 1:
            raise ValueError(f"max_area must be >= 1, got {max_area}")
        if not 1.0 <= zoom[0] <= zoom[1]:
            raise ValueError(f"zoom must satisfy 1 <= min <= max, got {zoom}")
        self.p = p
        self.max_area = max_area
        self.zoom = zoom
        self.rng = _generator(seed, ZOOM_STREAM)

    def reseed(self, seed: int) -> None:
        """Restart the generator from ``seed``."""
        self.rng = _generator(seed, ZOOM_STREAM)

    def _offset(self, first: int, last: int, window: int, size: int) -> int:
        """Start of a ``window`` along an axis of ``size`` that keeps pixels first..last inside when it can."""
        low, high = max(0, last + 1 - window), min(first, size - window)
        if low <= high:
            return int(self.rng.integers(low, high + 1))
        return int(np.clip(round((first + last + 1 - window) / 2), 0, size - window))

    def _tiny(self, raw: RawSample) -> np.ndarray:
        """Indices of the instances whose visible area lies in (0, max_area)."""
        if raw.instance_masks is None:
            return np.zeros(0, dtype=np.int64)
        masks = np.asarray(raw.instance_masks, dtype=bool)
        areas = masks.sum(axis=(1, 2))
        return np.flatnonzero((areas > 0) & (areas < self.max_area))

    def __call__(self, raw: RawSample) -> RawSample:
        if self.rng.random() >= self.p:
            return raw
        tiny = self._tiny(raw)
        if not tiny.size:
            return raw
        chosen = int(self.rng.choice(tiny))
        zoom = self.rng.uniform(*self.zoom)
        height, width = raw.label.shape
        window_h, window_w = max(1, round(height / zoom)), max(1, round(width / zoom))
        x0, y0, x1, y1 = boxes_from_masks(np.asarray(raw.instance_masks[chosen : chosen + 1], dtype=bool))[0]
        top = self._offset(int(y0), int(y1), window_h, height)
        left = self._offset(int(x0), int(x1), window_w, width)
        crop = A.Crop(x_min=left, y_min=top, x_max=left + window_w, y_max=top + window_h)
        zoomed = JointTransform([crop, A.Resize(height, width, interpolation=cv2.INTER_LINEAR)])(raw)
        return zoomed if raw.occluded_masks is not None else replace(zoomed, occluded_masks=None)


class Pipeline:
    """Apply ``steps`` in order; :meth:`reseed` gives step i the seed ``seed + i``.

    Args:
        steps: transforms with a ``reseed(seed)`` method (JointTransform, RandomOcclusion, TinyTargetZoom...).
    """

    def __init__(self, steps: Sequence[SeededTransform]) -> None:
        if not steps:
            raise ValueError("Pipeline needs at least one step")
        for step in steps:
            if not isinstance(step, SeededTransform):
                raise TypeError(f"{type(step).__name__} is not a seeded transform (it needs __call__ and reseed)")
        self.steps = list(steps)

    def reseed(self, seed: int) -> None:
        """Reseed every step, step i with ``seed + i``."""
        for index, step in enumerate(self.steps):
            step.reseed(seed + index)

    def __call__(self, raw: RawSample) -> RawSample:
        for step in self.steps:
            raw = step(raw)
        return raw


def with_damcseg_augmentations(joint: JointTransform, occlusion: float = 0.0, tiny_zoom: float = 0.0) -> SeededTransform:
    """The training transform with DAMCSeg's extras: :class:`TinyTargetZoom` (probability ``tiny_zoom``)
    before the joint scale/crop/flip, :class:`RandomOcclusion` (probability ``occlusion``) after it;
    ``joint`` alone when both are 0."""
    steps: list[SeededTransform] = [TinyTargetZoom(tiny_zoom)] if tiny_zoom > 0 else []
    steps.append(joint)
    if occlusion > 0:
        steps.append(RandomOcclusion(occlusion))
    return Pipeline(steps) if len(steps) > 1 else joint
