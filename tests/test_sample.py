"""The sample schema: validation messages, tensor conversion, collation with missing sensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgbxseg.data import RawSample, collate, to_sample, validate
from rgbxseg.data.augment import TinyTargetZoom
from rgbxseg.errors import DataError


def raw(h: int = 8, w: int = 10, **modalities: np.ndarray) -> RawSample:
    return RawSample(
        image=np.zeros((h, w, 3), np.float32),
        label=np.zeros((h, w), np.int64),
        modalities=dict(modalities),
        meta={"id": "x", "files": {"image": "/data/x.png", "label": "/data/x_label.png", "depth": "/data/x_depth.png"}},
    )


def test_validate_names_files() -> None:
    with pytest.raises(DataError, match="/data/x_depth.png: modality 'depth' is 4×10 but the image is 8×10"):
        validate(raw(depth=np.zeros((4, 10, 1), np.float32)), num_classes=2)
    with pytest.raises(DataError, match="/data/x_depth.png: modality 'depth' has 2 channel"):
        validate(raw(depth=np.zeros((8, 10, 2), np.float32)), num_classes=2, modality_channels={"depth": 1})
    bad = raw()
    bad.label[0, 0] = -3
    with pytest.raises(DataError, match=r"/data/x_label.png: label ids \[-3\] are out of range"):
        validate(bad, num_classes=2)
    bad = raw()
    bad.image[1, 1, 1] = np.inf
    with pytest.raises(DataError, match="/data/x.png: image has 1 NaN/inf"):
        validate(bad, num_classes=2)
    bad = raw()
    bad.image = bad.image[..., :2]
    with pytest.raises(DataError, match=r"/data/x.png: expected an RGB image"):
        validate(bad, num_classes=2)
    ok = raw()
    ok.label[0, 0] = 255
    validate(ok, num_classes=2)


def test_collate_flags_absent_modalities() -> None:
    with_depth = to_sample(raw(depth=np.ones((8, 10, 1), np.float32)))
    without = to_sample(raw())
    batch = collate([with_depth, without])
    assert batch.modalities["depth"].shape == (2, 1, 8, 10)
    assert batch.present["depth"].tolist() == [True, False]
    assert batch.modalities["depth"][1].abs().sum() == 0 and batch.modalities["depth"][0].min() == 1
    assert batch.instances == [None, None]
    moved = batch.to("cpu")
    assert moved.image.dtype == torch.float32 and moved.label.dtype == torch.int64


def test_to_sample_boxes_from_masks() -> None:
    r = raw()
    masks = np.zeros((2, 8, 10), bool)
    masks[0, 2:4, 3:7] = True
    r.instance_masks, r.instance_classes = masks, np.array([1, 1])
    s = to_sample(r)
    assert len(s.instances) == 1  # the empty second mask is dropped
    assert s.instances.boxes.tolist() == [[3.0, 2.0, 6.0, 3.0]]
    assert s.instances.areas.tolist() == [8]
    assert not s.instances.occluded.any()


def test_boxes_from_masks_match_torchvision() -> None:
    from torchvision.ops import masks_to_boxes

    from rgbxseg.data.sample import boxes_from_masks

    rng = np.random.default_rng(0)
    masks = rng.random((12, 17, 23)) > 0.93
    masks[0] = False
    masks[0, 16, 22] = True  # a single corner pixel
    masks = masks[masks.reshape(12, -1).any(1)]
    expected = masks_to_boxes(torch.from_numpy(masks)).numpy()
    np.testing.assert_array_equal(boxes_from_masks(masks), expected)


def test_zero_instances_survive_conversion_and_tiny_zoom() -> None:
    """A slice or crop with no instance at all (N = 0 masks) is a valid sample, not a reshape error."""
    raw = RawSample(
        image=np.zeros((8, 10, 3), np.float32),
        label=np.zeros((8, 10), np.int64),
        instance_masks=np.zeros((0, 8, 10), bool),
        occluded_masks=np.zeros((0, 8, 10), bool),
        instance_classes=np.zeros(0, np.int64),
    )
    zoom = TinyTargetZoom(p=1.0, seed=0)
    assert zoom(raw).image.shape == (8, 10, 3)
    sample = to_sample(raw)
    assert len(sample.instances) == 0 and sample.instances.boxes.shape == (0, 4)
