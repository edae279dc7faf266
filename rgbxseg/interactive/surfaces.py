"""Surfaces: what one interactive annotation target is in each dataset (SPEC 6, "Surfaces").

A surface map is an int32 H×W label map, 0 = no surface, 1..S = the surfaces, 255 = ignore:

- ``regions``: the dataset's label already is one (BSDS500 regions, GrabCut/Berkeley/DAVIS objects, COCO
  instances or categories);
- ``classes``: every class present is a surface (CamVid, SyntheticStreets, RGB-X folders): class c → c + 1;
- ``instances``: every instance is a surface (MRI: each connected lesion of a slice).
"""

from __future__ import annotations

import numpy as np

from rgbxseg.data.sample import IGNORE_INDEX, RawSample
from rgbxseg.errors import DataError

SURFACE_KINDS = {
    "bsds": "regions",
    "grabcut": "regions",
    "berkeley": "regions",
    "davis": "regions",
    "coco": "regions",
    "camvid": "classes",
    "synthetic": "classes",
    "rgbx": "classes",
    "mri": "instances",
}


def surface_kind(dataset: str) -> str:
    if dataset not in SURFACE_KINDS:
        raise DataError(f"dataset '{dataset}' has no interactive surfaces (choose from {', '.join(SURFACE_KINDS)})")
    return SURFACE_KINDS[dataset]


def surface_map(raw: RawSample, kind: str) -> np.ndarray:
    """The surface map (int32 H×W: 0 none, 1..S surfaces, 255 ignore) of a loaded sample."""
    label = raw.label
    ignore = label == IGNORE_INDEX
    if kind == "regions":
        surfaces = label.astype(np.int32)
    elif kind == "classes":
        surfaces = label.astype(np.int32) + 1
    elif kind == "instances":
        surfaces = np.zeros(label.shape, np.int32)
        masks = raw.instance_masks if raw.instance_masks is not None else np.zeros((0, *label.shape), bool)
        if len(masks) >= IGNORE_INDEX:
            raise DataError(f"{raw.source('label')}: {len(masks)} instances do not fit into surface ids 1..254")
        for index, mask in enumerate(masks, start=1):
            surfaces[mask] = index
    else:
        raise ValueError(f"unknown surface kind '{kind}' (regions, classes or instances)")
    surfaces[ignore] = IGNORE_INDEX
    return surfaces


def surface_ids(surfaces: np.ndarray, min_area: int = 1) -> list[int]:
    """Ids of the surfaces covering at least ``min_area`` pixels, in increasing order."""
    ids, counts = np.unique(surfaces, return_counts=True)
    return [int(i) for i, n in zip(ids, counts, strict=True) if 0 < i < IGNORE_INDEX and n >= min_area]
