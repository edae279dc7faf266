"""Config validation: unknown keys and bad values are errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rgbxseg.config import load_config
from rgbxseg.errors import ConfigError

VALID = """
name: run
model: {name: deeplabv3plus, encoder: mobilenet_v2}
data: {dataset: synthetic}
train: {iterations: 10}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_valid_config_and_overrides(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, VALID), {"train.iterations": 3, "data.batch_size": 2, "model.options.msea": False})
    assert cfg.train.iterations == 3 and cfg.data.batch_size == 2 and cfg.model.options == {"msea": False}
    assert cfg.run_dir == Path("runs/run") and cfg.optim.schedule == "poly"


@pytest.mark.parametrize(
    "text,fragment",
    [
        (VALID.replace("iterations: 10", "iteration: 10"), "unknown key 'train.iteration'"),
        (VALID + "extra: 1\n", "unknown key 'extra'"),
        (VALID.replace("iterations: 10", "iterations: 10, time_budget_minutes: 5"), "exactly one of"),
        (VALID.replace("iterations: 10", "iterations: -1"), "train.iterations"),
        (VALID.replace("{dataset: synthetic}", "{dataset: synthetic, batch_size: zero}"), "data.batch_size"),
        ("- a\n- list\n", "must be a YAML mapping"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_configs_name_the_file_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
