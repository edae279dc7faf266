"""Boundary F-score (BF), after Csurka, Larlus and Perronnin, "What is a good evaluation measure for semantic
segmentation?", BMVC 2013.

The boundary matching runs with OpenCV on the CPU: each update copies its label maps (not probabilities)
to the host once. The accumulated counts stay on the device of the first update.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from rgbxseg.data.sample import IGNORE_INDEX
from rgbxseg.metrics.base import DeviceState, check_class_range, check_label_maps, check_num_classes, nanmean

DEFAULT_TOLERANCE_FRACTION = 0.0075  # 0.75 % of the image diagonal, as in Csurka et al. 2013
_KERNEL = np.ones((3, 3), dtype=np.uint8)


def boundary_pixels(mask: np.ndarray, dont_care: np.ndarray) -> np.ndarray:
    """Boundary of a binary mask: ``mask XOR erode_3×3(mask)``, without the pixels in ``dont_care``.

    Don't-care pixels count as inside the mask for the erosion, so the edge between a class and an
    ignored region is not a boundary (nobody knows where the true boundary lies there). Outside the image
    counts as inside too (OpenCV's default erosion border), so the image frame is not a boundary.
    """
    grown = (mask | dont_care).astype(np.uint8)
    eroded = cv2.erode(grown, _KERNEL).astype(bool)
    return mask & ~dont_care & ~eroded


def matched_count(source: np.ndarray, reference: np.ndarray, tolerance: float) -> int:
    """Number of ``source`` boundary pixels within L2 distance ``tolerance`` of a ``reference`` boundary pixel.

    Distances come from ``cv2.distanceTransform`` (``DIST_L2``, ``DIST_MASK_PRECISE``: exact Euclidean).
    """
    if not source.any() or not reference.any():
        return 0
    distance = cv2.distanceTransform((~reference).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return int((distance[source] <= tolerance).sum())


def image_counts(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int, tolerance: float
) -> np.ndarray:
    """Per-class ``[matched predicted, predicted, matched target, target]`` boundary pixel counts, 4×K."""
    counts = np.zeros((4, num_classes), dtype=np.int64)
    ignored = target == ignore_index
    valid = ~ignored
    for cls in np.unique(np.concatenate([pred[valid], target[valid]])):
        pred_boundary = boundary_pixels(pred == cls, ignored)
        target_boundary = boundary_pixels(target == cls, ignored)
        counts[:, cls] = (
            matched_count(pred_boundary, target_boundary, tolerance),
            pred_boundary.sum(),
            matched_count(target_boundary, pred_boundary, tolerance),
            target_boundary.sum(),
        )
    return counts


def f_score(precision: torch.Tensor, recall: torch.Tensor) -> torch.Tensor:
    """``2PR / (P + R)``, 0 where ``P + R = 0``."""
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / total.clamp_min(1e-300), torch.zeros_like(total))


class BoundaryFScore(DeviceState):
    """Per-class boundary F-score (Csurka et al., BMVC 2013), counts pooled over the dataset.

    For every image and every class ``c`` present (at non-ignored pixels) in the target or the prediction:

    * the boundary of a binary mask is ``mask XOR erode_3×3(mask)``; pixels where the target is
      ``ignore_index`` are dropped from both boundary sets and count as inside the mask for the erosion
      (see :func:`boundary_pixels`), and the image frame is not a boundary;
    * a predicted boundary pixel is *matched* if its Euclidean distance to the nearest target boundary
      pixel is ``<= tolerance``, and a target boundary pixel is matched likewise against the prediction;
    * ``tolerance`` is in pixels; ``None`` means 0.75 % of the image diagonal ``sqrt(H² + W²)``, computed
      per image size (the value Csurka et al. use).

    Over the dataset the counts are summed per class (matched predicted, predicted, matched target,
    target), then ``P = matched predicted / predicted``, ``R = matched target / target`` and
    ``BF = 2PR / (P + R)``. Csurka et al. average a per-image score instead; pooling the counts weighs
    images by their boundary length, as the confusion matrix weighs them by their pixels. A class with a
    boundary on one side only has BF 0; a class with no boundary on either side is NaN and left out of
    the mean.

    The matching uses OpenCV on the CPU: each update copies its label maps to the host. The state
    (public ``counts``, 4×K int64, rows in the order above) stays on the device of the first update and
    can be summed across processes with ``torch.distributed.all_reduce`` before :meth:`compute`.
    """

    state_names = ("counts",)

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, tolerance: float | None = None) -> None:
        check_num_classes(num_classes)
        if tolerance is not None and (
            isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < math.inf
        ):
            raise ValueError(f"tolerance must be None or a finite number of pixels >= 0, got {tolerance!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.tolerance = tolerance
        super().__init__()

    def _zero_state(self) -> dict[str, torch.Tensor]:
        return {"counts": torch.zeros(4, self.num_classes, dtype=torch.int64)}

    def tolerance_for(self, height: int, width: int) -> float:
        """The matching tolerance in pixels for an image of ``height × width``."""
        if self.tolerance is not None:
            return float(self.tolerance)
        return DEFAULT_TOLERANCE_FRACTION * math.hypot(height, width)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` are integer class-id maps, N×H×W or H×W."""
        pred, target = check_label_maps(pred, target, "BoundaryFScore")
        check_class_range(pred, target, self.num_classes, self.ignore_index, "BoundaryFScore")
        self._bind(pred.device)
        tolerance = self.tolerance_for(*pred.shape[1:])
        batch = np.zeros((4, self.num_classes), dtype=np.int64)
        for pred_map, target_map in zip(pred.cpu().numpy(), target.cpu().numpy()):
            batch += image_counts(pred_map, target_map, self.num_classes, self.ignore_index, tolerance)
        self.counts += torch.from_numpy(batch).to(self.device)

    def compute(self) -> dict[str, float | list[float]]:
        """``mBF`` (percent, mean over classes with a boundary), per-class ``BF``, ``precision``, ``recall``.

        Per-class precision is NaN where nothing was predicted as boundary, recall NaN where the target
        had no boundary; BF uses 0 for such an undefined side when the other side has a boundary.
        """
        matched_pred, total_pred, matched_target, total_target = self.counts.double()
        precision = matched_pred / total_pred.clamp_min(1)
        recall = matched_target / total_target.clamp_min(1)
        has_boundary = (total_pred + total_target) > 0
        bf = torch.where(has_boundary, 100.0 * f_score(precision, recall), torch.full_like(precision, math.nan))
        nan = torch.full_like(precision, math.nan)
        return {
            "mBF": nanmean(bf),
            "BF": bf.tolist(),
            "precision": torch.where(total_pred > 0, 100.0 * precision, nan).tolist(),
            "recall": torch.where(total_target > 0, 100.0 * recall, nan).tolist(),
        }
