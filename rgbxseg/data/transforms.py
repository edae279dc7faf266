"""Joint transforms: one geometry for RGB, every modality, label and instance masks; colour on RGB only.

Built on albumentations. Alignment is guaranteed by construction rather than by replaying
parameters: RGB and all modality channels are stacked into one H×W×C float image, so a single
geometric draw moves them together; the label goes through as ``mask`` (nearest neighbour, padding
filled with the ignore id) and visible/occluded instance masks as ``masks``. Boxes are not
transformed at all: :func:`rgbxseg.data.sample.to_sample` recomputes them from the transformed
masks, and drops instances cropped away. Photometric transforms then touch the RGB channels only.
Modalities are interpolated like RGB (bilinear), which is what RGB-D/RGB-T training code does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import albumentations as A
import cv2
import numpy as np

from rgbxseg.data.sample import IGNORE_INDEX, RawSample


class JointTransform:
    """Apply ``geometric`` transforms to everything and ``photometric`` ones to RGB only.

    Args:
        geometric: albumentations ``DualTransform`` s (flip, scale, crop, pad, affine...).
        photometric: albumentations ``ImageOnlyTransform`` s (colour jitter, blur, noise...).
        seed: seed of albumentations' generators (None: random).
    """

    def __init__(
        self,
        geometric: Sequence[A.BasicTransform] = (),
        photometric: Sequence[A.BasicTransform] = (),
        seed: int | None = None,
    ) -> None:
        for t in geometric:
            if not isinstance(t, A.DualTransform):
                raise TypeError(f"{type(t).__name__} is not a geometric (DualTransform) transform")
        for t in photometric:
            if not isinstance(t, A.ImageOnlyTransform):
                raise TypeError(f"{type(t).__name__} is not a photometric (ImageOnlyTransform) transform")
        self.geometric = A.Compose(list(geometric), seed=seed)
        self.photometric = A.Compose(list(photometric), seed=None if seed is None else seed + 1)

    def reseed(self, seed: int) -> None:
        """Seed both pipelines, e.g. per (epoch, sample) so that a resumed run augments identically."""
        self.geometric.set_random_seed(seed)
        self.photometric.set_random_seed(seed + 1)

    def __call__(self, raw: RawSample) -> RawSample:
        names = list(raw.modalities)
        widths = [raw.image.shape[2]] + [raw.modalities[n].shape[2] for n in names]
        stack = np.concatenate([raw.image.astype(np.float32)] + [raw.modalities[n] for n in names], axis=2)
        if raw.label.max(initial=0) > np.iinfo(np.uint16).max:
            raise ValueError(f"{raw.source('label')}: label ids above 65535 cannot be transformed")
        targets: dict[str, np.ndarray] = {"image": stack, "mask": raw.label.astype(np.uint16)}
        n = 0 if raw.instance_masks is None else len(raw.instance_masks)
        if n:
            occluded = raw.occluded_masks if raw.occluded_masks is not None else np.zeros_like(raw.instance_masks)
            targets["masks"] = np.concatenate([raw.instance_masks, occluded]).astype(np.uint8)
        out = self.geometric(**targets)
        channels = np.split(out["image"], np.cumsum(widths)[:-1], axis=2)
        image = np.clip(self.photometric(image=np.ascontiguousarray(channels[0]))["image"], 0.0, 1.0)
        result = replace(
            raw,
            image=image.astype(np.float32),
            label=out["mask"].astype(np.int64),
            modalities={name: np.ascontiguousarray(c) for name, c in zip(names, channels[1:])},
        )
        if n:
            masks = np.asarray(out["masks"]) == 1  # padding is filled with the ignore id, not 1
            result = replace(result, instance_masks=masks[:n], occluded_masks=masks[n:])
        return result


def train_transforms(
    crop_size: tuple[int, int],
    scale: tuple[float, float] = (0.5, 2.0),
    hflip: bool = True,
    color_jitter: float = 0.2,
    seed: int | None = None,
) -> JointTransform:
    """The standard segmentation training recipe: random scale, pad, random crop, flip, colour jitter.

    Padding fills RGB and modalities with 0 and the label with the ignore id (255).
    """
    h, w = crop_size
    geometric: list[A.BasicTransform] = [
        A.RandomScale(scale_limit=(scale[0] - 1.0, scale[1] - 1.0), interpolation=cv2.INTER_LINEAR, p=1.0),
        A.PadIfNeeded(h, w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX),
        A.RandomCrop(h, w),
    ]
    if hflip:
        geometric.append(A.HorizontalFlip(p=0.5))
    photometric = [A.ColorJitter(color_jitter, color_jitter, color_jitter, 0.02, p=0.8)] if color_jitter > 0 else []
    return JointTransform(geometric, photometric, seed=seed)


def resize_transforms(size: tuple[int, int]) -> JointTransform:
    """Resize everything to ``size`` (H, W): label and masks by nearest neighbour."""
    return JointTransform([A.Resize(size[0], size[1], interpolation=cv2.INTER_LINEAR)])
