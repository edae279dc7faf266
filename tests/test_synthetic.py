"""The embedded synthetic RGB-D-T street scenes: determinism, schema, instances, conditions, sensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgbxseg.data import RawSample, Sample, collate, validate
from rgbxseg.data.synthetic import CLASSES, PALETTE, THING_CLASSES, SyntheticStreets

SMALL = (96, 128)
SKY, ROAD, PEDESTRIAN = CLASSES.index("sky"), CLASSES.index("road"), CLASSES.index("pedestrian")


def arrays(raw: RawSample) -> list[np.ndarray]:
    instances = [raw.instance_masks, raw.occluded_masks, raw.instance_classes]
    return [raw.image, raw.label, *raw.modalities.values(), *instances]


def test_same_seed_same_scene_and_different_seeds_differ() -> None:
    a, b = SyntheticStreets(n=4, size=SMALL, seed=5), SyntheticStreets(n=4, size=SMALL, seed=5)
    for k in range(4):
        for x, y in zip(arrays(a.load(k)), arrays(b.load(k)), strict=True):
            np.testing.assert_array_equal(x, y)
    other = SyntheticStreets(n=4, size=SMALL, seed=6)
    assert all(not np.array_equal(a.load(k).label, other.load(k).label) for k in range(4))
    assert not np.array_equal(a.load(0).label, a.load(1).label)


def test_scene_does_not_depend_on_the_condition_list() -> None:
    day = SyntheticStreets(n=6, size=SMALL, seed=2, conditions=("day",))
    mixed = SyntheticStreets(n=6, size=SMALL, seed=2, conditions=("night", "fog", "sensor_failure"))
    for k in range(6):
        a, b = day.load(k), mixed.load(k)
        assert b.meta["condition"] == ("night", "fog", "sensor_failure")[k % 3]
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_array_equal(a.instance_masks, b.instance_masks)
        np.testing.assert_array_equal(a.occluded_masks, b.occluded_masks)
        np.testing.assert_array_equal(a.label, day.load_label(k))


@pytest.mark.parametrize("condition", ["day", "night", "fog", "night+no_thermal", "no_depth", "sensor_failure"])
def test_schema_shapes_dtypes_and_ranges(condition: str) -> None:
    dataset = SyntheticStreets(n=3, size=SMALL, seed=1, conditions=(condition,))
    for k in range(3):
        raw = dataset.load(k)
        validate(raw, dataset.num_classes, dataset.modality_channels)
        h, w = SMALL
        assert raw.image.shape == (h, w, 3) and raw.image.dtype == np.float32
        assert 0 <= raw.image.min() and raw.image.max() <= 1
        np.testing.assert_allclose(raw.image * 255, np.round(raw.image * 255), atol=1e-3)  # 8-bit values
        assert raw.label.shape == (h, w) and raw.label.dtype == np.int64
        assert raw.label.min() >= 0 and raw.label.max() < len(CLASSES)
        for array in raw.modalities.values():
            assert array.shape == (h, w, 1) and array.dtype == np.float32
            assert 0 <= array.min() and array.max() <= 1
        n = len(raw.instance_classes)
        assert raw.instance_masks.shape == raw.occluded_masks.shape == (n, h, w)
        assert raw.instance_masks.dtype == raw.occluded_masks.dtype == bool
        assert raw.instance_classes.dtype == np.int64 and set(raw.instance_classes) <= set(THING_CLASSES)
        assert raw.meta["id"] == f"synthetic-1-{k}" and raw.meta["dataset"] == "synthetic"
        assert raw.meta["condition"] == condition


@pytest.mark.parametrize("size", [(64, 200), (200, 64), (97, 131), (16, 16)])
def test_any_reasonable_size(size: tuple[int, int]) -> None:
    dataset = SyntheticStreets(n=2, size=size, conditions=("day", "night"))
    for k in range(2):
        raw = dataset.load(k)
        validate(raw, dataset.num_classes, dataset.modality_channels)
        assert raw.image.shape == (*size, 3) and raw.modalities["thermal"].shape == (*size, 1)


def test_instances_are_exact_and_consistent() -> None:
    dataset = SyntheticStreets(n=6, size=(180, 240), seed=3)
    for k in range(6):
        raw = dataset.load(k)
        visible, occluded = raw.instance_masks, raw.occluded_masks
        assert visible.reshape(len(visible), -1).any(axis=1).all(), "instances without a visible pixel are dropped"
        assert not (visible & occluded).any(), "visible and occluded masks are disjoint"
        assert visible.sum(axis=0).max() <= 1, "a pixel belongs to at most one visible instance"
        owner = np.full(raw.label.shape, -1)
        for i, mask in enumerate(visible):
            owner[mask] = i
        for i, (mask, hidden, cls) in enumerate(zip(visible, occluded, raw.instance_classes, strict=True)):
            assert (raw.label[mask] == cls).all(), "visible pixels carry the instance's class"
            # an occluded pixel shows something else: another class or another instance
            assert ((raw.label[hidden] != cls) | ((owner[hidden] >= 0) & (owner[hidden] != i))).all()
        things = np.isin(raw.label, THING_CLASSES)
        np.testing.assert_array_equal(visible.any(axis=0), things)  # every thing pixel belongs to an instance
        sample = dataset[k]
        for box, mask in zip(sample.instances.boxes, visible, strict=True):
            rows, cols = np.nonzero(mask)
            assert box.tolist() == [cols.min(), rows.min(), cols.max(), rows.max()]


def test_many_tiny_and_occluded_targets_at_full_size() -> None:
    dataset = SyntheticStreets(n=20, seed=0)
    tiny = occluded = 0
    classes = set()
    for k in range(20):
        raw = dataset.load(k)
        areas = raw.instance_masks.sum(axis=(1, 2))
        tiny += int((areas < 100).sum())
        occluded += int(raw.occluded_masks.any(axis=(1, 2)).sum())
        classes |= set(raw.instance_classes.tolist())
    assert tiny >= 100, f"only {tiny} instances under 100 px in 20 scenes"
    assert occluded >= 100, f"only {occluded} partly occluded instances in 20 scenes"
    assert classes == set(THING_CLASSES)


def test_night_is_dark_while_depth_and_thermal_do_not_change() -> None:
    dataset = SyntheticStreets(n=5, size=(120, 160), seed=4)
    for k in range(5):
        day, night = dataset.render(k, "day"), dataset.render(k, "night")
        assert night.image.mean() < 0.5 * day.image.mean()
        assert 0.05 <= night.meta["illumination"] <= 0.15
        # The sensor noise comes first in the condition stream: depth and thermal are bit-identical.
        np.testing.assert_array_equal(day.modalities["thermal"], night.modalities["thermal"])
        np.testing.assert_array_equal(day.modalities["depth"], night.modalities["depth"])
        np.testing.assert_array_equal(day.label, night.label)


def test_fog_hides_far_pixels_and_barely_touches_thermal() -> None:
    dataset = SyntheticStreets(n=5, size=(120, 160), seed=5)
    for k in range(5):
        day, fog = dataset.render(k, "day"), dataset.render(k, "fog")
        depth = day.modalities["depth"][..., 0] * 80  # metres
        far, near = (depth > 30) & (depth < 79), depth < 8
        assert 0.04 <= fog.meta["fog_beta"] <= 0.09
        assert fog.image[far].std() < 0.4 * day.image[far].std(), "fog washes out far contrast"
        assert fog.image[near].std() > 0.4 * day.image[near].std(), "near objects stay visible"
        assert np.abs(fog.modalities["thermal"] - day.modalities["thermal"]).mean() < 0.03


def test_thermal_and_depth_follow_the_scene() -> None:
    dataset = SyntheticStreets(n=6, size=(180, 240), seed=6)
    for k in range(6):
        raw = dataset.load(k)
        thermal, depth = raw.modalities["thermal"][..., 0], raw.modalities["depth"][..., 0]
        sky, road, people = raw.label == SKY, raw.label == ROAD, raw.label == PEDESTRIAN
        assert (depth[sky] == 1).all()
        assert thermal[sky].mean() < 0.15 < thermal[road].mean()
        if people.sum() > 50:
            assert thermal[people].mean() > thermal[road].mean() + 0.15, "people are warm"
        bottom = road[-1]  # the road's depth grows towards the horizon
        assert (depth[-1][bottom] < depth[len(depth) * 3 // 4][bottom]).all()


def test_missing_sensors_are_absent_not_zero() -> None:
    dataset = SyntheticStreets(n=2, size=SMALL, conditions=("night+no_thermal", "no_depth"))
    night, day = dataset.load(0), dataset.load(1)
    assert set(night.modalities) == {"depth"} and night.meta["missing"] == ["thermal"]
    assert set(day.modalities) == {"thermal"} and day.meta["missing"] == ["depth"]
    batch = collate([dataset[0], dataset[1]])
    assert batch.present["depth"].tolist() == [True, False] and batch.present["thermal"].tolist() == [False, True]


def test_sensor_failure_drops_exactly_one_requested_sensor() -> None:
    dataset = SyntheticStreets(n=16, size=SMALL, conditions=("sensor_failure",))
    lost = []
    for k in range(16):
        raw = dataset.load(k)
        assert len(raw.meta["missing"]) == 1 and len(raw.modalities) == 1
        assert raw.meta["missing"][0] not in raw.modalities
        lost.append(raw.meta["missing"][0])
    assert set(lost) == {"depth", "thermal"}
    only_depth = SyntheticStreets(n=2, size=SMALL, conditions=("night+sensor_failure",), modalities=("depth",))
    assert only_depth.load(0).modalities == {} and only_depth.load(0).meta["missing"] == ["depth"]


def test_rgb_only_dataset_has_no_modalities() -> None:
    dataset = SyntheticStreets(n=1, size=SMALL, conditions=("fog",), modalities=())
    raw = dataset.load(0)
    assert raw.modalities == {} and raw.meta["missing"] == [] and dataset.modality_channels == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conditions": ("dusk",)}, "valid conditions are a lighting \\(day, night, fog\\)"),
        ({"conditions": ("day+night",)}, "unknown condition 'day\\+night'"),
        ({"conditions": ("no_lidar",)}, "no_thermal"),
        ({"conditions": "day"}, "non-empty list"),
        ({"modalities": ("depth", "lidar")}, "valid: depth, thermal"),
        ({"modalities": (), "conditions": ("sensor_failure",)}, "needs at least one modality"),
        ({"size": (8, 8)}, "size must be"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticStreets(n=1, **kwargs)


def test_render_rejects_unknown_condition_and_negative_index() -> None:
    dataset = SyntheticStreets(n=1, size=SMALL)
    with pytest.raises(ValueError, match="unknown condition 'fog\\+smoke'"):
        dataset.render(0, "fog+smoke")
    with pytest.raises(ValueError, match="non-negative"):
        dataset.render(-1, "day")


def test_getitem_returns_a_sample_of_tensors() -> None:
    dataset = SyntheticStreets(n=3, size=SMALL, conditions=("day", "night"))
    assert len(dataset) == 3 and dataset.num_classes == 9 and dataset.thing_classes == (5, 6, 7, 8)
    assert dataset.palette.shape == (9, 3) and dataset.palette.dtype == np.uint8
    np.testing.assert_array_equal(dataset.palette, PALETTE)
    assert len({tuple(c) for c in dataset.palette}) == 9
    sample = dataset[2]
    assert isinstance(sample, Sample)
    assert sample.image.shape == (3, *SMALL) and sample.image.dtype == torch.float32
    assert sample.label.shape == SMALL and sample.label.dtype == torch.int64
    assert {k: tuple(v.shape) for k, v in sample.modalities.items()} == {"depth": (1, *SMALL), "thermal": (1, *SMALL)}
    n = len(sample.instances)
    assert n > 0 and sample.instances.boxes.shape == (n, 4) and sample.instances.masks.shape == (n, *SMALL)
    assert sample.meta["condition"] == "day"
    with pytest.raises(IndexError):
        dataset[3]
