"""``rgbxseg annotate make-demo`` and ``rgbxseg annotate export`` (the server itself: test_web_server/browser)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from rgbxseg.cli import app
from rgbxseg.web.annotator import load_classes
from rgbxseg.web.cli import default_project
from rgbxseg.web.project import AnnotationProject


def test_make_demo_writes_an_rgbx_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["annotate", "make-demo", str(tmp_path / "demo"), "--images", "2"])
    assert result.exit_code == 0, result.output
    for name in ("rgb", "depth", "thermal"):
        files = sorted((tmp_path / "demo" / name).glob("*.png"))
        assert [f.name for f in files] == ["scene000.png", "scene001.png"]
    depth = cv2.imread(str(tmp_path / "demo" / "depth" / "scene000.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and depth.shape == (360, 480) and depth.max() > 1000
    classes = load_classes(tmp_path / "demo" / "classes.yaml")
    assert [c.name for c in classes[:4]] == ["sky", "road", "sidewalk", "building"] and classes[1].color == "#804080"
    assert "--classes" in result.output


def test_export_command_writes_label_maps_and_coco(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((20, 30, 3), np.uint8))
    project = AnnotationProject(default_project(folder))
    joint = np.zeros((20, 30), np.uint8)
    joint[5:10, 5:15] = 1
    project.save_mask("a.png", joint, [{"id": 1, "class_id": 1, "name": "object"}], "done")
    result = CliRunner().invoke(app, ["annotate", "export", str(folder)])
    assert result.exit_code == 0, result.output
    out = project.folder / "export"
    labels = cv2.imread(str(out / "labels" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert labels[7, 7] == 1 and labels.sum() == 50
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert coco["annotations"][0]["area"] == 50 and coco["categories"][0]["name"] == "object"
    assert CliRunner().invoke(app, ["annotate", "export", str(tmp_path / "missing")]).exit_code != 0
