"""``rgbxseg report RUN_DIR``: the self-contained run page on a tiny training run — its sections, the
calibration before / after temperature scaling, the robustness section with and without results, errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rgbxseg.cli import app
from rgbxseg.config import parse_config
from rgbxseg.data import SyntheticStreets, build_dataset
from rgbxseg.data.base import SegSubset
from rgbxseg.engine.trainer import train
from rgbxseg.errors import ConfigError
from rgbxseg.metrics.calibration import CalibrationError
from rgbxseg.predictor import load_trained
from rgbxseg.robustness.evaluate import write_outputs
from rgbxseg.data.base import spread
from rgbxseg.run_report import build_run_report
from rgbxseg.temperature import collect_logits, fit_temperature
from tests.conftest import REPO
from tests.test_report import PageParser, decode, parse
from tests.test_training import tiny_config

PNG = 'src="data:image/png;base64,'
SECTIONS = ("training", "metrics", "calibration", "robustness", "examples")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    root = tmp_path_factory.mktemp("run")
    train(parse_config(tiny_config(root, iterations=3)), progress_bar=False)
    return root / "runs" / "tiny"


def report(*args: str) -> object:
    return CliRunner().invoke(app, ["report", *args])


def section(text: str, anchor: str) -> str:
    return text.split(f'<section id="{anchor}">')[1].split("</section>")[0]


@pytest.fixture(scope="module")
def page(run_dir: Path) -> tuple[str, PageParser]:
    result = report(str(run_dir), "--limit", "8")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "ECE" in result.output
    text = (run_dir / "report.html").read_text()
    return text, parse(text)


def test_page_is_self_contained_with_every_section(run_dir: Path, page: tuple[str, PageParser]) -> None:
    text, parser = page
    assert text.startswith("<!DOCTYPE html>")
    assert 'src="http' not in text and "<link" not in text and "<script" not in text
    assert "http://" not in text and "https://" not in text
    assert all(src.startswith("data:image/png;base64,") for src in parser.images.values())
    assert text.count(PNG) >= 3 + 4 * 4  # curves, per-class IoU, reliability + 4 examples × 4 tiles
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text and f'href="#{anchor}"' in text
    words = " ".join(parser.text)
    for word in ("Run report: tiny", "deeplabv3plus", "synthetic", "3 of 3 iterations", "trained 20", "best.pt"):
        assert word in words, word
    for name in SyntheticStreets.classes:
        assert f'<th scope="row">{name}</th>' in section(text, "metrics")
    for metric in ("mIoU", "mAcc", "aAcc", "mF1", "IoU", "Acc", "F1"):
        assert metric in section(text, "metrics")
    assert "8 of 16 images, evenly spaced (--limit)" in words
    names = {p.name for p in run_dir.iterdir()}
    assert names == {"best.pt", "last.pt", "train_log.csv", "val_log.csv", "run_info.json", "report.html"}


def test_calibration_before_and_after_temperature(page: tuple[str, PageParser]) -> None:
    text, parser = page
    calibration = section(text, "calibration")
    assert "ECE before (T = 1)" in calibration and "ECE after (T = " in calibration
    assert "reliability diagrams before and after temperature scaling" in parser.images
    assert "fitted on the val split" in calibration
    assert "fitted on the evaluated split itself" in calibration  # tiny_config evaluates on val
    assert "unchanged by T" in calibration


def test_examples_show_image_truth_prediction_uncertainty(page: tuple[str, PageParser]) -> None:
    text, parser = page
    examples = section(text, "examples")
    assert [h for h in ("RGB", "ground truth", "prediction", "uncertainty") if f">{h}</th>" in examples] == [
        "RGB", "ground truth", "prediction", "uncertainty",
    ]  # fmt: skip
    for index in spread(16, 8)[:4]:  # --limit 8 of 16: every other image; the first 4 are the examples
        tile = decode(parser.images[f"uncertainty — synthetic-1-{index}"])
        assert tile.shape == (48, 64, 3)
    assert "synthetic-1-1" not in examples and "synthetic-1-8" not in examples
    assert 'class="ramp"' in examples  # the colour bar of the uncertainty map


def test_robustness_howto_when_absent(run_dir: Path, page: tuple[str, PageParser]) -> None:
    robustness = section(page[0], "robustness")
    assert "No robustness results in" in robustness
    assert f"rgbxseg eval --robustness --config CONFIG.yaml --checkpoint {run_dir / 'best.pt'}" in robustness
    assert PNG not in robustness


def test_numbers_match_an_independent_computation(run_dir: Path) -> None:
    """T is fitted on the val pixels, both ECEs are those of the evaluated pixels at T = 1 and at the fitted T."""
    result = build_run_report(run_dir, limit=4, overlays=1)
    model = load_trained(run_dir / "best.pt").model
    val = build_dataset("synthetic", "val", None, ("depth", "thermal"), size=[48, 64], n=16)  # as tiny_config
    dataset = SegSubset(val, spread(16, 4))
    logits, labels = collect_logits(model, dataset, "cpu", max_pixels=10**7)
    calibration = result.calibration
    assert calibration.temperature == pytest.approx(fit_temperature(logits, labels), rel=1e-4)
    assert (calibration.fit_split, calibration.fit_images, calibration.fit_pixels) == ("val", 4, labels.numel())
    for scale, measured in ((1.0, calibration.before), (calibration.temperature, calibration.after)):
        metric = CalibrationError(15)
        metric.update((logits / scale)[None, :, :, None], labels[None, :, None], from_logits=True)
        assert measured["ECE"] == pytest.approx(metric.compute()["ECE"], abs=1e-3)
    assert len(result.overlays) == 1 and result.images == 4 and result.split_images == 16


def test_robustness_section_from_results(run_dir: Path, tmp_path: Path) -> None:
    results = {
        "clean": {"mIoU": 50.0},
        "fog@1": {"mIoU": 45.0},
        "fog@2": {"mIoU": 35.0},
        "missing:depth": {"mIoU": 40.0},
    }
    folder = run_dir / "robustness"
    try:
        write_outputs(results, folder, "tiny")
        out = tmp_path / "with_robustness.html"
        result = report(str(run_dir), "--limit", "2", "--overlays", "1", "--out", str(out))
        assert result.exit_code == 0, result.output
        text = out.read_text()
        robustness = section(text, "robustness")
        assert "No robustness results" not in robustness
        for word in ("clean mIoU", "mean corrupted mIoU", "kept %", "80.0", "fog", "severity 2", "missing:depth"):
            assert word in robustness, word
        assert "robustness heat-map: mIoU kept, % of clean" in parse(text).images
        (folder / "robustness.json").write_text("{not json")
        broken = build_run_report(run_dir, limit=2, overlays=0).html()
        assert "could not be read" in section(broken, "robustness")
        assert "rgbxseg eval --robustness" in section(broken, "robustness")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_config_override_without_val_split_fits_on_train(run_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    config["data"]["val_split"] = None
    path = tmp_path / "no_val.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "page.html"
    args = [str(run_dir), "--config", str(path), "--checkpoint", "last.pt", "--split", "test", "--limit", "2"]
    result = report(*args, "--overlays", "0", "--out", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    calibration = section(text, "calibration")
    assert "fitted on the train split" in calibration and "no validation split" in calibration
    assert "checkpoint last.pt" in text and f"config from {path}" in text and "Metrics on test" in text
    assert 'id="examples"' not in text and 'href="#examples"' not in text


def test_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_run"
    result = report(str(missing))
    assert isinstance(result.exception, ConfigError) and str(missing) in str(result.exception)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = report(str(empty))
    assert isinstance(result.exception, ConfigError) and "no checkpoint (best.pt or last.pt)" in str(result.exception)
    assert list(empty.iterdir()) == []
    process = subprocess.run(
        [sys.executable, "-m", "rgbxseg.cli", "report", str(missing)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert process.stderr.strip() == f"error: {missing}: run folder not found"


def test_limit_must_be_positive(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match="limit must be an int >= 1"):
        build_run_report(run_dir, limit=0)
    with pytest.raises(ConfigError, match="overlays must be an int >= 0"):
        build_run_report(run_dir, overlays=-1)


def test_spread_takes_evenly_spaced_indices() -> None:
    assert spread(10, 4) == [0, 3, 6, 9] and spread(5, 1) == [0] and spread(3, 7) == [0, 1, 2]
    assert spread(233, 40)[-1] == 232 and len(set(spread(233, 40))) == 40
