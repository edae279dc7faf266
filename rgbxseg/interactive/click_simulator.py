"""The standard interactive-segmentation click simulator (SPEC section 6, "Click simulator").

A reproduction of RITM's ``Clicker._get_next_click`` (Sofiiuk et al., "Reviving Iterative Training with Mask
Guidance for Interactive Segmentation", 2021; ``isegm/inference/clicker.py``), so that NoC numbers measured
here are comparable with theirs:

1. error regions FN = gt ∧ ¬pred and FP = ¬gt ∧ pred, ignore pixels excluded from both;
2. each is padded by one zero pixel, so the image border counts as a region boundary;
3. exact L2 distance transform (``cv2.DIST_L2`` with ``cv2.DIST_MASK_PRECISE``), then the pad is cropped;
4. the distance is set to 0 at the pixels already clicked;
5. the click is positive iff max dist(FN) > max dist(FP) (a tie gives a negative click), and is placed at
   the first pixel, in row-major order, where the chosen map reaches its maximum.

When no error pixel is left (both maps are all zero) RITM does not stop: it returns a *negative* click at the
first pixel whose FP distance equals 0, i.e. at (0, 0). :func:`next_click` keeps that behaviour; evaluation
loops that run to a fixed number of clicks rely on it.

Clicks reach a network as two disk maps (positive, negative) of radius :data:`CLICK_RADIUS`, as RITM's
``DistMaps`` with ``use_disks=True``: see :func:`click_maps`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from rgbxseg.errors import DataError

MAX_CLICKS = 20  # clicks per object in NoC evaluation (RITM's default max_clicks)
PRED_THRESHOLD = 0.49  # a probability > 0.49 is foreground (RITM's pred_thr)
CLICK_RADIUS = 5  # disk radius in pixels of a click in the click maps


@dataclass(frozen=True)
class Click:
    """One user click at row ``y``, column ``x``; ``positive`` marks the object, negative the background."""

    y: int
    x: int
    positive: bool


def as_binary_mask(array: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``array`` as a 2-D bool array; it must be bool, or integer with values in {0, 1}, of ``shape`` if given."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise DataError(f"{name} must be a 2-D (H×W) mask, got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise DataError(f"{name} has shape {array.shape}, expected {shape}")
    if array.dtype == np.bool_:
        return array
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{name} must be bool or 0/1 integers, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise DataError(f"{name} must hold only 0 and 1, got values in [{array.min()}, {array.max()}]")
    return array.astype(bool)


def valid_pixels(ignore: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Bool map of the pixels that count: not in ``ignore`` (H×W bool or 0/1, optional; None ignores nothing)."""
    if ignore is None:
        return np.ones(shape, dtype=bool)
    return ~as_binary_mask(ignore, "ignore", shape)


def _click_position(click: Click | tuple[int, int]) -> tuple[int, int]:
    """The (y, x) of a :class:`Click` or of a ``(y, x)`` pair."""
    if isinstance(click, Click):
        return click.y, click.x
    y, x = click
    return int(y), int(x)


def _not_clicked(shape: tuple[int, int], clicked: Iterable[Click] | Iterable[tuple[int, int]]) -> np.ndarray:
    """Bool map that is False at the pixels already clicked (RITM's ``not_clicked_map``)."""
    not_clicked = np.ones(shape, dtype=bool)
    for click in clicked:
        y, x = _click_position(click)
        if not (0 <= y < shape[0] and 0 <= x < shape[1]):
            raise DataError(f"clicked pixel (y={y}, x={x}) lies outside the {shape[0]}×{shape[1]} image")
        not_clicked[y, x] = False
    return not_clicked


def border_distance(mask: np.ndarray) -> np.ndarray:
    """Exact L2 distance of each ``mask`` pixel to the nearest non-mask pixel, the image border counting as one.

    The border rule comes from padding the mask with one zero pixel before ``cv2.distanceTransform``.
    """
    padded = np.pad(mask.astype(np.uint8), 1, mode="constant")
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance[1:-1, 1:-1]


def next_click(
    pred: np.ndarray,
    gt: np.ndarray,
    ignore: np.ndarray | None = None,
    clicked: Iterable[Click] | Iterable[tuple[int, int]] = (),
) -> Click:
    """The click RITM's simulator makes on prediction ``pred`` of object ``gt`` (both H×W bool or 0/1).

    ``ignore`` (H×W, optional) marks pixels that are neither error nor clickable; ``clicked`` holds the
    clicks (or ``(y, x)`` pairs) made so far, whose pixels are not clicked again. With no error pixel left,
    the result is RITM's negative click at (0, 0) (see the module docstring).
    """
    gt = as_binary_mask(gt, "gt")
    pred = as_binary_mask(pred, "pred", gt.shape)
    valid = valid_pixels(ignore, gt.shape)
    not_clicked = _not_clicked(gt.shape, clicked)
    fn_distance = border_distance(gt & ~pred & valid) * not_clicked
    fp_distance = border_distance(~gt & pred & valid) * not_clicked
    positive = bool(fn_distance.max() > fp_distance.max())
    chosen = fn_distance if positive else fp_distance
    y, x = np.argwhere(chosen == chosen.max())[0]
    return Click(int(y), int(x), positive)


def click_maps(clicks: Iterable[Click], shape: tuple[int, int], radius: int = CLICK_RADIUS) -> np.ndarray:
    """Float32 2×H×W disk maps of ``clicks``: channel 0 positive, channel 1 negative.

    A click marks with 1.0 the pixels at ``dy² + dx² <= radius²`` from it (81 pixels for radius 5, fewer at
    the image border); overlapping disks stay at 1.0.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) with H, W >= 1, got {shape}")
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise ValueError(f"radius must be an int >= 0, got {radius!r}")
    clicks = list(clicks)
    maps = np.zeros((2, *shape), dtype=np.float32)
    for channel, positive in enumerate((True, False)):
        chosen = [click for click in clicks if click.positive == positive]
        if chosen:
            maps[channel] = _disks(chosen, shape, radius)
    return maps


def _disks(clicks: list[Click], shape: tuple[int, int], radius: int) -> np.ndarray:
    """Bool H×W union of the disks of radius ``radius`` around ``clicks``."""
    ys = np.array([click.y for click in clicks], dtype=np.int64)
    xs = np.array([click.x for click in clicks], dtype=np.int64)
    dy2 = (np.arange(shape[0])[None, :] - ys[:, None]) ** 2  # N×H
    dx2 = (np.arange(shape[1])[None, :] - xs[:, None]) ** 2  # N×W
    return (dy2[:, :, None] + dx2[:, None, :] <= radius * radius).any(axis=0)
