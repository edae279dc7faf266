"""SegMetrics: cross-checked against torchmetrics, hand-computed cases, and confusion-matrix properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassJaccardIndex

from rgbxseg.metrics import SegMetrics

IGNORE = 255
K = 7


def _random_batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Target uses classes {0, 1, 2, 3, 5} plus ignore, prediction {0, 1, 2, 3, 4}.

    So class 4 is only predicted, class 5 only in the target, class 6 in neither.
    """
    shape = (3, 17, 23)
    target = torch.tensor([0, 1, 2, 3, 5])[torch.randint(0, 5, shape, generator=generator)]
    target[torch.rand(shape, generator=generator) < 0.1] = IGNORE
    pred = torch.randint(0, 5, shape, generator=generator)
    return pred, target


def _defined(values: list[float]) -> list[int]:
    return [c for c, v in enumerate(values) if not math.isnan(v)]


def test_matches_torchmetrics_per_class_and_macro() -> None:
    generator = torch.Generator().manual_seed(0)
    ours = SegMetrics(K, ignore_index=IGNORE)
    tm = {
        "IoU": MulticlassJaccardIndex(K, average=None, ignore_index=IGNORE),
        "Acc": MulticlassAccuracy(K, average=None, ignore_index=IGNORE),
        "F1": MulticlassF1Score(K, average=None, ignore_index=IGNORE),
        "mIoU": MulticlassJaccardIndex(K, average="macro", ignore_index=IGNORE),
        "mF1": MulticlassF1Score(K, average="macro", ignore_index=IGNORE),
        "mAcc_tm": MulticlassAccuracy(K, average="macro", ignore_index=IGNORE),
        "aAcc": MulticlassAccuracy(K, average="micro", ignore_index=IGNORE),
    }
    for _ in range(2):  # two updates: the accumulation is checked too
        pred, target = _random_batch(generator)
        ours.update(pred, target)
        for metric in tm.values():
            metric.update(pred, target)
    result = ours.compute()
    reference = {name: 100 * metric.compute().double() for name, metric in tm.items()}

    # NaN exactly where the ratio is undefined: class 6 is nowhere, class 4 is never a target.
    assert _defined(result["IoU"]) == [0, 1, 2, 3, 4, 5]
    assert _defined(result["F1"]) == [0, 1, 2, 3, 4, 5]
    assert _defined(result["Acc"]) == [0, 1, 2, 3, 5]
    assert result["IoU"][4] == 0.0 and result["F1"][4] == 0.0 and result["IoU"][5] == 0.0
    for key in ("IoU", "Acc", "F1"):
        classes = _defined(result[key])
        # torchmetrics returns 0 for an undefined class; compare the classes defined in ours only.
        np.testing.assert_allclose(
            np.asarray(result[key])[classes], reference[key].numpy()[classes], rtol=0, atol=1e-6
        )
        mean = float(np.nanmean(np.asarray(result[key])))
        assert result["m" + key] == pytest.approx(mean, abs=1e-9)
        assert result["m" + key] == pytest.approx(float(reference[key][classes].mean()), abs=1e-6)
    # torchmetrics' macro IoU and F1 also leave out classes with TP + FP + FN = 0 only.
    assert result["mIoU"] == pytest.approx(float(reference["mIoU"]), abs=1e-5)
    assert result["mF1"] == pytest.approx(float(reference["mF1"]), abs=1e-5)
    # Its macro accuracy counts the prediction-only class 4 as recall 0; ours leaves it out (undefined).
    acc_with_zero = np.asarray(result["Acc"])[[0, 1, 2, 3, 4, 5]]
    acc_with_zero[4] = 0.0
    assert float(reference["mAcc_tm"]) == pytest.approx(float(acc_with_zero.mean()), abs=1e-5)
    assert result["mAcc"] > float(reference["mAcc_tm"])
    assert result["aAcc"] == pytest.approx(float(reference["aAcc"]), abs=1e-5)


def test_hand_computed_two_by_three() -> None:
    # Non-ignored pixels (target -> pred): 0->0, 1->1, 1->2, 1->1, 2->0; (1, 0) is ignored.
    pred = torch.tensor([[0, 1, 2], [1, 1, 0]])
    target = torch.tensor([[0, 1, 1], [IGNORE, 1, 2]])
    metric = SegMetrics(4)
    metric.update(pred, target)
    result = metric.compute()
    expected_confusion = torch.tensor([[1, 0, 0, 0], [0, 2, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert torch.equal(result["confusion"], expected_confusion)
    # class 0: TP 1, FP 1, FN 0; class 1: TP 2, FP 0, FN 1; class 2: TP 0, FP 1, FN 1; class 3: nowhere.
    np.testing.assert_allclose(result["IoU"][:3], [50.0, 200 / 3, 0.0])
    np.testing.assert_allclose(result["Acc"][:3], [100.0, 200 / 3, 0.0])
    np.testing.assert_allclose(result["F1"][:3], [200 / 3, 80.0, 0.0])
    assert math.isnan(result["IoU"][3]) and math.isnan(result["Acc"][3]) and math.isnan(result["F1"][3])
    assert result["mIoU"] == pytest.approx((50 + 200 / 3 + 0) / 3)
    assert result["mAcc"] == pytest.approx((100 + 200 / 3 + 0) / 3)
    assert result["mF1"] == pytest.approx((200 / 3 + 80 + 0) / 3)
    assert result["aAcc"] == pytest.approx(60.0)


def test_class_only_in_prediction_counts_zero_iou_but_no_accuracy() -> None:
    metric = SegMetrics(3)
    metric.update(torch.tensor([[0, 0, 0, 1]]), torch.tensor([[0, 0, 0, 0]]))
    result = metric.compute()
    # class 0: TP 3, FN 1 -> IoU 75, Acc 75, F1 6/7; class 1: FP 1 only; class 2: nowhere.
    assert result["IoU"][:2] == pytest.approx([75.0, 0.0])
    assert result["F1"][:2] == pytest.approx([600 / 7, 0.0])
    assert result["Acc"][0] == pytest.approx(75.0) and math.isnan(result["Acc"][1])
    assert all(math.isnan(result[key][2]) for key in ("IoU", "Acc", "F1"))
    assert result["mIoU"] == pytest.approx(37.5)  # (75 + 0) / 2: class 1 counts, class 2 does not
    assert result["mAcc"] == pytest.approx(75.0)
    assert result["mF1"] == pytest.approx(300 / 7)


def test_unbatched_equals_batched_and_reset() -> None:
    generator = torch.Generator().manual_seed(1)
    pred, target = _random_batch(generator)
    batched, single = SegMetrics(K), SegMetrics(K)
    batched.update(pred[:1], target[:1])
    single.update(pred[0], target[0])
    assert torch.equal(batched.confusion, single.confusion)
    single.reset()
    assert int(single.confusion.sum()) == 0 and single.device is None
    result = single.compute()
    assert math.isnan(result["mIoU"]) and math.isnan(result["aAcc"]) and math.isnan(result["mF1"])


def test_mixed_integer_dtypes() -> None:
    pred = torch.tensor([[0, 1], [1, 2]], dtype=torch.uint8)
    target = torch.tensor([[0, 1], [IGNORE, 2]], dtype=torch.uint8)
    metric = SegMetrics(3)
    metric.update(pred, target.int())
    assert metric.compute()["aAcc"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), "same shape"),
        (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), "integer tensor"),
        (torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.long), "integer tensor"),
        (torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), "H×W or N×H×W"),
        (
            torch.full((2, 3), 3),
            torch.zeros(2, 3, dtype=torch.long),
            r"predicted class ids must be in \[0, 3\), got \[3\]",
        ),
        (torch.full((2, 3), -1), torch.zeros(2, 3, dtype=torch.long), "predicted class ids"),
        (torch.zeros(2, 3, dtype=torch.long), torch.full((2, 3), 7), r"target class ids .* got \[7\]"),
    ],
)
def test_rejects_bad_inputs(pred: torch.Tensor, target: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegMetrics(3).update(pred, target)


def test_prediction_under_ignore_may_be_anything_valid() -> None:
    metric = SegMetrics(2)
    metric.update(torch.tensor([[1, 0]]), torch.tensor([[IGNORE, 0]]))
    assert int(metric.confusion.sum()) == 1


@pytest.mark.parametrize("num_classes", [0, -3, 2.0, True])
def test_rejects_bad_num_classes(num_classes: object) -> None:
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        SegMetrics(num_classes)  # type: ignore[arg-type]


@st.composite
def _label_pairs(draw: st.DrawFn) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    num_classes = draw(st.integers(1, 5))
    height, width = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    maps = []
    for images in (draw(st.integers(1, 3)), draw(st.integers(1, 3))):
        shape = (images, height, width)
        pred = draw(arrays(np.int64, shape, elements=st.integers(0, num_classes - 1)))
        target = draw(arrays(np.int64, shape, elements=st.sampled_from([*range(num_classes), IGNORE])))
        maps += [pred, target]
    return num_classes, *maps


@settings(max_examples=60, deadline=None)
@given(_label_pairs())
def test_confusion_matrix_properties(case: tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    num_classes, pred_a, target_a, pred_b, target_b = case
    first, second, together = SegMetrics(num_classes), SegMetrics(num_classes), SegMetrics(num_classes)
    first.update(torch.from_numpy(pred_a), torch.from_numpy(target_a))
    second.update(torch.from_numpy(pred_b), torch.from_numpy(target_b))
    together.update(torch.from_numpy(pred_a), torch.from_numpy(target_a))
    together.update(torch.from_numpy(pred_b), torch.from_numpy(target_b))
    pred, target = np.concatenate([pred_a, pred_b]), np.concatenate([target_a, target_b])
    concatenated = SegMetrics(num_classes)
    concatenated.update(torch.from_numpy(pred), torch.from_numpy(target))

    confusion = concatenated.confusion.numpy()
    valid = target != IGNORE
    assert confusion.sum() == valid.sum()
    np.testing.assert_array_equal(confusion.sum(1), np.bincount(target[valid], minlength=num_classes))
    np.testing.assert_array_equal(confusion.sum(0), np.bincount(pred[valid], minlength=num_classes))
    assert torch.equal(together.confusion, concatenated.confusion)
    # What a DDP all_reduce of the public state does: summing the shards' matrices.
    assert torch.equal(first.confusion + second.confusion, concatenated.confusion)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_state_follows_the_first_update_device() -> None:
    generator = torch.Generator().manual_seed(2)
    pred, target = _random_batch(generator)
    on_gpu, on_cpu = SegMetrics(K), SegMetrics(K)
    on_gpu.update(pred.cuda(), target.cuda())
    on_cpu.update(pred, target)
    assert on_gpu.confusion.is_cuda
    assert torch.equal(on_gpu.confusion.cpu(), on_cpu.confusion)
    with pytest.raises(ValueError, match="device of the first update"):
        on_gpu.update(pred, target)
