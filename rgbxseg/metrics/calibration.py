"""Pixel-wise top-label calibration error (ECE, MCE) with the bins of a reliability diagram.

Expected Calibration Error after Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural
Networks", ICML 2017 (the estimator of Naeini et al., AAAI 2015), applied to every non-ignored pixel.
"""

from __future__ import annotations

import math

import torch

from rgbxseg.data.sample import IGNORE_INDEX
from rgbxseg.metrics.base import DeviceState, is_integer_dtype


def bin_index(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Equal-width bin of each confidence: bin ``b`` holds ``[b/n, (b+1)/n)``, the top bin also holds 1.0.

    The edges are ``torch.linspace(0, 1, n + 1)`` in the confidence dtype, as in torchmetrics, so both
    put a confidence that sits on an edge into the same bin.
    """
    edges = torch.linspace(0, 1, n_bins + 1, dtype=confidence.dtype, device=confidence.device)
    return (torch.bucketize(confidence, edges, right=True) - 1).clamp_(0, n_bins - 1)


def check_scores(probs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes and dtypes; return probabilities/logits as N×K×H×W and the target as N×H×W."""
    if not isinstance(probs, torch.Tensor) or not probs.dtype.is_floating_point:
        got = probs.dtype if isinstance(probs, torch.Tensor) else type(probs).__name__
        raise ValueError(f"CalibrationError: probs must be a floating-point tensor, got {got}")
    if not isinstance(target, torch.Tensor) or not is_integer_dtype(target):
        got = target.dtype if isinstance(target, torch.Tensor) else type(target).__name__
        raise ValueError(f"CalibrationError: target must be an integer tensor of class ids, got {got}")
    if target.ndim == 2 and probs.ndim == 3:
        probs, target = probs.unsqueeze(0), target.unsqueeze(0)
    if target.ndim != 3 or probs.ndim != 4 or probs.shape[0] != target.shape[0] or probs.shape[2:] != target.shape[1:]:
        raise ValueError(
            "CalibrationError: expected probs N×K×H×W with target N×H×W (or K×H×W with H×W), "
            f"got probs {tuple(probs.shape)} and target {tuple(target.shape)}"
        )
    if probs.device != target.device:
        raise ValueError(f"CalibrationError: probs are on {probs.device} but target is on {target.device}")
    return probs, target


def check_values(probs: torch.Tensor, target: torch.Tensor, from_logits: bool, ignore_index: int) -> None:
    """Probabilities in [0, 1] (logits finite) and target ids in [0, K) or ignore; one host read."""
    num_classes = probs.shape[1]
    if from_logits:
        scores_ok = torch.isfinite(probs).all()
    else:
        scores_ok = ((probs >= 0) & (probs <= 1)).all()  # False for NaN too
    bad_target = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
    ok, target_bad = torch.stack([scores_ok, bad_target.any()]).tolist()
    if not ok and from_logits:
        raise ValueError("CalibrationError: logits must be finite, got NaN or inf")
    if not ok:
        low, high = torch.aminmax(probs)
        raise ValueError(
            f"CalibrationError: probabilities must lie in [0, 1], got values in [{float(low)}, {float(high)}]; "
            "pass from_logits=True for logits"
        )
    if target_bad:
        values = torch.unique(target[bad_target])[:5].tolist()
        raise ValueError(
            f"CalibrationError: target class ids must be in [0, {num_classes}) or the ignore id {ignore_index}, "
            f"got {values}"
        )


class CalibrationError(DeviceState):
    """Expected and maximum calibration error of per-pixel top-label confidences (Guo et al., ICML 2017).

    For every pixel whose target is not ``ignore_index``: confidence = max class probability, correct =
    (argmax == target). Pixels fall into ``n_bins`` equal-width bins on [0, 1] (bin ``b`` is
    ``[b/n, (b+1)/n)``, the top bin includes 1.0). With ``n_b`` pixels in bin ``b``, ``acc_b`` their
    accuracy, ``conf_b`` their mean confidence and ``N`` all pixels::

        ECE = Σ_b (n_b / N) · |acc_b − conf_b|        MCE = max_{b: n_b > 0} |acc_b − conf_b|

    both reported in percent (NaN before any pixel). This matches torchmetrics'
    ``MulticlassCalibrationError`` (``norm='l1'`` / ``'max'``) on the flattened pixels, except that
    torchmetrics gives confidences of exactly 1.0 a bin of their own while here they join the top bin.

    Public state (sums, on the device of the first update): ``count`` and ``correct`` (int64 per bin),
    ``confidence_sum`` (float64 per bin); ``torch.distributed.all_reduce`` each before :meth:`compute`.
    """

    state_names = ("count", "correct", "confidence_sum")

    def __init__(self, n_bins: int = 15, ignore_index: int = IGNORE_INDEX) -> None:
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
        self.n_bins = n_bins
        self.ignore_index = ignore_index
        super().__init__()

    def _zero_state(self) -> dict[str, torch.Tensor]:
        return {
            "count": torch.zeros(self.n_bins, dtype=torch.int64),
            "correct": torch.zeros(self.n_bins, dtype=torch.int64),
            "confidence_sum": torch.zeros(self.n_bins, dtype=torch.float64),
        }

    def update(self, probs: torch.Tensor, target: torch.Tensor, *, from_logits: bool = False) -> None:
        """Add a batch: ``probs`` N×K×H×W softmax probabilities (logits with ``from_logits=True``), target N×H×W.

        The unbatched form K×H×W with H×W is accepted too.
        """
        probs, target = check_scores(probs, target)
        check_values(probs, target, from_logits, self.ignore_index)
        self._bind(probs.device)
        scores = probs.to(torch.promote_types(probs.dtype, torch.float32))
        if from_logits:
            scores = scores.softmax(1)
        confidence, prediction = scores.max(1)
        bins = bin_index(confidence, self.n_bins)
        valid = target != self.ignore_index
        n = self.n_bins
        key = torch.where(valid, bins + n * (prediction == target).long(), torch.full_like(bins, 2 * n))
        counts = torch.bincount(key.flatten(), minlength=2 * n + 1)[: 2 * n].view(2, n)
        self.count += counts.sum(0)
        self.correct += counts[1]
        kept = torch.where(valid, confidence, torch.zeros_like(confidence)).double()
        self.confidence_sum.index_add_(0, bins.flatten(), kept.flatten())

    def compute(self) -> dict[str, float | dict[str, list[float] | list[int]]]:
        """``ECE`` and ``MCE`` in percent, and the reliability-diagram ``bins``.

        ``bins`` holds per bin ``lower``/``upper`` edges, pixel ``count``, mean ``confidence`` and
        ``accuracy`` as fractions in [0, 1] (NaN for an empty bin).
        """
        count = self.count.double()
        total = count.sum()
        nan = torch.full_like(count, math.nan)
        accuracy = torch.where(count > 0, self.correct.double() / count.clamp_min(1), nan)
        confidence = torch.where(count > 0, self.confidence_sum / count.clamp_min(1), nan)
        gap = (accuracy - confidence).abs()
        filled = count > 0
        ece = float(100.0 * (count[filled] * gap[filled]).sum() / total) if total > 0 else math.nan
        mce = float(100.0 * gap[filled].max()) if total > 0 else math.nan
        return {
            "ECE": ece,
            "MCE": mce,
            "bins": {
                "lower": [b / self.n_bins for b in range(self.n_bins)],
                "upper": [(b + 1) / self.n_bins for b in range(self.n_bins)],
                "count": self.count.tolist(),
                "confidence": confidence.tolist(),
                "accuracy": accuracy.tolist(),
            },
        }
