"""SmallObjectIoU, TinyRecall, OccludedRecall on hand-made instances (expected values worked out below)."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import masks_to_boxes

from rgbxseg.data.sample import Instances
from rgbxseg.metrics import OccludedRecall, SmallObjectIoU, TinyRecall

IGNORE = 255
SIZE = 20


def _box_mask(top: int, left: int, bottom: int, right: int) -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[top : bottom + 1, left : right + 1] = True
    return mask


def _instances(masks: list[torch.Tensor], classes: list[int], occluded: list[torch.Tensor] | None = None) -> Instances:
    stacked = torch.stack(masks)
    hidden = torch.stack(occluded) if occluded is not None else torch.zeros_like(stacked)
    return Instances(
        boxes=masks_to_boxes(stacked).float(), classes=torch.tensor(classes), masks=stacked, occluded=hidden
    )


def _small_object_scene() -> tuple[torch.Tensor, torch.Tensor, Instances]:
    """Three scored instances and one too large; the expected IoUs are in the test below."""
    a = _box_mask(8, 8, 9, 9)  # class 1, 2×2: region rows/cols 4..13 (margin max(4, 1) = 4)
    b = _box_mask(15, 15, 16, 16)  # class 1, 2×2: region rows/cols 11..19 (clipped)
    c = _box_mask(1, 14, 2, 15)  # class 2, 2×2: region rows 0..6, cols 10..19
    big = _box_mask(12, 0, 15, 2)  # class 2, 12 px >= max_area 10: not scored
    target = torch.zeros(SIZE, SIZE, dtype=torch.long)
    for mask, cls in ((a, 1), (b, 1), (c, 2), (big, 2)):
        target[mask] = cls
    pred = torch.zeros_like(target)
    pred[8:10, 8:11] = 1  # a, plus 2 false-positive pixels at column 10
    pred[0:2, 0:2] = 1  # far from every region: counts for nothing
    pred[5, 5] = 1
    target[5, 5] = IGNORE  # inside a's region, but ignored: not in the union
    pred[c] = 2  # c exactly; b is missed entirely
    return pred, target, _instances([a, b, c, big], [1, 1, 2, 2])


def test_small_object_iou_hand_case() -> None:
    pred, target, instances = _small_object_scene()
    metric = SmallObjectIoU(3, max_area=10)
    metric.update(pred, target, instances)
    result = metric.compute()
    # a: 4 / 6 (the ignored predicted pixel is left out); b: 0 / 4; c: 4 / 4.
    assert result["small_IoU"][1] == pytest.approx(100 * (4 / 6 + 0) / 2)
    assert result["small_IoU"][2] == pytest.approx(100.0)
    assert math.isnan(result["small_IoU"][0])
    assert result["count"] == [0, 2, 1]
    assert result["small_mIoU"] == pytest.approx((100 / 3 + 100) / 2)


def test_small_object_margin_grows_with_the_box() -> None:
    # A 1×12 bar (area 12 < 1024): the larger side is 12, so the margin is 6, not 4.
    bar = _box_mask(9, 4, 9, 15)
    target = torch.zeros(SIZE, SIZE, dtype=torch.long)
    target[bar] = 1
    pred = target.clone()
    pred[9, 16:20] = 1  # 4 px right of the bar: inside a margin of 6 (cols up to 21 -> 19)
    pred[3, 10] = 1  # 6 rows above: inside the margin of 6 (rows 3..15)
    pred[2, 10] = 1  # 7 rows above: outside
    metric = SmallObjectIoU(2)
    metric.update(pred, target, _instances([bar], [1]))
    assert metric.compute()["small_IoU"][1] == pytest.approx(100 * 12 / 17)


def test_small_object_batched_with_missing_annotation() -> None:
    pred, target, instances = _small_object_scene()
    single, batched = SmallObjectIoU(3, max_area=10), SmallObjectIoU(3, max_area=10)
    single.update(pred, target, instances)
    batched.update(torch.stack([pred, pred]), torch.stack([target, target]), [instances, None])
    assert torch.equal(batched.iou_sum, single.iou_sum) and torch.equal(batched.count, single.count)


def test_nothing_to_measure_is_nan() -> None:
    pred = target = torch.zeros(SIZE, SIZE, dtype=torch.long)
    small, tiny, occluded = SmallObjectIoU(2), TinyRecall(), OccludedRecall()
    for metric in (small, tiny, occluded):
        metric.update(pred, target, None)
    assert math.isnan(small.compute()["small_mIoU"]) and small.compute()["count"] == [0, 0]
    assert math.isnan(tiny.compute()["tiny_recall"]) and tiny.compute()["total"] == 0
    assert math.isnan(occluded.compute()["occluded_recall"]) and occluded.compute()["instances"] == 0


def test_tiny_recall_hand_case() -> None:
    masks = [
        _box_mask(0, 0, 1, 1),  # 4 px, 3 predicted -> found
        _box_mask(0, 5, 1, 6),  # 4 px, 1 predicted -> missed
        _box_mask(0, 10, 1, 11),  # 4 px, 2 predicted -> exactly 0.5: found
        _box_mask(5, 0, 14, 14),  # 150 px >= 100: not tiny
        _box_mask(17, 0, 18, 1),  # 4 px, 2 ignored in the target, 1 of the other 2 predicted -> found
    ]
    target = torch.zeros(SIZE, SIZE, dtype=torch.long)
    for mask in masks:
        target[mask] = 1
    target[17, 0:2] = IGNORE
    pred = torch.zeros_like(target)
    pred[0, 0:2] = 1
    pred[1, 0] = 1
    pred[0, 5] = 1
    pred[0, 10:12] = 1
    pred[18, 0] = 1
    metric = TinyRecall(max_area=100, coverage=0.5)
    metric.update(pred, target, _instances(masks, [1] * 5))
    assert metric.compute() == {"tiny_recall": pytest.approx(75.0), "found": 3, "total": 4}
    strict = TinyRecall(coverage=0.75)
    strict.update(pred, target, _instances(masks, [1] * 5))
    assert strict.compute()["found"] == 1  # only the 3-of-4 instance


def test_occluded_recall_hand_case() -> None:
    a_visible, a_hidden = _box_mask(0, 0, 1, 3), _box_mask(2, 0, 2, 1)  # 8 visible, 2 hidden: share 0.2
    b_visible, b_hidden = _box_mask(5, 0, 7, 2), _box_mask(8, 0, 8, 0)  # 9 visible, 1 hidden: share 0.1
    c_visible = _box_mask(10, 0, 11, 4)  # 10 visible, not occluded: left out
    no_hidden = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    instances = _instances([a_visible, b_visible, c_visible], [1, 2, 1], [a_hidden, b_hidden, no_hidden])
    target = torch.zeros(SIZE, SIZE, dtype=torch.long)
    target[a_visible] = 1
    target[b_visible] = 2
    target[c_visible] = 1
    pred = torch.zeros_like(target)
    pred[0, 0:4] = 1
    pred[1, 0:2] = 1  # 6 of a's 8 visible pixels
    pred[5:8, 0:3] = 1  # b covered, but with the wrong class
    pred[c_visible] = 1
    metric = OccludedRecall(min_occlusion=0.1)
    metric.update(pred, target, instances)
    assert metric.compute() == {"occluded_recall": pytest.approx(100 * 6 / 17), "instances": 2}
    stricter = OccludedRecall(min_occlusion=0.15)
    stricter.update(pred, target, instances)
    assert stricter.compute() == {"occluded_recall": pytest.approx(75.0), "instances": 1}


def test_rejects_bad_instances() -> None:
    pred, target, instances = _small_object_scene()
    metric = SmallObjectIoU(3)
    with pytest.raises(ValueError, match="got 1 instance entries for 2 image"):
        metric.update(torch.stack([pred, pred]), torch.stack([target, target]), [instances])
    wrong_size = Instances(instances.boxes, instances.classes, instances.masks[:, :10], instances.occluded[:, :10])
    with pytest.raises(ValueError, match="instance masks must be a bool tensor 4×20×20"):
        metric.update(pred, target, wrong_size)
    not_bool = Instances(instances.boxes, instances.classes, instances.masks.long(), instances.occluded)
    with pytest.raises(ValueError, match="instance masks must be a bool tensor"):
        TinyRecall().update(pred, target, not_bool)
    with pytest.raises(ValueError, match="expected Instances or None"):
        OccludedRecall().update(pred, target, [instances.masks])
    with pytest.raises(ValueError, match=r"instance class ids must be in \[0, 2\)"):
        SmallObjectIoU(2).update(pred.clamp(max=1), target.clamp(max=1), instances)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: SmallObjectIoU(0), "num_classes"),
        (lambda: SmallObjectIoU(3, max_area=0), "max_area"),
        (lambda: TinyRecall(coverage=0), "coverage"),
        (lambda: TinyRecall(coverage=1.5), "coverage"),
        (lambda: OccludedRecall(min_occlusion=-0.1), "min_occlusion"),
    ],
)
def test_rejects_bad_arguments(factory: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()  # type: ignore[operator]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu() -> None:
    pred, target, instances = _small_object_scene()
    for make in (lambda: SmallObjectIoU(3, max_area=10), TinyRecall, OccludedRecall):
        on_cpu, on_gpu = make(), make()
        on_cpu.update(pred, target, instances)
        on_gpu.update(pred.cuda(), target.cuda(), instances)  # instances follow pred to the GPU
        for name in on_cpu.state_names:
            assert getattr(on_gpu, name).is_cuda
            assert torch.equal(getattr(on_gpu, name).cpu(), getattr(on_cpu, name))
