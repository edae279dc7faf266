"""DAMCSeg's local segmentation path (SPEC 5): RoIAlign crops of the detected boxes → a small
sub-network → class logits pasted back into the image.

For every box (grown by ``context`` for surrounding context) :func:`torchvision.ops.roi_align` crops
``roi_size``×``roi_size`` windows from the stride-4 fused features, from the RGB image and from the
sensor maps (absent sensors are zeros and flagged by the caller). A trunk of two 3×3 convs feeds three
sub-branches, gated per region by :class:`~rgbxseg.models.damcseg.branch_selection.BranchGates`:

* **edge**: the trunk plus the Sobel gradient magnitude of the grey crop (object contours);
* **context**: dilated convs (rates 2 and 4) over the trunk (the object's surroundings);
* **consistency**: the trunk plus each sensor crop minus its per-region median (e.g. pixels at the
  object's depth vs the background's; with no sensor, the trunk minus its per-region mean).

Output = classifier(trunk + Σ gate·sub-branch) over all K classes (background inside a box is a class
too). Logits are resized to each box's pixel extent and averaged where boxes overlap; ``region`` marks
the pixels some box covered (elsewhere the local logits are 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation, roi_align

from rgbxseg.models.damcseg.branch_selection import BranchGates


@dataclass
class LocalOutput:
    logits: Tensor  # B×K×H×W, 0 outside every box
    region: Tensor  # B×1×H×W float, 1 where some box pasted logits
    gates: Tensor  # R×3 gate values (R regions over the batch)


def grow_boxes(boxes: Tensor, factor: float, height: int, width: int) -> Tensor:
    """Scale N×4 xyxy boxes about their centres by ``factor`` and clip them to the image."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * factor / 2
    grown = torch.cat([centre - half, centre + half], dim=1)
    limits = grown.new_tensor([width, height, width, height])
    return torch.minimum(grown.clamp_min(0), limits)


def sobel_magnitude(image: Tensor) -> Tensor:
    """R×1×h×w gradient magnitude of the grey version of R×3×h×w crops (fixed Sobel filters)."""
    grey = image.mean(dim=1, keepdim=True)
    kx = grey.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3) / 8
    gx = F.conv2d(grey, kx, padding=1)
    gy = F.conv2d(grey, kx.transpose(2, 3), padding=1)
    return (gx.square() + gy.square() + 1e-12).sqrt()


def paste(logits: Tensor, rois: Tensor, batch_index: Tensor, batch: int, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Resize each R×K×r×r region's logits to its box's pixel extent and average them into a
    B×K×H×W canvas; also return the B×1×H×W coverage (1 where some box pasted).

    All regions are scattered with one ``index_add`` (slice assignment per region into the canvas
    would make autograd copy the whole canvas gradient once per region)."""
    h, w = size
    k = logits.shape[1]
    values, indices = [], []
    for r in range(rois.shape[0]):
        x0, y0 = (int(math.floor(float(v))) for v in rois[r, :2])
        x1, y1 = (int(math.ceil(float(v))) for v in rois[r, 2:])
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        resized = F.interpolate(logits[r : r + 1], size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)
        values.append(resized[0].flatten(1))
        rows = torch.arange(y0, y1, device=logits.device)[:, None] * w
        cols = torch.arange(x0, x1, device=logits.device)[None, :]
        indices.append((int(batch_index[r]) * h * w + rows + cols).flatten())
    canvas = logits.new_zeros(k, batch * h * w)
    count = logits.new_zeros(batch * h * w)
    if indices:
        index = torch.cat(indices)
        canvas = canvas.index_add(1, index, torch.cat(values, dim=1))
        count = count.index_add(0, index, torch.ones_like(index, dtype=logits.dtype))
    canvas = canvas.view(k, batch, h, w).transpose(0, 1)
    count = count.view(batch, 1, h, w)
    return canvas / count.clamp_min(1), (count > 0).to(logits.dtype)


class LocalBranch(nn.Module):
    """The local path (module docstring).

    Args:
        feature_channels: channels of the stride-``feature_stride`` features it crops.
        sensor_channels: total channels of the sensor maps it crops (0: RGB only).
        num_classes: output classes.
        roi_size: side of the RoIAlign crops (paper: 128).
        width: channels of the trunk and sub-branches.
        context: growth factor of the boxes before cropping.
        gates: use branch adaptive selection; False runs every sub-branch with weight 1.
        feature_stride: stride of the features (4).
    """

    def __init__(
        self,
        feature_channels: int,
        sensor_channels: int,
        num_classes: int,
        roi_size: int = 128,
        width: int = 32,
        context: float = 1.25,
        gates: bool = True,
        feature_stride: int = 4,
    ) -> None:
        super().__init__()
        if roi_size < 4 or width < 1 or context < 1.0:
            raise ValueError(f"LocalBranch: need roi_size >= 4, width >= 1, context >= 1; got {roi_size}, {width}, {context}")
        self.roi_size, self.context, self.feature_stride = roi_size, context, feature_stride
        self.sensor_channels = sensor_channels
        self.trunk = nn.Sequential(
            Conv2dNormActivation(feature_channels + 3 + sensor_channels, width, 3),
            Conv2dNormActivation(width, width, 3),
        )
        self.edge = Conv2dNormActivation(width + 1, width, 3)
        self.context_branch = nn.Sequential(
            Conv2dNormActivation(width, width, 3, dilation=2), Conv2dNormActivation(width, width, 3, dilation=4)
        )
        self.consistency = Conv2dNormActivation(width + (sensor_channels or width), width, 3)
        self.gates = BranchGates(width) if gates else None
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.force_open = False  # benchmarks: run every sub-branch at inference to time the gates' saving

    def _consistency_input(self, trunk: Tensor, sensors: Tensor | None) -> Tensor:
        if sensors is None or sensors.shape[1] == 0:
            return torch.cat([trunk, trunk - trunk.mean(dim=(2, 3), keepdim=True)], dim=1)
        median = sensors.flatten(2).median(dim=2).values[..., None, None]
        return torch.cat([trunk, sensors - median], dim=1)

    def _sub_branches(self, trunk: Tensor, image: Tensor, sensors: Tensor | None) -> list[Tensor]:
        return [
            self.edge(torch.cat([trunk, sobel_magnitude(image)], dim=1)),
            self.context_branch(trunk),
            self.consistency(self._consistency_input(trunk, sensors)),
        ]

    def _combine(self, trunk: Tensor, image: Tensor, sensors: Tensor | None) -> tuple[Tensor, Tensor]:
        gates = self.gates(trunk) if self.gates is not None else trunk.new_ones(trunk.shape[0], 3)
        if self.training or self.gates is None or self.force_open:
            out = trunk
            for g, branch in zip(gates.unbind(1), self._sub_branches(trunk, image, sensors)):
                out = out + g.view(-1, 1, 1, 1) * branch
            return out, gates
        return self._combine_gated(trunk, image, sensors, gates), gates

    def _combine_gated(self, trunk: Tensor, image: Tensor, sensors: Tensor | None, gates: Tensor) -> Tensor:
        """Inference: run each sub-branch only on the regions whose gate is open."""
        open_ = self.gates.open(gates)
        out = trunk.clone()
        if open_[:, 0].any():
            i = open_[:, 0].nonzero().squeeze(1)
            out[i] += gates[i, 0].view(-1, 1, 1, 1) * self.edge(torch.cat([trunk[i], sobel_magnitude(image[i])], dim=1))
        if open_[:, 1].any():
            i = open_[:, 1].nonzero().squeeze(1)
            out[i] += gates[i, 1].view(-1, 1, 1, 1) * self.context_branch(trunk[i])
        if open_[:, 2].any():
            i = open_[:, 2].nonzero().squeeze(1)
            crops = None if sensors is None else sensors[i]
            out[i] += gates[i, 2].view(-1, 1, 1, 1) * self.consistency(self._consistency_input(trunk[i], crops))
        return out

    def forward(self, features: Tensor, image: Tensor, sensors: Tensor | None, boxes: Sequence[Tensor]) -> LocalOutput:
        """``features`` B×C×h×w (stride ``feature_stride``), ``image`` B×3×H×W, ``sensors`` B×S×H×W or None,
        ``boxes`` one N×4 xyxy (pixels) tensor per image."""
        b, _, h, w = image.shape
        num_classes = self.classifier.out_channels
        if sum(len(x) for x in boxes) == 0:
            empty = image.new_zeros(b, num_classes, h, w)
            return LocalOutput(empty, image.new_zeros(b, 1, h, w), image.new_zeros(0, 3))
        rois = torch.cat([grow_boxes(x.to(image.dtype), self.context, h, w) for x in boxes])
        batch_index = torch.cat([torch.full((len(x),), i, device=image.device) for i, x in enumerate(boxes)])
        indexed = torch.cat([batch_index[:, None].to(rois.dtype), rois], dim=1)
        size = (self.roi_size, self.roi_size)
        crop = roi_align(features, indexed, size, spatial_scale=1.0 / self.feature_stride, sampling_ratio=2, aligned=True)
        image_crop = roi_align(image, indexed, size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
        sensor_crop = None
        parts = [crop, image_crop]
        if sensors is not None and sensors.shape[1] > 0:
            sensor_crop = roi_align(sensors, indexed, size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
            parts.append(sensor_crop)
        trunk = self.trunk(torch.cat(parts, dim=1))
        combined, gates = self._combine(trunk, image_crop, sensor_crop)
        logits, region = paste(self.classifier(combined), rois, batch_index, b, (h, w))
        return LocalOutput(logits, region, gates)
