"""Instance-aware views of a semantic prediction: small objects, tiny objects, occluded objects.

A semantic-segmentation model predicts no instances; these metrics use the ground-truth instances of
:class:`~rgbxseg.data.sample.Instances` (visible masks, occluded = amodal minus visible, classes, boxes)
to ask how well the *semantic* prediction covers objects that a whole-image mIoU drowns out. Every
``update`` takes ``(pred, target, instances)``: ``pred``/``target`` integer class-id maps H×W with one
:class:`Instances` (or ``None``), or N×H×W with a list of N ``Instances | None`` (``None``: the image has
no instance annotation and is skipped). Instances are moved to the device of ``pred`` if needed.

"Visible area" is the instance's visible pixel count (:attr:`Instances.areas`); instances with no
visible pixel are skipped. The state tensors are sums and stay on the device of the first update;
``torch.distributed.all_reduce`` each of them (``state_names``) before ``compute`` to merge processes.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence

import torch

from rgbxseg.data.sample import IGNORE_INDEX, Instances
from rgbxseg.metrics.base import (
    DeviceState,
    check_class_range,
    check_label_maps,
    check_num_classes,
    is_integer_dtype,
    nanmean,
    percent,
)


def _check_instances(item: Instances, height: int, width: int, name: str) -> None:
    """Raise ValueError unless ``item`` is a consistent :class:`Instances` for an image of height × width."""
    if not isinstance(item, Instances):
        raise ValueError(f"{name}: expected Instances or None per image, got {type(item).__name__}")
    n = len(item)
    if item.classes.ndim != 1 or not is_integer_dtype(item.classes):
        raise ValueError(
            f"{name}: instance classes must be a 1-D integer tensor, got shape {tuple(item.classes.shape)} "
            f"dtype {item.classes.dtype}"
        )
    for role, masks in (("masks", item.masks), ("occluded", item.occluded)):
        if masks.dtype != torch.bool or tuple(masks.shape) != (n, height, width):
            raise ValueError(
                f"{name}: instance {role} must be a bool tensor {n}×{height}×{width} (one mask per instance, "
                f"image size), got {masks.dtype} {tuple(masks.shape)}"
            )
    if tuple(item.boxes.shape) != (n, 4):
        raise ValueError(f"{name}: instance boxes must be {n}×4 (xyxy), got {tuple(item.boxes.shape)}")


def instances_per_image(
    instances: Instances | Sequence[Instances | None] | None, images: int, height: int, width: int, name: str
) -> list[Instances | None]:
    """Check ``instances`` against a batch of ``images`` maps of height × width; one entry per image."""
    if instances is None or isinstance(instances, Instances):
        items: list[Instances | None] = [instances]
    elif isinstance(instances, Sequence):
        items = list(instances)
    else:
        raise ValueError(f"{name}: instances must be Instances, None or a list of them, got {type(instances).__name__}")
    if len(items) != images:
        raise ValueError(f"{name}: got {len(items)} instance entries for {images} image(s); pass one per image")
    for item in items:
        if item is not None:
            _check_instances(item, height, width, name)
    return items


def visible_hits(
    pred: torch.Tensor, target: torch.Tensor, item: Instances, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per instance: (visible pixels not ignored in the target, those of them predicted as its class)."""
    visible = item.masks & (target != ignore_index)
    hits = visible & (pred.unsqueeze(0) == item.classes.view(-1, 1, 1))
    return visible.flatten(1).sum(1), hits.flatten(1).sum(1)


class _InstanceMetric(DeviceState):
    """Shared ``update`` plumbing: check the inputs, bind the device, hand each annotated image on."""

    def __init__(self, ignore_index: int) -> None:
        self.ignore_index = ignore_index
        super().__init__()

    @property
    def name(self) -> str:
        """The class name, to start error messages with."""
        return type(self).__name__

    def _check_maps(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Extra checks on the N×H×W maps (class ranges), where the metric knows the number of classes."""

    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        instances: Instances | Sequence[Instances | None] | None,
    ) -> None:
        """Add a batch: maps H×W with one ``Instances`` or N×H×W with a list of N ``Instances | None``."""
        pred, target = check_label_maps(pred, target, self.name)
        self._check_maps(pred, target)
        items = instances_per_image(instances, *pred.shape, self.name)
        self._bind(pred.device)
        for pred_map, target_map, item in zip(pred, target, items):
            if item is not None and len(item):
                self._update_image(pred_map, target_map, item.to(pred.device))

    @abstractmethod
    def _update_image(self, pred: torch.Tensor, target: torch.Tensor, item: Instances) -> None:
        """Accumulate one H×W image with at least one instance (already on the state device)."""


class SmallObjectIoU(_InstanceMetric):
    """IoU of the semantic prediction around small ground-truth objects.

    For every instance of class ``c`` with ``0 < visible area < max_area``: the region ``R`` is its box
    (``Instances.boxes``, inclusive xyxy, rounded outwards to whole pixels) grown on every side by
    ``max(4, ceil(L / 2))`` pixels, ``L`` the larger box side, and clipped to the image. Then::

        IoU_i = |pred==c ∧ target==c ∧ R| / |(pred==c ∨ target==c) ∧ R ∧ target != ignore|

    (an instance whose denominator is 0, which needs a target that disagrees with the instance mask, is
    skipped). Per class the mean over its instances; ``small_mIoU`` is the mean over the classes that
    had small instances. Values in percent, NaN for classes without small instances. Public state:
    ``iou_sum`` (float64, K) and ``count`` (int64, K).

    This is rgbxseg's own definition, not a published benchmark metric: a local IoU around each small
    object, which the dataset-wide IoU (dominated by large regions) cannot show.
    """

    state_names = ("iou_sum", "count")

    def __init__(self, num_classes: int, max_area: int = 1024, ignore_index: int = IGNORE_INDEX) -> None:
        check_num_classes(num_classes)
        _check_positive(max_area, "max_area")
        self.num_classes = num_classes
        self.max_area = max_area
        super().__init__(ignore_index)

    def _zero_state(self) -> dict[str, torch.Tensor]:
        return {
            "iou_sum": torch.zeros(self.num_classes, dtype=torch.float64),
            "count": torch.zeros(self.num_classes, dtype=torch.int64),
        }

    def _check_maps(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        check_class_range(pred, target, self.num_classes, self.ignore_index, self.name)

    def _update_image(self, pred: torch.Tensor, target: torch.Tensor, item: Instances) -> None:
        height, width = pred.shape
        rows = torch.cat([item.boxes.double(), item.areas.double()[:, None], item.classes.double()[:, None]], 1)
        classes, ious, ok = [], [], []
        for x1, y1, x2, y2, area, cls in rows.tolist():  # one small host read per image: boxes, areas, classes
            cls = int(cls)
            if not 0 <= cls < self.num_classes:
                raise ValueError(f"{self.name}: instance class ids must be in [0, {self.num_classes}), got {cls}")
            if not 0 < area < self.max_area:
                continue
            rows_slice, cols_slice = _grown_box(x1, y1, x2, y2, height, width)
            region = (rows_slice, cols_slice)
            inter, union = _region_overlap(pred[region], target[region], cls, self.ignore_index)
            classes.append(cls)
            ious.append(inter.double() / union.clamp_min(1))
            ok.append(union > 0)
        if classes:
            index = torch.tensor(classes, device=pred.device)
            ok_t = torch.stack(ok)
            self.iou_sum.index_add_(0, index, torch.where(ok_t, torch.stack(ious), 0.0))
            self.count.index_add_(0, index, ok_t.long())

    def compute(self) -> dict[str, float | list[float] | list[int]]:
        """``small_mIoU`` (percent), per-class ``small_IoU`` (percent, NaN without instances), ``count``."""
        per_class = 100.0 * self.iou_sum / self.count.clamp_min(1)
        per_class = torch.where(self.count > 0, per_class, torch.full_like(per_class, math.nan))
        return {"small_mIoU": nanmean(per_class), "small_IoU": per_class.tolist(), "count": self.count.tolist()}


def _grown_box(x1: float, y1: float, x2: float, y2: float, height: int, width: int) -> tuple[slice, slice]:
    """Row and column slices of an inclusive box grown by ``max(4, ceil(L / 2))`` px, clipped to the image."""
    left, top, right, bottom = math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2)
    side = max(right - left + 1, bottom - top + 1)
    margin = max(4, math.ceil(side / 2))
    return (
        slice(max(0, top - margin), min(height, bottom + margin + 1)),
        slice(max(0, left - margin), min(width, right + margin + 1)),
    )


def _region_overlap(
    pred: torch.Tensor, target: torch.Tensor, cls: int, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``|pred==c ∧ target==c|`` and ``|(pred==c ∨ target==c) ∧ target != ignore|`` over a region."""
    pred_c, target_c = pred == cls, target == cls
    inter = (pred_c & target_c).sum()
    union = ((pred_c | target_c) & (target != ignore_index)).sum()
    return inter, union


def _check_positive(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _check_fraction(value: float, name: str, low_open: bool) -> None:
    low_ok = value > 0 if low_open else value >= 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low_ok and value <= 1):
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


class TinyRecall(_InstanceMetric):
    """Instance recall of tiny objects.

    A ground-truth instance of class ``c`` with ``0 < visible area < max_area`` is *found* when at least
    ``coverage`` of its visible pixels are predicted as ``c``. Visible pixels that the target marks
    ``ignore_index`` are left out of that fraction (an instance left with none is skipped).
    ``tiny_recall = 100 · found / total``, NaN when there was no tiny instance. Public state: ``found``
    and ``total`` (int64 scalars).
    """

    state_names = ("found", "total")

    def __init__(self, max_area: int = 100, coverage: float = 0.5, ignore_index: int = IGNORE_INDEX) -> None:
        _check_positive(max_area, "max_area")
        _check_fraction(coverage, "coverage", low_open=True)
        self.max_area = max_area
        self.coverage = coverage
        super().__init__(ignore_index)

    def _zero_state(self) -> dict[str, torch.Tensor]:
        return {"found": torch.zeros((), dtype=torch.int64), "total": torch.zeros((), dtype=torch.int64)}

    def _update_image(self, pred: torch.Tensor, target: torch.Tensor, item: Instances) -> None:
        visible, hits = visible_hits(pred, target, item, self.ignore_index)
        tiny = (item.areas < self.max_area) & (visible > 0)  # visible > 0 implies a visible area > 0
        found = tiny & (hits.double() >= self.coverage * visible.double())
        self.total += tiny.sum()
        self.found += found.sum()

    def compute(self) -> dict[str, float | int]:
        """``tiny_recall`` (percent, NaN without tiny instances), ``found`` and ``total`` instance counts."""
        return {
            "tiny_recall": float(percent(self.found, self.total)),
            "found": int(self.found),
            "total": int(self.total),
        }


class OccludedRecall(_InstanceMetric):
    """Pixel recall of the visible part of occluded objects.

    An instance is *occluded* when ``|occluded| / (|occluded| + |visible|) >= min_occlusion`` (``occluded``
    = amodal minus visible mask). Over all occluded instances ``i`` of class ``c_i``::

        occluded_recall = 100 · Σ_i |pred==c_i ∧ visible_i| / Σ_i |visible_i|

    pooled over pixels, so large instances weigh more. Visible pixels that the target marks
    ``ignore_index`` are left out (an instance left with none is skipped). NaN when no instance
    qualified. Public state: ``hits``, ``pixels``, ``instances`` (int64 scalars).
    """

    state_names = ("hits", "pixels", "instances")

    def __init__(self, min_occlusion: float = 0.1, ignore_index: int = IGNORE_INDEX) -> None:
        _check_fraction(min_occlusion, "min_occlusion", low_open=False)
        self.min_occlusion = min_occlusion
        super().__init__(ignore_index)

    def _zero_state(self) -> dict[str, torch.Tensor]:
        return {name: torch.zeros((), dtype=torch.int64) for name in self.state_names}

    def _update_image(self, pred: torch.Tensor, target: torch.Tensor, item: Instances) -> None:
        visible, hits = visible_hits(pred, target, item, self.ignore_index)
        occluded = item.occluded.flatten(1).sum(1).double()
        amodal = occluded + item.areas.double()
        share = occluded / amodal.clamp_min(1)
        selected = (share >= self.min_occlusion) & (visible > 0)
        self.hits += (hits * selected).sum()
        self.pixels += (visible * selected).sum()
        self.instances += selected.sum()

    def compute(self) -> dict[str, float | int]:
        """``occluded_recall`` (percent, NaN without occluded instances) and the number of ``instances``."""
        return {"occluded_recall": float(percent(self.hits, self.pixels)), "instances": int(self.instances)}
