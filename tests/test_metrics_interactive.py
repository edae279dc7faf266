"""Interactive metrics: IoU, NoC/NoF, mIoU curves, RITM's evaluation loop and the NoCMS/FRMS protocol,
with fake predictors whose outputs are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rgbxseg.errors import DataError
from rgbxseg.interactive import Click, click_maps
from rgbxseg.metrics.interactive import (
    SurfaceResult,
    evaluate_object,
    evaluate_surfaces,
    iou,
    miou_curve,
    noc,
    nocms_frms,
    nof,
)


def _box(shape: tuple[int, int], top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : bottom + 1, left : right + 1] = True
    return mask


def _columns(shape: tuple[int, int], first: int, last: int) -> np.ndarray:
    """Probability map of ``shape``: 1.0 on columns first..last (inclusive), 0.0 elsewhere."""
    return _box(shape, 0, first, shape[0] - 1, last).astype(np.float32)


def test_iou_excludes_ignore_and_scores_empty_union_as_one() -> None:
    gt = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    pred = np.array([[0, 1, 1, 0], [0, 0, 0, 0]], dtype=bool)
    assert iou(pred, gt) == pytest.approx(1 / 3)
    assert iou(pred, gt, ignore=np.array([[0, 0, 1, 0], [0, 0, 0, 0]])) == pytest.approx(1 / 2)
    assert iou(np.zeros((2, 2), dtype=bool), np.zeros((2, 2), dtype=bool)) == 1.0
    with pytest.raises(DataError, match="shape"):
        iou(pred, gt[:, :3])


def test_noc_first_click_reaching_threshold_else_max_clicks() -> None:
    ious = [0.5, 0.86, 0.95]
    assert noc(ious, 0.85) == 2
    assert noc(ious, 90) == 3  # percent accepted
    assert noc(ious, 0.99) == 20
    assert noc([0.1, 0.1, 0.95], 0.9, max_clicks=2) == 2  # clicks past max_clicks do not count
    with pytest.raises(ValueError, match="threshold"):
        noc(ious, 0)
    with pytest.raises(ValueError, match="threshold"):
        noc(ious, 150)
    with pytest.raises(ValueError, match="max_clicks"):
        noc(ious, 0.9, max_clicks=0)


def test_nof_counts_objects_never_reaching_threshold() -> None:
    all_ious = [[0.5, 0.9], [0.2, 0.4, 0.6], [0.95], [0.1, 0.1, 0.92]]
    assert nof(all_ious, 0.9) == 1
    assert nof(all_ious, 0.85, max_clicks=2) == 2
    assert nof(all_ious, 85, max_clicks=3) == 1
    assert nof([[0.5, 0.9]], 0.9, max_clicks=2) == 0  # reached at the last allowed click: not a failure


def test_miou_curve_pads_short_lists_with_their_last_value() -> None:
    all_ious = [[0.5, 0.9], [0.2, 0.4, 0.6]]
    np.testing.assert_allclose(miou_curve(all_ious, max_clicks=4), [0.35, 0.65, 0.75, 0.75])
    np.testing.assert_allclose(miou_curve(all_ious, max_clicks=2), [0.35, 0.65])
    assert miou_curve(all_ious).shape == (20,)
    with pytest.raises(ValueError, match="empty"):
        miou_curve([[0.5], []])
    with pytest.raises(ValueError, match="at least one"):
        miou_curve([])


class _PositiveDisks:
    """Fake predictor: the object pixels within the positive clicks' disks; records the masks it was given."""

    def __init__(self, gt: np.ndarray) -> None:
        self.gt = gt
        self.prev_masks: list[np.ndarray | None] = []

    def __call__(self, clicks: list[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        self.prev_masks.append(prev_mask)
        return click_maps(clicks, self.gt.shape)[0] * self.gt


def _two_squares() -> np.ndarray:
    """A 5×5 square (rows/cols 2-6, centre distance 3) and a 3×3 one (centre (11, 21), distance 2)."""
    return _box((20, 30), 2, 2, 6, 6) | _box((20, 30), 10, 20, 12, 22)


def test_evaluate_object_follows_ritm_loop() -> None:
    gt = _two_squares()
    predictor = _PositiveDisks(gt)
    ious = evaluate_object(predictor, gt, max_clicks=5)
    # click 1 at (4, 4) covers the big square (25 of 34 pixels); click 2 at (11, 21) the small one;
    # then RITM's negative click at (0, 0) changes nothing
    np.testing.assert_allclose(ious, [25 / 34, 1.0, 1.0, 1.0, 1.0])
    assert predictor.prev_masks[0] is None
    np.testing.assert_array_equal(predictor.prev_masks[1], _box((20, 30), 2, 2, 6, 6))
    assert evaluate_object(_PositiveDisks(gt), gt, stop_iou=0.9) == pytest.approx([25 / 34, 1.0])
    assert evaluate_object(_PositiveDisks(gt), gt, stop_iou=90) == pytest.approx([25 / 34, 1.0])


def test_evaluate_object_thresholds_probabilities_above_0_49() -> None:
    gt = _box((6, 6), 1, 1, 4, 4)
    assert evaluate_object(lambda clicks, prev: np.where(gt, 0.49, 0.0), gt, max_clicks=2) == [0.0, 0.0]
    assert evaluate_object(lambda clicks, prev: np.where(gt, 0.5, 0.0), gt, max_clicks=2) == [1.0, 1.0]
    with pytest.raises(DataError, match="shape"):
        evaluate_object(lambda clicks, prev: np.zeros((5, 5)), gt)


def test_evaluate_object_ignore_pixels_do_not_count() -> None:
    gt = _box((8, 8), 1, 1, 6, 6)
    ignore = _box((8, 8), 1, 1, 6, 3)  # left half of the object
    ious = evaluate_object(lambda clicks, prev: _box((8, 8), 1, 4, 6, 6).astype(float), gt, ignore, max_clicks=1)
    assert ious == [1.0]


class _Recorder:
    """Fake per-surface predictor: fixed probability maps per surface, every call recorded."""

    def __init__(self, maps: dict[int, np.ndarray]) -> None:
        self.maps = maps
        self.calls: list[tuple[int, list[Click], np.ndarray | None]] = []

    def __call__(self, surface: int, clicks: list[Click], prev_mask: np.ndarray | None) -> np.ndarray:
        self.calls.append((surface, clicks, prev_mask))
        return self.maps[surface]


def _halves() -> np.ndarray:
    """20×40 label map: columns 0-19 are surface 1, columns 20-39 surface 2."""
    label = np.ones((20, 40), dtype=np.int64)
    label[:, 20:] = 2
    return label


def test_evaluate_surfaces_revisits_the_overwritten_surface() -> None:
    shape = (20, 40)
    # surface 1 is predicted perfectly; surface 2's prediction (columns 4-29) never reaches k1 and takes
    # columns 4-19 from surface 1, whose IoU drops to 80/400 = 0.2 (mean < k2)
    predictor = _Recorder({1: _columns(shape, 0, 19), 2: _columns(shape, 4, 29)})
    result = evaluate_surfaces(predictor, _halves(), [1, 2], max_clicks=20)
    assert result.clicks == {1: 2, 2: 20}  # surface 1: one click, then one more on the revisit
    assert result.ious == pytest.approx({1: 1.0, 2: 0.5})  # the revisit gave columns 4-19 back to surface 1
    assert result.failed == (2,)
    assert result.frms == 50.0 and result.nocms == 11.0
    expected = np.zeros(shape, dtype=np.int32)
    expected[:, :20], expected[:, 20:30] = 1, 2
    np.testing.assert_array_equal(result.joint, expected)
    surfaces = [surface for surface, _, _ in predictor.calls]
    assert surfaces == [1] + [2] * 20 + [1]
    _, revisit_clicks, revisit_prev = predictor.calls[-1]
    assert len(revisit_clicks) == 2 and revisit_clicks[0] == predictor.calls[0][1][0]
    assert revisit_clicks[1].positive and revisit_clicks[1].x in range(4, 20)
    np.testing.assert_array_equal(revisit_prev, _box(shape, 0, 0, 19, 3))  # J == 1 before the revisit
    assert predictor.calls[0][2] is None and predictor.calls[1][2] is None  # no previous mask on a first click


def test_evaluate_surfaces_picks_worst_open_surface_and_counts_only_failures_below_k1() -> None:
    shape = (10, 30)
    label = np.repeat(np.array([1, 2, 3]), 10)[None, :].repeat(10, axis=0)
    # surface 3 takes columns 12-19 from surface 2 (IoU 0.2) and never reaches k1 itself (10/18)
    predictor = _Recorder({1: _columns(shape, 0, 9), 2: _columns(shape, 10, 19), 3: _columns(shape, 12, 29)})
    result = evaluate_surfaces(predictor, label, [1, 2, 3], max_clicks=4)
    assert [surface for surface, _, _ in predictor.calls] == [1, 2, 3, 3, 3, 3, 2]
    assert result.clicks == {1: 1, 2: 2, 3: 4}
    assert result.ious == pytest.approx({1: 1.0, 2: 1.0, 3: 1.0})  # surface 3 is whole again after the revisit
    assert result.failed == () and result.frms == 0.0
    assert result.nocms == pytest.approx(7 / 3)


def test_evaluate_surfaces_stops_when_every_surface_has_max_clicks() -> None:
    empty = np.zeros((20, 40), dtype=np.float32)
    result = evaluate_surfaces(_Recorder({1: empty, 2: empty}), _halves(), [1, 2], max_clicks=3)
    assert result.clicks == {1: 3, 2: 3}
    assert result.failed == (1, 2) and result.frms == 100.0


def test_evaluate_surfaces_rejects_bad_arguments() -> None:
    predictor = _Recorder({})
    with pytest.raises(ValueError, match="k1 > k2"):
        evaluate_surfaces(predictor, _halves(), [1, 2], k1=0.7, k2=0.8)
    with pytest.raises(DataError, match=r"\[3\]"):
        evaluate_surfaces(predictor, _halves(), [1, 3])
    with pytest.raises(ValueError, match="distinct"):
        evaluate_surfaces(predictor, _halves(), [1, 1])
    with pytest.raises(ValueError, match="surface"):
        evaluate_surfaces(predictor, _halves(), [0, 1])
    with pytest.raises(DataError, match="integer label map"):
        evaluate_surfaces(predictor, _halves().astype(float), [1, 2])
    ignore = np.zeros((20, 40), dtype=bool)
    ignore[:, 20:] = True
    with pytest.raises(DataError, match=r"\[2\]"):
        evaluate_surfaces(predictor, _halves(), [1, 2], ignore=ignore)


def test_nocms_frms_aggregates_over_all_surfaces_of_all_images() -> None:
    joint = np.zeros((1, 1), dtype=np.int32)
    first = SurfaceResult(clicks={1: 2, 2: 20}, ious={1: 1.0, 2: 0.5}, failed=(2,), joint=joint)
    second = SurfaceResult(clicks={1: 1, 2: 2, 3: 4}, ious={1: 1.0, 2: 1.0, 3: 1.0}, failed=(), joint=joint)
    assert nocms_frms([first, second]) == pytest.approx({"nocms": 29 / 5, "frms": 20.0})
    with pytest.raises(ValueError, match="at least one"):
        nocms_frms([])
