"""The rgbxseg CLI: data info / data show, and one readable line (no traceback) on user error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import REPO


def rgbxseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rgbxseg.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=600
    )


def test_data_info_camvid(camvid_root: Path) -> None:
    result = rgbxseg("data", "info", "camvid", "--root", str(camvid_root))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for split, count in (("train", 367), ("val", 101), ("test", 233)):
        assert any(split in line and f" {count} " in line for line in out.splitlines()), out
    assert "360×480" in out and "Bicyclist" in out


def test_data_show_writes_png(tmp_path: Path, camvid_root: Path) -> None:
    out = tmp_path / "sub" / "show.png"
    result = rgbxseg("data", "show", "camvid", "--root", str(camvid_root), "--split", "val", "--index", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] > 600 and image.std() > 10
    assert [p.name for p in out.parent.iterdir()] == ["show.png"]  # no temporary file left behind


def test_data_show_synthetic_with_modalities(tmp_path: Path) -> None:
    out = tmp_path / "synthetic.png"
    result = rgbxseg("data", "show", "synthetic", "--split", "val", "--index", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(out)).shape[1] >= 3 * 300  # RGB + depth + thermal + label panels


@pytest.mark.parametrize(
    "args,fragment",
    [
        (("data", "info", "nosuchset"), "unknown dataset 'nosuchset'"),
        (("data", "info", "camvid"), "needs --root"),
        (("data", "info", "camvid", "--root", "/nonexistent/camvid"), "/nonexistent/camvid/train.txt: file not found"),
        (("data", "show", "synthetic", "--split", "val", "--index", "999", "--out", "/tmp/x.png"), "out of range"),
        (("data", "show", "synthetic", "--split", "bogus", "--out", "/tmp/x.png"), "no split 'bogus'"),
    ],
)
def test_user_errors_are_one_line(args: tuple[str, ...], fragment: str) -> None:
    result = rgbxseg(*args)
    assert result.returncode == 2
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_broken_rgbx_folder_reports_file(tmp_path: Path) -> None:
    for name in ("rgb", "labels"):
        (tmp_path / name).mkdir()
    cv2.imwrite(str(tmp_path / "rgb" / "a.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "labels" / "a.png"), np.full((4, 4), 9, np.uint8))
    (tmp_path / "train.txt").write_text("a\n")
    (tmp_path / "val.txt").write_text("a\n")
    (tmp_path / "test.txt").write_text("a\n")
    (tmp_path / "classes.txt").write_text("x\ny\n")
    result = rgbxseg("data", "show", "rgbx", "--root", str(tmp_path), "--out", str(tmp_path / "o.png"))
    assert result.returncode == 2 and "labels/a.png: label ids [9] are out of range" in result.stderr
    assert not (tmp_path / "o.png").exists()
