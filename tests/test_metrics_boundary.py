"""BoundaryFScore: identical maps, one-pixel shifts, hand-counted precision/recall, ignore handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rgbxseg.metrics import BoundaryFScore

IGNORE = 255


def _square(top: int, left: int, bottom: int, right: int, size: int = 20, cls: int = 1) -> torch.Tensor:
    """A size×size map of class 0 with class ``cls`` on rows top..bottom, cols left..right (inclusive)."""
    label = torch.zeros(size, size, dtype=torch.long)
    label[top : bottom + 1, left : right + 1] = cls
    return label


def test_identical_maps_score_100() -> None:
    generator = torch.Generator().manual_seed(0)
    coarse = torch.randint(0, 4, (2, 6, 8), generator=generator)
    target = coarse.repeat_interleave(5, 1).repeat_interleave(5, 2)  # blocky 2×30×40 map
    target[:, :3, :3] = IGNORE
    metric = BoundaryFScore(4)
    metric.update(target.clamp(max=3), target)
    result = metric.compute()
    assert result["mBF"] == pytest.approx(100.0)
    assert all(value == pytest.approx(100.0) for value in result["BF"] if not math.isnan(value))


def test_one_pixel_shift() -> None:
    # A 10×10 square (rows/cols 5..14), predicted one column to the right.
    target, pred = _square(5, 5, 14, 14), _square(5, 6, 14, 15)
    for tolerance in (1, 1.5):
        metric = BoundaryFScore(2, tolerance=tolerance)
        metric.update(pred, target)
        assert metric.compute()["mBF"] == pytest.approx(100.0)
    # Tolerance 0: only pixels on both boundaries match. Class 1 (inner rings of 36 px): the top and bottom
    # rows share 9 px each -> 18/36. Class 0 (outer rings of 44 px): top/bottom rows share 11 each -> 22/44.
    metric = BoundaryFScore(2, tolerance=0)
    metric.update(pred, target)
    result = metric.compute()
    assert result["BF"] == pytest.approx([50.0, 50.0])
    assert result["precision"] == pytest.approx([50.0, 50.0])
    assert result["recall"] == pytest.approx([50.0, 50.0])
    assert result["mBF"] == pytest.approx(50.0)


def test_default_tolerance_is_a_fraction_of_the_diagonal() -> None:
    metric = BoundaryFScore(2)
    assert metric.tolerance_for(300, 400) == pytest.approx(0.0075 * 500)
    # On a 20×20 image that is 0.21 px: no slack, so the shifted square scores as with tolerance 0.
    metric.update(_square(5, 6, 14, 15), _square(5, 5, 14, 14))
    assert metric.compute()["mBF"] == pytest.approx(50.0)


def test_hand_counted_precision_and_recall() -> None:
    # Target: 10×10 square (rows/cols 5..14). Prediction: its left half (cols 5..9).
    target, pred = _square(5, 5, 14, 14), _square(5, 5, 14, 9)
    metric = BoundaryFScore(2, tolerance=0)
    metric.update(pred, target)
    result = metric.compute()
    # Class 1: predicted ring 2·10 + 2·5 − 4 = 26 px, target ring 36 px; on both: top and bottom rows
    # cols 5..9 (5 + 5) and the left column rows 6..13 (8) = 18.  P = 18/26, R = 18/36, F = 18/31.
    assert result["precision"][1] == pytest.approx(100 * 18 / 26)
    assert result["recall"][1] == pytest.approx(50.0)
    assert result["BF"][1] == pytest.approx(100 * 18 / 31)
    # Class 0: predicted outer ring 12×7 -> 34 px, target outer ring 12×12 -> 44 px, shared: rows 4 and 15
    # cols 4..10 (7 + 7) and column 4 rows 5..14 (10) = 24.  F = 2·24 / (34 + 44).
    assert result["precision"][0] == pytest.approx(100 * 24 / 34)
    assert result["recall"][0] == pytest.approx(100 * 24 / 44)
    assert result["BF"][0] == pytest.approx(100 * 48 / 78)
    assert torch.equal(metric.counts, torch.tensor([[24, 18], [34, 26], [24, 18], [44, 36]]))


def test_counts_are_pooled_over_updates() -> None:
    target, pred = _square(5, 5, 14, 14), _square(5, 5, 14, 9)
    once, twice = BoundaryFScore(2, tolerance=0), BoundaryFScore(2, tolerance=0)
    once.update(torch.stack([pred, target]), torch.stack([target, target]))
    twice.update(pred, target)
    twice.update(target, target)
    assert torch.equal(once.counts, twice.counts)
    # Class 1 pooled: matched predicted 18 + 36 over 26 + 36; matched target 18 + 36 over 36 + 36.
    precision, recall = 54 / 62, 54 / 72
    expected = 100 * 2 * precision * recall / (precision + recall)
    assert once.compute()["BF"][1] == pytest.approx(expected)


def test_edges_against_ignored_pixels_are_not_boundaries() -> None:
    target = torch.zeros(12, 12, dtype=torch.long)
    target[:, 6:] = IGNORE
    pred = torch.zeros(12, 12, dtype=torch.long)
    pred[:, 6:] = 1  # whatever is predicted under the ignored half
    metric = BoundaryFScore(2, tolerance=0)
    metric.update(pred, target)
    result = metric.compute()
    assert math.isnan(result["mBF"]) and all(math.isnan(value) for value in result["BF"])
    assert int(metric.counts.sum()) == 0


def test_class_with_a_boundary_on_one_side_scores_zero() -> None:
    target = _square(5, 5, 14, 14)
    pred = target.clone()
    pred[0:3, 0:3] = 2  # class 2 is never in the target
    metric = BoundaryFScore(3, tolerance=1)
    metric.update(pred, target)
    result = metric.compute()
    assert result["BF"][2] == 0.0 and result["BF"][1] == pytest.approx(100.0)
    assert math.isnan(result["recall"][2]) and result["precision"][2] == 0.0
    assert result["mBF"] == pytest.approx(np.mean(result["BF"]))


def test_nothing_measured_is_nan_and_reset_clears() -> None:
    metric = BoundaryFScore(2)
    assert math.isnan(metric.compute()["mBF"])
    metric.update(_square(5, 5, 14, 14), _square(5, 5, 14, 14))
    metric.reset()
    assert int(metric.counts.sum()) == 0 and math.isnan(metric.compute()["mBF"])


@pytest.mark.parametrize("tolerance", [-1, math.inf, "2", True])
def test_rejects_bad_tolerance(tolerance: object) -> None:
    with pytest.raises(ValueError, match="tolerance must be None or a finite number"):
        BoundaryFScore(2, tolerance=tolerance)  # type: ignore[arg-type]


def test_rejects_bad_inputs() -> None:
    metric = BoundaryFScore(2)
    with pytest.raises(ValueError, match="same shape"):
        metric.update(torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tensor"):
        metric.update(torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"predicted class ids must be in \[0, 2\)"):
        metric.update(torch.full((4, 4), 2), torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="num_classes"):
        BoundaryFScore(0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_state_stays_on_the_input_device() -> None:
    metric = BoundaryFScore(2, tolerance=0)
    metric.update(_square(5, 5, 14, 9).cuda(), _square(5, 5, 14, 14).cuda())
    assert metric.counts.is_cuda
    assert metric.compute()["BF"][1] == pytest.approx(100 * 18 / 31)
