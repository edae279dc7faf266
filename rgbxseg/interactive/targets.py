"""What one MMMS training sample asks the head to segment (issue 13, step 5), and where it is cropped.

Annotators click objects as often as stuff, so a view's surface map is turned into one binary target per
sample in a way that depends on what the surfaces are (:mod:`rgbxseg.interactive.surfaces`):

- ``regions`` (BSDS500 regions, DUTS objects, COCO instances): one surface; with probability ``merge`` it
  is merged with 1–2 of its neighbouring surfaces (RITM's merged-region targets: a part plus what touches it,
  like an object made of several BSDS regions);
- ``classes`` (CamVid, SyntheticStreets): one class; with probability ``component`` a single connected
  component of it (one car, one pedestrian: a thing instance) instead of the whole class;
- ``instances`` (MRI lesions): one surface as it is.

:func:`crop_window` then picks the training crop: a square of ``crop`` pixels aligned to the ViT patch grid
(so the cached backbone maps crop exactly, :func:`crop_view`) that contains a random pixel of the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from rgbxseg.data.sample import IGNORE_INDEX
from rgbxseg.interactive.surfaces import surface_ids


@dataclass(frozen=True)
class TargetOptions:
    """Probabilities of the derived targets (see the module docstring) and the smallest target in pixels."""

    min_area: int = 64
    merge: float = 0.0
    component: float = 0.0


@dataclass
class Targets:
    """The surfaces a batch is trained on: ``gt`` and ``valid`` (not ignored) as B×S×S bool arrays."""

    gt: np.ndarray
    valid: np.ndarray


def _neighbours(surfaces: np.ndarray, target: np.ndarray) -> list[int]:
    """Ids of the surfaces that touch ``target`` (8-connectivity)."""
    ring = cv2.dilate(target.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~target
    return surface_ids(np.where(ring, surfaces, 0))


def _component(mask: np.ndarray, min_area: int, rng: np.random.Generator) -> np.ndarray:
    """One random connected component of ``mask`` of at least ``min_area`` pixels (``mask`` if none is)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    large = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    return labels == large[int(rng.integers(len(large)))] if large else mask


def choose_target(surfaces: np.ndarray, kind: str, options: TargetOptions, rng: np.random.Generator) -> np.ndarray:
    """The bool target of one view's surface map (int H×W, 255 = ignore) for a dataset of surface ``kind``."""
    ids = surface_ids(surfaces, options.min_area) or surface_ids(surfaces)
    target = surfaces == ids[int(rng.integers(len(ids)))]
    if kind == "regions" and rng.random() < options.merge:
        for _ in range(int(rng.integers(1, 3))):
            neighbours = _neighbours(surfaces, target)
            if not neighbours:
                break
            target |= surfaces == neighbours[int(rng.integers(len(neighbours)))]
    elif kind == "classes" and rng.random() < options.component:
        target = _component(target, options.min_area, rng)
    return target


def choose_targets(
    surfaces: Sequence[np.ndarray], kinds: Sequence[str], options: TargetOptions, rng: np.random.Generator
) -> Targets:
    """One target per view (:func:`choose_target`) with its valid (not ignored) pixels."""
    gts = [choose_target(s, k, options, rng) for s, k in zip(surfaces, kinds, strict=True)]
    return Targets(np.stack(gts), np.stack([s != IGNORE_INDEX for s in surfaces]))


def crop_window(target: np.ndarray, crop: int, patch: int, rng: np.random.Generator) -> tuple[int, int]:
    """(top, left) in pixels of a ``crop``² window on the ``patch`` grid that holds a random target pixel."""
    size = target.shape[0]
    cells = (size - crop) // patch  # window positions along each axis, minus one
    ys, xs = np.nonzero(target)
    pick = int(rng.integers(len(ys))) if len(ys) else None
    start = []
    for coordinate in ((ys[pick], xs[pick]) if pick is not None else (size // 2, size // 2)):
        low = max(0, -(-(int(coordinate) - crop + 1) // patch))  # first cell whose window reaches the pixel
        high = min(cells, int(coordinate) // patch)
        start.append(patch * int(rng.integers(low, max(low, high) + 1)))
    return start[0], start[1]


def crop_view(tokens: Sequence[torch.Tensor], arrays: Sequence[np.ndarray | torch.Tensor], top: int, left: int,
              crop: int, patch: int) -> tuple[list[torch.Tensor], list]:  # fmt: skip
    """The window of backbone maps (D×h×w, one cell per ``patch`` pixels) and of pixel arrays (…×S×S)."""
    ty, tx, tc = top // patch, left // patch, crop // patch
    maps = [t[..., ty : ty + tc, tx : tx + tc] for t in tokens]
    return maps, [a[..., top : top + crop, left : left + crop] for a in arrays]
