"""DAMCSeg's detection head (paper section III-C 2, "Detection head"; SPEC 5): an EfficientDet-style
BiFPN neck (Tan, Pang, Le, CVPR 2020) feeding an anchor-free, FCOS-style head (Tian et al., ICCV 2019),
trained with focal loss + GIoU loss (``L_det`` of eq. 4) and decoded with score threshold 0.3 and NMS
IoU 0.5 (section IV-A 3, "Model configuration").

Coordinates: images are B×3×H×W; location (i, j) of a level of stride s sits at pixel
((j + 0.5)·s, (i + 0.5)·s); predicted and target boxes are ``xyxy`` in pixels with an *exclusive*
right/bottom edge (x2 = last column + 1). :class:`~rgbxseg.data.sample.Instances` boxes are inclusive, so
their x2/y2 get +1 here.

The paper names EfficientDet, BiFPN, focal and GIoU losses and the two thresholds; the rest is open:

* Decision: anchor-free FCOS-style head (SPEC 5 allows "an anchor-free equivalent"): each location
  predicts C class logits and its distances (l, t, r, b) to the box sides; no centre-ness branch (centre
  sampling already keeps the positives near the box centre).
* Decision: GroupNorm instead of EfficientDet's BatchNorm in the neck and the head (EfficientDet trains
  with batch 128 and synchronised BN; this project trains with a few images per step), with
  gcd(32, channels) groups.
* Decision: BiFPN inputs get a 1×1 conv + GN to ``channels``; each fusion node is SiLU → depthwise 3×3 →
  pointwise 1×1 → GN (EfficientDet's order) after the fast normalised fusion of eq. 2,
  ``O = Σ relu(w_i)·I_i / (ε + Σ relu(w_j))`` with w initialised to 1 and ε = 1e-4. Up-sampling is
  nearest, down-sampling adaptive max pooling, both to the target level's exact size, so odd sizes and
  levels of equal size (a dilated last stage) work.
* Decision: ``ltrb = softplus(scale_l · x) · stride_l`` with a learnable scale per level (init 1): positive,
  about 0.7 stride at initialisation, a gradient everywhere and linear growth. FCOS's ``exp`` let a large
  optimiser step blow a box up to thousands of pixels, where the GIoU gradient vanishes; FCOS-imprv's
  ``relu`` leaves outputs that turn negative without a gradient (both seen on the two-box test).
* Decision: level rule — a ground-truth box goes to the finest level whose stride s satisfies
  ``max(w, h) ≤ 8·s`` (it spans at most 8 locations a side there), the coarsest level when none does.
* Decision: positives are the locations of that level strictly inside the box and within 1.5 strides of
  its centre on both axes; a box catching none gets the location nearest its centre (the cell holding
  it); a location claimed by several boxes takes the one of smallest area.
* Decision: the focal loss (α 0.25, γ 2) runs over every location and class; the GIoU loss over the
  positives; both are summed over the batch and divided by max(1, number of positive locations).
* Decision: decoding keeps the 1000 best candidates per level above the score threshold before NMS
  (FCOS's pre-NMS top-k) and drops boxes under one pixel a side after clipping to the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import (
    batched_nms,
    clip_boxes_to_image,
    generalized_box_iou_loss,
    remove_small_boxes,
    sigmoid_focal_loss,
)

from rgbxseg.data.sample import Instances

FUSION_EPS = 1e-4  # ε of the fast normalised fusion (Tan et al. 2020, eq. 2)
LEVEL_SIZE_FACTOR = 8  # a box goes to the finest level with max(w, h) <= 8 * stride
CENTRE_RADIUS = 1.5  # positives lie within 1.5 strides of the box centre
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
PRE_NMS_TOP_K = 1000  # candidates per level kept before NMS
MIN_BOX_SIZE = 1.0  # pixels; smaller boxes after clipping are dropped


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


# ---------------------------------------------------------------------------------------------- BiFPN
# Written by hand: torchvision has only the plain FPN (FeaturePyramidNetwork), and the EfficientDet
# packages are not dependencies of this project.


class _FusionNode(nn.Module):
    """Fast normalised fusion (eq. 2) of same-shaped maps, then SiLU → depthwise-separable 3×3 → GN."""

    def __init__(self, channels: int, inputs: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.ones(inputs))
        self.conv = nn.Sequential(
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            _group_norm(channels),
        )

    def forward(self, maps: Sequence[Tensor]) -> Tensor:
        weights = F.relu(self.weights)
        fused = sum(w * m for w, m in zip(weights, maps, strict=True)) / (weights.sum() + FUSION_EPS)
        return self.conv(fused)


def _upsample(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


def _downsample(x: Tensor, like: Tensor) -> Tensor:
    return F.adaptive_max_pool2d(x, like.shape[-2:])


class _BiFPNLayer(nn.Module):
    """One BiFPN repeat: a top-down path, then a bottom-up path with the lateral skip (Tan et al. fig. 2d)."""

    def __init__(self, channels: int, levels: int) -> None:
        super().__init__()
        self.top_down = nn.ModuleList(_FusionNode(channels, 2) for _ in range(levels - 1))  # levels 0 .. L-2
        self.bottom_up = nn.ModuleList(  # levels 1 .. L-1; the coarsest has no top-down node to skip from
            _FusionNode(channels, 3 if level < levels - 1 else 2) for level in range(1, levels)
        )

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        levels = len(features)
        top_down = [features[-1]]
        for level in range(levels - 2, -1, -1):
            previous = top_down[0]
            top_down.insert(0, self.top_down[level]([features[level], _upsample(previous, features[level])]))
        outputs = [top_down[0]]
        for level in range(1, levels):
            below = _downsample(outputs[-1], features[level])
            inputs = [features[level], top_down[level], below] if level < levels - 1 else [features[level], below]
            outputs.append(self.bottom_up[level - 1](inputs))
        return outputs


class BiFPN(nn.Module):
    """EfficientDet's bidirectional feature pyramid with fast normalised fusion (Tan et al. 2020, eq. 2).

    Args:
        in_channels: channels of each input level, highest resolution first (at least two levels).
        channels: width of every output level.
        repeats: number of stacked BiFPN layers.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 64, repeats: int = 2) -> None:
        super().__init__()
        if len(in_channels) < 2 or any(c < 1 for c in in_channels):
            raise ValueError(
                f"BiFPN needs at least two levels of positive channel counts, got in_channels={tuple(in_channels)}"
            )
        if channels < 1 or repeats < 1:
            raise ValueError(f"BiFPN channels and repeats must be >= 1, got channels={channels}, repeats={repeats}")
        self.in_channels = tuple(in_channels)
        self.channels = channels
        self.lateral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, channels, 1, bias=False), _group_norm(channels)) for c in self.in_channels
        )
        self.layers = nn.ModuleList(_BiFPNLayer(channels, len(self.in_channels)) for _ in range(repeats))

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Fuse the pyramid.

        Args:
            features: one B×C_i×h_i×w_i map per level, highest resolution first; each level no larger
                than the previous (normally half its size, rounded either way).

        Returns:
            One B×channels×h_i×w_i map per level, same sizes as the inputs.
        """
        self._check(features)
        maps = [lateral(x) for lateral, x in zip(self.lateral, features, strict=True)]
        for layer in self.layers:
            maps = layer(maps)
        return maps

    def _check(self, features: Sequence[Tensor]) -> None:
        if len(features) != len(self.in_channels):
            raise ValueError(f"BiFPN expects {len(self.in_channels)} feature maps, got {len(features)}")
        for level, (x, c) in enumerate(zip(features, self.in_channels, strict=True)):
            if x.ndim != 4 or x.shape[1] != c:
                raise ValueError(f"BiFPN level {level}: expected B×{c}×h×w features, got shape {tuple(x.shape)}")
        for level in range(1, len(features)):
            (h0, w0), (h1, w1) = features[level - 1].shape[-2:], features[level].shape[-2:]
            if h1 > h0 or w1 > w0:
                raise ValueError(
                    f"BiFPN features must go from high to low resolution; level {level} is {h1}×{w1}, "
                    f"larger than level {level - 1} ({h0}×{w0})"
                )


# ---------------------------------------------------------------------------------------------- head


@dataclass
class DetectionOutput:
    """Raw per-level head outputs.

    Attributes:
        cls_logits: per level B×C×h×w class logits (C = number of thing classes).
        box_ltrb: per level B×4×h×w distances (pixels, >= 0) from each location to the box sides.
        strides: the stride of each level in pixels.
    """

    cls_logits: list[Tensor]
    box_ltrb: list[Tensor]
    strides: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.cls_logits) == len(self.box_ltrb) == len(self.strides) > 0):
            raise ValueError(
                f"DetectionOutput needs as many cls_logits ({len(self.cls_logits)}), box_ltrb ({len(self.box_ltrb)}) "
                f"and strides ({len(self.strides)}) levels, at least one"
            )
        for level, (logits, ltrb) in enumerate(zip(self.cls_logits, self.box_ltrb, strict=True)):
            if logits.ndim != 4 or ltrb.ndim != 4 or ltrb.shape[1] != 4:
                raise ValueError(
                    f"level {level}: expected B×C×h×w logits and B×4×h×w ltrb, "
                    f"got {tuple(logits.shape)} and {tuple(ltrb.shape)}"
                )
            if logits.shape[0] != ltrb.shape[0] or logits.shape[-2:] != ltrb.shape[-2:]:
                raise ValueError(f"level {level}: logits {tuple(logits.shape)} and ltrb {tuple(ltrb.shape)} disagree")
            if logits.shape[:2] != self.cls_logits[0].shape[:2]:
                raise ValueError(f"level {level}: batch/classes {tuple(logits.shape[:2])} differ from level 0's")

    @property
    def batch_size(self) -> int:
        return int(self.cls_logits[0].shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.cls_logits[0].shape[1])


@dataclass
class Detections:
    """The detections of one image.

    Attributes:
        boxes: N×4 ``xyxy`` pixels, exclusive right/bottom (x2 = last column + 1), clipped to the image.
        scores: N sigmoid class scores, descending.
        classes: N int64 dataset class ids (``thing_classes[i]``).
    """

    boxes: Tensor
    scores: Tensor
    classes: Tensor


def _tower(channels: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), _group_norm(channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class DetectionHead(nn.Module):
    """Anchor-free class and box nets shared by every level (FCOS-style, GroupNorm towers).

    Args:
        channels: width of the input features (the BiFPN's ``channels``).
        num_classes: number of thing classes (class logits per location).
        strides: stride in pixels of each input level, non-decreasing.
        convs: 3×3 conv + GN + ReLU blocks in each tower.
        prior_prob: initial foreground probability of the class logits (focal-loss bias init).
    """

    def __init__(
        self, channels: int, num_classes: int, strides: Sequence[int], convs: int = 2, prior_prob: float = 0.01
    ) -> None:
        super().__init__()
        if channels < 1 or num_classes < 1 or convs < 0:
            raise ValueError(
                f"DetectionHead needs channels >= 1, num_classes >= 1 and convs >= 0, "
                f"got channels={channels}, num_classes={num_classes}, convs={convs}"
            )
        if not strides or any(s < 1 for s in strides) or any(b < a for a, b in zip(strides, strides[1:])):
            raise ValueError(f"DetectionHead strides must be positive and non-decreasing, got {tuple(strides)}")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")
        self.channels = channels
        self.num_classes = num_classes
        self.strides = tuple(int(s) for s in strides)
        self.cls_tower = _tower(channels, convs)
        self.box_tower = _tower(channels, convs)
        self.cls_out = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box_out = nn.Conv2d(channels, 4, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(self.strides)))
        self._init_weights(prior_prob)

    def _init_weights(self, prior_prob: float) -> None:
        """FCOS initialisation: N(0, 0.01) convs, zero biases, class bias = −log((1 − p) / p)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)
        nn.init.constant_(self.cls_out.bias, -math.log((1.0 - prior_prob) / prior_prob))

    def forward(self, features: Sequence[Tensor]) -> DetectionOutput:
        """Predict class logits and box distances at every location of every level.

        Args:
            features: one B×channels×h×w map per stride, highest resolution first.

        Returns:
            The per-level :class:`DetectionOutput`.
        """
        if len(features) != len(self.strides):
            raise ValueError(
                f"DetectionHead expects {len(self.strides)} levels (strides {self.strides}), got {len(features)}"
            )
        cls_logits, box_ltrb = [], []
        for level, (x, stride) in enumerate(zip(features, self.strides, strict=True)):
            if x.ndim != 4 or x.shape[1] != self.channels:
                raise ValueError(f"DetectionHead level {level}: expected B×{self.channels}×h×w, got {tuple(x.shape)}")
            cls_logits.append(self.cls_out(self.cls_tower(x)))
            box_ltrb.append(F.softplus(self.scales[level] * self.box_out(self.box_tower(x))) * stride)
        return DetectionOutput(cls_logits=cls_logits, box_ltrb=box_ltrb, strides=self.strides)


# ---------------------------------------------------------------------------------------------- assignment
# Written by hand: torchvision's FCOS couples its matcher to AnchorGenerator/ImageList and to per-level
# regression ranges; the one-level-per-box rule above is not available there.


def _locations(output: DetectionOutput, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Centres (N×2, x y), stride (N) and level index (N) of every location, levels concatenated."""
    centres, strides, levels = [], [], []
    for level, (logits, stride) in enumerate(zip(output.cls_logits, output.strides, strict=True)):
        h, w = logits.shape[-2:]
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        centres.append(torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1))
        strides.append(torch.full((h * w,), float(stride), device=device))
        levels.append(torch.full((h * w,), level, device=device, dtype=torch.long))
    return torch.cat(centres), torch.cat(strides), torch.cat(levels)


def _flatten(maps: Sequence[Tensor]) -> Tensor:
    """Per-level B×K×h×w maps → B×N×K, levels concatenated in the order of :func:`_locations`."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)


def _thing_targets(
    target: Instances | None, thing_classes: Tensor, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Exclusive boxes (M×4) and class indices into ``thing_classes`` (M) of the thing instances."""
    if target is None or len(target) == 0:
        return torch.zeros(0, 4, device=device), torch.zeros(0, dtype=torch.long, device=device)
    classes = target.classes.to(device)
    matches = classes[:, None] == thing_classes[None, :]
    keep = matches.any(1)
    boxes = target.boxes.to(device=device, dtype=torch.float32)[keep]
    boxes = boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])  # inclusive → exclusive right/bottom edge
    return boxes, matches[keep].int().argmax(1)


def _assign_image(
    boxes: Tensor, classes: Tensor, output: DetectionOutput, centres: Tensor, strides: Tensor, levels: Tensor
) -> tuple[Tensor, Tensor]:
    """Class index of the box each location is assigned to (N, −1 for background) and that box (N×4)."""
    n = centres.shape[0]
    if boxes.shape[0] == 0:
        return torch.full((n,), -1, dtype=torch.long, device=centres.device), centres.new_zeros(n, 4)
    level_strides = centres.new_tensor(output.strides)
    size = (boxes[:, 2:] - boxes[:, :2]).amax(1)
    fits = size[:, None] <= LEVEL_SIZE_FACTOR * level_strides[None, :]
    box_level = torch.where(fits.any(1), fits.int().argmax(1), len(output.strides) - 1)

    x, y = centres[None, :, 0], centres[None, :, 1]
    inside = (x > boxes[:, 0:1]) & (x < boxes[:, 2:3]) & (y > boxes[:, 1:2]) & (y < boxes[:, 3:4])
    box_centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    radius = CENTRE_RADIUS * strides[None, :]
    near = ((x - box_centre[:, 0:1]).abs() < radius) & ((y - box_centre[:, 1:2]).abs() < radius)
    candidate = inside & near & (levels[None, :] == box_level[:, None])

    empty = ~candidate.any(1)
    if empty.any():  # a tiny box catching no location takes the cell holding its centre
        candidate[empty.nonzero()[:, 0], _cell_index(box_centre[empty], box_level[empty], output)] = True

    area = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    cost = torch.where(candidate, area[:, None], torch.full_like(candidate, math.inf, dtype=area.dtype))
    best_cost, best = cost.min(0)
    return torch.where(torch.isfinite(best_cost), classes[best], -1), boxes[best]


def _cell_index(points: Tensor, point_levels: Tensor, output: DetectionOutput) -> Tensor:
    """Flat location index (levels concatenated) of the cell holding each point on its level."""
    sizes = [tuple(logits.shape[-2:]) for logits in output.cls_logits]
    offsets = torch.tensor([0] + [h * w for h, w in sizes[:-1]], device=points.device).cumsum(0)
    heights = torch.tensor([h for h, _ in sizes], device=points.device)[point_levels]
    widths = torch.tensor([w for _, w in sizes], device=points.device)[point_levels]
    stride = points.new_tensor(output.strides)[point_levels]
    col = torch.minimum((points[:, 0] / stride).floor().long().clamp(min=0), widths - 1)
    row = torch.minimum((points[:, 1] / stride).floor().long().clamp(min=0), heights - 1)
    return offsets[point_levels] + row * widths + col


@dataclass
class _Assignment:
    """Targets of every location of the batch (N = all levels' locations)."""

    class_index: Tensor  # B×N long, index into thing_classes, −1 for background
    target_boxes: Tensor  # B×N×4 exclusive xyxy (meaningless where class_index is −1)
    centres: Tensor  # N×2 location centres (x, y)


def _assign(output: DetectionOutput, targets: Sequence[Instances | None], thing_classes: Sequence[int]) -> _Assignment:
    if len(targets) != output.batch_size:
        raise ValueError(f"got {len(targets)} targets for a batch of {output.batch_size} images")
    if len(thing_classes) != output.num_classes:
        raise ValueError(f"the head predicts {output.num_classes} classes but thing_classes has {len(thing_classes)}")
    device = output.cls_logits[0].device
    things = torch.as_tensor(list(thing_classes), dtype=torch.long, device=device)
    centres, strides, levels = _locations(output, device)
    class_index, target_boxes = [], []
    for target in targets:
        boxes, classes = _thing_targets(target, things, device)
        assigned, matched = _assign_image(boxes, classes, output, centres, strides, levels)
        class_index.append(assigned)
        target_boxes.append(matched)
    return _Assignment(torch.stack(class_index), torch.stack(target_boxes), centres)


def _decode(centres: Tensor, ltrb: Tensor) -> Tensor:
    """Boxes ``(x − l, y − t, x + r, y + b)`` from location centres (…×2) and distances (…×4)."""
    return torch.cat([centres - ltrb[..., :2], centres + ltrb[..., 2:]], dim=-1)


# ---------------------------------------------------------------------------------------------- losses


def detection_loss(
    output: DetectionOutput, targets: Sequence[Instances | None], thing_classes: Sequence[int]
) -> dict[str, Tensor]:
    """``L_det`` of eq. 4: sigmoid focal loss over every location and class, GIoU loss over the positives.

    Args:
        output: the head's outputs for a batch.
        targets: per image its instances (dataset class ids, inclusive boxes); ``None`` = no objects.
            Instances of classes outside ``thing_classes`` are ignored.
        thing_classes: dataset class id of each logit channel.

    Returns:
        ``{"focal": ..., "giou": ...}``, each summed over the batch and divided by max(1, positives).
    """
    assignment = _assign(output, targets, thing_classes)
    positive = assignment.class_index >= 0
    normaliser = max(1, int(positive.sum()))
    logits = _flatten(output.cls_logits).float()
    one_hot = F.one_hot(assignment.class_index + 1, output.num_classes + 1)[..., 1:].to(logits.dtype)
    focal = sigmoid_focal_loss(logits, one_hot, alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA, reduction="sum")
    ltrb = _flatten(output.box_ltrb).float()
    predicted = _decode(assignment.centres, ltrb)[positive]
    giou = generalized_box_iou_loss(predicted, assignment.target_boxes[positive], reduction="sum")
    return {"focal": focal / normaliser, "giou": giou / normaliser}


@dataclass
class MatchedBoxes:
    """Every positive location of a batch (the assignment of :func:`detection_loss`).

    Attributes:
        batch_index: N int64 image of each location.
        boxes: N×4 predicted ``xyxy`` (exclusive), differentiable w.r.t. ``box_ltrb``.
        classes: N int64 dataset class ids of the assigned boxes.
        target_boxes: N×4 the assigned ground-truth boxes (exclusive).
    """

    batch_index: Tensor
    boxes: Tensor
    classes: Tensor
    target_boxes: Tensor


def positive_predictions(
    output: DetectionOutput, targets: Sequence[Instances | None], thing_classes: Sequence[int]
) -> MatchedBoxes:
    """The predicted box of every positive location with its ground truth (for DSJL's alignment loss).

    Args:
        output: the head's outputs for a batch.
        targets: per image its instances, as for :func:`detection_loss`.
        thing_classes: dataset class id of each logit channel.

    Returns:
        The :class:`MatchedBoxes` of the batch, in (image, level, row, column) order.
    """
    assignment = _assign(output, targets, thing_classes)
    positive = assignment.class_index >= 0
    ltrb = _flatten(output.box_ltrb)
    boxes = _decode(assignment.centres, ltrb)
    things = torch.as_tensor(list(thing_classes), dtype=torch.long, device=positive.device)
    return MatchedBoxes(
        batch_index=positive.nonzero()[:, 0],
        boxes=boxes[positive],
        classes=things[assignment.class_index[positive]],
        target_boxes=assignment.target_boxes[positive],
    )


# ---------------------------------------------------------------------------------------------- decoding


@torch.no_grad()
def postprocess(
    output: DetectionOutput,
    image_size: tuple[int, int],
    thing_classes: Sequence[int],
    score_threshold: float = 0.3,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
) -> list[Detections]:
    """Detections per image: sigmoid scores above the threshold, boxes clipped, class-wise NMS, top-k.

    Args:
        output: the head's outputs for a batch.
        image_size: (H, W) of the input images in pixels.
        thing_classes: dataset class id of each logit channel.
        score_threshold: minimum class score (paper: 0.3).
        iou_threshold: NMS IoU threshold between boxes of one class (paper: 0.5).
        max_detections: detections kept per image, best first.

    Returns:
        One :class:`Detections` per image.
    """
    if len(thing_classes) != output.num_classes:
        raise ValueError(f"the head predicts {output.num_classes} classes but thing_classes has {len(thing_classes)}")
    if not 0.0 <= score_threshold <= 1.0 or not 0.0 < iou_threshold <= 1.0 or max_detections < 1:
        raise ValueError(
            "postprocess needs 0 <= score_threshold <= 1, 0 < iou_threshold <= 1 and max_detections >= 1, got "
            f"{score_threshold}, {iou_threshold}, {max_detections}"
        )
    height, width = image_size
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive (H, W), got {image_size}")
    device = output.cls_logits[0].device
    things = torch.as_tensor(list(thing_classes), dtype=torch.long, device=device)
    centres, _, levels = _locations(output, device)
    scores_all = _flatten(output.cls_logits).float().sigmoid()
    boxes_all = _decode(centres, _flatten(output.box_ltrb).float())
    results = []
    for scores, boxes in zip(scores_all, boxes_all, strict=True):
        keep_scores, keep_boxes, keep_classes = [], [], []
        for level in range(len(output.strides)):
            on_level = levels == level
            level_scores = scores[on_level]
            location, cls = (level_scores > score_threshold).nonzero(as_tuple=True)
            candidate_scores = level_scores[location, cls]
            top = candidate_scores.topk(min(PRE_NMS_TOP_K, candidate_scores.numel())).indices
            keep_scores.append(candidate_scores[top])
            keep_boxes.append(boxes[on_level][location[top]])
            keep_classes.append(cls[top])
        det_scores, det_classes = torch.cat(keep_scores), torch.cat(keep_classes)
        det_boxes = clip_boxes_to_image(torch.cat(keep_boxes), (height, width))
        big = remove_small_boxes(det_boxes, MIN_BOX_SIZE)
        det_boxes, det_scores, det_classes = det_boxes[big], det_scores[big], det_classes[big]
        kept = batched_nms(det_boxes, det_scores, det_classes, iou_threshold)[:max_detections]
        results.append(Detections(boxes=det_boxes[kept], scores=det_scores[kept], classes=things[det_classes[kept]]))
    return results
