"""Palette ("P" mode) PNG masks and label maps are read as their indices, not their colours.

DAVIS ships its masks, and PASCAL VOC-style sets their label maps, as palette PNGs. The palette
below puts DAVIS's dark red (128, 0, 0) at index 1 and green at index 2: expanded to colour and cut
to one channel (what OpenCV's ``IMREAD_UNCHANGED`` gave) every object pixel reads 0.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from rgbxseg.data import DavisStyle, RGBXFolder, build_dataset
from rgbxseg.data.io import is_palette_png, read_label, read_mask
from rgbxseg.errors import DataError
from rgbxseg.interactive.evaluate import evaluate_single_object

H, W = 20, 30
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [224, 224, 192] * 253  # index 255: VOC's void colour


def indices() -> np.ndarray:
    """Background 0, a 10×10 object of index 1 and a 3×5 object of index 2."""
    array = np.zeros((H, W), dtype=np.uint8)
    array[5:15, 10:20] = 1
    array[16:19, 2:7] = 2
    return array


def write_palette_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode="P")
    image.putpalette(PALETTE)
    image.save(path)
    return path


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((H, W, 3), 90, dtype=np.uint8))


def test_read_label_and_read_mask_return_palette_indices(tmp_path: Path) -> None:
    path = write_palette_png(tmp_path / "label.png", indices())
    assert Image.open(path).mode == "P" and is_palette_png(path)
    for read in (read_label, read_mask):
        array = read(path)
        assert array.dtype == np.int64 and array.shape == (H, W)
        np.testing.assert_array_equal(array, indices())


def test_is_palette_png_only_for_indexed_pngs(tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), indices())
    bmp = tmp_path / "mask.bmp"
    cv2.imwrite(str(bmp), indices())
    upper = write_palette_png(tmp_path / "MASK.PNG", indices())
    (tmp_path / "short.png").write_bytes(b"\x89PNG")
    assert is_palette_png(upper)
    assert not any(is_palette_png(p) for p in (grey, bmp, tmp_path / "short.png", tmp_path / "missing.png"))


def test_corrupt_palette_png_is_named(tmp_path: Path) -> None:
    big = np.random.default_rng(0).integers(0, 3, (200, 300)).astype(np.uint8)
    data = write_palette_png(tmp_path / "good.png", big).read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: int(len(data) * 0.7)])
    assert is_palette_png(truncated)
    for read in (read_label, read_mask):
        with pytest.raises(DataError, match=r"truncated\.png: cannot decode the palette PNG"):
            read(truncated)


def test_palette_label_accepted_while_colour_label_is_rejected(tmp_path: Path) -> None:
    palette = write_palette_png(tmp_path / "palette.png", indices())
    colour = tmp_path / "colour.png"
    rgb = np.asarray(Image.open(palette).convert("RGB"))
    cv2.imwrite(str(colour), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_label(palette), indices())
    with pytest.raises(DataError, match=r"colour\.png: a label map must have one channel \(got 3 differing"):
        read_label(colour)


def write_davis(root: Path) -> None:
    """Image 1001 with a palette mask (1001a) and a greyscale mask with a 128 band (1001b)."""
    write_image(root / "images" / "1001.jpg")
    write_palette_png(root / "masks" / "1001a.png", indices())
    grey = np.zeros((H, W), dtype=np.uint8)
    grey[5:15, 10:20] = 255
    grey[5, 10:20] = 128
    grey[16:19, 2:7] = 100  # at or below the threshold: background
    cv2.imwrite(str(root / "masks" / "1001b.png"), grey)


def test_davis_palette_mask_is_any_nonzero_index(tmp_path: Path) -> None:
    write_davis(tmp_path)
    for ds in (DavisStyle(tmp_path), DavisStyle(tmp_path, ignore_value=128), build_dataset("davis", "all", tmp_path)):
        label = ds.load_label(0)
        np.testing.assert_array_equal(label, (indices() != 0).astype(np.int64))
        assert label[17, 3] == 1  # index 2 is part of the object too
        sample = ds[0]
        assert (sample.label == 1).sum() == 100 + 15 and (sample.label == 255).sum() == 0


def test_davis_greyscale_mask_keeps_threshold_and_ignore_value(tmp_path: Path) -> None:
    write_davis(tmp_path)
    with_band = DavisStyle(tmp_path, ignore_value=128).load_label(1)
    assert (with_band == 255).sum() == 10 and (with_band == 1).sum() == 90 and (with_band == 0).sum() == H * W - 100
    without = DavisStyle(tmp_path).load_label(1)
    assert (without == 1).sum() == 100 and without[17, 3] == 0  # 128 > 127 is object, 100 is not
    # the palette mask of the same folder is still read by index
    assert DavisStyle(tmp_path).load_label(0)[17, 3] == 1


class PerfectEngine:
    """Predicts the ground-truth object whatever the clicks: one click reaches IoU 1."""

    def __init__(self, object_mask: np.ndarray) -> None:
        self.object_mask = object_mask.astype(np.float32)

    def embed(self, image: np.ndarray, modalities: object) -> None:
        return None

    def predict(self, embedding: None, clicks: list, previous: np.ndarray | None) -> np.ndarray:
        return self.object_mask


def test_davis_palette_folder_evaluates_its_object(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "1001.jpg")
    write_palette_png(tmp_path / "masks" / "1001.png", indices())
    dataset = build_dataset("davis", "all", tmp_path)
    engine = PerfectEngine(indices() != 0)
    result = evaluate_single_object(engine, dataset, "regions", max_clicks=3, progress=False)  # type: ignore[arg-type]
    assert result["objects"] == 1 and result["NoC@90"] == 1.0 and result["mIoU_per_click"][0] == 1.0


def test_rgbx_folder_palette_labels_load_as_indices(tmp_path: Path) -> None:
    label = indices()
    label[0, :4] = 255  # VOC's void border, ignored
    for stem in ("a", "b"):
        write_image(tmp_path / "rgb" / f"{stem}.png")
        write_palette_png(tmp_path / "labels" / f"{stem}.png", label)
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "classes.txt").write_text("background\ncar\nperson\n")
    ds = RGBXFolder(tmp_path, "train", thing_classes=[1, 2])
    np.testing.assert_array_equal(ds.load_label(1), label)
    sample = ds[0]
    np.testing.assert_array_equal(sample.label.numpy(), label)
    assert sorted(sample.instances.classes.tolist()) == [1, 2]
