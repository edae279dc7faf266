"""The one sample schema every dataset returns (SPEC section 2), and the checks that guard it.

Datasets load a :class:`RawSample` (numpy, H×W×C, what albumentations transforms work on), the
dataset checks it with :func:`validate`, transforms it, and hands out a :class:`Sample` (torch, C×H×W).

Conventions
-----------
* ``image``: RGB, float32 in [0, 1]. Normalisation (ImageNet mean/std, TF-style) belongs to the model,
  because it depends on the encoder.
* ``modalities``: ``{name: C×H×W float32}``. A missing sensor is *absent* from the dict, never zeros.
  8-bit maps are scaled to [0, 1], 16-bit maps to [0, 1] by 65535, float maps are kept as stored.
* ``label``: H×W int64 class ids; :data:`IGNORE_INDEX` (255) marks pixels that count for nothing.
* ``instances`` (optional): visible masks, occluded masks (amodal minus visible), class ids, and
  boxes ``xyxy`` derived from the visible masks (inclusive pixel coordinates, the convention of
  :func:`torchvision.ops.masks_to_boxes`). Boxes are always recomputed from the masks after a transform, so
  they can never drift from them.
* ``meta``: ``id``, ``dataset``, ``condition`` (``day``/``night``/``fog``/...), ``files``
  (role -> path, used in error messages) and anything dataset specific.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rgbxseg.errors import DataError

IGNORE_INDEX = 255


@dataclass
class RawSample:
    """A sample as loaded from disk, in numpy layout (H×W×C) for albumentations."""

    image: np.ndarray  # H×W×3 float32 in [0, 1]
    label: np.ndarray  # H×W int64
    modalities: dict[str, np.ndarray] = field(default_factory=dict)  # name -> H×W×C float32
    instance_masks: np.ndarray | None = None  # N×H×W bool, visible pixels
    occluded_masks: np.ndarray | None = None  # N×H×W bool, amodal minus visible
    instance_classes: np.ndarray | None = None  # N int64
    meta: dict[str, Any] = field(default_factory=dict)

    def source(self, role: str = "image") -> str:
        """The file to name in an error about ``role`` (falls back to the sample id)."""
        files = self.meta.get("files", {})
        return str(files.get(role) or files.get("image") or self.meta.get("id", "<sample>"))


@dataclass
class Instances:
    """Per-sample instances (SPEC 2): boxes xyxy, class ids, visible and occluded masks."""

    boxes: torch.Tensor  # N×4 float32, xyxy inclusive pixel coordinates
    classes: torch.Tensor  # N int64
    masks: torch.Tensor  # N×H×W bool, visible pixels
    occluded: torch.Tensor  # N×H×W bool, amodal minus visible

    def __len__(self) -> int:
        return int(self.classes.numel())

    @property
    def areas(self) -> torch.Tensor:
        """Visible pixel count per instance."""
        return self.masks.flatten(1).sum(1)

    def to(self, device: torch.device | str) -> Instances:
        return Instances(*(t.to(device) for t in (self.boxes, self.classes, self.masks, self.occluded)))


@dataclass
class Sample:
    """A sample ready for a model: torch tensors, channels first."""

    image: torch.Tensor  # 3×H×W float32 in [0, 1]
    label: torch.Tensor  # H×W int64
    modalities: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> C×H×W float32
    instances: Instances | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """Samples stacked by :func:`collate`. Absent modalities are zero-filled *and* flagged.

    ``present[name]`` is a bool vector of length B: False where the sample had no such sensor, so
    a model can replace it (DAMCSeg's missing-modality complementation) instead of trusting zeros.
    """

    image: torch.Tensor  # B×3×H×W
    label: torch.Tensor  # B×H×W
    modalities: dict[str, torch.Tensor]  # name -> B×C×H×W
    present: dict[str, torch.Tensor]  # name -> B bool
    instances: list[Instances | None]
    meta: list[dict[str, Any]]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            image=self.image.to(device, non_blocking=non_blocking),
            label=self.label.to(device, non_blocking=non_blocking),
            modalities={k: v.to(device, non_blocking=non_blocking) for k, v in self.modalities.items()},
            present={k: v.to(device) for k, v in self.present.items()},
            instances=[i.to(device) if i is not None else None for i in self.instances],
            meta=self.meta,
        )


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """N×4 float32 ``xyxy`` boxes (inclusive) of non-empty N×H×W bool masks, from row/column
    projections — the result of ``torchvision.ops.masks_to_boxes`` at a tenth of its cost here."""
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    h, w = masks.shape[1:]
    y0, y1 = rows.argmax(1), h - 1 - rows[:, ::-1].argmax(1)
    x0, x1 = cols.argmax(1), w - 1 - cols[:, ::-1].argmax(1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)


def _instances_from_masks(raw: RawSample) -> Instances | None:
    if raw.instance_masks is None:
        return None
    masks = np.asarray(raw.instance_masks, dtype=bool)
    occluded = np.asarray(raw.occluded_masks, dtype=bool) if raw.occluded_masks is not None else np.zeros_like(masks)
    classes = np.asarray(raw.instance_classes, dtype=np.int64)
    keep = masks.any(axis=(1, 2))  # a transform may crop an instance away entirely (works for N = 0 too)
    masks, occluded, classes = masks[keep], occluded[keep], classes[keep]
    return Instances(
        boxes=torch.from_numpy(boxes_from_masks(masks)),
        classes=torch.from_numpy(classes),
        masks=torch.from_numpy(np.ascontiguousarray(masks)),
        occluded=torch.from_numpy(np.ascontiguousarray(occluded)),
    )


def to_sample(raw: RawSample) -> Sample:
    """Convert a (validated, transformed) :class:`RawSample` into a :class:`Sample`."""
    return Sample(
        image=torch.from_numpy(np.ascontiguousarray(raw.image.transpose(2, 0, 1), dtype=np.float32)),
        label=torch.from_numpy(np.ascontiguousarray(raw.label, dtype=np.int64)),
        modalities={
            k: torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1), dtype=np.float32))
            for k, v in raw.modalities.items()
        },
        instances=_instances_from_masks(raw),
        meta=raw.meta,
    )


def _check_finite(array: np.ndarray, what: str, path: str) -> None:
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise DataError(f"{path}: {what} has {bad} NaN/inf value(s)")


def validate(
    raw: RawSample,
    num_classes: int,
    modality_channels: dict[str, int] | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> None:
    """Check a loaded sample; raise :class:`DataError` naming the offending file.

    Checks: image is H×W×3 and finite; every modality has the image's H×W, the expected channel
    count (``modality_channels``) and finite values; label is H×W with ids in ``[0, num_classes)``
    or ``ignore_index``; instance masks match the image size.
    """
    image_path = raw.source("image")
    if raw.image.ndim != 3 or raw.image.shape[2] != 3:
        raise DataError(f"{image_path}: expected an RGB image (H×W×3), got shape {tuple(raw.image.shape)}")
    _check_finite(raw.image, "image", image_path)
    h, w = raw.image.shape[:2]
    for name, array in raw.modalities.items():
        path = raw.source(name)
        if array.ndim != 3:
            raise DataError(f"{path}: modality '{name}' must be H×W×C, got shape {tuple(array.shape)}")
        if array.shape[:2] != (h, w):
            raise DataError(
                f"{path}: modality '{name}' is {array.shape[0]}×{array.shape[1]} but the image is {h}×{w}"
            )
        expected = (modality_channels or {}).get(name)
        if expected is not None and array.shape[2] != expected:
            raise DataError(f"{path}: modality '{name}' has {array.shape[2]} channel(s), expected {expected}")
        _check_finite(array, f"modality '{name}'", path)
    label_path = raw.source("label")
    if raw.label.shape != (h, w):
        raise DataError(f"{label_path}: label is {'×'.join(map(str, raw.label.shape))} but the image is {h}×{w}")
    bad = (raw.label != ignore_index) & ((raw.label < 0) | (raw.label >= num_classes))
    if bad.any():
        values = np.unique(raw.label[bad])[:5].tolist()
        raise DataError(
            f"{label_path}: label ids {values} are out of range [0, {num_classes}) and not the ignore id {ignore_index}"
        )
    if raw.instance_masks is not None and raw.instance_masks.shape[1:] != (h, w):
        raise DataError(f"{label_path}: instance masks are {raw.instance_masks.shape[1:]} but the image is {h}×{w}")


def collate(samples: list[Sample]) -> Batch:
    """Stack samples of equal size into a :class:`Batch` (use as a DataLoader ``collate_fn``)."""
    if not samples:
        raise ValueError("collate: empty list of samples")
    names = sorted({name for s in samples for name in s.modalities})
    modalities: dict[str, torch.Tensor] = {}
    present: dict[str, torch.Tensor] = {}
    for name in names:
        reference = next(s.modalities[name] for s in samples if name in s.modalities)
        modalities[name] = torch.stack([s.modalities.get(name, torch.zeros_like(reference)) for s in samples])
        present[name] = torch.tensor([name in s.modalities for s in samples])
    return Batch(
        image=torch.stack([s.image for s in samples]),
        label=torch.stack([s.label for s in samples]),
        modalities=modalities,
        present=present,
        instances=[s.instances for s in samples],
        meta=[s.meta for s in samples],
    )
