"""DavisStyle / BSDSSurfaces on folders the tests write."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from rgbxseg.data import BSDSSurfaces, DavisStyle
from rgbxseg.errors import DataError


def write_davis(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.full((20, 30, 3), 90, dtype=np.uint8)
    cv2.imwrite(str(root / "images" / "1001.jpg"), image)
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5:15, 10:20] = 255
    mask[5, 10:20] = 128
    cv2.imwrite(str(root / "masks" / "1001a.png"), mask)
    cv2.imwrite(str(root / "masks" / "1001b.png"), np.stack([mask] * 3, axis=2))


def test_davis_style_ignore_band_and_suffix_matching(tmp_path: Path) -> None:
    write_davis(tmp_path)
    ds = DavisStyle(tmp_path, ignore_value=128)
    assert len(ds) == 2 and all(p.name == "1001.jpg" for p in ds.images)
    label = ds[1].label.numpy()
    assert (label == 255).sum() == 10 and (label == 1).sum() == 90 and (label == 0).sum() == 500
    assert (DavisStyle(tmp_path).load_label(0) == 255).sum() == 0  # no ignore value: 128 > 127 → object


def test_davis_style_errors(tmp_path: Path) -> None:
    write_davis(tmp_path)
    cv2.imwrite(str(tmp_path / "masks" / "dog.png"), np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(DataError, match="dog.png: no image named dog"):
        DavisStyle(tmp_path)
    with pytest.raises(DataError, match="folder not found"):
        DavisStyle(tmp_path / "missing")


def test_bsds_rejects_region_ids_colliding_with_ignore(tmp_path: Path) -> None:
    (tmp_path / "val" / "images").mkdir(parents=True)
    (tmp_path / "val" / "segments").mkdir()
    cv2.imwrite(str(tmp_path / "val" / "images" / "1.jpg"), np.zeros((8, 8, 3), dtype=np.uint8))
    regions = np.ones((8, 8), dtype=np.uint16)
    regions[4:] = 300
    cv2.imwrite(str(tmp_path / "val" / "segments" / "1_0.png"), regions)
    with pytest.raises(DataError, match="1_0.png: region id 300 collides"):
        BSDSSurfaces(tmp_path, "val")[0]
