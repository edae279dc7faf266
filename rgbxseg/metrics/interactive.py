"""Interactive-segmentation metrics and evaluation loops (SPEC section 6, "Metrics").

Single object, as RITM (Sofiiuk et al. 2021, ``isegm/inference/evaluation.py`` and ``utils.py``):
:func:`evaluate_object` runs the click simulator against a predictor and records the IoU after each click;
:func:`noc` (NoC@k, first click reaching IoU ≥ k, ``max_clicks`` if never), :func:`nof` (NoF@k, objects never
reaching it) and :func:`miou_curve` (mean IoU after each click) summarise those IoU lists.

Several surfaces of one image: :func:`evaluate_surfaces` runs the NoCMS/FRMS protocol on a
:class:`~rgbxseg.interactive.joint_mask.JointMask`, and :func:`nocms_frms` aggregates it over images.

IoU thresholds are fractions (0.85, 0.90); values above 1 are read as percent (85, 90).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rgbxseg.errors import DataError
from rgbxseg.interactive.click_simulator import (
    MAX_CLICKS,
    PRED_THRESHOLD,
    Click,
    as_binary_mask,
    next_click,
    valid_pixels,
)
from rgbxseg.interactive.joint_mask import JointMask, check_surface

Predict = Callable[[list[Click], np.ndarray | None], np.ndarray]
"""``predict(clicks, prev_mask) -> probability map`` (H×W): the clicks so far (last one newest) and the
previous binary mask, None before the first prediction (a model reads None as an all-zero mask)."""

PredictSurface = Callable[[int, list[Click], np.ndarray | None], np.ndarray]
"""``predict_surface(surface, clicks, prev_mask) -> probability map``: :data:`Predict` for one surface,
with that surface's clicks and its previous mask J == surface (None before its first prediction)."""


def as_fraction(threshold: float) -> float:
    """An IoU threshold as a fraction in (0, 1]; a value above 1 is read as percent (85 → 0.85)."""
    fraction = threshold / 100.0 if threshold > 1 else float(threshold)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"an IoU threshold must lie in (0, 1] or (1, 100] percent, got {threshold!r}")
    return fraction


def _check_max_clicks(max_clicks: int) -> None:
    """Raise ValueError unless ``max_clicks`` is an int >= 1."""
    if isinstance(max_clicks, bool) or not isinstance(max_clicks, int) or max_clicks < 1:
        raise ValueError(f"max_clicks must be an int >= 1, got {max_clicks!r}")


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """IoU of binary masks ``pred`` and ``gt`` (H×W bool or 0/1), ``ignore`` pixels excluded (RITM's get_iou).

    An empty union (nothing predicted, nothing to find) scores 1.0.
    """
    gt = as_binary_mask(gt, "gt")
    pred = as_binary_mask(pred, "pred", gt.shape)
    valid = valid_pixels(ignore, gt.shape)
    union = int(((pred | gt) & valid).sum())
    if union == 0:
        return 1.0
    return int((pred & gt & valid).sum()) / union


def _first_reach(ious: Sequence[float], threshold: float, max_clicks: int) -> int | None:
    """1-based index of the first of the first ``max_clicks`` IoUs that is >= ``threshold``, or None."""
    fraction = as_fraction(threshold)
    _check_max_clicks(max_clicks)
    for index, value in enumerate(ious[:max_clicks], start=1):
        if value >= fraction:
            return index
    return None


def noc(ious: Sequence[float], threshold: float, max_clicks: int = MAX_CLICKS) -> int:
    """NoC@threshold of one object: the first click whose IoU is >= threshold, ``max_clicks`` if none is."""
    reached = _first_reach(ious, threshold, max_clicks)
    return max_clicks if reached is None else reached


def nof(all_ious: Sequence[Sequence[float]], threshold: float, max_clicks: int = MAX_CLICKS) -> int:
    """NoF@threshold: how many objects never reach IoU >= threshold within ``max_clicks`` clicks.

    As the SPEC defines it; RITM's ``over_max`` also counts an object reaching it exactly at the last click.
    """
    return sum(_first_reach(ious, threshold, max_clicks) is None for ious in all_ious)


def miou_curve(all_ious: Sequence[Sequence[float]], max_clicks: int = MAX_CLICKS) -> np.ndarray:
    """Mean IoU over objects after clicks 1..max_clicks (float64, length ``max_clicks``).

    A list shorter than ``max_clicks`` (an evaluation that stopped once the target IoU was reached) is padded
    with its last value, i.e. the mask is taken to stay as it was; a longer one is cut.
    """
    _check_max_clicks(max_clicks)
    if not all_ious:
        raise ValueError("miou_curve needs at least one IoU list")
    rows = np.empty((len(all_ious), max_clicks), dtype=np.float64)
    for row, ious in zip(rows, all_ious):
        if not len(ious):
            raise ValueError("miou_curve got an empty IoU list: every object needs at least one click")
        values = np.asarray(ious[:max_clicks], dtype=np.float64)
        row[: len(values)] = values
        row[len(values) :] = values[-1]
    return rows.mean(axis=0)


def _threshold(probability: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The predictor's probability map as a binary mask (> :data:`PRED_THRESHOLD`), after a shape check."""
    probability = np.asarray(probability)
    if probability.shape != shape:
        raise DataError(f"the predictor returned a map of shape {probability.shape}, expected {shape}")
    return probability > PRED_THRESHOLD


def evaluate_object(
    predict: Predict,
    gt: np.ndarray,
    ignore: np.ndarray | None = None,
    max_clicks: int = MAX_CLICKS,
    stop_iou: float | None = None,
) -> list[float]:
    """RITM's evaluation of one object: the IoU after each simulated click (RITM's ``evaluate_sample``).

    The prediction starts all False. Each step: the simulator clicks on the errors of the current
    prediction, ``predict(clicks, prev_mask)`` gives a probability map, the prediction becomes
    ``probability > 0.49`` and its IoU is recorded. Runs ``max_clicks`` steps, or stops at the first IoU >=
    ``stop_iou`` when given.
    """
    _check_max_clicks(max_clicks)
    stop = None if stop_iou is None else as_fraction(stop_iou)
    gt = as_binary_mask(gt, "gt")
    pred = np.zeros(gt.shape, dtype=bool)
    prev_mask: np.ndarray | None = None
    clicks: list[Click] = []
    ious: list[float] = []
    while len(clicks) < max_clicks:
        clicks.append(next_click(pred, gt, ignore, clicks))
        pred = _threshold(predict(list(clicks), prev_mask), gt.shape)
        prev_mask = pred
        ious.append(iou(pred, gt, ignore))
        if stop is not None and ious[-1] >= stop:
            break
    return ious


@dataclass(frozen=True)
class SurfaceResult:
    """Outcome of :func:`evaluate_surfaces` on one image.

    ``clicks`` and ``ious`` map each surface to its click count and final IoU (from J == surface);
    ``failed`` lists the surfaces that ended at ``max_clicks`` clicks with IoU below k1; ``joint`` is J.
    """

    clicks: dict[int, int]
    ious: dict[int, float]
    failed: tuple[int, ...]
    joint: np.ndarray

    @property
    def nocms(self) -> float:
        """Mean number of clicks per surface."""
        return float(np.mean(list(self.clicks.values())))

    @property
    def frms(self) -> float:
        """Percentage of the surfaces that ended at ``max_clicks`` clicks with IoU below k1."""
        return 100.0 * len(self.failed) / len(self.clicks)


def _check_surfaces(surfaces: Sequence[int], gt_label: np.ndarray, valid: np.ndarray) -> list[int]:
    """The surfaces as ints: at least one, distinct, each >= 1 and present in ``gt_label`` outside ignore."""
    checked = [check_surface(surface) for surface in surfaces]
    if not checked:
        raise ValueError("evaluate_surfaces needs at least one surface")
    if len(set(checked)) != len(checked):
        raise ValueError(f"surfaces must be distinct, got {checked}")
    absent = [surface for surface in checked if not ((gt_label == surface) & valid).any()]
    if absent:
        raise DataError(f"surfaces {absent} have no (non-ignored) pixel in gt_label: surfaces are labels present")
    return checked


def _check_label_map(gt_label: np.ndarray) -> np.ndarray:
    """``gt_label`` as an array; it must be a 2-D integer label map."""
    gt_label = np.asarray(gt_label)
    if gt_label.ndim != 2 or not np.issubdtype(gt_label.dtype, np.integer):
        raise DataError(f"gt_label must be a 2-D integer label map, got shape {gt_label.shape}, dtype {gt_label.dtype}")
    return gt_label


class _SurfaceSession:
    """State of the multi-surface protocol on one image: J, each surface's clicks, the IoUs from J."""

    def __init__(
        self, predict_surface: PredictSurface, gt_label: np.ndarray, ignore: np.ndarray | None, surfaces: list[int]
    ) -> None:
        self.predict_surface = predict_surface
        self.gt_label = gt_label
        self.ignore = ignore
        self.joint = JointMask(gt_label.shape)
        self.clicks: dict[int, list[Click]] = {surface: [] for surface in surfaces}

    def surface_iou(self, surface: int) -> float:
        """IoU of J == surface against gt_label == surface, ignore pixels excluded."""
        return iou(self.joint.mask(surface), self.gt_label == surface, self.ignore)

    def ious(self) -> dict[int, float]:
        """Every surface's IoU, recomputed from J (later writes may have taken pixels of earlier surfaces)."""
        return {surface: self.surface_iou(surface) for surface in self.clicks}

    def click(self, surface: int) -> None:
        """One simulated click on ``surface``'s errors; its thresholded prediction is written into J."""
        clicks = self.clicks[surface]
        previous = self.joint.mask(surface)
        clicks.append(next_click(previous, self.gt_label == surface, self.ignore, clicks))
        probability = self.predict_surface(surface, list(clicks), previous if len(clicks) > 1 else None)
        self.joint.write(surface, _threshold(probability, self.gt_label.shape))

    def annotate(self, surface: int, k1: float, max_clicks: int) -> None:
        """Click ``surface`` (at least once) until its IoU is >= k1 or its click count reaches ``max_clicks``."""
        while True:
            self.click(surface)
            if self.surface_iou(surface) >= k1 or len(self.clicks[surface]) >= max_clicks:
                return


def evaluate_surfaces(
    predict_surface: PredictSurface,
    gt_label: np.ndarray,
    surfaces: Sequence[int],
    ignore: np.ndarray | None = None,
    k1: float = 0.80,
    k2: float = 0.70,
    max_clicks: int = MAX_CLICKS,
) -> SurfaceResult:
    """The NoCMS/FRMS protocol (SPEC section 6) on one image whose surfaces are labelled in ``gt_label``.

    Each surface in ``surfaces`` order is clicked until its IoU is >= k1 or it has ``max_clicks`` clicks,
    every prediction being written into the joint mask J. Then, while the mean IoU over surfaces (all
    recomputed from J) is < k2, the worst surface among those with fewer than ``max_clicks`` clicks resumes
    its clicking (count and clicked pixels kept, previous mask J == surface, at least one click) until its IoU
    is >= k1 or its count reaches ``max_clicks``; ties go to the earlier surface in ``surfaces``. When every
    surface has ``max_clicks`` clicks the protocol stops even if the mean is still < k2 (otherwise it would
    never end).
    """
    k1, k2 = as_fraction(k1), as_fraction(k2)
    if not k1 > k2:
        raise ValueError(f"the protocol needs k1 > k2, got k1={k1}, k2={k2}")
    _check_max_clicks(max_clicks)
    gt_label = _check_label_map(gt_label)
    checked = _check_surfaces(surfaces, gt_label, valid_pixels(ignore, gt_label.shape))
    session = _SurfaceSession(predict_surface, gt_label, ignore, checked)
    for surface in session.clicks:
        session.annotate(surface, k1, max_clicks)
    ious = session.ious()
    while np.mean(list(ious.values())) < k2:
        open_surfaces = [surface for surface, clicks in session.clicks.items() if len(clicks) < max_clicks]
        if not open_surfaces:
            break
        session.annotate(min(open_surfaces, key=ious.__getitem__), k1, max_clicks)
        ious = session.ious()
    counts = {surface: len(clicks) for surface, clicks in session.clicks.items()}
    failed = tuple(surface for surface in counts if counts[surface] >= max_clicks and ious[surface] < k1)
    return SurfaceResult(clicks=counts, ious=ious, failed=failed, joint=session.joint.array)


def nocms_frms(results: Sequence[SurfaceResult]) -> dict[str, float]:
    """NoCMS and FRMS over images: ``{"nocms": mean clicks per surface, "frms": % of surfaces failed}``.

    Both are taken over all surfaces of all images (an image with more surfaces weighs more).
    """
    if not results:
        raise ValueError("nocms_frms needs at least one SurfaceResult")
    counts = [count for result in results for count in result.clicks.values()]
    failed = sum(len(result.failed) for result in results)
    return {"nocms": float(np.mean(counts)), "frms": 100.0 * failed / len(counts)}
