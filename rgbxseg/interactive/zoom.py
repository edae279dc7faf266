"""Zoom-in (RITM's ``ZoomIn`` / FocalClick's focus crop): once the object is roughly found, predict on a crop
around it at the full network resolution, an inference-time option of the MMMS engine (``zoom=True``).

The engine sees every image at long side 448, so a small object covers few stride-4 cells of the click head.
From click ``skip_clicks + 1`` on (the 2nd), :meth:`ZoomIn.wanted_box` takes the bounding box of the previous
prediction ∪ the positive clicks, expands it by ``expand`` (1.4, RITM) with a minimum side of ``min_size`` ·
the image's long side, clamped to the image; the engine embeds that crop like an image of its own (backbone
+ encode, resized to long side 448 and padded, cached per crop box in the image's :class:`ZoomState`),
predicts there with the clicks and the previous mask shifted into the crop, and pastes the crop's probability
into an all-zero full-image map.

**Outside the crop the probability is 0** (as RITM's ``inv_transform``): the crop always contains the whole
previous prediction and every positive click (:meth:`ZoomIn.keeps` insists on it), so outside it the
previous prediction was background already; pasting the stale full-image probability of the first click there
instead would resurrect false positives that later clicks removed.

**The crop moves only when it has to** (:meth:`ZoomIn.keeps`): the previous prediction ∪ positive clicks
leaves it or touches one of its edges that is not the image border (the object probably continues), or the
box wanted now overlaps it by IoU < ``recompute_iou`` (the object grew or shrank a lot). A kept crop costs
one click of the head; a moved one a backbone run (~0.4 s on 2 CPU threads) unless that box is still cached.
A wanted box nearly as large as the image (long side ≥ ``full_ratio`` of the image's) gains no resolution:
the full image's embedding is used instead. Each prediction is recorded as a :class:`ZoomStep` in
``embedding.zoom.last`` (``kind``: full / kept / moved, whether a backbone ran, seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rgbxseg.interactive.click_simulator import Click

ZOOM_KINDS = ("full", "kept", "moved")


@dataclass(frozen=True)
class CropBox:
    """Rows ``top:bottom``, columns ``left:right`` of an image (bottom/right exclusive)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def area(self) -> int:
        return max(0, self.height) * max(0, self.width)

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def contains(self, other: CropBox) -> bool:
        return (
            self.top <= other.top and self.left <= other.left and other.bottom <= self.bottom
            and other.right <= self.right
        )  # fmt: skip

    def iou(self, other: CropBox) -> float:
        inner = CropBox(
            max(self.top, other.top), max(self.left, other.left), min(self.bottom, other.bottom),
            min(self.right, other.right),
        )  # fmt: skip
        overlap = inner.area if inner.height > 0 and inner.width > 0 else 0
        return overlap / (self.area + other.area - overlap)

    def to_crop(self, click: Click) -> Click:
        """A click in image pixels → the same pixel in crop pixels (exact: a shift)."""
        return Click(click.y - self.top, click.x - self.left, click.positive)

    def holds(self, click: Click) -> bool:
        return self.top <= click.y < self.bottom and self.left <= click.x < self.right


def bounding_box(mask: np.ndarray | None, points: Sequence[tuple[int, int]] = ()) -> CropBox | None:
    """The tight box of ``mask`` (H×W bool, or None) ∪ ``points`` ((y, x) pairs); None when both are empty."""
    ys, xs = [int(y) for y, _ in points], [int(x) for _, x in points]
    if mask is not None:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size:
            ys += [int(rows[0]), int(rows[-1])]
            xs += [int(cols[0]), int(cols[-1])]
    if not ys:
        return None
    return CropBox(min(ys), min(xs), max(ys) + 1, max(xs) + 1)


def expand_box(box: CropBox, image_size: tuple[int, int], expand: float, min_size: int = 1) -> CropBox:
    """``box`` with height and width each multiplied by ``expand`` around its centre, at least ``min_size``
    pixels, clamped to the image — a box pushed past a border is shifted back inside rather than cut (RITM's
    ``expand_bbox`` + ``clamp_bbox``, which cut instead; shifting keeps the minimum size at borders)."""
    spans = []
    for low, high, size in ((box.top, box.bottom, image_size[0]), (box.left, box.right, image_size[1])):
        extent = int(round(min(size, max(expand * (high - low), min_size, 1))))
        start = int(round(0.5 * (low + high) - 0.5 * extent))
        start = min(max(start, 0), size - extent)
        spans.append((start, start + extent))
    (top, bottom), (left, right) = spans
    return CropBox(top, left, bottom, right)


def expanded_box(
    mask: np.ndarray, points: Sequence[tuple[int, int]], expand: float, min_size: int = 1
) -> CropBox | None:
    """:func:`expand_box` of the :func:`bounding_box` of ``mask`` ∪ ``points`` (None when both are empty)."""
    box = bounding_box(mask, points)
    return None if box is None else expand_box(box, mask.shape, expand, min_size)


@dataclass(frozen=True)
class ZoomIn:
    """When and where to zoom (module docstring). Sizes are fractions of the image's long side.

    Args:
        expand: the object's box is scaled by this around its centre (RITM: 1.4).
        min_size: smallest crop side, as a fraction of the image's long side.
        skip_clicks: the first ``skip_clicks`` clicks of an object run on the full image (RITM: 1).
        recompute_iou: a kept crop must overlap the box wanted now by at least this IoU (RITM: 0.5).
        full_ratio: a wanted box whose long side is at least this fraction of the image's → the full image.
        capacity: crop embeddings kept per image (the LRU of :class:`ZoomState`).
        touch: a prediction touching an edge of the crop inside the image moves the crop (RITM: no).
    """

    expand: float = 1.4
    min_size: float = 0.2
    skip_clicks: int = 1
    recompute_iou: float = 0.5
    full_ratio: float = 0.9
    capacity: int = 4
    touch: bool = True

    def __post_init__(self) -> None:
        if self.expand < 1 or not 0 < self.min_size <= 1 or self.skip_clicks < 0 or self.capacity < 1:
            raise ValueError(f"invalid zoom settings {self}")

    def region(self, previous: np.ndarray | None, clicks: Sequence[Click]) -> CropBox | None:
        """The tight box of the previous prediction ∪ the positive clicks (None: nothing found yet)."""
        if previous is None or not np.any(previous):
            return None  # no object yet: RITM zooms only around a non-empty prediction
        return bounding_box(np.asarray(previous) > 0.5, [(c.y, c.x) for c in clicks if c.positive])

    def wanted_box(
        self, previous: np.ndarray | None, clicks: Sequence[Click], image_size: tuple[int, int]
    ) -> CropBox | None:
        """The crop for these clicks from scratch, None for the full image (first ``skip_clicks`` clicks, an
        empty previous prediction, or a crop that would be nearly the whole image)."""
        region = self.region(previous, clicks)
        if len(clicks) <= self.skip_clicks or region is None:
            return None
        long_side = max(image_size)
        box = expand_box(region, image_size, self.expand, round(self.min_size * long_side))
        return None if max(box.height, box.width) >= self.full_ratio * long_side else box

    def keeps(
        self, current: CropBox, previous: np.ndarray | None, clicks: Sequence[Click], image_size: tuple[int, int]
    ) -> bool:
        """Whether the crop ``current`` still serves these clicks (module docstring)."""
        region, wanted = self.region(previous, clicks), self.wanted_box(previous, clicks, image_size)
        if region is None or wanted is None or not current.contains(region):
            return False
        height, width = image_size
        touches = self.touch and (
            (region.top == current.top > 0) or (region.left == current.left > 0)
            or (region.bottom == current.bottom < height) or (region.right == current.right < width)
        )  # fmt: skip
        return not touches and current.iou(wanted) >= self.recompute_iou

    def choose(
        self,
        current: CropBox | None,
        previous: np.ndarray | None,
        clicks: Sequence[Click],
        image_size: tuple[int, int],
    ) -> CropBox | None:
        """The crop for this click: ``current`` when it :meth:`keeps`, else the :meth:`wanted_box`."""
        if len(clicks) <= self.skip_clicks:
            return None
        if current is not None and self.keeps(current, previous, clicks, image_size):
            return current
        return self.wanted_box(previous, clicks, image_size)


@dataclass(frozen=True)
class ZoomStep:
    """What one prediction did: ``box`` (None: the full image), ``kind`` (full / kept: the same crop as the
    previous click / moved: a new crop), ``backbone`` (the backbone ran for it) and ``seconds`` (the whole
    ``predict``, refinement included)."""

    box: CropBox | None
    kind: str
    backbone: bool
    seconds: float = 0.0


@dataclass
class ZoomState:
    """Per image embedding: the current crop, an LRU of crop embeddings keyed by crop box, the last step."""

    box: CropBox | None = None
    crops: OrderedDict[CropBox, Any] = field(default_factory=OrderedDict)
    last: ZoomStep | None = None

    def crop(self, box: CropBox, compute: Callable[[CropBox], Any], capacity: int) -> tuple[Any, bool]:
        """(the embedding of ``box``, whether it had to be computed), remembering at most ``capacity``."""
        if box in self.crops:
            self.crops.move_to_end(box)
            return self.crops[box], False
        embedding = compute(box)
        self.crops[box] = embedding
        while len(self.crops) > capacity:
            self.crops.popitem(last=False)
        return embedding, True


def paste(crop_probability: np.ndarray, box: CropBox, image_size: tuple[int, int]) -> np.ndarray:
    """The crop's probability in an all-zero H×W float32 map (outside the crop: 0, module docstring)."""
    full = np.zeros(image_size, dtype=np.float32)
    full[box.slices] = crop_probability
    return full
