"""Export of an annotation project: class label maps, one binary PNG per surface, a COCO instances file.

Class id 0 is the background in every export: the classes of classes.yaml are numbered from 1 (at most 255, the
label maps are 8-bit), and a pixel that no surface owns is 0. Only images with a saved mask are exported.

Output paths are made from image ids (relative POSIX paths). An id that would lead outside the export folder
(absolute, with ``..``, with a backslash, or through a symbolic link) and two ids that would share an output file
(``a.png`` and ``a.jpg``) are a :class:`DataError`, raised before anything is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from rgbxseg.atomic import atomic_write_text
from rgbxseg.errors import DataError
from rgbxseg.web.project import AnnotationProject, write_png

FORMATS = ("png", "surfaces", "coco")
COCO_FILE = "annotations.coco.json"


def export_annotations(
    project: AnnotationProject, classes: Sequence[tuple[int, str]], out: Path, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """Export every image of ``project`` with a saved mask into ``out``; return the files written.

    ``classes`` lists (class id, name) pairs, ids from 1. Formats:

    - ``"png"``: ``labels/<image id, suffix .png>``, uint8 label map: pixel = class id of the owning surface, 0 =
      background;
    - ``"surfaces"``: ``surfaces/<image id without suffix>/surface_<id>_<class name>.png``, 0/255, one per surface
      that owns at least one pixel;
    - ``"coco"``: ``annotations.coco.json``, COCO instances: 1-based image and annotation ids, ``file_name`` = image
      id, one annotation per surface with at least one pixel, compressed RLE segmentation (``iscrowd`` 0).

    Images are read and written one at a time (a project may not fit in memory), after every path was checked.
    """
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {', '.join(map(repr, unknown))}; known: {', '.join(FORMATS)}")
    writer = _Writer(Path(out), _class_names(classes), tuple(formats))
    for image_id, stem in _checked_stems(project, writer.names, writer.out).items():
        saved = project.saved(image_id)
        if saved is not None:
            _check_classes(project, image_id, saved[0], writer.names)
            writer.add(image_id, stem, *saved)
    return writer.finish()


def label_map(summary: dict[str, Any], joint: np.ndarray) -> np.ndarray:
    """The uint8 class label map of a joint mask: pixel = class id of the surface that owns it, 0 = background."""
    lookup = np.zeros(256, np.uint8)
    for surface in summary["surfaces"]:
        lookup[surface["id"]] = surface["class_id"]
    return lookup[joint]


def _class_names(classes: Sequence[tuple[int, str]]) -> dict[int, str]:
    names: dict[int, str] = {}
    for class_id, name in classes:
        if not isinstance(class_id, int) or isinstance(class_id, bool) or not 1 <= class_id <= 255:
            raise DataError(f"export classes: a class id is an int 1..255 (0 is the background), got {class_id!r}")
        if class_id in names:
            raise DataError(f"export classes: class id {class_id} is listed twice")
        names[class_id] = str(name)
    return names


def _checked_stems(project: AnnotationProject, names: dict[int, str], out: Path) -> dict[str, PurePosixPath]:
    """Image id → output path without suffix of every image with a saved mask, all checked before any write."""
    stems: dict[str, PurePosixPath] = {}
    owners: dict[PurePosixPath, str] = {}
    for image_id in project.images():
        summary = project.summary(image_id)
        if summary is None:
            continue
        _check_classes(project, image_id, summary, names)
        stem = _stem(image_id, out)
        _target(out, "labels" / stem.with_suffix(".png"))
        _target(out, "surfaces" / stem)
        other = owners.setdefault(stem, image_id)
        if other != image_id:
            raise DataError(f"{out}: images {other!r} and {image_id!r} would be exported to the same files")
        stems[image_id] = stem
    return stems


def _check_classes(project: AnnotationProject, image_id: str, summary: dict[str, Any], names: dict[int, str]) -> None:
    for surface in summary["surfaces"]:
        if surface["class_id"] not in names:
            raise DataError(
                f"{project.folder}: image {image_id!r}, surface {surface['id']}: class {surface['class_id']} is not "
                f"among the export classes {sorted(names)}"
            )


def _stem(image_id: str, out: Path) -> PurePosixPath:
    """The image's output path without suffix, relative to an export sub-folder; DataError when it could escape."""
    path = PurePosixPath(image_id)
    if path.is_absolute() or ".." in path.parts or "\\" in image_id or not path.name:
        raise DataError(f"{out}: image id {image_id!r} would be exported outside the export folder")
    return path.with_suffix("")


def _target(out: Path, relative: PurePosixPath) -> Path:
    """``out / relative``, refused when it resolves (symbolic links followed) outside ``out``."""
    path = out / relative
    if not path.resolve().is_relative_to(out.resolve()):
        raise DataError(f"{out}: refusing to write {path}, which resolves outside the export folder")
    return path


@dataclass
class _Writer:
    """Writes the files of the chosen formats image by image and collects the COCO file until :meth:`finish`."""

    out: Path
    names: dict[int, str]
    formats: tuple[str, ...]
    written: list[Path] = field(default_factory=list)
    coco_images: list[dict[str, Any]] = field(default_factory=list)
    coco_annotations: list[dict[str, Any]] = field(default_factory=list)

    def add(self, image_id: str, stem: PurePosixPath, summary: dict[str, Any], joint: np.ndarray) -> None:
        """Write the image's label map and surface masks, and add it to the COCO file (as the formats say)."""
        if "png" in self.formats:
            self._write_png("labels" / stem.with_suffix(".png"), label_map(summary, joint))
        number = len(self.coco_images) + 1
        for surface, mask in _surface_masks(summary, joint):
            if "surfaces" in self.formats:
                name = f"surface_{surface['id']}_{_file_name(self.names[surface['class_id']])}.png"
                self._write_png("surfaces" / stem / name, mask.astype(np.uint8) * 255)
            if "coco" in self.formats:
                annotation_id = len(self.coco_annotations) + 1
                self.coco_annotations.append(_annotation(annotation_id, number, surface["class_id"], mask))
        height, width = joint.shape
        self.coco_images.append({"id": number, "file_name": image_id, "height": height, "width": width})

    def finish(self) -> list[Path]:
        """Write the COCO file (when chosen); return every file written."""
        if "coco" in self.formats:
            categories = [{"id": class_id, "name": name} for class_id, name in self.names.items()]
            coco = {"images": self.coco_images, "categories": categories, "annotations": self.coco_annotations}
            path = _target(self.out, PurePosixPath(COCO_FILE))
            atomic_write_text(path, json.dumps(coco) + "\n")
            self.written.append(path)
        return self.written

    def _write_png(self, relative: PurePosixPath, array: np.ndarray) -> None:
        path = _target(self.out, relative)
        write_png(path, array)
        self.written.append(path)


def _annotation(annotation_id: int, image_number: int, category_id: int, mask: np.ndarray) -> dict[str, Any]:
    rle = coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {
        "id": annotation_id, "image_id": image_number, "category_id": category_id,
        "segmentation": {"size": [int(side) for side in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "area": int(mask.sum()), "bbox": [float(value) for value in coco_mask.toBbox(rle)], "iscrowd": 0,
    }  # fmt: skip


def _surface_masks(summary: dict[str, Any], joint: np.ndarray) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """(surface, boolean mask) of every surface of the image that owns at least one pixel."""
    for surface in summary["surfaces"]:
        mask = joint == surface["id"]
        if mask.any():
            yield surface, mask


def _file_name(name: str) -> str:
    """A class name made safe for a file name: runs of characters other than letters, digits, - and _ become _."""
    return re.sub(r"[^\w-]+", "_", name).strip("_") or "class"
