"""DAMCSeg losses: hand-made maps with known values, zero where nothing applies, gradients, weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from rgbxseg.data.sample import Instances
from rgbxseg.losses import (
    SegLossWeights,
    alignment_loss,
    boundary_aware_loss,
    boundary_band,
    cross_entropy,
    dice_loss,
    dsjl,
    occluded_region_loss,
    segmentation_loss,
    tiny_target_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")

MARGIN = 50.0  # logits this far apart give a softmax of exactly 0/1 in float32


def confident(label: torch.Tensor, classes: int) -> torch.Tensor:
    """B×K×H×W logits that predict ``label`` (ignored pixels: class 0) with CE ~ 0."""
    target = torch.where(label < classes, label, 0)
    return torch.nn.functional.one_hot(target, classes).permute(0, 3, 1, 2).float() * MARGIN


def instances(visible: torch.Tensor, occluded: torch.Tensor | None = None, cls: int = 1) -> Instances:
    occluded = torch.zeros_like(visible) if occluded is None else occluded
    n = len(visible)
    return Instances(torch.zeros(n, 4), torch.full((n,), cls), visible, occluded)


def split_label(h: int = 8, w: int = 12, at: int = 6) -> torch.Tensor:
    label = torch.zeros(1, h, w, dtype=torch.long)
    label[..., at:] = 1
    return label


def test_boundary_band_is_width_on_each_side() -> None:
    band = boundary_band(split_label(), width=2)
    expected = torch.zeros(1, 8, 12, dtype=torch.bool)
    expected[..., 4:8] = True
    assert torch.equal(band, expected)


def test_boundary_band_ignores_ignored_pixels() -> None:
    label = torch.zeros(1, 8, 8, dtype=torch.long)
    label[..., 4:] = 255  # a class next to ignored pixels is no boundary
    assert not boundary_band(label, width=1).any()
    with pytest.raises(ValueError, match="width"):
        boundary_band(label, width=0)


def test_cross_entropy_values_and_all_ignored() -> None:
    label = split_label()
    assert cross_entropy(confident(label, 3), label) < 1e-6
    uniform = torch.zeros(1, 3, 8, 12)
    assert cross_entropy(uniform, label).item() == pytest.approx(math.log(3), rel=1e-6)
    logits = torch.randn(1, 3, 8, 12, requires_grad=True)
    loss = cross_entropy(logits, torch.full((1, 8, 12), 255))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None
    with pytest.raises(ValueError, match="differ"):
        cross_entropy(uniform, torch.zeros(1, 8, 11, dtype=torch.long))


def test_boundary_loss_only_sees_the_band() -> None:
    label = split_label()
    logits = confident(label, 2)
    logits[0, :, :, 0] = logits[0, :, :, 0].flip(0)  # wrong far from the boundary (column 0)
    assert cross_entropy(logits, label) > 1.0
    assert boundary_aware_loss(logits, label, width=2) < 1e-6
    logits[0, :, :, 5] = logits[0, :, :, 5].flip(0)  # wrong next to the boundary
    assert boundary_aware_loss(logits, label, width=2).item() == pytest.approx(MARGIN / 4, rel=1e-4)
    flat = torch.zeros(1, 8, 12, dtype=torch.long)
    assert boundary_aware_loss(torch.randn(1, 2, 8, 12), flat).item() == 0.0


def test_dice_punishes_false_positive_classes_and_skips_ignored() -> None:
    label = torch.zeros(1, 1, 4, dtype=torch.long)
    assert dice_loss(confident(label, 3), label) < 1e-6
    prediction = torch.tensor([[[0, 0, 1, 1]]])
    logits = confident(prediction, 3)
    # class 0: 2·2 / (2 + 4) = 2/3; class 1 (predicted, absent from the label): 0; class 2 left out
    assert dice_loss(logits, label).item() == pytest.approx(1 - 1 / 3, rel=1e-5)
    ignored = torch.tensor([[[0, 0, 255, 255]]])
    assert dice_loss(logits, ignored) < 1e-6
    with pytest.raises(ValueError, match="label ids"):
        dice_loss(logits, torch.full((1, 1, 4), 3))


def test_tiny_target_loss_weighs_each_tiny_instance_equally() -> None:
    label = torch.zeros(1, 6, 6, dtype=torch.long)
    label[0, 0, 0] = 1  # 1-pixel instance
    label[0, 3:6, 3:6] = 1  # 9-pixel instance
    masks = torch.stack([label[0] == 1, label[0] == 1])
    masks[0, 3:] = False
    masks[1, :3] = False
    logits = confident(label, 2)
    logits[0, :, 0, 0] = 0.0  # CE log 2 on the single pixel
    targets = [instances(masks)]
    assert tiny_target_loss(logits, label, targets, max_area=10).item() == pytest.approx(math.log(2) / 2, rel=1e-5)
    # with max_area 5 only the 1-pixel instance is tiny
    assert tiny_target_loss(logits, label, targets, max_area=5).item() == pytest.approx(math.log(2), rel=1e-5)
    logits[0, :, 0, 0] = confident(label, 2)[0, :, 0, 0]
    logits[0, :, 5, 0] = 0.0  # an error outside every instance
    assert tiny_target_loss(logits, label, targets, max_area=10) < 1e-6


def test_tiny_and_occluded_are_zero_without_instances() -> None:
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    label = torch.zeros(2, 8, 8, dtype=torch.long)
    empty = instances(torch.zeros(0, 8, 8, dtype=torch.bool))
    for loss in (tiny_target_loss(logits, label, [None, empty]), occluded_region_loss(logits, label, [None, empty])):
        assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match="instance entries"):
        tiny_target_loss(logits, label, [None])
    with pytest.raises(ValueError, match="instance masks"):
        tiny_target_loss(logits, label, [instances(torch.ones(1, 4, 4, dtype=torch.bool)), None])


def occluded_row() -> tuple[torch.Tensor, list[Instances]]:
    """One row: instance visible on columns 0-5 (class 0), its occluder (class 1) on columns 6-9."""
    label = torch.zeros(1, 1, 10, dtype=torch.long)
    label[..., 6:] = 1
    visible = label == 0
    return label, [instances(visible, ~visible)]


@pytest.mark.parametrize(("column", "weight"), [(0, 1), (4, 1), (5, 2), (6, 1), (8, 0)])
def test_occluded_loss_weights_the_interface(column: int, weight: int) -> None:
    label, targets = occluded_row()
    logits = confident(label, 2)
    logits[0, :, 0, column] = 0.0  # CE log 2 on one pixel
    # width 1: weights 1 on visible columns 0-4, 2 on column 5, 1 on occluder column 6: total 5 + 2 + 1
    expected = weight * math.log(2) / 8
    assert occluded_region_loss(logits, label, targets, width=1).item() == pytest.approx(expected, abs=1e-6)


def test_occluded_loss_matches_a_reference() -> None:
    torch.manual_seed(0)
    label = torch.randint(0, 3, (1, 24, 32))
    visible = torch.zeros(2, 24, 32, dtype=torch.bool)
    occluded = torch.zeros_like(visible)
    visible[0, 12:18, 1:7], occluded[0, 18:22, 1:7] = True, True  # occluded from below
    visible[1, 14:22, 3:6], occluded[1, 14:22, 6:8] = True, True  # occluded from the right
    logits = torch.randn(1, 3, 24, 32)
    ce = torch.nn.functional.cross_entropy(logits, label, reduction="none")[0].numpy()
    square = np.ones((5, 5), dtype=bool)  # width 2
    expected = []
    for v, o in zip(visible.numpy(), occluded.numpy(), strict=True):
        band = binary_dilation(v, square) & binary_dilation(o, square) & (v | o)
        weights = v + band.astype(float)
        expected.append((weights * ce).sum() / weights.sum())
    loss = occluded_region_loss(logits, label, [instances(visible, occluded)], width=2)
    assert loss.item() == pytest.approx(float(np.mean(expected)), rel=1e-5)


def test_occluded_loss_skips_unoccluded_instances() -> None:
    label, targets = occluded_row()
    unoccluded = [instances(targets[0].masks)]
    assert occluded_region_loss(torch.zeros(1, 2, 1, 10), label, unoccluded).item() == 0.0


def block_prediction() -> torch.Tensor:
    prediction = torch.zeros(2, 40, 50, dtype=torch.long)
    prediction[0, 10:20, 20:30] = 3  # mask box (20, 10, 30, 20), exclusive
    return prediction


def align(boxes: list[list[float]], batch: list[int], classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    box_tensor = torch.tensor(boxes, requires_grad=True)
    loss = alignment_loss(box_tensor, torch.tensor(batch), torch.tensor(classes), block_prediction())
    return loss, box_tensor


def test_alignment_is_zero_for_the_mask_box_and_positive_otherwise() -> None:
    loss, _ = align([[20.0, 10.0, 30.0, 20.0]], [0], [3])
    assert loss.item() == 0.0
    # grown region: columns 22..35, so the mask box is (22, 10, 30, 20); IoU 6·10 / (100 + 80 − 60)
    loss, boxes = align([[24.0, 10.0, 34.0, 20.0]], [0], [3])
    assert loss.item() == pytest.approx(0.7 - 60 / 120, rel=1e-5)
    loss.backward()
    assert boxes.grad is not None and boxes.grad.abs().sum() > 0


def test_alignment_uses_the_grown_box_only() -> None:
    # box 6×6 centred on the block: grown by 25 % to 21..29 → mask box 8×8 → IoU 36/64
    loss, _ = align([[22.0, 12.0, 28.0, 18.0]], [0], [3])
    assert loss.item() == pytest.approx(0.7 - 36 / 64, rel=1e-5)
    # no pixel of the class in the region (other image, absent class, box elsewhere): IoU 0
    block = [20.0, 10.0, 30.0, 20.0]
    for batch, cls, box in ((1, 3, block), (0, 4, block), (0, 3, [0.0, 0.0, 8.0, 8.0])):
        loss, _ = align([box], [batch], [cls])
        assert loss.item() == pytest.approx(0.7, rel=1e-6)


def reference_alignment(box: torch.Tensor, image: torch.Tensor, cls: int) -> float:
    """One detection's loss, the slow obvious way: crop the grown region, find the mask's extent."""
    centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) * 1.25 / 2
    limit = torch.tensor([image.shape[1], image.shape[0]])
    x1, y1 = torch.minimum((centre - half).floor().clamp_min(0), limit).long().tolist()
    x2, y2 = torch.minimum((centre + half).ceil().clamp_min(0), limit).long().tolist()
    ys, xs = torch.nonzero(image[y1:y2, x1:x2] == cls, as_tuple=True)
    if not len(ys):
        return 0.7
    mask_box = [x1 + xs.min().item(), y1 + ys.min().item(), x1 + xs.max().item() + 1, y1 + ys.max().item() + 1]
    width = min(box[2].item(), mask_box[2]) - max(box[0].item(), mask_box[0])
    height = min(box[3].item(), mask_box[3]) - max(box[1].item(), mask_box[1])
    inter = max(width, 0) * max(height, 0)
    area = (box[2] - box[0]).item() * (box[3] - box[1]).item()
    union = area + (mask_box[2] - mask_box[0]) * (mask_box[3] - mask_box[1])
    return max(0.7 - inter / (union - inter), 0.0)


def test_alignment_batched_matches_a_reference() -> None:
    torch.manual_seed(0)
    corner = torch.tensor([15.0, 5.0]) + torch.rand(12, 2) * 12  # around the block of class 3
    boxes = torch.cat([corner, corner + 2 + torch.rand(12, 2) * 12], 1)
    batch, classes = torch.randint(0, 2, (12,)), torch.tensor([3, 0] * 6)
    prediction = block_prediction()
    expected = [reference_alignment(boxes[i], prediction[batch[i]], int(classes[i])) for i in range(12)]
    assert 0.0 < min(expected) and max(expected) == pytest.approx(0.7)  # a mix of partial and missed boxes
    loss = alignment_loss(boxes, batch, classes, prediction)
    assert loss.item() == pytest.approx(sum(expected) / 12, rel=1e-5)


def test_alignment_without_detections_keeps_the_graph() -> None:
    boxes = torch.zeros(0, 4, requires_grad=True)
    loss = alignment_loss(boxes, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), block_prediction())
    loss.backward()
    assert loss.item() == 0.0 and boxes.grad is not None
    index = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="N×4"):
        alignment_loss(torch.zeros(3), index, index, block_prediction())


def test_segmentation_loss_sums_weighted_terms_and_flows() -> None:
    torch.manual_seed(0)
    label = torch.randint(0, 3, (2, 16, 16))
    visible = torch.zeros(1, 16, 16, dtype=torch.bool)
    visible[0, 2:6, 2:6] = True
    occluded = torch.zeros_like(visible)
    occluded[0, 6:8, 2:6] = True
    targets = [instances(visible, occluded), None]
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    weights = SegLossWeights(ce=1.0, boundary=0.5, dice=2.0, tiny=1.5, occluded=0.25)
    total, parts = segmentation_loss(logits, label, targets, weights)
    assert set(parts) == {"ce", "boundary", "dice", "tiny", "occluded"}
    assert all(value > 0 for value in parts.values())
    expected = sum(getattr(weights, name) * value for name, value in parts.items())
    assert total.item() == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_zero_weights_skip_terms() -> None:
    label = torch.randint(0, 3, (2, 8, 8))
    logits = torch.randn(2, 3, 8, 8)
    # the instance list is malformed: only the skipped instance terms would notice
    total, parts = segmentation_loss(logits, label, [None], SegLossWeights(boundary=0, dice=0, tiny=0, occluded=0))
    assert set(parts) == {"ce"}
    assert total.item() == pytest.approx(cross_entropy(logits, label).item(), rel=1e-6)
    with pytest.raises(ValueError, match="instance entries"):
        segmentation_loss(logits, label, [None], SegLossWeights())
    with pytest.raises(ValueError, match="'dice' must be >= 0"):
        SegLossWeights(dice=-1.0)


def test_dsjl_weights() -> None:
    det, seg, align_loss = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)
    assert dsjl(det, seg, align_loss).item() == pytest.approx(1.0 + 2.0 + 0.5 * 3.0)
    assert dsjl(det, seg, align_loss, seg_weight=2.0, align_weight=0.0).item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="scalar"):
        dsjl(det, torch.ones(2), align_loss)
