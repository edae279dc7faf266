"""Interactive-segmentation sets: one object per sample (GrabCut, Berkeley, DAVIS-style folders)
and all regions of an image as surfaces (BSDS500).

Label convention shared with the interactive engine: 0 = not part of any surface, surfaces are
ids 1..S, 255 = ignore. ``meta["surfaces"]`` lists the surface ids of the sample.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rgbxseg.data.base import SegDataset, Transform
from rgbxseg.data.io import IMAGE_SUFFIXES, find_file, is_palette_png, read_label, read_mask, read_rgb
from rgbxseg.data.sample import IGNORE_INDEX, RawSample
from rgbxseg.errors import DataError


def _files(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
    if not files:
        raise DataError(f"{folder}: no image files ({', '.join(suffixes)}) found")
    return files


class DavisStyle(SegDataset):
    """A folder of images and single-object masks.

    On-disk layout::

        folder/images/<stem>.jpg|png|bmp|...
        folder/masks/<stem>[a-z]?.png|bmp    one object per mask; a letter after a digit (``189011a``,
                                             ``189011b``) marks further objects of image ``189011``

    How a mask becomes the label (object = surface 1, background = 0, ignore = 255):

    - palette ("P" mode) PNG, as DAVIS ships its masks: the pixel values are palette indices and
      any non-zero index is the object (RITM reads DAVIS the same way); ``threshold`` and
      ``ignore_value`` do not apply, since they are grey levels, not indices;
    - greyscale or RGB mask (RGB read from its first channel): pixels equal to ``ignore_value``
      (e.g. GrabCut's 128 boundary band) become ignore, pixels above ``threshold`` are the object.
    """

    name = "davis_style"
    classes = ("background", "object")

    def __init__(
        self,
        folder: str | Path,
        ignore_value: int | None = None,
        threshold: int = 127,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform)
        self.folder = Path(folder)
        self.ignore_value = ignore_value
        self.threshold = threshold
        self.masks = _files(self.folder / "masks")
        self.images = [self._image_for(mask) for mask in self.masks]

    def _image_for(self, mask: Path) -> Path:
        images = self.folder / "images"
        base = re.sub(r"(?<=\d)[a-z]$", "", mask.stem)  # 189011a -> 189011
        for stem in dict.fromkeys((mask.stem, base)):
            try:
                return find_file(images, stem, IMAGE_SUFFIXES)
            except DataError:
                continue
        raise DataError(f"{mask}: no image named {mask.stem}.* in {images}")

    def __len__(self) -> int:
        return len(self.masks)

    def load_label(self, index: int) -> np.ndarray:
        path = self.masks[index]
        mask = read_mask(path)
        if is_palette_png(path):
            return (mask != 0).astype(np.int64)
        label = (mask > self.threshold).astype(np.int64)
        if self.ignore_value is not None:
            label[mask == self.ignore_value] = IGNORE_INDEX
        return label

    def load(self, index: int) -> RawSample:
        return RawSample(
            image=read_rgb(self.images[index]),
            label=self.load_label(index),
            meta={
                "id": self.masks[index].stem,
                "dataset": self.name,
                "condition": "day",
                "surfaces": [1],
                "files": {"image": str(self.images[index]), "label": str(self.masks[index])},
            },
        )


class GrabCut(DavisStyle):
    """GrabCut (Rother et al. 2004): 50 images, one object each; 128 in a mask = ignore band.

    Layout: ``root/images/<stem>.jpg|bmp``, ``root/masks/<stem>.bmp`` (0 / 128 / 255).
    """

    name = "grabcut"

    def __init__(self, root: str | Path, transform: Transform | None = None) -> None:
        super().__init__(root, ignore_value=128, transform=transform)


class Berkeley(DavisStyle):
    """Berkeley (McGuinness & O'Connor 2010): 96 images, 100 object masks (object = value > 127).

    Layout: ``root/images/<id>.jpg``, ``root/masks/<id>[a|b].png``.
    """

    name = "berkeley"

    def __init__(self, root: str | Path, transform: Transform | None = None) -> None:
        super().__init__(root, ignore_value=None, transform=transform)


class BSDSSurfaces(SegDataset):
    """BSDS500 region segmentations, every region of one annotator = one surface (multi-surface data).

    On-disk layout::

        root/<split>/images/<id>.jpg
        root/<split>/segments/<id>_<k>.png   k-th annotator, uint16 region ids starting at 1

    ``annotator`` picks the k-th annotation of each image in sorted order (clamped to the last one
    for images with fewer annotators). Region ids are the surfaces 1..S; an id of 255 or more would
    collide with the ignore id and is rejected.
    """

    name = "bsds"
    classes = ("none", *(f"region {i}" for i in range(1, IGNORE_INDEX)))
    splits = ("train", "val")

    def __init__(
        self, root: str | Path, split: str = "train", annotator: int = 0, transform: Transform | None = None
    ) -> None:
        super().__init__(transform)
        if split not in self.splits:
            raise DataError(f"BSDS500: unknown split '{split}' (choose from {', '.join(self.splits)})")
        base = Path(root) / split
        self.images = _files(base / "images")
        segments = base / "segments"
        self.segments = [self._segment_for(segments, image.stem, annotator) for image in self.images]

    @staticmethod
    def _segment_for(folder: Path, stem: str, annotator: int) -> Path:
        found = sorted(folder.glob(f"{stem}_*.png"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        if not found:
            raise DataError(f"{folder / stem}_<k>.png: no region segmentation for image {stem}")
        return found[min(annotator, len(found) - 1)]

    def __len__(self) -> int:
        return len(self.images)

    def load_label(self, index: int) -> np.ndarray:
        label = read_label(self.segments[index])
        if label.max() >= IGNORE_INDEX:
            raise DataError(f"{self.segments[index]}: region id {label.max()} collides with the ignore id 255")
        return label

    def load(self, index: int) -> RawSample:
        label = self.load_label(index)
        return RawSample(
            image=read_rgb(self.images[index]),
            label=label,
            meta={
                "id": self.images[index].stem,
                "dataset": self.name,
                "condition": "day",
                "surfaces": [int(s) for s in np.unique(label) if s != 0],
                "files": {"image": str(self.images[index]), "label": str(self.segments[index])},
            },
        )
