"""The main job end to end, shrunk: ``rgbxseg demo`` trains both models, evaluates every condition and
writes the report (the full-size run is the benchmark in BENCHMARKS.md)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rgbxseg.cli import app
from rgbxseg.demo import CONDITIONS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # the demo sets 1 thread; the fixture restores


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images = 0
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img" and (dict(attrs).get("src") or "").startswith("data:image/png;base64,"):
            self.images += 1
        self.tables += tag == "table"


def test_demo_writes_report_and_results(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--output", str(out), "--iterations", "2", "--size", "64", "96", "--eval-samples", "2", "--threads", "1"]
    args += ["--robustness-images", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("DAMCSeg (RGB+D+T)", "DeepLabV3+ (RGB)", "night+no_thermal"):
        assert name in result.output  # the terminal tables
    results = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == ["DAMCSeg (RGB+D+T)", "DeepLabV3+ (RGB)"]
    for model in results["models"]:
        assert set(model["metrics"]) == set(CONDITIONS)
        assert 0.0 <= model["metrics"]["night"]["mIoU"] <= 100.0
        assert model["train_seconds"] > 0 and model["fps"] > 0 and model["params"] > 0
    html = (out / "report.html").read_text()
    tags = _Tags()
    tags.feed(html)
    assert tags.tables >= 4 and tags.images >= 3  # tables, bar charts, overlays, calibration and robustness
    assert 'id="runs"' in html
    for model, run in zip(results["models"], ("damcseg", "deeplabv3plus_rgb"), strict=True):
        assert model["run_report"]["href"] == f"{run}/report.html" and f'href="{run}/report.html"' in html
        assert 0.0 <= model["run_report"]["ece_after"] <= 100.0 and model["run_report"]["temperature"] > 0
        robustness = json.loads((out / run / "robustness" / "robustness.json").read_text())
        assert robustness["images"] == 2 and robustness["rows"][0]["name"] == "clean"
        page = (out / run / "report.html").read_text()
        assert "reliability diagrams before and after" in page and "robustness heat-map" in page
        assert "No robustness results" not in page
        assert (out / run / "last.pt").is_file()
        assert len((out / run / "train_log.csv").read_text().splitlines()) == 1 + 2  # header + 2 iterations
