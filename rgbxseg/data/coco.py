"""Instance annotations in the standard COCO format (``annotations.json`` + an image folder), read with
pycocotools: every instance, or every category, of an image as one interactive surface."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from rgbxseg.data.base import SegDataset, Transform
from rgbxseg.data.io import read_rgb
from rgbxseg.data.sample import IGNORE_INDEX, RawSample
from rgbxseg.errors import DataError

SURFACE_MODES = ("instances", "classes")
MAX_SURFACES = IGNORE_INDEX - 1  # surface ids 1..254; 255 is the ignore id


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def compressed_counts(text: bytes) -> list[int] | None:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString`` in Python), None when
    it is malformed. pycocotools decodes a string whose runs do not cover the image without an error,
    leaving the rest of the mask uninitialised, so every string is checked with this first."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                return None
            char = text[position] - 48
            if not 0 <= char < 64:
                return None
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            position += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            return None
        counts.append(value)
    return counts


class COCOInstances(SegDataset):
    """A COCO-format instance file (Lin et al. 2014): images, annotations and categories.

    On-disk layout (both names can be changed)::

        root/annotations.json        ``annotations``: another file (relative to root, or absolute)
        root/images/<file_name>      ``images``: another image folder; <file_name> as in the json

    Segmentations may be polygons (a list of ``[x1, y1, x2, y2, ...]`` lists; polygons of fewer than
    3 points have no area and are skipped), uncompressed RLE (``{"size": [h, w], "counts": [...]}``,
    column-major, starting with background) or compressed RLE (``counts`` a string). They are
    rasterised with pycocotools at the size the json gives for the image (which must be the image
    file's size).

    Labels (``surfaces``):

    * ``"instances"`` (default): every non-crowd instance is one surface. Ids 1..S follow the
      annotation order of the file. Where instances overlap, the smaller one (fewer pixels in its own
      mask) owns the pixels, as objects usually lie on or in front of larger ones (a tie on a person,
      a cup on a table); between equal areas the later annotation wins. An instance left with no
      visible pixel is dropped and the ids stay contiguous. More than 254 surfaces in one image is a
      :class:`DataError` (255 is the ignore id). ``classes`` are the surface slots
      ``background, instance 1..254``.
    * ``"classes"``: every category present is one surface ("one class as one surface"): label =
      c + 1 for the category at position c of the file's categories sorted by id, 0 = background;
      ``classes`` = ``background`` and the category names in that order. A pixel covered by several
      instances takes the class of the one that owns it in ``instances`` mode.

    In both modes crowd regions (``iscrowd=1``) are ignore (255) where no non-crowd instance covers
    them (an instance inside a crowd keeps its pixels), and instances whose own mask has fewer than
    ``min_area`` pixels are dropped (default 0 keeps all; the area is measured before overlaps).

    Images without any annotation are kept, all background (no surface), unless ``skip_empty``,
    which drops every image without a non-crowd instance of at least ``min_area`` pixels (with
    ``min_area=0``, any non-crowd annotation counts, even one whose mask turns out empty).

    A loaded sample also carries its instances: ``instance_masks`` (N×H×W bool, the visible pixels
    described above; in ``instances`` mode instance k is surface k + 1) and ``instance_classes``
    (category index c + 1, the ``classes``-mode numbering, in both modes); COCO has no amodal masks,
    so ``occluded_masks`` stays empty. ``meta["surfaces"]`` lists the surface ids, and
    ``meta["categories"]`` maps each surface id to its category name; ``meta["image_id"]`` is the
    COCO image id and, in ``instances`` mode, ``meta["annotation_ids"]`` maps each surface id to its
    annotation id.

    Bad input (missing, empty or non-JSON file, missing COCO keys, malformed entries, an annotation
    of an unknown image or category, a segmentation that is neither polygons nor RLE, an RLE of
    the wrong size, a missing image file) is a :class:`DataError` naming the file and the problem.
    """

    name = "coco"

    def __init__(
        self,
        root: str | Path,
        annotations: str | Path = "annotations.json",
        images: str | Path = "images",
        surfaces: str = "instances",
        min_area: int = 0,
        skip_empty: bool = False,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform)
        if surfaces not in SURFACE_MODES:
            raise DataError(f"COCOInstances: unknown surfaces '{surfaces}' (choose from {', '.join(SURFACE_MODES)})")
        self.root = Path(root)
        self.annotation_file = self.root / annotations
        self.image_folder = self.root / images
        self.surfaces = surfaces
        self.min_area = int(min_area)
        coco = self._read_json(self.annotation_file)
        self.category_ids, self.categories = self._parse_categories(coco["categories"])
        self._category_index = {cid: c + 1 for c, cid in enumerate(self.category_ids)}
        if surfaces == "classes":
            if len(self.category_ids) > MAX_SURFACES:
                raise DataError(
                    f"{self.annotation_file}: {len(self.category_ids)} categories do not fit into class ids "
                    f"1..{MAX_SURFACES}"
                )
            self.classes = ("background", *self.categories)
            self.thing_classes = tuple(range(1, len(self.classes)))
        else:
            self.classes = ("background", *(f"instance {i}" for i in range(1, MAX_SURFACES + 1)))
        self.images = self._parse_images(coco["images"])
        by_id = {int(image["id"]): i for i, image in enumerate(self.images)}
        self._instances: list[list[dict[str, Any]]] = [[] for _ in self.images]
        self._crowds: list[list[dict[str, Any]]] = [[] for _ in self.images]
        for position, annotation in enumerate(coco["annotations"]):
            index = self._check_annotation(annotation, position, by_id)
            (self._crowds if annotation.get("iscrowd", 0) else self._instances)[index].append(annotation)
        if self.min_area > 0:
            for index, found in enumerate(self._instances):
                self._instances[index] = [a for a in found if self._area(a, self.images[index]) >= self.min_area]
        keep = [i for i in range(len(self.images)) if self._instances[i] or not skip_empty]
        if not keep:
            raise DataError(
                f"{self.annotation_file}: no image with an instance left (skip_empty, min_area={self.min_area})"
            )
        self.images = [self.images[i] for i in keep]
        self._instances = [self._instances[i] for i in keep]
        self._crowds = [self._crowds[i] for i in keep]
        for image in self.images:
            path = self.image_folder / image["file_name"]
            if not path.is_file():
                raise DataError(f"{path}: file not found (image {image['id']} of {self.annotation_file})")

    # ---------------------------------------------------------------- parsing and checks

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise DataError(f"{path}: the file is empty")
        try:
            coco = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(coco, dict):
            kind = type(coco).__name__
            raise DataError(f"{path}: not a COCO instance file (the top level is a {kind}, not an object)")
        missing = [key for key in ("images", "annotations", "categories") if key not in coco]
        if missing:
            raise DataError(f"{path}: not a COCO instance file (missing key(s) {', '.join(repr(k) for k in missing)})")
        for key in ("images", "annotations", "categories"):
            if not isinstance(coco[key], list):
                kind = type(coco[key]).__name__
                raise DataError(f"{path}: not a COCO instance file ('{key}' is a {kind}, not a list)")
        if not coco["images"]:
            raise DataError(f"{path}: the file lists no images")
        return coco

    def _parse_categories(self, categories: list[Any]) -> tuple[tuple[int, ...], tuple[str, ...]]:
        names: dict[int, str] = {}
        for position, category in enumerate(categories):
            if not isinstance(category, dict) or not _is_int(category.get("id")) or "name" not in category:
                raise DataError(f"{self.annotation_file}: category #{position} needs an integer 'id' and a 'name'")
            if category["id"] in names:
                raise DataError(f"{self.annotation_file}: category id {category['id']} appears twice")
            names[category["id"]] = str(category["name"])
        ordered = sorted(names)
        return tuple(ordered), tuple(names[i] for i in ordered)

    def _parse_images(self, images: list[Any]) -> list[dict[str, Any]]:
        seen: set[int] = set()
        for position, image in enumerate(images):
            ok = (
                isinstance(image, dict)
                and _is_int(image.get("id"))
                and isinstance(image.get("file_name"), str)
                and all(_is_int(image.get(k)) and image[k] > 0 for k in ("height", "width"))
            )
            if not ok:
                raise DataError(
                    f"{self.annotation_file}: image #{position} needs an integer 'id', a 'file_name' and positive "
                    f"integer 'height' and 'width' (got {str(image)[:120]})"
                )
            if image["id"] in seen:
                raise DataError(f"{self.annotation_file}: image id {image['id']} appears twice")
            seen.add(image["id"])
        return list(images)

    def _where(self, annotation: dict[str, Any], image: dict[str, Any] | None = None) -> str:
        where = f"{self.annotation_file}: annotation {annotation.get('id', '?')}"
        return where + (f" (image {image['file_name']})" if image is not None else "")

    def _check_annotation(self, annotation: Any, position: int, by_id: dict[int, int]) -> int:
        """The index of the annotation's image, after checking its fields and segmentation."""
        if not isinstance(annotation, dict):
            kind = type(annotation).__name__
            raise DataError(f"{self.annotation_file}: annotation #{position} is a {kind}, not an object")
        missing = [k for k in ("image_id", "category_id", "segmentation") if k not in annotation]
        if missing:
            keys = ", ".join(repr(k) for k in missing)
            raise DataError(f"{self._where(annotation)} (#{position}): missing key(s) {keys}")
        if not _is_int(annotation["image_id"]) or annotation["image_id"] not in by_id:
            raise DataError(f"{self._where(annotation)}: unknown image id {annotation['image_id']} (not in 'images')")
        image = self.images[by_id[annotation["image_id"]]]
        if not _is_int(annotation["category_id"]) or annotation["category_id"] not in self._category_index:
            raise DataError(
                f"{self._where(annotation, image)}: unknown category id {annotation['category_id']} "
                f"(not in 'categories')"
            )
        segmentation = annotation["segmentation"]
        if isinstance(segmentation, list):
            if not all(
                isinstance(p, list) and len(p) % 2 == 0 and all(_is_number(v) for v in p) for p in segmentation
            ):
                raise DataError(
                    f"{self._where(annotation, image)}: a polygon segmentation must be lists of an even number of "
                    f"coordinates [x1, y1, x2, y2, ...]"
                )
        elif isinstance(segmentation, dict) and {"size", "counts"} <= set(segmentation):
            if list(segmentation["size"]) != [image["height"], image["width"]]:
                raise DataError(
                    f"{self._where(annotation, image)}: RLE size {segmentation['size']} is not the image's "
                    f"[height, width] [{image['height']}, {image['width']}]"
                )
            counts = segmentation["counts"]
            integers = isinstance(counts, list) and all(_is_int(c) and c >= 0 for c in counts)
            if not (isinstance(counts, str) or integers):
                raise DataError(
                    f"{self._where(annotation, image)}: RLE counts must be a string (compressed) or a list of "
                    f"non-negative integers (uncompressed)"
                )
        else:
            raise DataError(
                f"{self._where(annotation, image)}: segmentation is neither polygons nor an RLE "
                f"(got {str(segmentation)[:80]})"
            )
        return by_id[annotation["image_id"]]

    # ---------------------------------------------------------------- masks

    def _rle(self, annotation: dict[str, Any], image: dict[str, Any]) -> dict[str, Any] | None:
        """The annotation's mask as one pycocotools RLE (None: no pixels)."""
        height, width = image["height"], image["width"]
        segmentation = annotation["segmentation"]
        try:
            if isinstance(segmentation, list):
                # frPyObjects reads a 4-number list as a box: polygons of < 3 points have no area anyway.
                polygons = [[float(v) for v in p] for p in segmentation if len(p) >= 6]
                if not polygons:
                    return None
                return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
            if isinstance(segmentation["counts"], list):
                if sum(segmentation["counts"]) != height * width:
                    raise ValueError(f"the counts add up to {sum(segmentation['counts'])}, not {height}×{width}")
                return mask_utils.frPyObjects(segmentation, height, width)
            text = segmentation["counts"].encode("ascii")
            counts = compressed_counts(text)
            if counts is None:
                raise ValueError("the compressed RLE counts are malformed")
            if sum(counts) != height * width:
                raise ValueError(f"the compressed RLE counts add up to {sum(counts)}, not {height}×{width}")
            return {"size": [height, width], "counts": text}
        except (ValueError, TypeError, UnicodeEncodeError) as error:
            raise DataError(f"{self._where(annotation, image)}: invalid segmentation ({error})") from None

    def _mask(self, annotation: dict[str, Any], image: dict[str, Any]) -> np.ndarray:
        rle = self._rle(annotation, image)
        shape = (image["height"], image["width"])
        if rle is None:
            return np.zeros(shape, bool)
        try:
            with warnings.catch_warnings():  # pycocotools 2.0.11 under numpy 2 warns about __array__(copy=...)
                warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
                mask = mask_utils.decode(rle)
        except (ValueError, TypeError) as error:
            raise DataError(f"{self._where(annotation, image)}: invalid RLE ({error})") from None
        if mask.shape != shape:
            raise DataError(f"{self._where(annotation, image)}: mask is {mask.shape} but the image is {shape}")
        return mask.astype(bool)

    def _area(self, annotation: dict[str, Any], image: dict[str, Any]) -> int:
        """Pixel count of the annotation's own mask (from its RLE, without decoding it)."""
        rle = self._rle(annotation, image)
        if rle is None:
            return 0
        try:
            return int(mask_utils.area(rle))
        except (ValueError, TypeError) as error:
            raise DataError(f"{self._where(annotation, image)}: invalid RLE ({error})") from None

    def _owners(self, index: int) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """(ownership map: 0 none, k = the k-th visible instance, -1 crowd; visible masks; their annotations)."""
        image = self.images[index]
        owner = np.zeros((image["height"], image["width"]), np.int32)
        instances = self._instances[index]
        own = [self._mask(annotation, image) for annotation in instances]
        areas = [int(m.sum()) for m in own]
        # Smaller instances are drawn over larger ones (a tie over its person, a cup over the table), equal
        # areas in annotation order; on coco_mini, drawing in file order would hide 81 of 2589 instances.
        for k in sorted(range(len(own)), key=lambda k: (-areas[k], k)):
            owner[own[k]] = k + 1
        visible = [k for k in np.unique(owner).tolist() if k > 0]
        if self.surfaces == "instances" and len(visible) > MAX_SURFACES:
            raise DataError(
                f"{self.image_folder / image['file_name']}: image {image['id']} has {len(visible)} instances, more "
                f"than the {MAX_SURFACES} surface ids 1..{MAX_SURFACES} (raise min_area or use surfaces='classes')"
            )
        renumber = np.zeros(len(instances) + 1, np.int32)
        renumber[visible] = np.arange(1, len(visible) + 1)
        owner = renumber[owner]
        crowd = np.zeros(owner.shape, bool)
        for annotation in self._crowds[index]:
            crowd |= self._mask(annotation, image)
        owner[crowd & (owner == 0)] = -1
        masks = np.zeros((len(visible), *owner.shape), bool)
        for k in range(len(visible)):
            masks[k] = owner == k + 1
        return owner, masks, [instances[k - 1] for k in visible]

    def _label(self, owner: np.ndarray, annotations: list[dict[str, Any]]) -> np.ndarray:
        """The label map of an ownership map: surface ids or class ids, crowd → ignore."""
        if self.surfaces == "instances":
            label = owner.astype(np.int64)
        else:
            lookup = np.asarray([0, *(self._category_index[a["category_id"]] for a in annotations)], np.int64)
            label = lookup[np.maximum(owner, 0)]
        label[owner < 0] = IGNORE_INDEX
        return label

    # ---------------------------------------------------------------- dataset

    def __len__(self) -> int:
        return len(self.images)

    def load_label(self, index: int) -> np.ndarray:
        owner, _, annotations = self._owners(index)
        return self._label(owner, annotations)

    def load(self, index: int) -> RawSample:
        image = self.images[index]
        path = self.image_folder / image["file_name"]
        rgb = read_rgb(path)
        if rgb.shape[:2] != (image["height"], image["width"]):
            raise DataError(
                f"{path}: image is {rgb.shape[0]}×{rgb.shape[1]} but {self.annotation_file} says "
                f"{image['height']}×{image['width']} (image {image['id']})"
            )
        owner, masks, annotations = self._owners(index)
        label = self._label(owner, annotations)
        classes = np.asarray([self._category_index[a["category_id"]] for a in annotations], np.int64)
        names = {c: self.categories[c - 1] for c in range(1, len(self.categories) + 1)}
        meta: dict[str, Any] = {
            "id": Path(image["file_name"]).stem,
            "dataset": self.name,
            "condition": "day",
            "image_id": image["id"],
            "files": {"image": str(path), "label": str(self.annotation_file)},
        }
        if self.surfaces == "instances":
            ids = list(range(1, len(annotations) + 1))
            meta["surfaces"] = ids
            meta["categories"] = {s: names[int(c)] for s, c in zip(ids, classes, strict=True)}
            meta["annotation_ids"] = {s: a.get("id") for s, a in zip(ids, annotations, strict=True)}
        else:
            present = sorted({int(c) for c in classes})  # every kept instance has visible pixels
            meta["surfaces"] = present
            meta["categories"] = {c: names[c] for c in present}
        return RawSample(image=rgb, label=label, instance_masks=masks, instance_classes=classes, meta=meta)
