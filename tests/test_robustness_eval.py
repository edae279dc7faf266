"""``rgbxseg eval --robustness``: the suite runner, the drop table and its summary, the files it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from rgbxseg.cli import app
from rgbxseg.config import EvalConfig, parse_config
from rgbxseg.data import SyntheticStreets
from rgbxseg.engine.trainer import train
from rgbxseg.robustness import Corrupt, DropAll, clean
from rgbxseg.robustness.evaluate import run_suite, summary, table, write_outputs
from tests.test_training import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")


def test_table_and_summary_from_hand_made_results() -> None:
    results = {
        "clean": {"mIoU": 50.0},
        "fog@1": {"mIoU": 45.0},
        "fog@2": {"mIoU": 35.0},
        "missing:depth": {"mIoU": 40.0},
    }
    rows = table(results)
    assert [(r["kind"], r["drop %"]) for r in rows] == [
        ("clean", 0.0),
        ("corruption", 10.0),
        ("corruption", 30.0),
        ("missing", 20.0),
    ]
    assert rows[2]["severity"] == 2 and rows[3]["severity"] == ""
    assert summary(rows) == {"clean mIoU": 50.0, "mean corrupted mIoU": 40.0, "kept %": 80.0}


class PixelClassifier(nn.Module):
    """Class scores from each pixel's colour (a 1×1 convolution): corrupting the pixels changes its answer."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, classes, 1)

    def forward(self, image: torch.Tensor, modalities: object = None, present: object = None) -> torch.Tensor:
        return self.conv(image)


def test_run_suite_restores_the_dataset_and_hurts_a_model(tmp_path: Path) -> None:
    dataset = SyntheticStreets(6, (48, 64), seed=3, modalities=("depth",))
    model = PixelClassifier(dataset.num_classes)
    suite = {"clean": clean, "gaussian_noise@5": Corrupt("gaussian_noise", 5), "missing:all": DropAll()}
    results = run_suite(model, dataset, suite, EvalConfig(batch_size=6), torch.device("cpu"), progress=False)
    assert list(results) == list(suite) and dataset.transform is None
    assert results["gaussian_noise@5"]["mIoU"] != results["clean"]["mIoU"]  # the corruption reached the pixels
    paths = write_outputs(results, tmp_path / "out", "tiny")
    assert [p.name for p in paths] == ["robustness.json", "robustness.csv", "robustness.png"]
    assert json.loads(paths[0].read_text())["rows"][0]["name"] == "clean"
    with paths[1].open() as handle:
        assert [r["name"] for r in csv.DictReader(handle)] == list(suite)
    with pytest.raises(ValueError, match="clean"):
        run_suite(model, dataset, {"fog@1": Corrupt("fog", 1)}, EvalConfig(), torch.device("cpu"), progress=False)


@pytest.mark.slow
def test_eval_robustness_command(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, iterations=2)
    train(parse_config(config), progress_bar=False)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    checkpoint = tmp_path / "runs" / "tiny" / "last.pt"
    args = ["eval", "--config", str(tmp_path / "tiny.yaml"), "--checkpoint", str(checkpoint), "--robustness", "--limit", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs" / "tiny" / "robustness"
    payload = json.loads((out / "robustness.json").read_text())
    assert payload["images"] == 3
    rows = payload["rows"]
    names = [r["name"] for r in rows]
    assert (
        names[0] == "clean" and "low_light@5" in names and "missing:thermal" in names and "random_missing@0.5" in names
    )
    assert len([n for n in names if "@" in n and n.split("@")[0] in ("fog", "jpeg")]) == 10
    assert (out / "robustness.png").stat().st_size > 5000
