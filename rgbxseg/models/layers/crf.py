"""Light CRF: local-window mean-field inference, DAMCSeg paper section III-E.1 ("boundary optimization"); SPEC 5.

Mean field of Krähenbühl & Koltun (2011, algorithm 1) with the Potts compatibility and their two kernels,

* appearance ``w_a · exp(−|p_i−p_j|²/2θα² − |I_i−I_j|²/2θβ²)`` (same colour, nearby → same label),
* smoothness ``w_s · exp(−|p_i−p_j|²/2θγ²)`` (removes isolated pixels),

with the paper's 3 iterations and a window whose size adapts to the scene complexity (:func:`crf_window`).
Under the Potts model the compatibility transform ``Σ_l' μ(l, l')·m(l') = Σ_l' m(l') − m(l)`` differs from
``−m(l)`` by a per-pixel constant that the softmax removes, so each iteration is ``Q ← softmax(U + m)`` with
U the input logits and m the kernel-weighted messages.

Decisions (the paper leaves these open):

* Pairs are restricted to a k×k window (k odd) around each pixel, so the cost is O(k²·K·H·W) and runs on any
  device in plain torch. The loop over window offsets uses shifted views of a zero-padded tensor (not
  ``torch.roll``, which would wrap around the image border; not ``unfold``, which would need k² copies of Q);
  the k² − 1 per-pixel pair weights do not depend on Q and are computed once per image. Neighbours
  outside the image do not exist (they take no part in the normalisation).
* Each kernel's message is normalised by the kernel's total weight over the pixel's window (Krähenbühl's
  DenseCRF code offers the same normalisation): a message is a weighted average of the neighbours' Q times the
  kernel weight, so ``w_a`` and ``w_s`` are on the logit scale and mean the same at every window size.
* Image features are the RGB in [0, 1] (θβ = 0.1 ≈ 26 grey levels), positions in pixels of the logits' grid.
* Output: refined logits ``log Q`` (log-softmax), B×K×H×W; 0 iterations give ``log softmax(logits)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgbxseg.models.damcseg.dsaf import scene_class

# Simple scenes (few, large targets) afford wide smoothing; complex scenes hold small targets that a wide
# window would wash out, so the window shrinks as the complexity grows.
WINDOW_BY_SCENE: dict[str, int] = {"simple": 7, "moderate": 5, "complex": 3}


def crf_window(complexity: Tensor) -> list[int]:
    """CRF window size per image from the scene complexity: simple → 7, moderate → 5, complex → 3.

    Args:
        complexity: B scene complexity scores (classes as :func:`rgbxseg.models.damcseg.dsaf.scene_class`).
    """
    return [WINDOW_BY_SCENE[name] for name in scene_class(complexity)]


class LightCRF(nn.Module):
    """Local-window mean-field CRF with Gaussian appearance and smoothness kernels (no learnable parameters).

    Args:
        iterations: mean-field iterations (paper: 3); 0 returns ``log softmax(logits)``.
        appearance_weight: w_a, weight of the appearance (bilateral) kernel's message.
        smoothness_weight: w_s, weight of the smoothness (spatial) kernel's message.
        theta_alpha: θα, spatial scale of the appearance kernel, pixels.
        theta_beta: θβ, colour scale of the appearance kernel, in image units ([0, 1] RGB).
        theta_gamma: θγ, spatial scale of the smoothness kernel, pixels.
    """

    def __init__(
        self,
        iterations: int = 3,
        appearance_weight: float = 1.0,
        smoothness_weight: float = 1.0,
        theta_alpha: float = 8.0,
        theta_beta: float = 0.1,
        theta_gamma: float = 3.0,
    ) -> None:
        super().__init__()
        if iterations < 0:
            raise ValueError(f"LightCRF: iterations must be >= 0, got {iterations}")
        if appearance_weight < 0 or smoothness_weight < 0:
            raise ValueError(f"LightCRF: kernel weights must be >= 0, got {appearance_weight}, {smoothness_weight}")
        if min(theta_alpha, theta_beta, theta_gamma) <= 0:
            raise ValueError(f"LightCRF: thetas must be > 0, got {theta_alpha}, {theta_beta}, {theta_gamma}")
        self.iterations = iterations
        self.appearance_weight = appearance_weight
        self.smoothness_weight = smoothness_weight
        self.theta_alpha = theta_alpha
        self.theta_beta = theta_beta
        self.theta_gamma = theta_gamma

    def forward(self, logits: Tensor, image: Tensor, window: int | Sequence[int] = 5) -> Tensor:
        """Refine segmentation logits with the image's colours.

        Args:
            logits: B×K×H×W unary logits (the fused segmentation output).
            image: B×C×H×W image at the logits' size, values in [0, 1] (un-normalised RGB).
            window: odd window size k, one for the batch or one per image.

        Returns:
            B×K×H×W refined logits, ``log Q``.
        """
        if logits.ndim != 4 or image.ndim != 4:
            shapes = f"{tuple(logits.shape)}, {tuple(image.shape)}"
            raise ValueError(f"LightCRF: expected 4-D logits and image, got {shapes}")
        if image.shape[0] != logits.shape[0] or image.shape[2:] != logits.shape[2:]:
            raise ValueError(
                f"LightCRF: image {tuple(image.shape)} must match the logits {tuple(logits.shape)} in batch and size"
            )
        windows = per_image_windows(window, logits.shape[0])
        if self.iterations == 0:
            return F.log_softmax(logits, 1)
        features = image.to(logits.dtype)
        if len(set(windows)) == 1:
            return self.mean_field(logits, features, windows[0])
        refined = torch.empty_like(logits)
        for size in sorted(set(windows)):
            index = torch.tensor([i for i, w in enumerate(windows) if w == size], device=logits.device)
            refined[index] = self.mean_field(logits[index], features[index], size)
        return refined

    def mean_field(self, logits: Tensor, image: Tensor, window: int) -> Tensor:
        """``self.iterations`` mean-field updates with one window size; returns ``log Q``."""
        radius = window // 2
        if radius == 0:  # a 1×1 window has no neighbours
            return F.log_softmax(logits, 1)
        weights = self.pair_weights(image, radius)
        refined = logits
        for _ in range(self.iterations):
            refined = logits + message(F.softmax(refined, 1), weights, radius)
        return F.log_softmax(refined, 1)

    def pair_weights(self, image: Tensor, radius: int) -> list[tuple[int, int, Tensor]]:
        """Per window offset (dy, dx) ≠ (0, 0), the B×1×H×W weight of that neighbour in the message:
        ``w_a·k_a/Σk_a + w_s·k_s/Σk_s``. The kernels do not depend on Q, so they are computed once per
        image, not once per iteration (memory O(k²·H·W), a few tens of MB at 360×480 with k = 7)."""
        height, width = image.shape[2:]
        padded_image = F.pad(image, (radius,) * 4)
        inside = F.pad(torch.ones_like(image[:, :1]), (radius,) * 4)
        offsets, appearance, smoothness = [], [], []
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                if dy == 0 and dx == 0:
                    continue
                rows = slice(radius + dy, radius + dy + height)
                cols = slice(radius + dx, radius + dx + width)
                distance = float(dy * dy + dx * dx)
                colour = (image - padded_image[:, :, rows, cols]).square().sum(1, keepdim=True)
                exists = inside[:, :, rows, cols]
                offsets.append((dy, dx))
                appearance.append(exists * torch.exp(-distance / (2 * self.theta_alpha**2) - colour / (2 * self.theta_beta**2)))
                smoothness.append(exists * math.exp(-distance / (2 * self.theta_gamma**2)))
        tiny = torch.finfo(image.dtype).tiny
        appearance_norm = torch.stack(appearance).sum(0).clamp_min(tiny)
        smoothness_norm = torch.stack(smoothness).sum(0).clamp_min(tiny)
        return [
            (dy, dx, self.appearance_weight * k_a / appearance_norm + self.smoothness_weight * k_s / smoothness_norm)
            for (dy, dx), k_a, k_s in zip(offsets, appearance, smoothness)
        ]


def message(q: Tensor, weights: Sequence[tuple[int, int, Tensor]], radius: int) -> Tensor:
    """``Σ_j weight(i, j)·Q_j`` over the window (j ≠ i): the normalised appearance + smoothness message.

    Args:
        q: B×K×H×W current marginals.
        weights: :meth:`LightCRF.pair_weights` of the image.
        radius: window radius r (window = 2r + 1).
    """
    height, width = q.shape[2:]
    padded_q = F.pad(q, (radius,) * 4)
    total = torch.zeros_like(q)
    for dy, dx, weight in weights:
        total += weight * padded_q[:, :, radius + dy : radius + dy + height, radius + dx : radius + dx + width]
    return total


def per_image_windows(window: int | Sequence[int], batch: int) -> list[int]:
    """One odd window size per image, from a single size or a sequence of B sizes."""
    windows = [window] * batch if isinstance(window, int) else list(window)
    if len(windows) != batch:
        raise ValueError(f"LightCRF: expected {batch} window sizes (one per image), got {len(windows)}")
    bad = [w for w in windows if not isinstance(w, int) or w < 1 or w % 2 == 0]
    if bad:
        raise ValueError(f"LightCRF: window sizes must be odd positive integers, got {bad}")
    return windows
