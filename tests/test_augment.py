"""DAMCSeg augmentations: occlusion touches RGB only, tiny-target zoom enlarges and keeps alignment,
both are deterministic under reseed, the pipeline hands out seed + i."""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import numpy as np
import pytest

from rgbxseg.data.augment import Pipeline, RandomOcclusion, TinyTargetZoom, with_damcseg_augmentations
from rgbxseg.data.sample import RawSample, to_sample
from rgbxseg.data.transforms import JointTransform


def street(h: int = 64, w: int = 80) -> RawSample:
    """Position-coded channels (any misalignment shows), a 5×5 tiny instance and a 40×40 large one."""
    yy, xx = np.mgrid[0:h, 0:w]
    code = ((yy * w + xx) / (h * w)).astype(np.float32)
    label = np.zeros((h, w), dtype=np.int64)
    label[40:45, 60:65] = 6
    label[5:45, 5:45] = 5
    label[20:30, 30:45] = 7  # occluder in front of the large instance
    masks = np.stack([label == 6, label == 5])
    occluded = np.zeros_like(masks)
    occluded[1, 20:30, 30:45] = True
    return RawSample(
        image=np.stack([code, 1 - code, np.full_like(code, 0.5)], axis=2),
        label=label,
        modalities={"depth": code[..., None].copy(), "thermal": np.stack([code, code**2], axis=2)},
        instance_masks=masks,
        occluded_masks=occluded,
        instance_classes=np.array([6, 5], dtype=np.int64),
        meta={"id": "street"},
    )


def assert_same_types(out: RawSample, raw: RawSample) -> None:
    assert out.image.shape == raw.image.shape and out.image.dtype == np.float32
    assert out.label.shape == raw.label.shape and out.label.dtype == np.int64
    for name, array in raw.modalities.items():
        assert out.modalities[name].shape == array.shape and out.modalities[name].dtype == np.float32
    assert out.instance_masks.shape == raw.instance_masks.shape and out.instance_masks.dtype == bool
    assert out.occluded_masks.shape == raw.occluded_masks.shape and out.occluded_masks.dtype == bool
    assert out.meta == raw.meta


def assert_equal_samples(first: RawSample, second: RawSample) -> None:
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.label, second.label)
    np.testing.assert_array_equal(first.instance_masks, second.instance_masks)
    for name, array in first.modalities.items():
        np.testing.assert_array_equal(array, second.modalities[name])


def test_occlusion_changes_rgb_only() -> None:
    raw = street()
    before = raw.image.copy()
    out = RandomOcclusion(p=1.0, seed=0)(raw)
    assert_same_types(out, raw)
    np.testing.assert_array_equal(raw.image, before)  # the input is not modified
    changed = (out.image != raw.image).any(axis=2)
    assert 0 < changed.mean() <= 3 * 0.2 * 0.2 + 0.01
    assert out.image.min() >= 0 and out.image.max() <= 1
    np.testing.assert_array_equal(out.label, raw.label)
    np.testing.assert_array_equal(out.instance_masks, raw.instance_masks)
    np.testing.assert_array_equal(out.occluded_masks, raw.occluded_masks)
    for name, array in raw.modalities.items():
        assert out.modalities[name] is array


def test_occlusion_probability_zero_is_identity() -> None:
    raw = street()
    assert RandomOcclusion(p=0.0, seed=0)(raw) is raw


@pytest.mark.parametrize("make", [lambda: RandomOcclusion(p=1.0), lambda: TinyTargetZoom(p=1.0)])
def test_reseed_is_deterministic(make: Callable[[], RandomOcclusion | TinyTargetZoom]) -> None:
    first, second = make(), make()
    first.reseed(7)
    second.reseed(7)
    assert_equal_samples(first(street()), second(street()))
    second.reseed(8)
    assert not np.array_equal(first(street()).image, second(street()).image)


def test_zoom_enlarges_the_tiny_instance_and_keeps_alignment() -> None:
    raw = street()
    out = TinyTargetZoom(p=1.0, max_area=100, zoom=(2.0, 2.0), seed=0)(raw)
    assert_same_types(out, raw)
    assert out.instance_masks[0].sum() == 4 * 25  # a 2× zoom of the whole 5×5 square (nearest neighbour)
    np.testing.assert_array_equal(out.label[out.instance_masks[0]], 6)
    np.testing.assert_allclose(out.modalities["depth"][..., 0], out.image[..., 0], atol=1e-5)
    np.testing.assert_allclose(out.modalities["thermal"][..., 0], out.image[..., 0], atol=1e-5)
    sample = to_sample(out)
    assert sample.instances is not None and 6 in sample.instances.classes.tolist()


def test_zoom_window_holds_the_whole_instance_at_random_places() -> None:
    places = set()
    for seed in range(8):
        out = TinyTargetZoom(p=1.0, max_area=100, zoom=(2.0, 2.0), seed=seed)(street())
        rows, cols = np.nonzero(out.instance_masks[0])
        assert len(rows) == 100  # never cut by the window
        places.add((rows.min(), cols.min()))
    assert len(places) > 1


def test_zoom_centres_an_instance_wider_than_the_window() -> None:
    raw = street()
    line = np.zeros((1, 64, 80), dtype=bool)
    line[0, 2, 10:70] = True  # 60 px: tiny by area, wider than the 40 px window of a 2× zoom
    raw.instance_masks, raw.occluded_masks = line, np.zeros_like(line)
    raw.instance_classes = np.array([6], dtype=np.int64)
    out = TinyTargetZoom(p=1.0, max_area=100, zoom=(2.0, 2.0), seed=0)(raw)
    assert out.instance_masks[0].any(axis=0).all()  # the window (columns 20-59) lies within the line
    column = out.image[0, 0, 0] * 64 * 80 % 80  # the code's column of the window's top-left pixel
    assert column == pytest.approx(20, abs=1e-2)


def test_zoom_without_tiny_instance_is_identity() -> None:
    raw = street()
    assert TinyTargetZoom(p=1.0, max_area=20, seed=0)(raw) is raw  # 25 px is not below 20
    bare = RawSample(image=raw.image, label=raw.label)
    assert TinyTargetZoom(p=1.0, seed=0)(bare) is bare


def test_zoom_keeps_missing_occluded_masks_missing() -> None:
    raw = street()
    raw.occluded_masks = None
    out = TinyTargetZoom(p=1.0, max_area=100, seed=0)(raw)
    assert out.occluded_masks is None and out.instance_masks.shape == raw.instance_masks.shape


class Recorder:
    """An identity step that records the seeds it is given."""

    def __init__(self) -> None:
        self.seeds: list[int] = []

    def reseed(self, seed: int) -> None:
        self.seeds.append(seed)

    def __call__(self, raw: RawSample) -> RawSample:
        return raw


def test_pipeline_reseeds_each_step_with_seed_plus_index() -> None:
    steps = [Recorder(), Recorder(), Recorder()]
    Pipeline(steps).reseed(100)
    assert [step.seeds for step in steps] == [[100], [101], [102]]


def test_pipeline_is_deterministic_end_to_end() -> None:
    def build() -> Pipeline:
        joint = JointTransform([A.HorizontalFlip(p=0.5)], [A.ColorJitter(0.2, 0.2, 0.2, 0.02, p=1.0)])
        return Pipeline([joint, RandomOcclusion(p=1.0), TinyTargetZoom(p=1.0, max_area=100)])

    first, second = build(), build()
    first.reseed(3)
    second.reseed(3)
    assert_equal_samples(first(street()), second(street()))


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="probability"):
        RandomOcclusion(p=1.5)
    with pytest.raises(ValueError, match="size"):
        RandomOcclusion(size=(0.3, 0.1))
    with pytest.raises(ValueError, match="zoom"):
        TinyTargetZoom(zoom=(0.5, 2.0))
    with pytest.raises(ValueError, match="at least one"):
        Pipeline([])
    with pytest.raises(TypeError, match="seeded transform"):
        Pipeline([lambda raw: raw])


def test_damcseg_training_transform_orders_zoom_joint_occlusion() -> None:
    joint = JointTransform([A.HorizontalFlip(p=0.5)], seed=0)
    assert with_damcseg_augmentations(joint) is joint  # nothing extra asked: the joint transform alone
    pipeline = with_damcseg_augmentations(joint, occlusion=1.0, tiny_zoom=1.0)
    assert isinstance(pipeline, Pipeline)
    assert [type(step) for step in pipeline.steps] == [TinyTargetZoom, JointTransform, RandomOcclusion]
    raw = street()
    pipeline.reseed(7)
    first = pipeline(raw)
    pipeline.reseed(7)
    assert_equal_samples(first, pipeline(raw))
