"""RGBXFolder on files the tests write, including every kind of broken input the issue lists."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from rgbxseg.data import RGBXFolder, collate
from rgbxseg.errors import DataError

H, W = 24, 32


def make_folder(root: Path, n: int = 3, depth_bits: int = 16) -> Path:
    """rgb/, depth/ (16-bit PNG), thermal/ (.npy float), labels/, train.txt, classes.txt."""
    rng = np.random.default_rng(0)
    for name in ("rgb", "depth", "thermal", "labels"):
        (root / name).mkdir(parents=True)
    stems = [f"frame{i:03d}" for i in range(n)]
    for stem in stems:
        cv2.imwrite(str(root / "rgb" / f"{stem}.png"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        dtype = np.uint16 if depth_bits == 16 else np.uint8
        cv2.imwrite(str(root / "depth" / f"{stem}.png"), rng.integers(0, np.iinfo(dtype).max, (H, W), dtype=dtype))
        np.save(root / "thermal" / f"{stem}.npy", rng.random((H, W), dtype=np.float32))
        label = rng.integers(0, 3, (H, W), dtype=np.uint8)
        label[0, :4] = 255
        cv2.imwrite(str(root / "labels" / f"{stem}.png"), label)
    (root / "train.txt").write_text("\n".join(stems) + "\n")
    (root / "classes.txt").write_text("road\ncar\nperson\n")
    return root


def test_reads_modalities_with_scaling(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds")
    ds = RGBXFolder(root, "train", modalities=["depth", "thermal"], thing_classes=[1, 2])
    assert len(ds) == 3 and ds.classes == ("road", "car", "person")
    assert ds.modality_channels == {"depth": 1, "thermal": 1}
    sample = ds[0]
    assert sample.image.shape == (3, H, W) and 0 <= sample.image.min() and sample.image.max() <= 1
    depth_png = cv2.imread(str(root / "depth" / "frame000.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(sample.modalities["depth"][0].numpy(), depth_png / 65535.0, rtol=1e-6)
    thermal = np.load(root / "thermal" / "frame000.npy")
    np.testing.assert_array_equal(sample.modalities["thermal"][0].numpy(), thermal)
    assert sample.label[0, 0] == 255 and set(sample.label.unique().tolist()) <= {0, 1, 2, 255}
    assert len(sample.instances) > 0 and set(sample.instances.classes.tolist()) <= {1, 2}
    batch = collate([ds[0], ds[1]])
    assert batch.image.shape == (2, 3, H, W) and batch.modalities["depth"].shape == (2, 1, H, W)
    assert batch.present["depth"].all()


def test_split_file_in_splits_folder_and_stems_with_suffix(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds")
    (root / "train.txt").unlink()
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("frame001.png\n")
    ds = RGBXFolder(root, "val", modalities=["thermal"])
    assert ds.stems == ["frame001"]


def expect_error(fn, *fragments: str) -> str:
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_file_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds")
    (root / "thermal" / "frame002.npy").unlink()
    ds = RGBXFolder(root, "train", modalities=["thermal"])
    expect_error(lambda: ds[2], str(root / "thermal" / "frame002"), "not found")


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds")
    (root / "rgb" / "frame001.png").write_bytes(b"this is not a png")
    ds = RGBXFolder(root, "train")
    expect_error(lambda: ds[1], "frame001.png", "cannot decode")


def test_modality_size_mismatch_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds")
    cv2.imwrite(str(root / "depth" / "frame001.png"), np.zeros((H + 2, W), dtype=np.uint16))
    ds = RGBXFolder(root, "train", modalities=["depth"])
    expect_error(lambda: ds[1], "frame001.png", "modality 'depth' is 26×32 but the image is 24×32")


def test_wrong_channel_count_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds")
    cv2.imwrite(str(root / "depth" / "frame002.png"), np.zeros((H, W, 3), dtype=np.uint8))
    ds = RGBXFolder(root, "train", modalities=["depth"])
    expect_error(lambda: ds[2], "frame002.png", "3 channel(s), expected 1")


def test_nan_in_modality_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds")
    bad = np.zeros((H, W), dtype=np.float32)
    bad[3, 3] = np.nan
    bad[4, 4] = np.inf
    np.save(root / "thermal" / "frame001.npy", bad)
    ds = RGBXFolder(root, "train", modalities=["thermal"])
    expect_error(lambda: ds[1], "frame001.npy", "2 NaN/inf")


def test_label_out_of_range_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds")
    label = np.zeros((H, W), dtype=np.uint8)
    label[5, 5] = 7
    cv2.imwrite(str(root / "labels" / "frame000.png"), label)
    ds = RGBXFolder(root, "train")
    expect_error(lambda: ds[0], "frame000.png", "[7]", "out of range [0, 3)")


def test_empty_split_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds")
    (root / "train.txt").write_text("\n# nothing here\n")
    expect_error(lambda: RGBXFolder(root, "train"), "train.txt", "empty")


def test_missing_split_and_folders_are_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds")
    expect_error(lambda: RGBXFolder(root, "test"), "test.txt", "not found")
    expect_error(lambda: RGBXFolder(root, "train", modalities=["lidar"]), str(root / "lidar"), "folder not found")
    expect_error(lambda: RGBXFolder(tmp_path / "nope", "train"), "nope", "not found")


def test_pickled_npy_is_refused(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ds")
    np.save(root / "thermal" / "frame000.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    expect_error(lambda: RGBXFolder(root, "train", modalities=["thermal"]), "frame000.npy", "cannot read")
