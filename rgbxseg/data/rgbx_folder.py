"""A generic RGB-X folder: the layout MFNet, MSRS, DeLiVER and NYUv2 users convert their data to."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rgbxseg.data.base import SegDataset, Transform
from rgbxseg.data.instances import components_to_instances
from rgbxseg.data.io import IMAGE_SUFFIXES, MAP_SUFFIXES, find_file, read_label, read_map, read_rgb, read_split
from rgbxseg.data.sample import RawSample
from rgbxseg.errors import DataError


class RGBXFolder(SegDataset):
    """RGB images plus any number of aligned modalities, one folder each.

    On-disk layout::

        root/rgb/<stem>.png|jpg|...          RGB images
        root/<modality>/<stem>.png|tif|npy   one folder per modality (e.g. depth/, thermal/)
                                             1- or 3-channel; 8-bit → /255, 16-bit → /65535,
                                             float TIFF / .npy kept as stored
        root/labels/<stem>.png               label ids; 255 = ignore
        root/<split>.txt or root/splits/<split>.txt   one stem per line
        root/classes.txt                     class names, one per line (or pass ``classes=``)

    The channel count of each modality is read from the first sample unless given in
    ``modality_channels``; every other sample must match it. ``thing_classes`` (ids) get instances
    from connected components.
    """

    name = "rgbx_folder"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        modalities: Sequence[str] = (),
        classes: Sequence[str] | None = None,
        modality_channels: dict[str, int] | None = None,
        thing_classes: Sequence[int] = (),
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        self.split = split
        self.classes = tuple(classes) if classes is not None else tuple(read_split(self.root / "classes.txt"))
        self.thing_classes = tuple(thing_classes)
        for name in ("rgb", "labels", *modalities):
            if not (self.root / name).is_dir():
                raise DataError(f"{self.root / name}: folder not found (modalities: {', '.join(modalities) or 'none'})")
        self.stems = [Path(entry).stem if Path(entry).suffix else entry for entry in read_split(self._split_file())]
        self.modality_channels = dict(modality_channels or {})
        for name in modalities:
            if name not in self.modality_channels:
                self.modality_channels[name] = read_map(find_file(self.root / name, self.stems[0])).shape[2]

    def _split_file(self) -> Path:
        for candidate in (self.root / f"{self.split}.txt", self.root / "splits" / f"{self.split}.txt"):
            if candidate.is_file():
                return candidate
        raise DataError(f"{self.root / (self.split + '.txt')}: split list not found (also looked in splits/)")

    def __len__(self) -> int:
        return len(self.stems)

    def load_label(self, index: int) -> np.ndarray:
        return read_label(find_file(self.root / "labels", self.stems[index], IMAGE_SUFFIXES))

    def load(self, index: int) -> RawSample:
        stem = self.stems[index]
        files = {"image": find_file(self.root / "rgb", stem, IMAGE_SUFFIXES)}
        files["label"] = find_file(self.root / "labels", stem, IMAGE_SUFFIXES)
        files.update({name: find_file(self.root / name, stem, MAP_SUFFIXES) for name in self.modality_channels})
        label = read_label(files["label"])
        raw = RawSample(
            image=read_rgb(files["image"]),
            label=label,
            modalities={name: read_map(files[name]) for name in self.modality_channels},
            meta={"id": stem, "dataset": self.name, "condition": "unknown", "files": {k: str(v) for k, v in files.items()}},
        )
        if self.thing_classes:
            raw.instance_masks, raw.instance_classes = components_to_instances(label, self.thing_classes)
        return raw
