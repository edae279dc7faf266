"""The real datasets in ../shared/data (skipped with a reason where they are absent)."""

from __future__ import annotations

import numpy as np
import pytest

from rgbxseg.data import Berkeley, BSDSSurfaces, CamVid, GrabCut, MRISlices
from tests.conftest import shared_dataset


@pytest.mark.parametrize("split,count", [("train", 367), ("val", 101), ("test", 233)])
def test_camvid_split_sizes(camvid_root, split: str, count: int) -> None:
    assert len(CamVid(camvid_root, split)) == count


def test_camvid_sample(camvid_root) -> None:
    ds = CamVid(camvid_root, "test")
    sample = ds[0]
    assert sample.image.shape == (3, 360, 480)
    labels = set(sample.label.unique().tolist())
    assert 11 not in labels and labels <= set(range(11)) | {255}
    raw_label = ds.load_label(0)
    assert (raw_label == 255).sum() > 0  # SegNet's "unlabelled" (11) became ignore
    inst = sample.instances
    assert len(inst) > 0 and set(inst.classes.tolist()) <= set(CamVid.thing_classes)
    for box, mask, cls in zip(inst.boxes, inst.masks, inst.classes):
        ys, xs = np.nonzero(mask.numpy())
        assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
        assert (sample.label[mask] == cls).all()


def test_grabcut_ignore_band() -> None:
    ds = GrabCut(shared_dataset("grabcut"))
    assert len(ds) == 50
    bands = [int((ds.load_label(i) == 255).sum()) for i in range(len(ds))]
    assert sum(b > 0 for b in bands) >= 40  # the 128 boundary band of the masks
    sample = ds[0]
    assert set(sample.label.unique().tolist()) <= {0, 1, 255}
    assert sample.meta["surfaces"] == [1]


def test_berkeley_masks_map_to_images() -> None:
    ds = Berkeley(shared_dataset("berkeley"))
    assert len(ds) == 100 and len({p.name for p in ds.images}) == 96
    index = [m.stem for m in ds.masks].index("189011b")
    assert ds.images[index].stem == "189011"
    sample = ds[index]
    assert sample.label.shape == sample.image.shape[1:]
    assert 0 < sample.label.float().mean() < 1


def test_bsds_surfaces() -> None:
    root = shared_dataset("bsds500")
    train, val = BSDSSurfaces(root, "train"), BSDSSurfaces(root, "val")
    assert len(train) + len(val) == 204
    sample = val[0]
    surfaces = sample.meta["surfaces"]
    assert len(surfaces) >= 2 and surfaces == sorted(set(sample.label.unique().tolist()) - {0})


def test_mri_slices() -> None:
    ds = MRISlices(shared_dataset("open_ms_mni"), patients=["patient07"], lesion_only=True)
    assert len(ds) > 20
    sample = ds[len(ds) // 2]
    assert sample.image.shape == (3, 218, 182)
    assert set(sample.modalities) == {"T1", "T1POST", "T2"}
    assert all(m.shape == (1, 218, 182) for m in sample.modalities.values())
    assert 0 <= sample.image.min() and sample.image.max() <= 1
    assert (sample.label == 1).any() and len(sample.instances) >= 1
    brain = sample.image[0] > 0
    assert brain.float().mean() > 0.05
