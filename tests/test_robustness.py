"""Tests of rgbxseg.robustness: corruptions on RGB only, missing-modality protocols, the suite."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest

from rgbxseg.data import SyntheticStreets, collate
from rgbxseg.data.sample import RawSample
from rgbxseg.robustness import (
    CORRUPTIONS,
    PROTOCOLS,
    SEVERITIES,
    Corrupt,
    DropAll,
    DropModality,
    NoisyModality,
    RandomMissing,
    clean,
    fog_depth,
    low_light,
    missing_protocols,
    robustness_suite,
    sample_key,
)

NAMES = ("low_light", "fog", "gaussian_noise", "motion_blur", "defocus_blur", "jpeg")
RANDOM = ("low_light", "fog", "gaussian_noise", "motion_blur")  # those that draw random numbers


def make_sample(sample_id: str | None = "s0", h: int = 64, w: int = 96, image: np.ndarray | None = None) -> RawSample:
    """A textured RGB image with edges, a depth ramp (near left, far right), thermal, label and instances."""
    rng = np.random.default_rng(123)
    if image is None:
        # Multi-scale (roughly 1/f) texture plus step edges, like natural images. No periodic pattern: a disk
        # blur's transfer function has side lobes, so on a grating defocus damage is not monotone.
        image = np.full((h, w, 3), 0.45, np.float32)
        for cell, amplitude in ((16, 0.3), (8, 0.2), (4, 0.12), (2, 0.08)):
            grid = rng.random((h // cell + 1, w // cell + 1, 3)).astype(np.float32) - 0.5
            image += amplitude * cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)
        image[h // 3 : h // 2, w // 4 :] += 0.25
        image[:, w // 2 : w // 2 + 5] -= 0.3
        image = np.clip(image, 0, 1)
        image[0, 0], image[-1, -1] = 0.0, 1.0
    depth = np.tile(np.linspace(0.05, 1.0, w, dtype=np.float32), (h, 1))[..., None]
    masks = np.zeros((2, h, w), bool)
    masks[0, 10:20, 10:30], masks[1, 30:50, 40:60] = True, True
    meta = {"dataset": "test", "condition": "day"} | ({} if sample_id is None else {"id": sample_id})
    return RawSample(
        image=image,
        label=rng.integers(0, 5, (h, w)).astype(np.int64),
        modalities={"depth": depth, "thermal": rng.random((h, w, 1), dtype=np.float32)},
        instance_masks=masks,
        occluded_masks=np.zeros_like(masks),
        instance_classes=np.array([1, 2], np.int64),
        meta=meta,
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


# ----------------------------------------------------------------------------------------------------------
# Corruptions


def test_registry_lists_the_six_corruptions_in_order() -> None:
    assert tuple(CORRUPTIONS) == NAMES
    assert SEVERITIES == (1, 2, 3, 4, 5)


@pytest.mark.parametrize("name", NAMES)
def test_corruption_is_deterministic_per_seed_and_id(name: str) -> None:
    sample = make_sample("a")
    first = Corrupt(name, 3, seed=7)(sample).image
    again = Corrupt(name, 3, seed=7)(make_sample("a")).image  # a fresh transform, a fresh copy of the sample
    np.testing.assert_array_equal(first, again)
    if name in RANDOM:
        assert not np.array_equal(first, Corrupt(name, 3, seed=7)(make_sample("b")).image), "ids must differ"
        assert not np.array_equal(first, Corrupt(name, 3, seed=8)(sample).image), "seeds must differ"


@pytest.mark.parametrize("name", NAMES)
def test_corruption_changes_rgb_only(name: str) -> None:
    sample = make_sample()
    image_before, meta_before = sample.image.copy(), dict(sample.meta)
    out = Corrupt(name, 4)(sample)
    assert out.label is sample.label and out.modalities is sample.modalities
    assert out.modalities["depth"] is sample.modalities["depth"]
    assert out.instance_masks is sample.instance_masks and out.occluded_masks is sample.occluded_masks
    assert out.instance_classes is sample.instance_classes
    assert not np.array_equal(out.image, sample.image)
    np.testing.assert_array_equal(sample.image, image_before)  # the input is untouched
    assert sample.meta == meta_before
    assert out.meta == meta_before | {"corruption": f"{name}@4"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("severity", SEVERITIES)
def test_output_is_float32_in_unit_range(name: str, severity: int) -> None:
    sample = make_sample()
    out = Corrupt(name, severity)(sample).image
    assert out.dtype == np.float32 and out.shape == sample.image.shape
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("with_depth", [True, False])
def test_damage_strictly_increases_with_severity(name: str, with_depth: bool) -> None:
    sample = make_sample()
    if not with_depth:
        sample.modalities.pop("depth")
    scores = [psnr(Corrupt(name, s)(sample).image, sample.image) for s in SEVERITIES]
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)), f"{name}: PSNR {scores}"


@pytest.mark.parametrize("name", NAMES)
def test_damage_strictly_increases_with_severity_on_a_street_scene(name: str) -> None:
    for condition in ("day", "night"):
        sample = SyntheticStreets(n=1, size=(96, 128), seed=3).render(0, condition)
        scores = [psnr(Corrupt(name, s)(sample).image, sample.image) for s in SEVERITIES]
        assert all(a > b for a, b in zip(scores, scores[1:], strict=False)), f"{name}, {condition}: PSNR {scores}"


def test_fog_is_denser_where_depth_is_larger() -> None:
    sample = make_sample(image=np.full((32, 48, 3), 0.1, np.float32), h=32, w=48)
    out = Corrupt("fog", 3)(sample).image
    haze = (out - sample.image).mean(axis=(0, 2))  # per column, depth grows left to right
    assert haze[0] > 0 and np.all(np.diff(haze) > 0)
    assert np.ptp(out[:, -1], axis=0).max() < 1e-6  # one depth per column: one colour per column


def test_fog_without_depth_is_uniform_and_with_sparse_depth_too() -> None:
    flat = np.full((32, 48, 3), 0.1, np.float32)
    no_depth = make_sample(image=flat, h=32, w=48)
    no_depth.modalities.pop("depth")
    out = Corrupt("fog", 3)(no_depth).image
    assert out.mean() > 0.2 and np.ptp(out.mean(axis=2)) < 1e-6
    sparse = make_sample(image=flat, h=32, w=48)
    every_fourth_column = (np.arange(48) % 4 == 0)[:, None]  # 25 % valid: a sparse LiDAR projection
    sparse.modalities["depth"] = np.where(every_fourth_column, sparse.modalities["depth"], 0)
    assert fog_depth(sparse) is None
    np.testing.assert_array_equal(Corrupt("fog", 3)(sparse).image, out)


def test_fog_depth_normalisation() -> None:
    sample = make_sample()
    unit = fog_depth(sample)
    np.testing.assert_array_equal(unit, sample.modalities["depth"][..., 0])  # [0, 1] maps are used as stored
    metric = make_sample()
    metric.modalities["depth"] = sample.modalities["depth"] * 40.0  # a float map in metres
    np.testing.assert_allclose(fog_depth(metric), unit, rtol=1e-6)
    holes = make_sample()
    holes.modalities["depth"] = holes.modalities["depth"].copy()
    holes.modalities["depth"][:4] = 0.0  # no return: far
    assert np.all(fog_depth(holes)[:4] == 1.0)


def test_low_light_darker_and_noisier_with_severity() -> None:
    flat = make_sample(image=np.full((128, 128, 3), 0.5, np.float32), h=128, w=128)
    outs = [Corrupt("low_light", s)(flat).image for s in SEVERITIES]
    means = [float(o.mean()) for o in outs]
    stds = [float(o.std()) for o in outs]
    relative = [s / m for s, m in zip(stds, means, strict=True)]
    assert means[0] < 0.5 and all(a > b for a, b in zip(means, means[1:], strict=False)), means
    assert all(a < b for a, b in zip(stds, stds[1:], strict=False)), stds
    assert all(a < b for a, b in zip(relative, relative[1:], strict=False)), relative
    assert stds[0] > 0.005  # photon and read noise are really there
    np.testing.assert_allclose(outs[0] * 255, np.round(outs[0] * 255), atol=1e-3)  # 8-bit output, as a camera stores it


def test_unknown_corruption_and_bad_severity_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown corruption 'snow': valid names are low_light, fog"):
        Corrupt("snow", 1)
    for severity in (0, 6, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match=r"fog: severity must be an integer from 1 to 5"):
            Corrupt("fog", severity)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"low_light: severity must be an integer from 1 to 5, got 6"):
        low_light(make_sample(), 6, np.random.default_rng(0))
    assert Corrupt("jpeg", np.int64(2)).severity == 2


def test_sample_without_id_is_keyed_by_its_image() -> None:
    a, b = make_sample(None), make_sample(None)
    assert sample_key(a) == sample_key(b) and sample_key(a) != sample_key(make_sample("x"))
    np.testing.assert_array_equal(Corrupt("gaussian_noise", 2)(a).image, Corrupt("gaussian_noise", 2)(b).image)
    other = make_sample(None, image=np.full((64, 96, 3), 0.5, np.float32))
    assert sample_key(other) != sample_key(a)


def test_noise_is_identical_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import numpy as np; from rgbxseg.data.sample import RawSample; from rgbxseg.robustness import Corrupt;"
        "s = RawSample(np.full((8, 8, 3), 0.5, np.float32), np.zeros((8, 8), np.int64), meta={'id': 'k'});"
        "print(Corrupt('gaussian_noise', 2, seed=3)(s).image.tobytes().hex())"
    )
    env = os.environ | {"PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    remote = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    here = RawSample(np.full((8, 8, 3), 0.5, np.float32), np.zeros((8, 8), np.int64), meta={"id": "k"})
    assert remote.stdout.strip() == Corrupt("gaussian_noise", 2, seed=3)(here).image.tobytes().hex()


# ----------------------------------------------------------------------------------------------------------
# Missing-modality protocols


def test_drop_modality_removes_the_key_not_zeros() -> None:
    sample = make_sample()
    out = DropModality("depth")(sample)
    assert "depth" not in out.modalities and list(out.modalities) == ["thermal"]
    assert out.modalities["thermal"] is sample.modalities["thermal"]
    assert out.image is sample.image and out.label is sample.label
    assert out.meta["missing"] == ["depth"] and "missing" not in sample.meta
    assert set(sample.modalities) == {"depth", "thermal"}  # the input keeps its sensors
    assert DropModality("lidar")(sample) is sample
    assert DropModality("thermal")(out).meta["missing"] == ["depth", "thermal"]


def test_drop_all_leaves_rgb_only() -> None:
    sample = make_sample()
    out = DropAll()(sample)
    assert out.modalities == {} and out.meta["missing"] == ["depth", "thermal"]
    assert out.image is sample.image


@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_random_missing_rate_on_2000_samples(rate: float) -> None:
    transform = RandomMissing(rate, seed=1)
    modalities = {"depth": np.zeros((2, 2, 1), np.float32), "thermal": np.ones((2, 2, 1), np.float32)}
    samples = [RawSample(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2), np.int64), dict(modalities), meta={"id": i})
               for i in range(2000)]  # fmt: skip
    outs = [transform(s) for s in samples]
    for name in modalities:
        missing = np.mean([name not in o.modalities for o in outs])
        assert abs(missing - rate) <= 0.05, (name, missing)
        assert all((name in o.modalities) == (name not in o.meta.get("missing", [])) for o in outs)
    both = np.mean([not o.modalities for o in outs])
    assert abs(both - rate**2) <= 0.05  # independent per modality
    again = [RandomMissing(rate, seed=1)(s) for s in samples[:200]]
    assert [list(a.modalities) for a in again] == [list(o.modalities) for o in outs[:200]]
    other_seed = [RandomMissing(rate, seed=2)(s) for s in samples[:200]]
    assert [list(a.modalities) for a in other_seed] != [list(o.modalities) for o in outs[:200]]


def test_random_missing_is_nested_across_rates_and_checks_its_rate() -> None:
    samples = [make_sample(f"n{i}", h=4, w=4) for i in range(300)]
    for s in samples:
        low, high = RandomMissing(0.25)(s), RandomMissing(0.5)(s)
        assert set(high.modalities) <= set(low.modalities)
    assert RandomMissing(0.0)(samples[0]) is samples[0]
    assert RandomMissing(1.0)(samples[0]).modalities == {}
    for rate in (-0.1, 1.5):
        with pytest.raises(ValueError, match="RandomMissing: rate must be a probability"):
            RandomMissing(rate)


def flat_depth_sample(sample_id: str = "s0") -> RawSample:
    sample = make_sample(sample_id)
    sample.modalities["depth"] = np.full_like(sample.modalities["depth"], 0.5)
    return sample


def test_noisy_modality_changes_only_that_modality() -> None:
    sample = flat_depth_sample()
    out = NoisyModality("depth", 0.1, seed=3)(sample)
    assert out.image is sample.image and out.label is sample.label
    assert out.modalities["thermal"] is sample.modalities["thermal"]
    assert np.all(sample.modalities["depth"] == 0.5)  # the input is untouched
    noisy = out.modalities["depth"]
    assert noisy.dtype == np.float32 and noisy.shape == sample.modalities["depth"].shape
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert abs(float((noisy - 0.5).std()) - 0.1) < 0.01 and abs(float(noisy.mean()) - 0.5) < 0.01
    np.testing.assert_array_equal(noisy, NoisyModality("depth", 0.1, seed=3)(flat_depth_sample()).modalities["depth"])
    other = NoisyModality("depth", 0.1, seed=3)(flat_depth_sample("other")).modalities["depth"]
    assert not np.array_equal(noisy, other)
    assert NoisyModality("lidar", 0.1)(sample) is sample


def test_noisy_modality_keeps_a_metric_map_in_its_own_range() -> None:
    sample = make_sample()
    sample.modalities["depth"] = sample.modalities["depth"] * 40.0  # 2..40 m, a float map as stored
    noisy = NoisyModality("depth", 0.1)(sample).modalities["depth"]
    low, high = float(sample.modalities["depth"].min()), float(sample.modalities["depth"].max())
    assert noisy.min() >= low and noisy.max() <= high
    middle = (sample.modalities["depth"] > 15) & (sample.modalities["depth"] < 25)
    assert abs(float((noisy - sample.modalities["depth"])[middle].std()) - 0.1 * (high - low)) < 0.4
    fixed = NoisyModality("depth", 0.1, value_range=(0.0, 100.0))(sample).modalities["depth"]
    assert fixed.max() <= 100.0 and float((fixed - sample.modalities["depth"])[middle].std()) > 8.0
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        NoisyModality("depth", -0.1)


def test_missing_protocols_names_and_behaviour() -> None:
    protocols = missing_protocols(("depth", "thermal"), seed=0)
    assert list(protocols) == [
        "missing:depth", "missing:thermal", "missing:all", "random_missing@0.25", "random_missing@0.5",
        "noisy:depth", "noisy:thermal",
    ]  # fmt: skip
    sample = make_sample()
    assert set(protocols["missing:depth"](sample).modalities) == {"thermal"}
    assert protocols["missing:all"](sample).modalities == {}
    noisy = protocols["noisy:thermal"](sample)
    assert noisy.modalities["depth"] is sample.modalities["depth"]
    assert not np.array_equal(noisy.modalities["thermal"], sample.modalities["thermal"])
    assert list(missing_protocols(["depth"])) == ["missing:depth", "random_missing@0.25", "random_missing@0.5",
                                                   "noisy:depth"]  # fmt: skip
    assert missing_protocols([]) == {}
    assert PROTOCOLS is missing_protocols
    with pytest.raises(ValueError, match="distinct names"):
        missing_protocols(["depth", "depth"])
    with pytest.raises(ValueError, match="distinct names"):
        missing_protocols("depth")


# ----------------------------------------------------------------------------------------------------------
# The suite and datasets


def test_robustness_suite_order_and_contents() -> None:
    suite = robustness_suite(("depth", "thermal"), seed=5)
    corruptions = [f"{n}@{s}" for n in NAMES for s in SEVERITIES]
    assert list(suite) == ["clean", *corruptions, *missing_protocols(("depth", "thermal"))]
    assert list(robustness_suite(("depth", "thermal"), seed=5)) == list(suite)
    assert suite["fog@2"] == Corrupt("fog", 2, seed=5)
    sample = make_sample()
    assert suite["clean"] is clean and clean(sample) is sample
    assert list(robustness_suite(())) == ["clean", *corruptions]


def test_suite_transforms_survive_pickling() -> None:
    sample = make_sample()
    for name, transform in robustness_suite(("depth", "thermal")).items():
        copy = pickle.loads(pickle.dumps(transform))
        a, b = transform(sample), copy(sample)
        np.testing.assert_array_equal(a.image, b.image, err_msg=name)
        assert a.modalities.keys() == b.modalities.keys(), name


def test_as_dataset_transform_on_synthetic_streets() -> None:
    clean_set = SyntheticStreets(n=2, size=(48, 64), seed=0)
    foggy = SyntheticStreets(n=2, size=(48, 64), seed=0, transform=Corrupt("fog", 4))
    foggy_again = SyntheticStreets(n=2, size=(48, 64), seed=0, transform=Corrupt("fog", 4))
    a, b, c = clean_set[1], foggy[1], foggy_again[1]
    assert not np.array_equal(a.image.numpy(), b.image.numpy())
    np.testing.assert_array_equal(b.image.numpy(), c.image.numpy())
    np.testing.assert_array_equal(a.modalities["depth"].numpy(), b.modalities["depth"].numpy())
    np.testing.assert_array_equal(a.label.numpy(), b.label.numpy())
    assert b.meta["corruption"] == "fog@4"
    dropped = SyntheticStreets(n=2, size=(48, 64), seed=0, transform=DropModality("thermal"))
    batch = collate([dropped[0], clean_set[1]])
    assert "thermal" not in dropped[0].modalities
    assert batch.present["thermal"].tolist() == [False, True]
