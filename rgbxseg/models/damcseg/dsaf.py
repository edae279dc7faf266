"""Dual-Stage Attention Fusion (DSAF), DAMCSeg paper section III-D, eqs. (5)-(9), Fig. 4; SPEC 5.

Stage 1, scene level: the complexity ``S = 0.4·D + 0.3·O + 0.3·E`` (eq. 5) picks the initial branch weights
(α0, β0, γ0) from :data:`WEIGHT_TABLE`: simple ``S < 0.3``, moderate ``0.3 ≤ S ≤ 0.7``, complex ``S > 0.7``.
Stage 2, target level: per target region ``Δβ = σ(a·S_z + b·A + c)`` (eq. 6) with learnable a, b, c, then
``α = α0(1−Δβ)``, ``β = β0(1+Δβ)``, ``γ = γ0(1+0.5Δβ)`` (eqs. 7-9) as per-pixel maps, and the fused logits
``α·G + β·L + γ·P`` of the global, local and prior branches.

Decisions (the paper leaves these open):

* D, O, E are each normalised to [0, 1] (SPEC 5): ``D = min(1, targets / 32)``,
  ``E = min(1, edge density / 0.25)``; O is a share already.
* E: ``cv2.Canny`` (thresholds 100 / 200, 3×3 Sobel aperture, L1 gradient: OpenCV's defaults) on the 8-bit
  grey image (``cv2.COLOR_RGB2GRAY``) of the un-normalised RGB in [0, 1]; density = edge pixels / image pixels.
* O at inference has no amodal masks, so it is estimated from the detections: the share of the union of box
  pixels covered by two boxes or more (:func:`occlusion_share`). The caller may pass any other O in [0, 1]
  (e.g. the ground-truth occluded share during training) to :func:`scene_complexity`.
* A target region is the pixels of a detection box (boxes N×4 xyxy, exclusive right/bottom, in pixels of the
  logits' grid): the pixels whose centre lies inside the box; a box that holds no pixel centre (a tiny target)
  gets the pixel holding its centre; boxes of zero area or outside the grid are skipped.
* ``S_z`` = pixels of the region / pixels of the grid.
* ``A`` = normalised entropy (entropy / log K, in [0, 1]) of the global branch's softmax, averaged over the
  region. Entropy rather than variance: it is defined per pixel, bounded, and largest when the classes tie.
  A is a measurement, computed without gradient: the global branch is trained through α·G, not by moving
  its own uncertainty to change the weights.
* Initial a = −10, b = 2, c = 0 follow the paper's text ("small targets (S_z < 0.01) and ambiguous targets
  (A > 0.3) get a larger Δβ"): Δβ ≈ 0.6 for a tiny region with A = 0.2, ≈ 0.14 for a region covering a fifth
  of the image with A = 0.1.
* Δβ = 0 outside every region (α, β, γ are exactly the scene's initial weights there); where regions overlap
  the pixel takes the largest Δβ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHT_TABLE: dict[str, tuple[float, float, float]] = {
    "simple": (0.6, 0.2, 0.1),
    "moderate": (0.5, 0.3, 0.2),
    "complex": (0.4, 0.4, 0.3),
}
SIMPLE_BELOW = 0.3
COMPLEX_ABOVE = 0.7
DENSITY_SATURATION = 32  # targets at which D reaches 1
EDGE_SATURATION = 0.25  # edge-pixel share at which E reaches 1
CANNY_THRESHOLDS = (100, 200)

PixelRange = tuple[int, int, int, int]  # x0, y0, x1, y1: the slice [y0:y1, x0:x1]


def edge_density(image: Tensor) -> Tensor:
    """Share of Canny edge pixels per image (the paper's E before normalisation), no gradient.

    Args:
        image: B×3×H×W RGB (or B×1×H×W grey), float in [0, 1], un-normalised.

    Returns:
        B float32 on the image's device, each in [0, 1].
    """
    if image.ndim != 4 or image.shape[1] not in (1, 3) or min(image.shape[2:]) < 1:
        raise ValueError(f"edge_density: expected a B×3×H×W or B×1×H×W image, got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"edge_density: expected a float image in [0, 1], got dtype {image.dtype}")
    if image.numel() and (image.min() < 0 or image.max() > 1):
        raise ValueError("edge_density: image values must lie in [0, 1] (pass the RGB before normalisation)")
    pixels = (image.detach() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    edges = [cv2.Canny(grey(picture), *CANNY_THRESHOLDS) for picture in pixels]
    shares = [np.count_nonzero(edge) / edge.size for edge in edges]
    return torch.tensor(shares, dtype=torch.float32, device=image.device)


def grey(picture: np.ndarray) -> np.ndarray:
    """H×W uint8 grey image of an H×W×C (C = 1 or 3, RGB) uint8 picture."""
    if picture.shape[2] == 1:
        return np.ascontiguousarray(picture[:, :, 0])
    return cv2.cvtColor(np.ascontiguousarray(picture), cv2.COLOR_RGB2GRAY)


def box_pixel_ranges(boxes: Tensor, image_size: tuple[int, int]) -> list[PixelRange]:
    """Integer pixel slices of boxes on an H×W grid (see the module's decisions for the rule).

    Args:
        boxes: N×4 xyxy, exclusive right/bottom, pixel coordinates.
        image_size: (H, W) of the grid.

    Returns:
        One (x0, y0, x1, y1) per box that covers a pixel of the grid, in the input order.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be N×4 xyxy, got shape {tuple(boxes.shape)}")
    coords = boxes.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(coords).all():
        raise ValueError("boxes must be finite")
    if (coords[:, 2:] < coords[:, :2]).any():
        raise ValueError("boxes must be xyxy with x2 >= x1 and y2 >= y1")
    zero = torch.zeros(2, dtype=torch.float64)
    limits = torch.tensor([image_size[1], image_size[0]], dtype=torch.float64)
    low = torch.ceil(coords[:, :2] - 0.5)  # first pixel whose centre (j + 0.5) is >= x1
    high = torch.ceil(coords[:, 2:] - 0.5)  # one past the last pixel whose centre is < x2
    centre = torch.floor((coords[:, :2] + coords[:, 2:]) / 2)
    no_centre = high <= low
    low = torch.where(no_centre, centre, low).clamp(min=zero, max=limits)
    high = torch.where(no_centre, centre + 1, high).clamp(min=zero, max=limits)
    keep = (coords[:, 2:] > coords[:, :2]).all(1) & (high > low).all(1)
    ranges = torch.cat([low, high], 1)[keep].long().tolist()
    return [(x0, y0, x1, y1) for x0, y0, x1, y1 in ranges]


def occlusion_share(boxes: Sequence[Tensor], image_size: tuple[int, int]) -> Tensor:
    """O estimated from detections: per image, the share of the union of box pixels covered by >= 2 boxes.

    Args:
        boxes: per image an N×4 xyxy (exclusive) box tensor, pixel coordinates on the (H, W) grid.
        image_size: (H, W).

    Returns:
        B float32 in [0, 1] (0 for an image without boxes), on the boxes' device.
    """
    height, width = image_size
    if height < 1 or width < 1:
        raise ValueError(f"occlusion_share: image_size must be positive, got {image_size}")
    device = boxes[0].device if len(boxes) else torch.device("cpu")
    shares = []
    for image_boxes in boxes:
        cover = torch.zeros(height, width, dtype=torch.int32, device=image_boxes.device)
        for x0, y0, x1, y1 in box_pixel_ranges(image_boxes, image_size):
            cover[y0:y1, x0:x1] += 1
        union = int((cover > 0).sum())
        shares.append(int((cover > 1).sum()) / union if union else 0.0)
    return torch.tensor(shares, dtype=torch.float32, device=device)


def scene_complexity(num_targets: Tensor, occluded: Tensor, edges: Tensor) -> Tensor:
    """Scene complexity ``S = 0.4·D + 0.3·O + 0.3·E`` (eq. 5) with each term normalised to [0, 1].

    Args:
        num_targets: B target counts (int or float, >= 0); ``D = min(1, targets / 32)``.
        occluded: B occluded shares O, already in [0, 1].
        edges: B Canny edge-pixel shares (:func:`edge_density`); ``E = min(1, edges / 0.25)``.

    Returns:
        B float32 scores in [0, 1].
    """
    terms = {"num_targets": num_targets, "occluded": occluded, "edges": edges}
    for name, term in terms.items():
        if term.ndim != 1 or term.shape != num_targets.shape:
            shapes = {key: tuple(value.shape) for key, value in terms.items()}
            raise ValueError(f"scene_complexity: expected three 1-D tensors of one length B, got shapes {shapes}")
        if (term < 0).any() or term.isnan().any():
            raise ValueError(f"scene_complexity: {name} must be >= 0, got {term.tolist()}")
    if (occluded > 1).any():
        raise ValueError(f"scene_complexity: occluded shares must lie in [0, 1], got {occluded.tolist()}")
    density = (num_targets.float() / DENSITY_SATURATION).clamp(max=1)
    edge = (edges.float() / EDGE_SATURATION).clamp(max=1)
    return 0.4 * density + 0.3 * occluded.float() + 0.3 * edge


def scene_class(complexity: Tensor) -> list[str]:
    """Scene class per image: "simple" ``S < 0.3``, "moderate" ``0.3 ≤ S ≤ 0.7``, "complex" ``S > 0.7``.

    Args:
        complexity: B scores from :func:`scene_complexity`.
    """
    if complexity.ndim != 1:
        raise ValueError(f"scene_class: expected B scores, got shape {tuple(complexity.shape)}")
    if complexity.isnan().any():
        raise ValueError("scene_class: complexity contains NaN")
    simple = (complexity < SIMPLE_BELOW).tolist()
    complex_ = (complexity > COMPLEX_ABOVE).tolist()
    return ["simple" if s else "complex" if c else "moderate" for s, c in zip(simple, complex_, strict=True)]


def normalised_entropy(probs: Tensor) -> Tensor:
    """Per-pixel entropy / log K of B×K×H×W class probabilities: B×H×W in [0, 1]."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(1) / math.log(probs.shape[1])


@dataclass
class DSAFOutput:
    """Fused logits and the per-pixel branch weights that made them."""

    logits: Tensor  # B×K×H×W, α·G + β·L + γ·P
    alpha: Tensor  # B×1×H×W
    beta: Tensor  # B×1×H×W
    gamma: Tensor  # B×1×H×W
    delta_beta: Tensor  # B×1×H×W, 0 outside every target region
    scene: list[str]  # per image: "simple", "moderate" or "complex"


class DSAF(nn.Module):
    """Dual-stage attention fusion of the global, local and prior branches (eqs. 5-9).

    Args:
        size_weight: initial a, the weight of the size coefficient S_z.
        ambiguity_weight: initial b, the weight of the ambiguity coefficient A.
        bias: initial c.
    """

    def __init__(self, size_weight: float = -10.0, ambiguity_weight: float = 2.0, bias: float = 0.0) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(size_weight)))
        self.b = nn.Parameter(torch.tensor(float(ambiguity_weight)))
        self.c = nn.Parameter(torch.tensor(float(bias)))

    def forward(
        self,
        global_logits: Tensor,
        local_logits: Tensor,
        prior_logits: Tensor,
        complexity: Tensor,
        boxes: Sequence[Tensor],
        global_probs: Tensor | None = None,
    ) -> DSAFOutput:
        """Fuse the three branches with scene- and target-adapted weights.

        Args:
            global_logits: G, B×K×H×W (K >= 2).
            local_logits: L, B×K×H×W.
            prior_logits: P, B×K×H×W.
            complexity: B scene complexity scores (:func:`scene_complexity`).
            boxes: per image an N×4 xyxy (exclusive) box tensor in pixels of the logits' H×W grid.
            global_probs: softmax of G when the caller has it already (B×K×H×W); used for A only.
        """
        self.check_inputs(global_logits, local_logits, prior_logits, complexity, boxes, global_probs)
        scene = scene_class(complexity)
        base = torch.tensor(
            [WEIGHT_TABLE[name] for name in scene], dtype=global_logits.dtype, device=global_logits.device
        )
        alpha0, beta0, gamma0 = (base[:, i].view(-1, 1, 1, 1) for i in range(3))
        with torch.no_grad():
            probs = global_probs if global_probs is not None else F.softmax(global_logits, 1)
            ambiguity = normalised_entropy(probs.float()).to(global_logits.dtype)  # float32: no log(0) in fp16
        delta = torch.stack([self.delta_map(ambiguity[i], image_boxes) for i, image_boxes in enumerate(boxes)])
        delta = delta.unsqueeze(1)
        alpha, beta, gamma = alpha0 * (1 - delta), beta0 * (1 + delta), gamma0 * (1 + 0.5 * delta)
        logits = alpha * global_logits + beta * local_logits + gamma * prior_logits
        return DSAFOutput(logits=logits, alpha=alpha, beta=beta, gamma=gamma, delta_beta=delta, scene=scene)

    def delta_map(self, ambiguity: Tensor, boxes: Tensor) -> Tensor:
        """H×W map of Δβ for one image: eq. 6 inside each target region (max where they overlap), 0 elsewhere.

        Args:
            ambiguity: H×W normalised entropy of the global branch.
            boxes: N×4 xyxy (exclusive) boxes on the same grid.
        """
        height, width = ambiguity.shape
        canvas = torch.zeros(height, width, dtype=ambiguity.dtype, device=ambiguity.device)
        ranges = box_pixel_ranges(boxes, (height, width))
        if not ranges:
            return canvas
        areas = [(x1 - x0) * (y1 - y0) / (height * width) for x0, y0, x1, y1 in ranges]
        sizes = torch.tensor(areas, dtype=ambiguity.dtype, device=ambiguity.device)
        ambiguities = torch.stack([ambiguity[y0:y1, x0:x1].mean() for x0, y0, x1, y1 in ranges])
        values = torch.sigmoid(self.a * sizes + self.b * ambiguities + self.c)
        # Painting in increasing Δβ leaves each pixel the largest Δβ of its regions; plain slice assignment
        # keeps autograd valid (torch.maximum on a slice that is then overwritten would not).
        for index in values.detach().argsort().tolist():
            x0, y0, x1, y1 = ranges[index]
            canvas[y0:y1, x0:x1] = values[index]
        return canvas

    @staticmethod
    def check_inputs(
        global_logits: Tensor,
        local_logits: Tensor,
        prior_logits: Tensor,
        complexity: Tensor,
        boxes: Sequence[Tensor],
        global_probs: Tensor | None,
    ) -> None:
        """Raise ValueError unless the branches, scores, boxes and probabilities agree in shape."""
        if global_logits.ndim != 4 or global_logits.shape[1] < 2:
            raise ValueError(f"DSAF: global logits must be B×K×H×W with K >= 2, got {tuple(global_logits.shape)}")
        shape = global_logits.shape
        for name, tensor in (("local", local_logits), ("prior", prior_logits), ("global probs", global_probs)):
            if tensor is not None and tensor.shape != shape:
                raise ValueError(f"DSAF: {name} shape {tuple(tensor.shape)} differs from the global {tuple(shape)}")
        if complexity.shape != (shape[0],):
            raise ValueError(f"DSAF: expected {shape[0]} complexity scores, got shape {tuple(complexity.shape)}")
        if len(boxes) != shape[0]:
            raise ValueError(f"DSAF: expected one box tensor per image ({shape[0]}), got {len(boxes)}")
