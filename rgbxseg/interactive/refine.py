"""Edge-aware refinement of the MMMS head's probability map, an inference-time option of the engine.

The click head predicts at stride 4 of the 448² network input and its logits are upsampled bilinearly to the
image: object edges come out blurred over a few pixels and do not follow the image's edges. Two refiners snap
them to the image, both as ``refiner(probability, image, clicks) -> probability``, H×W float32 in [0, 1] in
and out (the engine's contract), ``image`` the H×W×3 uint8 RGB image and ``clicks`` in image pixels:

- :class:`GuidedRefine`: He et al.'s guided filter (ECCV 2010 / TPAMI 2013) of the probability map with the
  grey image as guide: locally ``q = a·I + b``, so the output's edges move to the guide's edges inside each
  window, and a constant map (an empty prediction included) comes out unchanged.
- :class:`GrabCutRefine`: OpenCV's ``cv2.grabCut`` (``GC_INIT_WITH_MASK``) on a crop around the predicted
  object and the clicks, initialised from the head's probabilities; outside the crop the head's map is kept.

**The head as a prior.** ``grabCut`` has no unary input, so the head's probabilities enter as the labels of
its init mask (``p > 0.5`` probable foreground, else probable background) and, where the head is *very*
confident (``p ≥ 0.98`` / ``p ≤ 0.02``), as sure labels that the graph cut may not flip; there the head's own
probability is also what comes back. The graph cut decides the rest — with the shipped (weak) head that is
most of the object's outline; with a better head, more pixels are confident, the refinement touches only the
uncertain band, and it gets cheaper (sure pixels make ``grabCut``'s max-flow several times faster).

**Measured** (``benchmarks/mmms_inference_options.py``, shipped weights, all GrabCut / Berkeley objects, NoC@90
of the head alone 15.82 / 19.04): the variants of the GrabCut refinement —

| init / output | long side | NoC@90 GrabCut | NoC@90 Berkeley | CPU ms median (p90) GrabCut / Berkeley |
|---|---|---|---|---|
| sure where p ≥ 0.9 / ≤ 0.1, head kept there | 160 | 7.80 | 11.69 | 9.6 (16) / 10.3 (18) |
| no sure labels, head kept where confident (the "blend") | 160 | 7.34 | 11.68 | 14.1 (28) / 17.1 (38) |
| no sure labels, grabCut everywhere in the crop | 160 | 6.80 | 11.17 | 15.3 (33) / 19.0 (42) |
| no sure labels, grabCut everywhere in the crop | 240 | 5.80 | 10.57 | 31.7 (69) / 40.8 (103) |
| sure where p ≥ 0.95 / ≤ 0.05, head kept there | 200 | 6.54 | 10.73 | 17.0 (31) / 18.2 (38) |
| sure where p ≥ 0.98 / ≤ 0.02, head kept there | 160 | 6.52 | 10.97 | 13.0 (24) / 14.7 (29) |
| sure where p ≥ 0.98 / ≤ 0.02, head kept there | 200 | 5.98 | 10.60 | 19.6 (36) / 22.5 (45) |
| **the same, click disks keep grabCut's answer** (default) | 200 | **6.06** | **10.57** | 23.8 (39) / 25.3 (48) |

— and the guided filter's radius / eps (grey guide; logit filtering no better): r 4 / 8 / 16 / 24 / 32 at
eps 1e-3 give GrabCut 14.44 / 13.64 / 13.08 / 12.60 / 13.38 and Berkeley 18.54 / 17.55 / 17.12 / 17.34 /
17.76; eps 1e-2 / 1e-4 at r 8 or 16 change < 0.5. Default r = 16, eps = 1e-3, ~3 ms per click.

(Sweeps on the dev CPU, 2026-12-05, click path on 1 thread, OpenCV on 1 thread, other jobs on the machine;
CPU ms is the refiner's own thread time per click. The click disks of the last row were drawn over the whole
crop then; they are now drawn in their own windows, for well under 1 ms. The default keeps the head's very
confident pixels: it is the best measured here and the variant that will not let grabCut's colour models
overrule a better head where that head is sure.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from rgbxseg.interactive.click_simulator import CLICK_RADIUS, Click
from rgbxseg.interactive.zoom import CropBox, expanded_box

#: names accepted by :func:`make_refiner` (and ``MMMSEngine(refine=...)``)
REFINES = ("none", "grabcut", "guided")


class Refiner(Protocol):
    """``refiner(probability H×W float32, image H×W×3 uint8 RGB, clicks) -> H×W float32 in [0, 1]``."""

    def __call__(self, probability: np.ndarray, image: np.ndarray, clicks: Sequence[Click]) -> np.ndarray: ...


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the (2r+1)² window, borders reflected (the guided filter's f_mean)."""
    return cv2.boxFilter(x, cv2.CV_32F, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a grey guide (both H×W float32; guide in [0, 1]) — O(1) per pixel in
    the radius, five box filters of ``cv2.boxFilter``.

    Hand-written because ``cv2.ximgproc.guidedFilter`` lives in opencv-contrib, which is not a dependency
    (and this one is 15 lines of box filters). ``eps`` is the regulariser on the guide's variance, in guide
    units squared: edges whose contrast² is well above ``eps`` are kept, flatter ones are smoothed.
    """
    guide = np.ascontiguousarray(guide, dtype=np.float32)
    source = np.ascontiguousarray(source, dtype=np.float32)
    mean_i, mean_p = _box(guide, radius), _box(source, radius)
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    cov_ip = _box(guide * source, radius) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, radius) * guide + _box(b, radius)


def grey(image: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 RGB → H×W float32 luma in [0, 1]."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


@dataclass(frozen=True)
class GuidedRefine:
    """Guided filter of the head's probability map with the grey image as guide (:func:`guided_filter`).

    Args:
        radius: window radius in image pixels (measured best around 16-24 px at GrabCut / Berkeley sizes:
            the head's edges are off by more than its ±4 px upsampling blur).
        eps: variance regulariser (guide in [0, 1]).
        logit: filter the logit (clipped to ±``logit_clip``) instead of the probability, then squash.
    """

    radius: int = 16
    eps: float = 1e-3
    logit: bool = False
    logit_clip: float = 6.0

    def __call__(self, probability: np.ndarray, image: np.ndarray, clicks: Sequence[Click] = ()) -> np.ndarray:
        p = np.asarray(probability, dtype=np.float32)
        if p.size == 0 or float(p.max()) - float(p.min()) < 1e-6:
            return p.copy()  # constant (e.g. empty) prediction: the filter would return it unchanged anyway
        guide = grey(image)
        if self.logit:
            q = np.clip(p, 1e-6, 1 - 1e-6)
            z = np.clip(np.log(q / (1 - q)), -self.logit_clip, self.logit_clip)
            out = 1.0 / (1.0 + np.exp(-guided_filter(guide, z, self.radius, self.eps)))
        else:
            out = guided_filter(guide, p, self.radius, self.eps)
        return np.clip(out, 0.0, 1.0).astype(np.float32)


def _clear_disk(mask: np.ndarray, y: int, x: int, radius: int) -> None:
    """``mask[p] = False`` for the pixels p with dy² + dx² ≤ radius² from (y, x) (the click disks' rule of
    :func:`~rgbxseg.interactive.click_simulator.click_maps`), in place; a centre outside clips the disk."""
    top, left = max(0, y - radius), max(0, x - radius)
    bottom, right = min(mask.shape[0], y + radius + 1), min(mask.shape[1], x + radius + 1)
    if top < bottom and left < right:
        yy, xx = np.ogrid[top:bottom, left:right]
        mask[top:bottom, left:right] &= (yy - y) ** 2 + (xx - x) ** 2 > radius * radius


@dataclass(frozen=True)
class GrabCutRefine:
    """``cv2.grabCut`` on a crop around the predicted object, initialised from the head's probabilities.

    The crop is the bounding box of ``p > 0.5`` ∪ the clicks, expanded by ``expand`` (+25 %), resized so that
    its long side is at most ``long_side``. Init mask, drawn in this order:

    1. ``GC_PR_FGD`` where ``p > 0.5``, ``GC_PR_BGD`` elsewhere;
    2. ``GC_BGD`` where ``p < sure_background`` and the pixel is more than ``far`` · crop long side from
       ``p > 0.5`` (the crop's frame is such background: the crop was expanded around the object);
    3. with ``hard_prior``: ``GC_FGD`` where ``p ≥ confident``, ``GC_BGD`` where ``p ≤ 1 − confident``;
    4. the click disks (radius :data:`CLICK_RADIUS` scaled to the crop), ``GC_FGD`` positive, ``GC_BGD``
       negative, in click order (the latest click wins where disks overlap).

    ``iterations`` of grabCut follow (``cv2.setRNGSeed(0)`` first: its k-means is seeded from OpenCV's global
    RNG). The 0/1 result is resized back to the crop bilinearly (soft edges) and pasted into the head's map;
    with ``keep_confident`` the head's own probability stays wherever it is confident (step 3's pixels, so
    that a sure pixel keeps its graded value) — except in the click disks, where a click outranks the head.
    Nothing predicted (no ``p > 0.5``) or a grabCut that cannot fit its colour models (too few foreground or
    background samples) returns the head's map unchanged.
    """

    long_side: int = 200
    expand: float = 1.25
    iterations: int = 1
    sure_background: float = 0.05
    far: float = 0.1
    hard_prior: bool = True
    keep_confident: bool = True
    confident: float = 0.98

    def __call__(self, probability: np.ndarray, image: np.ndarray, clicks: Sequence[Click] = ()) -> np.ndarray:
        p = np.asarray(probability, dtype=np.float32)
        foreground = p > 0.5
        if not foreground.any():
            return p.copy()
        box = expanded_box(foreground, [(c.y, c.x) for c in clicks], self.expand, min_size=8)
        assert box is not None  # the foreground is not empty
        rows, cols = box.slices
        crop_p, crop_image = p[rows, cols], image[rows, cols]
        scale = min(1.0, self.long_side / max(box.height, box.width))
        size = (max(1, round(box.height * scale)), max(1, round(box.width * scale)))
        if scale < 1.0:
            small_image = cv2.resize(crop_image, size[::-1], interpolation=cv2.INTER_AREA)
            small_p = cv2.resize(crop_p, size[::-1], interpolation=cv2.INTER_LINEAR)
        else:
            small_image, small_p = np.ascontiguousarray(crop_image), crop_p
        mask = self.init_mask(small_p, clicks, box, scale)
        gc_mask = mask.copy()
        background, foreground_model = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)
        try:
            cv2.grabCut(
                small_image, gc_mask, None, background, foreground_model, self.iterations, cv2.GC_INIT_WITH_MASK
            )
        except cv2.error:
            return p.copy()  # too few foreground or background samples to fit the colour models
        cut = ((gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD)).astype(np.float32)
        if scale < 1.0:
            cut = cv2.resize(cut, (box.width, box.height), interpolation=cv2.INTER_LINEAR)
        if self.keep_confident:
            confident = (crop_p >= self.confident) | (crop_p <= 1.0 - self.confident)
            for click in clicks:  # a click outranks the head: its disk keeps grabCut's answer (its own seed)
                _clear_disk(confident, click.y - box.top, click.x - box.left, CLICK_RADIUS)
            cut = np.where(confident, crop_p, cut)
        out = p.copy()
        out[rows, cols] = cut
        return np.clip(out, 0.0, 1.0)

    def init_mask(self, p: np.ndarray, clicks: Sequence[Click], box: CropBox, scale: float) -> np.ndarray:
        """The ``GC_INIT_WITH_MASK`` mask (uint8, ``p``'s size) of the crop ``box`` resized by ``scale``."""
        foreground = p > 0.5
        mask = np.where(foreground, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        distance = cv2.distanceTransform((~foreground).astype(np.uint8), cv2.DIST_L2, 3)
        mask[(p < self.sure_background) & (distance > self.far * max(p.shape))] = cv2.GC_BGD
        if self.hard_prior:
            mask[p >= self.confident] = cv2.GC_FGD
            mask[p <= 1.0 - self.confident] = cv2.GC_BGD
        radius = max(1, round(CLICK_RADIUS * scale))
        for click in clicks:
            centre = (round((click.x - box.left + 0.5) * scale - 0.5), round((click.y - box.top + 0.5) * scale - 0.5))
            cv2.circle(mask, centre, radius, cv2.GC_FGD if click.positive else cv2.GC_BGD, thickness=-1)
        return mask


def make_refiner(refine: str | Refiner | None) -> Refiner | None:
    """A :data:`REFINES` name (with its measured defaults) or a refiner object → the refiner (None: none)."""
    if refine is None or refine == "none":
        return None
    if refine == "grabcut":
        return GrabCutRefine()
    if refine == "guided":
        return GuidedRefine()
    if isinstance(refine, str):
        raise ValueError(f"refine must be one of {', '.join(REFINES)} or a refiner object, got {refine!r}")
    if not callable(refine):
        raise ValueError(f"refine must be one of {', '.join(REFINES)} or a callable refiner, got {refine!r}")
    return refine
