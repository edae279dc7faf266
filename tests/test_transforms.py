"""Joint transforms keep RGB, modalities, label and instance masks aligned; colour touches RGB only."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from rgbxseg.data import JointTransform, RawSample, to_sample, train_transforms


def coded_sample(h: int = 60, w: int = 80) -> RawSample:
    """Every channel encodes the pixel position, so any misalignment is visible after a transform."""
    yy, xx = np.mgrid[0:h, 0:w]
    code = (yy * w + xx).astype(np.float32) / (h * w)
    label = (xx // 20 + 4 * (yy // 30)).astype(np.int64)  # 8 blocks, ids 0..7
    masks = np.stack([label == 2, label == 5])
    occluded = np.stack([np.zeros_like(masks[0]), label == 6])
    return RawSample(
        image=np.repeat(code[..., None], 3, axis=2),
        label=label,
        modalities={"depth": code[..., None].copy(), "thermal": np.stack([code, 1 - code], axis=2)},
        instance_masks=masks,
        occluded_masks=occluded,
        instance_classes=np.array([2, 5]),
        meta={"id": "coded"},
    )


@pytest.mark.parametrize("seed", range(5))
def test_geometry_is_shared(seed: int) -> None:
    raw = coded_sample()
    out = train_transforms((48, 64), color_jitter=0.0, seed=seed)(raw)
    assert out.image.shape == (48, 64, 3) and out.label.shape == (48, 64)
    valid = out.label != 255
    np.testing.assert_allclose(out.modalities["depth"][..., 0][valid], out.image[..., 0][valid], atol=1e-5)
    np.testing.assert_allclose(out.modalities["thermal"][..., 0][valid], out.image[..., 0][valid], atol=1e-5)
    np.testing.assert_allclose(out.modalities["thermal"][..., 1][valid], 1 - out.image[..., 0][valid], atol=1e-5)
    # every labelled pixel came from the block its label says (nearest neighbour, no mixing)
    assert out.instance_masks.shape[1:] == (48, 64)
    for k, cls in enumerate(raw.instance_classes):
        np.testing.assert_array_equal(out.instance_masks[k], out.label == cls)
    np.testing.assert_array_equal(out.occluded_masks[1], out.label == 6)
    assert not out.occluded_masks[0].any()


def test_padding_fills_label_with_ignore_and_masks_with_false() -> None:
    raw = coded_sample(20, 20)
    out = JointTransform([A.PadIfNeeded(40, 40, border_mode=0, fill=0, fill_mask=255)])(raw)
    assert (out.label == 255).sum() == 40 * 40 - 20 * 20
    assert out.instance_masks.sum() == raw.instance_masks.sum()


def test_photometric_touches_rgb_only() -> None:
    raw = coded_sample()
    out = JointTransform(photometric=[A.ColorJitter(0.5, 0.5, 0.5, 0.1, p=1.0)], seed=0)(raw)
    assert not np.allclose(out.image, raw.image)
    assert out.image.min() >= 0 and out.image.max() <= 1
    np.testing.assert_array_equal(out.modalities["depth"], raw.modalities["depth"])
    np.testing.assert_array_equal(out.label, raw.label)


def test_boxes_follow_flip() -> None:
    raw = coded_sample()
    flipped = to_sample(JointTransform([A.HorizontalFlip(p=1.0)])(raw))
    original = to_sample(raw)
    w = raw.image.shape[1]
    x0, y0, x1, y1 = original.instances.boxes[0].tolist()
    assert flipped.instances.boxes[0].tolist() == [w - 1 - x1, y0, w - 1 - x0, y1]


def test_instances_cropped_away_are_dropped() -> None:
    raw = coded_sample()
    out = to_sample(JointTransform([A.Crop(0, 0, 20, 20)])(raw))  # only block 0 remains
    assert len(out.instances) == 0 and out.instances.boxes.shape == (0, 4)


def test_wrong_transform_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="ColorJitter is not a geometric"):
        JointTransform([A.ColorJitter()])
    with pytest.raises(TypeError, match="HorizontalFlip is not a photometric"):
        JointTransform(photometric=[A.HorizontalFlip()])
