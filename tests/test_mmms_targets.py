"""Issue 13's training recipe: derived targets (merged regions, one part of a class), patch-aligned training
crops, the full-resolution image stem, CPU-time logging and weight snapshots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rgbxseg.interactive.config import load_interactive_config
from rgbxseg.interactive.targets import TargetOptions, choose_target, choose_targets, crop_view, crop_window
from rgbxseg.interactive.trainer import make_batch, train_interactive
from rgbxseg.interactive.views import View
from rgbxseg.models.mmms import MMMSConfig, MMMSNet
from rgbxseg.models.mmms.image_stem import ImageStem
from rgbxseg.models.mmms.weights_file import load_mmms, read_metadata, save_mmms

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

TINY = {"channels": [16, 32, 64, 64], "widths": [8, 16, 32, 32], "depths": [0, 1, 1, 1], "decoder_dim": 8}


def test_merged_regions_touch_and_classes_split_into_parts() -> None:
    # regions: a row of four 10-px bands 1 | 2 | 3 | 4
    bands = np.repeat(np.repeat(np.arange(1, 5), 10)[None], 20, axis=0)
    merged = [choose_target(bands, "regions", TargetOptions(min_area=1, merge=1.0), np.random.default_rng(s))
              for s in range(20)]  # fmt: skip
    for target in merged:
        ids = np.unique(bands[target])
        assert 2 <= len(ids) <= 3 and np.all(np.diff(ids) == 1)  # a region plus touching ones, never a jump
    single = choose_target(bands, "regions", TargetOptions(min_area=1), np.random.default_rng(0))
    assert len(np.unique(bands[single])) == 1
    # classes: class 1 made of two blobs of 30 and 12 pixels, min_area 20 keeps only the large one
    classes = np.zeros((20, 20), np.int32)
    classes[1:4, 1:11] = 1
    classes[10:13, 10:14] = 1
    part = choose_target(classes, "classes", TargetOptions(min_area=20, component=1.0), np.random.default_rng(0))
    assert part.sum() == 30 and part[1:4, 1:11].all()
    whole = choose_target(classes, "classes", TargetOptions(min_area=20), np.random.default_rng(0))
    assert whole.sum() == 42
    # regions are never split and classes never merged
    assert choose_target(classes, "regions", TargetOptions(min_area=1, component=1.0), np.random.default_rng(0)).sum() == 42


def test_targets_mark_ignored_pixels() -> None:
    surfaces = np.array([[1, 1, 255], [2, 2, 255]], np.int32)
    targets = choose_targets([surfaces], ["regions"], TargetOptions(min_area=1), np.random.default_rng(0))
    assert targets.valid.tolist() == [[[True, True, False], [True, True, False]]]


@pytest.mark.parametrize("seed", range(10))
def test_crop_window_is_patch_aligned_and_holds_the_target(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = np.zeros((56, 56), bool)
    y, x = rng.integers(0, 56, 2)
    target[y, x] = True
    top, left = crop_window(target, 28, 14, rng)
    assert top % 14 == 0 and left % 14 == 0 and 0 <= top <= 28 and 0 <= left <= 28
    assert top <= y < top + 28 and left <= x < left + 28


def test_crop_view_cuts_maps_and_pixels_at_the_same_place() -> None:
    grid = torch.arange(16.0).view(1, 4, 4)  # one value per 14-px patch
    pixels = torch.arange(16.0).view(4, 4).repeat_interleave(14, 0).repeat_interleave(14, 1)
    maps, (cropped,) = crop_view([grid], [pixels], 14, 28, 28, 14)
    assert maps[0].tolist() == [[[6.0, 7.0], [10.0, 11.0]]]
    assert cropped.shape == (28, 28) and cropped[::14, ::14].tolist() == [[6.0, 7.0], [10.0, 11.0]]


def _view(kind: str = "regions") -> View:
    surfaces = torch.zeros(56, 56, dtype=torch.long)
    surfaces[20:40, 10:30] = 1
    return View(
        tokens=[torch.randn(384, 4, 4) for _ in range(4)],
        surfaces=surfaces,
        modalities={"depth": torch.rand(1, 56, 56)},
        image=torch.randint(0, 256, (3, 56, 56), dtype=torch.uint8),
        kind=kind,
    )


def _config(tmp_path: Path, **data: object) -> object:
    config = {
        "task": "interactive", "name": "t", "output_dir": str(tmp_path), "model": TINY | {"modalities": {"depth": 1}},
        "data": {"crop_size": 56, "min_area": 1, "sources": [{"dataset": "synthetic", "split": "train"}], **data},
        "train": {"iterations": 1},
    }  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(config))
    return load_interactive_config(path)


def test_make_batch_crops_everything_alike(tmp_path: Path) -> None:
    views = [_view(), _view("classes")]
    batch = make_batch(views, _config(tmp_path, train_crop=28, modality_dropout=0.0), np.random.default_rng(0))
    assert [tuple(t.shape) for t in batch.tokens] == [(2, 384, 2, 2)] * 4
    assert batch.targets.gt.shape == (2, 28, 28) and batch.targets.gt.any(axis=(1, 2)).all()
    assert batch.images.shape == (2, 3, 28, 28) and 0 <= batch.images.min() and batch.images.max() <= 1
    assert batch.modalities["depth"].shape == (2, 1, 28, 28)
    full = make_batch(views, _config(tmp_path), np.random.default_rng(0))
    assert full.targets.gt.shape == (2, 56, 56) and full.targets.gt[0].sum() == 400
    with pytest.raises(ValueError, match="multiple of the ViT patch size"):
        _config(tmp_path, train_crop=30)
    with pytest.raises(ValueError, match="larger than the views"):
        _config(tmp_path, train_crop=70)


def test_image_stem_starts_silent_and_then_sees_the_image() -> None:
    stem = ImageStem(hidden=4, width=8)
    image = torch.rand(2, 3, 30, 45)
    out = stem(image)
    assert out.shape == (2, 8, 8, 12)  # ceil(30/4), ceil(45/4): the pyramid's stride-4 size
    assert torch.count_nonzero(out) == 0  # zero-initialised output layer
    config = MMMSConfig(**TINY, image_stem=4)
    net = MMMSNet(config)
    tokens = [torch.randn(1, 384, 2, 3) for _ in range(4)]
    with pytest.raises(ValueError, match="needs the RGB image"):
        net.encode(tokens, (28, 42))
    torch.nn.init.normal_(net.stem.layers[-1].weight)
    first = net.encode(tokens, (28, 42), image=torch.zeros(1, 3, 28, 42))[0]
    second = net.encode(tokens, (28, 42), image=torch.ones(1, 3, 28, 42))[0]
    assert not torch.allclose(first, second)


def test_stem_weights_round_trip(tmp_path: Path) -> None:
    net = MMMSNet(MMMSConfig(**TINY, image_stem=4))
    save_mmms(net, tmp_path / "w.safetensors")
    loaded = load_mmms(tmp_path / "w.safetensors")
    assert loaded.config.image_stem == 4 and loaded.stem is not None


@pytest.mark.slow
def test_training_logs_cpu_time_and_keeps_snapshots(tmp_path: Path) -> None:
    config = {
        "task": "interactive", "name": "snap", "output_dir": str(tmp_path / "runs"), "model": TINY | {"image_stem": 4},
        "data": {
            "views_dir": str(tmp_path / "views"), "crop_size": 56, "train_crop": 28, "batch_size": 2, "component": 0.5,
            "sources": [{"dataset": "synthetic", "split": "train", "limit": 2, "views": 1,
                         "modalities": [], "options": {"size": [64, 96]}}],
        },
        "train": {"iterations": 4, "checkpoint_every": 2, "snapshot_every": 2},
    }  # fmt: skip
    path = tmp_path / "snap.yaml"
    path.write_text(json.dumps(config))
    train_interactive(load_interactive_config(path), progress=False)
    run = tmp_path / "runs" / "snap"
    snapshots = sorted((run / "snapshots").glob("*.safetensors"))
    assert [p.name for p in snapshots] == ["iter_000002.safetensors", "iter_000004.safetensors"]
    assert read_metadata(snapshots[0])["trained"]["iterations"] == 2
    with (run / "train_log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and 0 < float(rows[0]["cpu_seconds"]) <= float(rows[-1]["cpu_seconds"])
