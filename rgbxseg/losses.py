"""DAMCSeg losses: the Detection-Segmentation Joint Loss (paper section III-C-3, eq. 4; SPEC 5).

``DSJL = L_det + λ1·L_seg + λ2·L_align`` with λ1 = 1.0 and λ2 = 0.5. ``L_seg`` is the sum of cross-entropy,
a boundary-aware loss, Dice, a tiny-target-focused loss (instances under 1024 visible pixels) and an
occluded-region-aware loss; ``L_align`` penalises, per matched detection, IoU(box, box of its predicted
mask) below 0.7. The paper names these terms only; every formula below is a decision of this module.

Decisions:

* All terms are computed in float32 (logits are cast), so mixed-precision training does not degrade
  the softmax. A term with no pixel (or detection) to average over is an exact zero that keeps the graph
  (``logits.sum() * 0``), never NaN.
* Boundary band: a pixel within Chebyshev distance ``width`` of two different labels (max-pool of the
  label vs. min-pool, both over ``2·width + 1`` windows). Ignored pixels neither belong to the band nor
  create a boundary. Boundary-aware loss = CE averaged over the band.
* Dice: softmax multi-class Dice ``1 − 2·Σ p·g / (Σ p + Σ g)`` per class, pooled over the whole batch,
  averaged over the classes present in the label *or* in the arg-max prediction (valid pixels only), so
  false positives of a class absent from the label are punished too.
* Tiny-target loss: the target is the semantic label (so ignored pixels stay ignored); each instance with
  ``0 < visible area < max_area`` contributes the mean CE of its visible pixels, and the loss is the mean
  over those instances — every tiny target weighs the same, the smallest are not drowned by larger ones.
* Occluded-region loss: for each instance with occluded pixels, per-pixel weight = 1 on its visible
  pixels plus 1 on the *interface band* — the pixels, visible or occluded (i.e. the occluder's, labelled
  with the occluder's class), within ``width`` of both the visible and the occluded part. Visible pixels at
  the interface count twice and the occluder's side of the edge is supervised too. Per-instance weighted
  mean CE, then the mean over instances.
* Alignment loss: the box is grown by 25 % in width and height around its centre (12.5 % each side),
  rounded outwards to whole pixels and clipped to the image; the mask box is the exclusive ``xyxy`` box of
  the predicted pixels of the detection's class inside that region; IoU is elementwise; the loss is
  ``mean(relu(threshold − IoU))`` over detections. The region and mask box carry no gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from rgbxseg.data.sample import IGNORE_INDEX, Instances

ALIGN_GROWTH = 0.25  # the alignment region: the detection box grown by 25 % in width and height


def _check_pair(logits: Tensor, label: Tensor) -> None:
    if logits.ndim != 4:
        raise ValueError(f"logits must be B×K×H×W, got shape {tuple(logits.shape)}")
    if label.ndim != 3 or label.dtype != torch.long:
        raise ValueError(f"label must be a B×H×W int64 tensor, got shape {tuple(label.shape)} {label.dtype}")
    if (logits.shape[0], *logits.shape[2:]) != tuple(label.shape):
        raise ValueError(f"logits {tuple(logits.shape)} and label {tuple(label.shape)} differ in batch or size")


def _zero(tensor: Tensor) -> Tensor:
    """An exact float32 zero attached to ``tensor``'s graph."""
    return tensor.float().sum() * 0.0


def _pixel_ce(logits: Tensor, label: Tensor, ignore_index: int) -> Tensor:
    """B×H×W cross-entropy per pixel, 0 where the label is ``ignore_index``."""
    return F.cross_entropy(logits.float(), label, ignore_index=ignore_index, reduction="none")


def _masked_mean(values: Tensor, mask: Tensor, anchor: Tensor) -> Tensor:
    count = mask.sum()
    if count == 0:
        return _zero(anchor)
    return (values * mask).sum() / count


def _max_filter(x: Tensor, width: int) -> Tensor:
    """Maximum over the (2·width + 1)² square around each pixel of an N×1×H×W map (outside counts as -inf),
    as two 1-D passes: 2(2w + 1) comparisons per pixel instead of (2w + 1)²."""
    size = 2 * width + 1
    rows = F.max_pool2d(x, (1, size), stride=1, padding=(0, width))
    return F.max_pool2d(rows, (size, 1), stride=1, padding=(width, 0))


def _dilate(mask: Tensor, width: int) -> Tensor:
    """Bool N×H×W mask grown by ``width`` pixels (square structuring element)."""
    return _max_filter(mask.float().unsqueeze(1), width).squeeze(1) > 0


def boundary_band(label: Tensor, width: int = 3, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Pixels within ``width`` of a label change.

    Args:
        label: B×H×W int64 class ids.
        width: band half-width in pixels (Chebyshev distance), >= 1.
        ignore_index: label id of ignored pixels; they are never in the band and create no boundary.

    Returns:
        B×H×W bool.
    """
    if label.ndim != 3:
        raise ValueError(f"label must be B×H×W, got shape {tuple(label.shape)}")
    if width < 1:
        raise ValueError(f"boundary width must be >= 1, got {width}")
    valid = label != ignore_index
    values, ignored = label.float().unsqueeze(1), ~valid.unsqueeze(1)
    # ignored pixels drop out of both the max (as -inf) and the min (as +inf) of their windows
    largest = _max_filter(values.masked_fill(ignored, -torch.inf), width)
    smallest = -_max_filter(-values.masked_fill(ignored, torch.inf), width)
    return (largest != smallest).squeeze(1) & valid


def cross_entropy(
    logits: Tensor, label: Tensor, ignore_index: int = IGNORE_INDEX, pixel_ce: Tensor | None = None
) -> Tensor:
    """Mean pixel cross-entropy over non-ignored pixels (0 when every pixel is ignored).

    Args:
        logits: B×K×H×W class scores.
        label: B×H×W int64 class ids.
        ignore_index: label id that counts for nothing.
        pixel_ce: the B×H×W per-pixel cross-entropy when already computed (:func:`segmentation_loss` shares one).
    """
    _check_pair(logits, label)
    ce = _pixel_ce(logits, label, ignore_index) if pixel_ce is None else pixel_ce
    return _masked_mean(ce, label != ignore_index, logits)


def boundary_aware_loss(
    logits: Tensor, label: Tensor, ignore_index: int = IGNORE_INDEX, width: int = 3, pixel_ce: Tensor | None = None
) -> Tensor:
    """Cross-entropy averaged over the :func:`boundary_band` only (0 when the band is empty).

    Args:
        logits: B×K×H×W class scores.
        label: B×H×W int64 class ids.
        ignore_index: label id that counts for nothing.
        width: band half-width in pixels.
        pixel_ce: the B×H×W per-pixel cross-entropy when already computed (:func:`segmentation_loss` shares one).
    """
    _check_pair(logits, label)
    band = boundary_band(label, width=width, ignore_index=ignore_index)
    ce = _pixel_ce(logits, label, ignore_index) if pixel_ce is None else pixel_ce
    return _masked_mean(ce, band, logits)


def dice_loss(logits: Tensor, label: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Softmax multi-class Dice loss over the classes present in the label or the prediction.

    Written here because segmentation_models_pytorch's DiceLoss zeroes the classes absent from the
    target and still averages over all K, so it neither punishes false-positive classes nor keeps one scale.

    Args:
        logits: B×K×H×W class scores.
        label: B×H×W int64 class ids (ids >= K other than ``ignore_index`` are an error).
        ignore_index: label id that counts for nothing.
    """
    _check_pair(logits, label)
    classes = logits.shape[1]
    valid = label != ignore_index
    target = label[valid]
    if target.numel() == 0:
        return _zero(logits)
    if int(target.max()) >= classes or int(target.min()) < 0:
        raise ValueError(f"label ids must lie in [0, {classes}) or be {ignore_index}")
    probs = logits.float().softmax(1)
    # class sums from the valid pixels' ids, not a B×K×H×W one-hot (hundreds of MB at training sizes)
    true_probs = probs.gather(1, torch.where(valid, label, 0).unsqueeze(1)).squeeze(1)[valid]
    intersection = probs.new_zeros(classes).index_add(0, target, true_probs)
    target_count = torch.bincount(target, minlength=classes)
    denominator = (probs * valid.unsqueeze(1)).sum((0, 2, 3)) + target_count
    present = (target_count > 0) | (torch.bincount(logits.argmax(1)[valid], minlength=classes) > 0)
    dice = 2.0 * intersection[present] / denominator[present].clamp_min(1e-6)
    return 1.0 - dice.mean()


def _check_instances(label: Tensor, instances: Sequence[Instances | None]) -> None:
    if len(instances) != label.shape[0]:
        raise ValueError(f"got {len(instances)} instance entries for a batch of {label.shape[0]}")
    for index, item in enumerate(instances):
        if item is not None and len(item) and tuple(item.masks.shape[1:]) != tuple(label.shape[1:]):
            raise ValueError(
                f"instance masks of sample {index} are {tuple(item.masks.shape[1:])}, "
                f"the label is {tuple(label.shape[1:])}"
            )


def _instance_loss_inputs(
    logits: Tensor, label: Tensor, instances: Sequence[Instances | None], ignore_index: int, pixel_ce: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Checked inputs of the per-instance losses: the B×H×W pixel CE and the non-ignored mask."""
    _check_pair(logits, label)
    _check_instances(label, instances)
    ce = _pixel_ce(logits, label, ignore_index) if pixel_ce is None else pixel_ce
    return ce, label != ignore_index


def _instance_mean(weights: Tensor, ce: Tensor, valid: Tensor) -> Tensor:
    """Per instance weighted mean of one image's CE map: weights N×H×W, ce and valid H×W → N values
    (instances whose weighted pixels are all ignored are dropped)."""
    weights = weights * valid
    total = weights.flatten(1).sum(1)
    keep = total > 0
    return (weights.flatten(1)[keep] @ ce.flatten()) / total[keep]


def tiny_target_loss(
    logits: Tensor,
    label: Tensor,
    instances: Sequence[Instances | None],
    max_area: int = 1024,
    ignore_index: int = IGNORE_INDEX,
    pixel_ce: Tensor | None = None,
) -> Tensor:
    """Cross-entropy on the visible pixels of tiny instances, each instance weighing the same.

    Args:
        logits: B×K×H×W class scores.
        label: B×H×W int64 class ids (the CE target).
        instances: one entry per image (None = no instances), masks at the label's size.
        max_area: an instance is tiny when its visible area is below this (SPEC 5: 1024 pixels).
        ignore_index: label id that counts for nothing.
        pixel_ce: the B×H×W per-pixel cross-entropy when already computed (:func:`segmentation_loss` shares one).

    Returns:
        The mean over tiny instances of their mean pixel CE (0 when there is none).
    """
    if max_area < 1:
        raise ValueError(f"max_area must be >= 1, got {max_area}")
    ce, valid = _instance_loss_inputs(logits, label, instances, ignore_index, pixel_ce)
    means: list[Tensor] = []
    for index, item in enumerate(instances):
        if item is None or not len(item):
            continue
        masks = item.masks.to(label.device)
        area = masks.flatten(1).sum(1)
        tiny = (area > 0) & (area < max_area)
        if tiny.any():
            means.append(_instance_mean(masks[tiny].float(), ce[index], valid[index]))
    values = torch.cat(means) if means else ce.new_zeros(0)
    return values.mean() if values.numel() else _zero(logits)


def _support(masks: Tensor) -> tuple[slice, slice]:
    """Rows and columns of the bounding box of every pixel of N×H×W masks (N >= 1, some pixel set)."""
    rows = torch.nonzero(masks.any(2).any(0)).flatten()
    cols = torch.nonzero(masks.any(1).any(0)).flatten()
    return slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)


def _interface_weights(visible: Tensor, occluded: Tensor, width: int) -> Tensor:
    """N×H×W weights: 1 on visible pixels, +1 within ``width`` of both the visible and occluded parts."""
    band = _dilate(visible, width) & _dilate(occluded, width) & (visible | occluded)
    return visible.float() + band.float()


def occluded_region_loss(
    logits: Tensor,
    label: Tensor,
    instances: Sequence[Instances | None],
    ignore_index: int = IGNORE_INDEX,
    width: int = 3,
    pixel_ce: Tensor | None = None,
) -> Tensor:
    """Cross-entropy on partially occluded instances, emphasising the edge between object and occluder.

    Args:
        logits: B×K×H×W class scores.
        label: B×H×W int64 class ids (the CE target; occluded pixels carry the occluder's class).
        instances: one entry per image (None = no instances), masks at the label's size.
        ignore_index: label id that counts for nothing.
        width: half-width in pixels of the band where the visible part meets the occluder.
        pixel_ce: the B×H×W per-pixel cross-entropy when already computed (:func:`segmentation_loss` shares one).

    Returns:
        The mean over occluded instances of their weighted mean pixel CE (0 when there is none).
    """
    if width < 1:
        raise ValueError(f"interface width must be >= 1, got {width}")
    ce, valid = _instance_loss_inputs(logits, label, instances, ignore_index, pixel_ce)
    means: list[Tensor] = []
    for index, item in enumerate(instances):
        if item is None or not len(item):
            continue
        visible, occluded = item.masks.to(label.device), item.occluded.to(label.device)
        partial = visible.flatten(1).any(1) & occluded.flatten(1).any(1)
        if partial.any():
            visible, occluded = visible[partial], occluded[partial]
            # every weighted pixel lies in the masks' box, and dilating there needs no pixel outside it
            rows, cols = _support(visible | occluded)
            weights = _interface_weights(visible[:, rows, cols], occluded[:, rows, cols], width)
            means.append(_instance_mean(weights, ce[index, rows, cols], valid[index, rows, cols]))
    values = torch.cat(means) if means else ce.new_zeros(0)
    return values.mean() if values.numel() else _zero(logits)


def _grown_regions(boxes: Tensor, height: int, width: int) -> Tensor:
    """N×4 integer pixel ranges ``[x1, y1, x2, y2)`` of the boxes grown by :data:`ALIGN_GROWTH`."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).clamp_min(0) * (1 + ALIGN_GROWTH) / 2
    limits = boxes.new_tensor([width, height])
    low = torch.minimum(torch.maximum((centre - half).floor(), torch.zeros_like(centre)), limits)
    high = torch.minimum(torch.maximum((centre + half).ceil(), torch.zeros_like(centre)), limits)
    return torch.cat([low, high], 1).long()


def _first_last(present: Tensor) -> tuple[Tensor, Tensor]:
    """Index of the first and one past the last True of each row of an N×L bool tensor."""
    length = present.shape[1]
    first = present.int().argmax(1)
    last = length - present.flip(1).int().argmax(1)
    return first, last


def _mask_boxes(prediction: Tensor, batch_index: Tensor, classes: Tensor, regions: Tensor) -> tuple[Tensor, Tensor]:
    """Exclusive ``xyxy`` boxes of the pixels ``== classes[n]`` of image ``batch_index[n]`` inside ``regions[n]``.

    Vectorised with summed-area rows/columns per distinct (image, class) so that thousands of matched
    locations cost no Python loop and no N×H×W tensor. Returns (N×4 float boxes, N bool found).
    """
    height, width = prediction.shape[1:]
    pairs, inverse = torch.unique(torch.stack([batch_index, classes], 1), dim=0, return_inverse=True)
    masks = prediction[pairs[:, 0]] == pairs[:, 1, None, None]  # U×H×W
    along_x = F.pad(masks.cumsum(2, dtype=torch.int32), (1, 0))  # U×H×(W+1): row sums of any column range
    along_y = F.pad(masks.cumsum(1, dtype=torch.int32), (0, 0, 1, 0))  # U×(H+1)×W: column sums of any row range
    x1, y1, x2, y2 = regions.unbind(1)
    rows_index = torch.arange(height, device=prediction.device)
    cols_index = torch.arange(width, device=prediction.device)
    u = inverse[:, None]
    rows = along_x[u, rows_index, x2[:, None]] - along_x[u, rows_index, x1[:, None]]  # N×H
    cols = along_y[u, y2[:, None], cols_index] - along_y[u, y1[:, None], cols_index]  # N×W
    rows = (rows > 0) & (rows_index >= y1[:, None]) & (rows_index < y2[:, None])
    cols = (cols > 0) & (cols_index >= x1[:, None]) & (cols_index < x2[:, None])
    top, bottom = _first_last(rows)
    left, right = _first_last(cols)
    boxes = torch.stack([left, top, right, bottom], 1).float()
    return boxes, rows.any(1)


def _elementwise_iou(first: Tensor, second: Tensor) -> Tensor:
    """IoU of row n of ``first`` with row n of ``second`` (N×4 xyxy). Written here because
    torchvision.ops.box_iou is pairwise: its N×N matrix is too big for thousands of matched locations."""
    top_left = torch.maximum(first[:, :2], second[:, :2])
    bottom_right = torch.minimum(first[:, 2:], second[:, 2:])
    intersection = (bottom_right - top_left).clamp_min(0).prod(1)
    area_first = (first[:, 2:] - first[:, :2]).clamp_min(0).prod(1)
    area_second = (second[:, 2:] - second[:, :2]).clamp_min(0).prod(1)
    return intersection / (area_first + area_second - intersection).clamp_min(1e-6)


def alignment_loss(
    boxes: Tensor, batch_index: Tensor, classes: Tensor, prediction: Tensor, threshold: float = 0.7
) -> Tensor:
    """L_align: penalise matched detections whose box disagrees with the box of their predicted mask.

    Args:
        boxes: N×4 differentiable predicted boxes, ``xyxy`` exclusive, in the prediction's pixels.
        batch_index: N int64 image of each box.
        classes: N int64 class id (dataset id, the value it has in ``prediction``) of each box.
        prediction: B×H×W int64 predicted label map (arg-max; it carries no gradient).
        threshold: IoU below which a detection is penalised (SPEC 5: 0.7).

    Returns:
        ``mean(relu(threshold − IoU(box, mask box)))``; IoU is 0 for a box with no mask pixel in its
        grown region; an exact zero attached to ``boxes`` when N = 0.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be N×4, got shape {tuple(boxes.shape)}")
    if batch_index.shape != (len(boxes),) or classes.shape != (len(boxes),):
        raise ValueError(
            f"batch_index {tuple(batch_index.shape)} and classes {tuple(classes.shape)} must both be ({len(boxes)},)"
        )
    if prediction.ndim != 3 or prediction.dtype != torch.long:
        raise ValueError(
            f"prediction must be a B×H×W int64 label map, got {tuple(prediction.shape)} {prediction.dtype}"
        )
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    if len(boxes) == 0:
        return _zero(boxes)
    if int(batch_index.min()) < 0 or int(batch_index.max()) >= prediction.shape[0]:
        raise ValueError(f"batch_index must lie in [0, {prediction.shape[0]})")
    boxes = boxes.float()
    with torch.no_grad():
        regions = _grown_regions(boxes.detach(), *prediction.shape[1:])
        mask_boxes, found = _mask_boxes(prediction, batch_index.long(), classes.long(), regions)
    iou = _elementwise_iou(boxes, mask_boxes) * found
    return F.relu(threshold - iou).mean()


@dataclass(frozen=True)
class SegLossWeights:
    """Weights of the L_seg terms (a weight of 0 skips the term's computation).

    Args:
        ce: cross-entropy.
        boundary: boundary-aware loss.
        dice: Dice loss.
        tiny: tiny-target-focused loss.
        occluded: occluded-region-aware loss.
    """

    ce: float = 1.0
    boundary: float = 1.0
    dice: float = 1.0
    tiny: float = 1.0
    occluded: float = 1.0

    def __post_init__(self) -> None:
        for item in fields(self):
            if getattr(self, item.name) < 0:
                raise ValueError(f"loss weight '{item.name}' must be >= 0, got {getattr(self, item.name)}")


def segmentation_loss(
    logits: Tensor,
    label: Tensor,
    instances: Sequence[Instances | None],
    weights: SegLossWeights,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[Tensor, dict[str, float]]:
    """L_seg: the weighted sum of the five segmentation terms.

    Args:
        logits: B×K×H×W class scores.
        label: B×H×W int64 class ids.
        instances: one entry per image (None = no instances), masks at the label's size.
        weights: per-term weights; terms weighted 0 are not computed.
        ignore_index: label id that counts for nothing.

    Returns:
        (total, parts): ``parts`` maps each computed term's name (``ce``, ``boundary``, ``dice``, ``tiny``,
        ``occluded``) to its unweighted value as a float, for logging.
    """
    _check_pair(logits, label)
    ce = _pixel_ce(logits, label, ignore_index)  # one log-softmax shared by the four CE-based terms
    terms = {
        "ce": lambda: cross_entropy(logits, label, ignore_index=ignore_index, pixel_ce=ce),
        "boundary": lambda: boundary_aware_loss(logits, label, ignore_index=ignore_index, pixel_ce=ce),
        "dice": lambda: dice_loss(logits, label, ignore_index=ignore_index),
        "tiny": lambda: tiny_target_loss(logits, label, instances, ignore_index=ignore_index, pixel_ce=ce),
        "occluded": lambda: occluded_region_loss(logits, label, instances, ignore_index=ignore_index, pixel_ce=ce),
    }
    total = _zero(logits)
    parts: dict[str, float] = {}
    for name, compute in terms.items():
        weight = getattr(weights, name)
        if weight == 0:
            continue
        value = compute()
        parts[name] = float(value.detach())
        total = total + weight * value
    return total, parts


def dsjl(det: Tensor, seg: Tensor, align: Tensor, seg_weight: float = 1.0, align_weight: float = 0.5) -> Tensor:
    """DSJL = L_det + λ1·L_seg + λ2·L_align (paper eq. 4; SPEC 5: λ1 = 1.0, λ2 = 0.5).

    Args:
        det: scalar detection loss.
        seg: scalar segmentation loss.
        align: scalar alignment loss.
        seg_weight: λ1.
        align_weight: λ2.
    """
    for name, value in (("det", det), ("seg", seg), ("align", align)):
        if value.ndim != 0:
            raise ValueError(f"DSJL expects scalar losses, '{name}' has shape {tuple(value.shape)}")
    return det + seg_weight * seg + align_weight * align
