"""Evaluation metrics: confusion-matrix scores, boundary F-score, instance-aware recalls, calibration.

Every metric has ``update(...)``, ``compute() -> dict`` and ``reset()``; its state is a set of sum
tensors (``state_names``) on the device of the first update, which a distributed caller can
``torch.distributed.all_reduce`` before ``compute``. Scores are in percent and NaN (never 0) where
there was nothing to measure.
"""

from rgbxseg.metrics.boundary import BoundaryFScore
from rgbxseg.metrics.calibration import CalibrationError
from rgbxseg.metrics.instance import OccludedRecall, SmallObjectIoU, TinyRecall
from rgbxseg.metrics.semantic import SegMetrics

__all__ = [
    "BoundaryFScore",
    "CalibrationError",
    "OccludedRecall",
    "SegMetrics",
    "SmallObjectIoU",
    "TinyRecall",
]
