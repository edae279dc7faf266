"""DAMCSeg's post-processing / prior path (SPEC 5): recover occluded and missed targets from
depth/thermal cues and the detections.

Inputs, all brought to stride ``stride`` by average pooling:

* **box evidence**, one map per thing class: inside each detection of that class its score times a
  per-box *depth consistency* ``exp(−|d − median_box(d)| / τ)`` (pixels at the detected object's depth
  belong to it, the background behind it does not); where depth is absent, the score alone.
  Overlapping boxes of a class take the maximum. Decision: the median over the box is the object's
  depth (robust to the background share of the box).
* the global branch's class probabilities (detached: the prior path corrects them, it does not
  train them);
* the raw sensor maps (absent ones are zeros) and one presence flag per sensor, so that warm people
  the detector missed still show up in thermal.

Three 3×3 convs (dilations 1, 2, 4) map them to class logits, upsampled to the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation


def box_evidence(
    boxes: Sequence[Tensor],
    scores: Sequence[Tensor],
    classes: Sequence[Tensor],
    thing_classes: Sequence[int],
    size: tuple[int, int],
    depth: Tensor | None,
    depth_present: Tensor | None,
    tau: float,
) -> Tensor:
    """B×T×H×W evidence maps (module docstring); ``boxes`` xyxy pixels, ``classes`` dataset ids."""
    h, w = size
    batch = len(boxes)
    evidence = torch.zeros(batch, len(thing_classes), h, w, device=boxes[0].device if batch else None)
    slot = {c: i for i, c in enumerate(thing_classes)}
    for b in range(batch):
        for box, score, cls in zip(boxes[b].tolist(), scores[b].tolist(), classes[b].tolist()):
            x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
            x1, y1 = min(int(round(box[2])), w), min(int(round(box[3])), h)
            if x1 <= x0 or y1 <= y0 or cls not in slot:
                continue
            value = evidence.new_full((y1 - y0, x1 - x0), score)
            if depth is not None and (depth_present is None or bool(depth_present[b])):
                patch = depth[b, 0, y0:y1, x0:x1]
                value = value * torch.exp(-(patch - patch.median()).abs() / tau)
            view = evidence[b, slot[cls], y0:y1, x0:x1]
            evidence[b, slot[cls], y0:y1, x0:x1] = torch.maximum(view, value)
    return evidence


class PriorBranch(nn.Module):
    """The prior path (module docstring).

    Args:
        num_classes: output classes.
        thing_classes: dataset ids of the detected classes (one evidence map each).
        sensor_channels: total channels of the sensor maps (0: RGB only).
        num_sensors: number of sensors (one presence flag each).
        width: conv width.
        stride: working stride (4).
        tau: depth-consistency scale, in the depth map's units (depth / 80 m: 0.05 = 4 m).
    """

    def __init__(
        self,
        num_classes: int,
        thing_classes: Sequence[int],
        sensor_channels: int = 0,
        num_sensors: int = 0,
        width: int = 32,
        stride: int = 4,
        tau: float = 0.05,
    ) -> None:
        super().__init__()
        if width < 1 or stride < 1 or tau <= 0:
            raise ValueError(f"PriorBranch: need width >= 1, stride >= 1, tau > 0; got {width}, {stride}, {tau}")
        self.thing_classes = tuple(thing_classes)
        self.stride, self.tau = stride, tau
        inputs = len(self.thing_classes) + num_classes + sensor_channels + num_sensors
        self.net = nn.Sequential(
            Conv2dNormActivation(inputs, width, 3),
            Conv2dNormActivation(width, width, 3, dilation=2),
            Conv2dNormActivation(width, width, 3, dilation=4),
            nn.Conv2d(width, num_classes, 1),
        )

    def forward(
        self,
        global_logits: Tensor,
        sensors: Tensor | None,
        presence: Tensor | None,
        detections: tuple[Sequence[Tensor], Sequence[Tensor], Sequence[Tensor]],
        depth: Tensor | None = None,
        depth_present: Tensor | None = None,
    ) -> Tensor:
        """``global_logits`` B×K×H×W; ``sensors`` B×S×H×W (absent = 0) and ``presence`` B×M float flags, or
        None; ``detections`` (boxes, scores, classes) per image; ``depth`` B×1×H×W with ``depth_present`` B."""
        h, w = global_logits.shape[-2:]
        boxes, scores, classes = detections
        evidence = box_evidence(boxes, scores, classes, self.thing_classes, (h, w), depth, depth_present, self.tau)
        parts = [evidence.to(global_logits.dtype), global_logits.detach().softmax(1)]
        if sensors is not None:
            parts.append(sensors)
        x = F.avg_pool2d(torch.cat(parts, dim=1), self.stride, ceil_mode=True)
        if presence is not None:
            parts = [x, presence[:, :, None, None].to(x.dtype).expand(-1, -1, *x.shape[-2:])]
            x = torch.cat(parts, dim=1)
        return F.interpolate(self.net(x), size=(h, w), mode="bilinear", align_corners=False)
