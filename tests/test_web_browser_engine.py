"""The annotation UI in Chromium on the real engine (the shipped MMMS weights): clicking segments the object.

The mechanics of the UI are tested with a stand-in engine in ``test_web_browser.py``; this test reuses its
scene, server and page helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rgbxseg.interactive import MMMSEngine
from rgbxseg.web.annotator import Annotator
from rgbxseg.web.project import AnnotationProject
from tests.test_web_browser import CLASSES, LiveServer, Ui, browser, data_folder, segment_object  # noqa: F401

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
