"""The annotation UI in Chromium on the real engine (the shipped MMMS weights): clicking segments the object,
and a newcomer's street scene from ``rgbxseg annotate make-demo`` gets three surfaces of three classes from
simulated clicks (this test writes docs/annotation-ui-engine.png).

The mechanics of the UI are tested with a stand-in engine in ``test_web_browser.py``; these tests reuse its
scene, server and page helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import numpy as np
from typer.testing import CliRunner

from rgbxseg.cli import app
from rgbxseg.interactive import MMMSEngine
from rgbxseg.interactive.click_simulator import Click, next_click
from rgbxseg.web.annotator import Annotator, load_classes
from rgbxseg.web.cli import DEMO_SIZE, demo_scenes
from rgbxseg.web.project import AnnotationProject
from tests.test_web_browser import (  # noqa: F401 (browser, data_folder: fixtures)
    CLASSES, DOCS, LiveServer, Ui, browser, data_folder, decode_png, iou, segment_object,
)  # fmt: skip

STREET_SURFACES = ("road", "building", "car")  # the scene's three largest classes but the sky
MAX_CLICKS = 6  # per surface

pytestmark = pytest.mark.slow


def test_the_shipped_engine_segments_the_object_in_a_few_clicks(
    browser: Any,  # noqa: F811 (the fixture imported above)
    data_folder: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    annotator = Annotator(data_folder, MMMSEngine.from_weights("vit_s14"), AnnotationProject(tmp_path / "p"), CLASSES)
    server = LiveServer(annotator)
    ui = Ui(browser, server)
    try:
        ui.open()
        ious = segment_object(ui, max_clicks=5)
        assert ious[-1] > 0.85, ious
        assert server.state()["timing_ms"]["click"] < 1000
    finally:
        ui.close()
        server.stop()


def annotate_surface(ui: Ui, gt: np.ndarray) -> list[float]:
    """Clicks of the click simulator (left: positive, right: negative) on the current surface until its IoU
    with ``gt`` reaches 0.85 or MAX_CLICKS; the IoU after each click."""
    clicks: list[Click] = []
    ious = []
    pred = np.zeros_like(gt)
    for _ in range(MAX_CLICKS):
        click = next_click(pred, gt, clicked=clicks)
        y, x = ui.click(click.y, click.x, right=not click.positive)
        clicks.append(Click(y, x, click.positive))
        state = ui.server.state(ui.image_id)
        pred = decode_png(state["mask"]) == state["current"]
        ious.append(iou(pred, gt))
        if ious[-1] >= 0.85:
            break
    return ious


def test_the_shipped_engine_on_a_make_demo_street_scene(
    browser: Any,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    result = CliRunner().invoke(app, ["annotate", "make-demo", str(folder), "--images", "1"])
    assert result.exit_code == 0, result.output
    classes = load_classes(folder / "classes.yaml")
    scene = demo_scenes(1)
    label = scene.load(0).label
    engine = MMMSEngine.from_weights("vit_s14")
    annotator = Annotator(folder, engine, AnnotationProject(tmp_path / "p"), classes, ("depth", "thermal"))
    server = LiveServer(annotator)
    ui = Ui(browser, server, "scene000.png", DEMO_SIZE)
    try:
        ui.open()
        results = {}
        for index, name in enumerate(STREET_SURFACES):
            class_id = scene.classes.index(name) + 1
            ui.page.select_option("#class-picker", str(class_id))
            if index:
                ui.press("n", f"document.body.dataset.current === '{index + 1}'")
            results[name] = annotate_surface(ui, label == scene.classes.index(name))
        state = server.state("scene000.png")
        assert [(s["id"], s["class_id"]) for s in state["surfaces"]] == [
            (i + 1, scene.classes.index(n) + 1) for i, n in enumerate(STREET_SURFACES)
        ]
        # Measured with the shipped weights: road 0.87 after 1 click, building 0.63 and car 0.71 after 6
        # (the engine is still weak: BENCHMARKS.md); the bound leaves room for BLAS differences only.
        assert results["road"][-1] >= 0.85, results
        for name, ious in results.items():
            assert ious[-1] >= 0.55 and ious[-1] >= ious[0], (name, results)
        ui.page.mouse.move(0, 0)
        ui.settle()
        footer = ui.page.eval_on_selector("footer, #footer, .statusbar", "e => e.getBoundingClientRect().top")
        clip = {"x": 0, "y": 0, "width": 1280, "height": footer}  # without the click timings (no churn)
        ui.page.screenshot(path=str(DOCS / "annotation-ui-engine.png"), clip=clip)
        ui.assert_clean()
    finally:
        ui.close()
        server.stop()
    print({name: [round(v, 3) for v in ious] for name, ious in results.items()})
