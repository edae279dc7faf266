"""Datasets, the sample schema and joint transforms.

``DATASETS`` is a plain dict from a name to a :class:`DatasetEntry` (how to build one split), the
way segment-anything's ``sam_model_registry`` maps names to builders — no registry framework.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rgbxseg.data.base import SegDataset
from rgbxseg.data.camvid import CamVid
from rgbxseg.data.coco import COCOInstances
from rgbxseg.data.interactive_sets import Berkeley, BSDSSurfaces, DavisStyle, GrabCut
from rgbxseg.data.mri import SEQUENCES as MRI_SEQUENCES
from rgbxseg.data.mri import MRISlices
from rgbxseg.data.rgbx_folder import RGBXFolder
from rgbxseg.data.sample import IGNORE_INDEX, Batch, Instances, RawSample, Sample, collate, to_sample, validate
from rgbxseg.data.synthetic import SyntheticStreets
from rgbxseg.data.transforms import JointTransform, resize_transforms, train_transforms
from rgbxseg.errors import DataError

Builder = Callable[..., SegDataset]  # (root, split, modalities, **options) -> dataset

# Fixed synthetic splits: disjoint seeds, every condition represented.
SYNTHETIC_SPLITS = {"train": (400, 0), "val": (100, 1), "test": (100, 2)}
SYNTHETIC_CONDITIONS = ("day", "night", "fog", "sensor_failure")


@dataclass(frozen=True)
class DatasetEntry:
    """How to build one split of a named dataset from a root folder."""

    build: Builder
    splits: tuple[str, ...]
    needs_root: bool = True
    takes_modalities: bool = False


def _synthetic(root: Path | None, split: str, modalities: Sequence[str] | None, **options: Any) -> SegDataset:
    n, seed = SYNTHETIC_SPLITS[split]
    chosen = ("depth", "thermal") if modalities is None else tuple(modalities)
    # RGB only: a sensor failure leaves a daylight RGB image, so scene k keeps its lighting.
    conditions = SYNTHETIC_CONDITIONS if chosen else tuple(c.replace("sensor_failure", "day") for c in SYNTHETIC_CONDITIONS)
    settings = {"n": n, "seed": seed, "conditions": conditions, "modalities": chosen}
    return SyntheticStreets(**(settings | options))


def _rgbx(root: Path | None, split: str, modalities: Sequence[str] | None, **options: Any) -> SegDataset:
    return RGBXFolder(root, split, modalities=tuple(modalities or ()), **options)


def _mri(root: Path | None, split: str, modalities: Sequence[str] | None, **options: Any) -> SegDataset:
    return MRISlices(root, sequences=MRI_SEQUENCES if modalities is None else tuple(modalities), **options)


DATASETS: dict[str, DatasetEntry] = {
    "camvid": DatasetEntry(lambda root, split, _, **kw: CamVid(root, split, **kw), CamVid.splits),
    "rgbx": DatasetEntry(_rgbx, ("train", "val", "test"), takes_modalities=True),
    "grabcut": DatasetEntry(lambda root, split, _, **kw: GrabCut(root, **kw), ("all",)),
    "berkeley": DatasetEntry(lambda root, split, _, **kw: Berkeley(root, **kw), ("all",)),
    "davis": DatasetEntry(lambda root, split, _, **kw: DavisStyle(root, **kw), ("all",)),
    "bsds": DatasetEntry(lambda root, split, _, **kw: BSDSSurfaces(root, split, **kw), BSDSSurfaces.splits),
    "mri": DatasetEntry(_mri, ("all",), takes_modalities=True),
    "coco": DatasetEntry(lambda root, split, _, **kw: COCOInstances(root, **kw), ("all",)),
    "synthetic": DatasetEntry(_synthetic, tuple(SYNTHETIC_SPLITS), needs_root=False, takes_modalities=True),
}


def dataset_splits(name: str) -> tuple[str, ...]:
    """The split names of dataset ``name``; a clear error for an unknown name."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}' (choose from {', '.join(DATASETS)})")
    return DATASETS[name].splits


def build_dataset(
    name: str, split: str, root: str | Path | None = None, modalities: Sequence[str] | None = None, **options: Any
) -> SegDataset:
    """Build split ``split`` of dataset ``name`` (a key of :data:`DATASETS`), with clear errors;
    ``modalities``: the extra sensors to load (None: the dataset's default — all of them for
    ``synthetic`` and ``mri``; ``()``: RGB only); ``options`` go to the dataset class (e.g.
    ``size``/``n`` for ``synthetic``)."""
    splits = dataset_splits(name)
    entry = DATASETS[name]
    if entry.needs_root and root is None:
        raise DataError(f"dataset '{name}' needs --root (the folder that holds it)")
    if split not in splits:
        raise DataError(f"dataset '{name}' has no split '{split}' (choose from {', '.join(splits)})")
    if modalities and not entry.takes_modalities:
        raise DataError(f"dataset '{name}' has no selectable modalities")
    try:
        chosen = None if modalities is None else tuple(modalities)
        return entry.build(Path(root) if root is not None else None, split, chosen, **options)
    except TypeError as error:  # an option the dataset class does not take
        raise DataError(f"dataset '{name}': {error}") from None


__all__ = [
    "DATASETS", "IGNORE_INDEX", "Batch", "BSDSSurfaces", "Berkeley", "COCOInstances", "CamVid", "DataError",
    "DatasetEntry", "DavisStyle", "GrabCut", "Instances", "JointTransform", "MRISlices", "RGBXFolder", "RawSample",
    "Sample", "SegDataset", "SyntheticStreets", "build_dataset", "dataset_splits", "collate", "resize_transforms",
    "to_sample", "train_transforms", "validate",
]  # fmt: skip
