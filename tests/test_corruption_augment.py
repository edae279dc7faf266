"""Corruption augmentation (rgbxseg.robustness.augment.RandomCorruption) and its training config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rgbxseg.config import parse_config
from rgbxseg.data import SyntheticStreets
from rgbxseg.engine.trainer import build_datasets
from rgbxseg.errors import ConfigError
from rgbxseg.robustness.augment import RandomCorruption
from rgbxseg.robustness.corruptions import CORRUPTIONS


def _sample():  # noqa: ANN202
    return SyntheticStreets(1, (48, 64), seed=4, modalities=("depth",)).load(0)


def test_p_one_always_corrupts_rgb_only_and_p_zero_never() -> None:
    raw = _sample()
    always = RandomCorruption(1.0, seed=0)
    for seed in range(8):
        always.reseed(seed)
        out = always(raw)
        assert not np.array_equal(out.image, raw.image)
        assert out.label is raw.label and out.modalities["depth"] is raw.modalities["depth"]
        assert out.image.dtype == np.float32 and 0.0 <= out.image.min() and out.image.max() <= 1.0
    never = RandomCorruption(0.0, seed=0)
    assert never(raw) is raw


def test_reseed_repeats_the_draws_and_names_restrict_them() -> None:
    raw = _sample()
    a, b = RandomCorruption(0.7, seed=3), RandomCorruption(0.7, seed=99)
    b.reseed(3)
    for _ in range(5):
        assert np.array_equal(a(raw).image, b(raw).image)
    only_fog = RandomCorruption(1.0, names=["fog"], severities=[3], seed=1)
    rng = np.random.default_rng((1, 3))  # the same stream: apply?, which corruption, which severity, then fog's own
    rng.random(), rng.integers(1), rng.integers(1)
    assert np.array_equal(only_fog(raw).image, CORRUPTIONS["fog"](raw, 3, rng).image)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"p": 1.5}, "lie in"), ({"names": ["rain"]}, "rain"), ({"names": []}, "no corruption"), ({"severities": [6]}, "6")],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RandomCorruption(**kwargs)


def _config(tmp_path: Path, **data: object) -> dict:
    return {
        "name": "tiny",
        "output_dir": str(tmp_path),
        "model": {"name": "deeplabv3plus", "pretrained": False},
        "data": {"dataset": "synthetic", "modalities": [], "options": {"size": [48, 64], "n": 4},
                 "crop_size": [48, 64], "val_split": None, **data},
        "train": {"iterations": 1},
    }  # fmt: skip


def test_the_training_transform_corrupts_when_configured(tmp_path: Path) -> None:
    plain, _ = build_datasets(parse_config(_config(tmp_path), "test"))
    corrupted, _ = build_datasets(parse_config(_config(tmp_path, corruption=1.0, corruption_names=["fog"]), "test"))
    plain.transform.reseed(0)
    corrupted.transform.reseed(0)
    a, b = plain.raw(0), corrupted.raw(0)
    assert np.array_equal(a.label, b.label) and not np.allclose(a.image, b.image)
    with pytest.raises(ConfigError, match="corruption_names.*rain"):
        build_datasets(parse_config(_config(tmp_path, corruption=0.5, corruption_names=["rain"]), "test"))
