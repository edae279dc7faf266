"""RITM click simulator, click disk maps and the joint mask, on hand-made masks with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from rgbxseg.errors import DataError, RgbxsegError
from rgbxseg.interactive import MAX_CLICKS, Click, JointMask, click_maps, next_click, noc
from rgbxseg.interactive.click_simulator import CLICK_RADIUS, PRED_THRESHOLD


def _box(shape: tuple[int, int], top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """Bool mask of ``shape`` that is True on rows top..bottom, columns left..right (inclusive)."""
    mask = np.zeros(shape, dtype=bool)
    mask[top : bottom + 1, left : right + 1] = True
    return mask


def test_constants_are_ritm_defaults() -> None:
    assert (MAX_CLICKS, PRED_THRESHOLD, CLICK_RADIUS) == (20, 0.49, 5)


def test_first_click_at_centre_of_odd_square() -> None:
    gt = _box((11, 11), 2, 3, 6, 7)  # 5×5, centre (4, 5) at distance 3, every other pixel nearer the edge
    assert next_click(np.zeros_like(gt), gt) == Click(4, 5, True)


def test_even_square_takes_first_argmax_in_row_major_order() -> None:
    gt = _box((10, 10), 2, 3, 5, 6)  # 4×4: the inner 2×2 (rows 3-4, cols 4-5) tie at distance 2
    assert next_click(np.zeros(gt.shape, dtype=np.uint8), gt.astype(np.uint8)) == Click(3, 4, True)


def test_large_false_positive_region_gives_negative_click_inside_it() -> None:
    gt = _box((20, 20), 1, 1, 3, 3)  # 3×3 missed object: max FN distance 2
    pred = _box((20, 20), 8, 8, 15, 15)  # 8×8 false positive: max FP distance 4 on rows/cols 11-12
    assert next_click(pred, gt) == Click(11, 11, False)


def test_equal_distances_give_a_negative_click() -> None:
    gt = _box((12, 12), 1, 1, 3, 3)  # FN 3×3, max 2
    pred = _box((12, 12), 7, 7, 9, 9)  # FP 3×3, max 2: not strictly greater, so negative
    assert next_click(pred, gt) == Click(8, 8, False)


def test_ignore_pixels_are_not_errors_and_never_clicked() -> None:
    gt = _box((9, 14), 2, 2, 6, 11)  # 5×10 object
    ignore = _box((9, 14), 0, 0, 8, 6)  # its left half (cols 2-6) ignored: the 5×5 right half is left
    click = next_click(np.zeros_like(gt), gt, ignore)
    assert click == Click(4, 9, True)
    assert not ignore[click.y, click.x]


def test_ignore_covering_all_errors_gives_ritm_fallback() -> None:
    gt = _box((6, 6), 1, 1, 4, 4)
    click = next_click(np.zeros_like(gt), gt, ignore=np.ones_like(gt))
    assert click == Click(0, 0, False)


def test_clicked_pixel_is_not_clicked_again() -> None:
    gt = _box((11, 11), 2, 3, 6, 7)  # centre (4, 5); its 8 neighbours tie at distance 2
    empty = np.zeros_like(gt)
    assert next_click(empty, gt, clicked=[Click(4, 5, True)]) == Click(3, 4, True)
    assert next_click(empty, gt, clicked=[(4, 5), (3, 4)]) == Click(3, 5, True)


def test_image_border_counts_as_boundary() -> None:
    gt = _box((10, 10), 0, 0, 4, 4)  # 5×5 in the corner: without the pad (0, 0) would be farthest (5)
    assert next_click(np.zeros_like(gt), gt) == Click(2, 2, True)


def test_perfect_prediction_gives_ritm_negative_click_at_origin() -> None:
    gt = _box((8, 8), 2, 2, 5, 5)
    assert next_click(gt, gt) == Click(0, 0, False)


def test_next_click_rejects_bad_masks() -> None:
    gt = _box((5, 5), 1, 1, 3, 3)
    with pytest.raises(DataError, match="shape"):
        next_click(np.zeros((5, 6), dtype=bool), gt)
    with pytest.raises(DataError, match="2-D"):
        next_click(np.zeros((1, 5, 5), dtype=bool), gt[None])
    with pytest.raises(DataError, match="0 and 1"):
        next_click(np.full((5, 5), 2), gt)
    with pytest.raises(DataError, match="dtype"):
        next_click(np.zeros((5, 5), dtype=np.float32), gt)
    with pytest.raises(RgbxsegError, match="outside"):
        next_click(np.zeros_like(gt), gt, clicked=[(5, 0)])


def test_click_maps_disk_of_radius_5_has_81_pixels() -> None:
    maps = click_maps([Click(20, 20, True), Click(40, 15, False)], (60, 50))
    assert maps.shape == (2, 60, 50) and maps.dtype == np.float32
    assert maps[0].sum() == 81 and maps[1].sum() == 81
    assert maps[0, 20, 25] == 1 and maps[0, 20, 26] == 0 and maps[0, 24, 23] == 1 and maps[0, 24, 24] == 0
    assert maps[1, 40, 15] == 1 and maps[0, 40, 15] == 0


def test_click_maps_clip_at_border_and_do_not_add_overlaps() -> None:
    maps = click_maps([Click(0, 0, True), Click(0, 1, True)], (30, 30), radius=5)
    corner = click_maps([Click(0, 0, True)], (30, 30))
    assert corner[0].sum() == 26  # quarter disk: 6 + 5 + 5 + 5 + 4 + 1
    assert maps.max() == 1.0 and maps[1].sum() == 0
    assert click_maps([], (4, 4)).sum() == 0


def test_click_maps_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="radius"):
        click_maps([Click(0, 0, True)], (4, 4), radius=-1)
    with pytest.raises(ValueError, match="shape"):
        click_maps([Click(0, 0, True)], (4,))


def test_joint_mask_write_overwrite_and_revisit() -> None:
    joint = JointMask((4, 6))
    assert not joint.array.any()
    joint.write(1, _box((4, 6), 0, 0, 3, 3))
    joint.write(2, _box((4, 6), 0, 3, 3, 5))  # takes column 3 from surface 1
    assert joint.mask(1).sum() == 12 and joint.mask(2).sum() == 12
    joint.write(1, _box((4, 6), 0, 1, 3, 4))  # revisit: column 0 leaves surface 1, columns 3-4 join it
    expected = np.array([[0, 1, 1, 1, 1, 2]] * 4, dtype=np.int32)
    np.testing.assert_array_equal(joint.array, expected)
    joint.write(2, np.zeros((4, 6), dtype=np.uint8))  # surface 2 leaves column 5 only: surface 1 untouched
    np.testing.assert_array_equal(joint.array, np.where(expected == 2, 0, expected))


def test_joint_mask_array_and_copy_are_independent() -> None:
    joint = JointMask((3, 3))
    joint.write(1, _box((3, 3), 0, 0, 0, 0))
    snapshot = joint.copy()
    joint.array[...] = 7
    joint.write(1, np.zeros((3, 3), dtype=bool))
    assert joint.array.dtype == np.int32 and not joint.array.any()
    assert snapshot.array[0, 0] == 1 and snapshot.array.sum() == 1


@pytest.mark.parametrize("surface", [0, -1, 1.0, True])
def test_joint_mask_rejects_bad_surfaces(surface: object) -> None:
    with pytest.raises(ValueError, match="surface"):
        JointMask((2, 2)).write(surface, np.ones((2, 2), dtype=bool))  # type: ignore[arg-type]


def test_joint_mask_rejects_mask_of_wrong_shape() -> None:
    with pytest.raises(DataError, match="shape"):
        JointMask((2, 2)).write(1, np.ones((2, 3), dtype=bool))


def test_noc_is_re_exported() -> None:
    assert noc([0.5, 0.9], 0.85) == 2
