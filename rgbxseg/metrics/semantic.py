"""Confusion-matrix segmentation metrics: mIoU, mAcc, aAcc, mF1.

Definitions (per class ``c``, from the confusion matrix ``M`` accumulated over the whole dataset, rows =
target, columns = prediction, ignored pixels left out; ``TP = M[c, c]``, ``FN = row sum - TP``,
``FP = column sum - TP``)::

    IoU_c = TP / (TP + FP + FN)        Jaccard index, as in the PASCAL VOC / Cityscapes benchmarks
    Acc_c = TP / (TP + FN)             per-class recall ("MPA" when averaged, Long et al. CVPR 2015)
    F1_c  = 2 TP / (2 TP + FP + FN)    Dice / F1 score
    aAcc  = trace(M) / sum(M)          overall pixel accuracy

A ratio whose denominator is 0 is undefined (NaN) and left out of the class means, never counted as 0:
a class absent from both prediction and target has IoU, Acc and F1 NaN; a class present only in the
prediction has IoU 0 and F1 0 (they count) and Acc NaN (its recall is undefined).
"""

from __future__ import annotations

import torch

from rgbxseg.data.sample import IGNORE_INDEX
from rgbxseg.metrics.base import DeviceState, check_class_range, check_label_maps, check_num_classes, nanmean, percent


class SegMetrics(DeviceState):
    """mIoU, mAcc (MPA), aAcc and mF1 from a dataset-level confusion matrix.

    See the module docstring for the exact definitions. ``update`` counts pixels with one
    ``torch.bincount`` on the input device; ignored pixels (``target == ignore_index``) are sent to an
    overflow bin that is dropped, so no boolean indexing (and no host synchronisation beyond the range
    check) is needed.

    Distributed evaluation: the public attribute ``confusion`` (``num_classes × num_classes`` int64, rows =
    target, columns = prediction) is the whole state; ``torch.distributed.all_reduce(metric.confusion)``
    on every process before :meth:`compute` gives the metrics of the union of the shards.
    """

    state_names = ("confusion",)

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        super().__init__()

    def _zero_state(self) -> dict[str, torch.Tensor]:
        return {"confusion": torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)}

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` are integer class-id maps, N×H×W or H×W."""
        pred, target = check_label_maps(pred, target, "SegMetrics")
        check_class_range(pred, target, self.num_classes, self.ignore_index, "SegMetrics")
        self._bind(pred.device)
        k = self.num_classes
        valid = target != self.ignore_index
        pairs = target.long() * k + pred.long()
        index = torch.where(valid, pairs, torch.full_like(pairs, k * k))
        counts = torch.bincount(index.flatten(), minlength=k * k + 1)[: k * k]
        self.confusion += counts.view(k, k)

    def compute(self) -> dict[str, float | list[float] | torch.Tensor]:
        """Return the metrics in percent (see the module docstring); per-class lists hold NaN where undefined."""
        confusion = self.confusion
        tp = confusion.diagonal()
        support = confusion.sum(1)  # TP + FN
        predicted = confusion.sum(0)  # TP + FP
        iou = percent(tp, support + predicted - tp)
        acc = percent(tp, support)
        f1 = percent(2 * tp, support + predicted)
        total = confusion.sum()
        return {
            "mIoU": nanmean(iou),
            "mAcc": nanmean(acc),
            "aAcc": float(percent(tp.sum(), total)),
            "mF1": nanmean(f1),
            "IoU": iou.tolist(),
            "Acc": acc.tolist(),
            "F1": f1.tolist(),
            "confusion": confusion.clone(),
        }
