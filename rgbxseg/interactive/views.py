"""Training views for MMMS: augmented crops of a dataset with their backbone features, extracted once.

The backbone is frozen, so its features never change during training; on 2 CPU cores the ViT-S/14 forward
at 448² (about a second) would dominate every step. As SPEC 6 prescribes, a fixed set of augmented views per
image (random scale, ``size``×``size`` crop, horizontal flip) is extracted once — :func:`extract_views`,
resumable, one safetensors file per view — and the head trains on those files (:class:`ViewDataset`).

A view file holds ``image`` (uint8 3×S×S), ``surfaces`` (uint8 S×S surface map, 255 = ignore; see
:mod:`rgbxseg.interactive.surfaces`), ``modality.<name>`` (float16 C×S×S) and ``block0..3`` (float16
backbone maps), plus the source sample id in its metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm import tqdm

from rgbxseg.atomic import atomic_path
from rgbxseg.data import build_dataset
from rgbxseg.data.sample import IGNORE_INDEX, RawSample
from rgbxseg.errors import DataError
from rgbxseg.interactive.surfaces import surface_ids, surface_kind, surface_map
from rgbxseg.models.mmms.backbone import FeatureBackbone

BLOCKS = 4


@dataclass(frozen=True)
class ViewSource:
    """One dataset split to draw training views from.

    Attributes:
        dataset: a key of :data:`rgbxseg.data.DATASETS` with surfaces (:data:`SURFACE_KINDS`).
        split: its split.
        root: its folder (None for ``synthetic``).
        views: augmented views per image.
        modalities: extra sensors to keep (None: the dataset's default; ``()``: RGB only).
        options: keyword arguments of the dataset class (e.g. MRI ``patients``, synthetic ``n``).
        limit: use only the first N images.
    """

    dataset: str
    split: str
    root: Path | None = None
    views: int = 1
    modalities: tuple[str, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None

    def key(self) -> str:
        """Folder name of this source's views: dataset, split and a hash of everything that changes them."""
        spec = {"modalities": self.modalities, "options": self.options, "limit": self.limit}
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{self.dataset}-{self.split}-{digest}"


@dataclass(frozen=True)
class ViewAugment:
    """Geometry of the views: image long side scaled to ``size``·U(scale), ``size``² crop, random flip."""

    size: int = 448
    scale: tuple[float, float] = (0.75, 1.4)
    hflip: bool = True
    seed: int = 0


def _resize(array: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    # INTER_NEAREST_EXACT samples at pixel centres like INTER_LINEAR; OpenCV's INTER_NEAREST is shifted by
    # half a pixel, which would misalign the labels with the image.
    interpolation = cv2.INTER_NEAREST_EXACT if nearest else cv2.INTER_LINEAR
    resized = cv2.resize(array, (shape[1], shape[0]), interpolation=interpolation)
    return resized[..., None] if array.ndim == 3 and resized.ndim == 2 else resized


def _crop_pad(array: np.ndarray, top: int, left: int, size: int, fill: float) -> np.ndarray:
    """``size``×``size`` window at (top, left) of ``array`` (H×W[×C]), padded with ``fill`` beyond its edges."""
    out = np.full((size, size, *array.shape[2:]), fill, dtype=array.dtype)
    window = array[max(top, 0) : top + size, max(left, 0) : left + size]
    out[max(-top, 0) : max(-top, 0) + window.shape[0], max(-left, 0) : max(-left, 0) + window.shape[1]] = window
    return out


def random_view(
    raw: RawSample, surfaces: np.ndarray, augment: ViewAugment, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """One augmented view: (image S×S×3 float, surface map S×S, modalities S×S×C); pixels beyond the image
    are black and ignored."""
    height, width = surfaces.shape
    factor = rng.uniform(*augment.scale) * augment.size / max(height, width)
    shape = (max(1, round(height * factor)), max(1, round(width * factor)))
    size = augment.size
    top = int(rng.integers(min(0, shape[0] - size), max(0, shape[0] - size) + 1))
    left = int(rng.integers(min(0, shape[1] - size), max(0, shape[1] - size) + 1))
    flip = augment.hflip and bool(rng.random() < 0.5)

    def view(array: np.ndarray, fill: float, nearest: bool = False) -> np.ndarray:
        out = _crop_pad(_resize(array, shape, nearest), top, left, size, fill)
        return np.ascontiguousarray(out[:, ::-1]) if flip else out

    modalities = {name: view(m, 0.0) for name, m in raw.modalities.items()}
    return view(raw.image, 0.0), view(surfaces.astype(np.int32), IGNORE_INDEX, nearest=True), modalities


def view_path(directory: Path, source: ViewSource, index: int, view: int) -> Path:
    return directory / source.key() / f"{index:05d}-{view}.safetensors"


def write_view(
    path: Path,
    image: np.ndarray,
    surfaces: np.ndarray,
    modalities: Mapping[str, np.ndarray],
    features: list[Tensor],
    sample_id: str,
) -> None:
    tensors = {
        "image": torch.from_numpy(
            np.ascontiguousarray((image.clip(0, 1) * 255).round().astype(np.uint8).transpose(2, 0, 1))
        ),
        "surfaces": torch.from_numpy(surfaces.astype(np.uint8)),
        **{f"block{i}": f[0].to("cpu", torch.float16).contiguous() for i, f in enumerate(features)},
        **{
            f"modality.{name}": torch.from_numpy(np.ascontiguousarray(m.transpose(2, 0, 1))).to(torch.float16)
            for name, m in modalities.items()
        },
    }
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"id": sample_id})


def extract_views(
    source: ViewSource,
    backbone: FeatureBackbone,
    directory: Path,
    augment: ViewAugment,
    min_area: int = 64,
    progress: bool = True,
) -> list[Path]:
    """Write ``source.views`` views of every image of ``source`` (skipping files already there) → their paths.

    Views with no surface of at least ``min_area`` pixels are not written (nothing to click on).
    """
    dataset = build_dataset(source.dataset, source.split, source.root, source.modalities, **source.options)
    kind = surface_kind(source.dataset)
    count = len(dataset) if source.limit is None else min(source.limit, len(dataset))
    written: list[Path] = []
    bar = tqdm(total=count * source.views, desc=f"views {source.key()}", unit="view", disable=not progress)
    for index in range(count):
        paths = [view_path(directory, source, index, v) for v in range(source.views)]
        missing = [v for v, p in enumerate(paths) if not p.is_file()]
        raw = dataset.raw(index) if missing else None
        for v in range(source.views):
            if v in missing and raw is not None:
                rng = np.random.default_rng([augment.seed, index, v])
                image, surfaces, modalities = random_view(raw, surface_map(raw, kind), augment, rng)
                if surface_ids(surfaces, min_area):
                    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()[None]
                    write_view(paths[v], image, surfaces, modalities, backbone(tensor), str(raw.meta.get("id", index)))
            if paths[v].is_file():
                written.append(paths[v])
            bar.update()
    bar.close()
    return written


@dataclass
class View:
    """One training view read back: backbone maps (float32 D×h×w), surface map, modalities (C×S×S), and
    what its surfaces are (``kind``, :data:`rgbxseg.interactive.surfaces.SURFACE_KINDS`)."""

    tokens: list[Tensor]
    surfaces: Tensor
    modalities: dict[str, Tensor]
    image: Tensor
    kind: str = "regions"


def read_view(path: Path) -> View:
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError) as error:
        raise DataError(f"{path}: unreadable training view ({error}); delete it to extract it again") from error
    missing = {"image", "surfaces", *(f"block{i}" for i in range(BLOCKS))} - set(tensors)
    if missing:
        raise DataError(f"{path}: not a training view (missing {sorted(missing)})")
    return View(
        tokens=[tensors[f"block{i}"].float() for i in range(BLOCKS)],
        surfaces=tensors["surfaces"].long(),
        modalities={k.removeprefix("modality."): v.float() for k, v in tensors.items() if k.startswith("modality.")},
        image=tensors["image"],
    )


class ViewDataset(torch.utils.data.Dataset):
    """Training views from files; ``modalities`` restricts/keeps the sensors a model knows; ``kinds`` gives
    each file's surface kind (default: ``regions`` for all)."""

    def __init__(
        self, paths: list[Path], modalities: tuple[str, ...] = (), kinds: list[str] | None = None
    ) -> None:
        if not paths:
            raise DataError("no training views: extract some first (rgbxseg extract-features --views N)")
        if kinds is not None and len(kinds) != len(paths):
            raise ValueError(f"ViewDataset: {len(kinds)} kinds for {len(paths)} views")
        self.paths = list(paths)
        self.modalities = modalities
        self.kinds = list(kinds) if kinds is not None else ["regions"] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> View:
        view = read_view(self.paths[index])
        view.modalities = {k: v for k, v in view.modalities.items() if k in self.modalities}
        view.kind = self.kinds[index]
        return view

    def __iter__(self) -> Iterator[View]:
        return (self[i] for i in range(len(self)))
