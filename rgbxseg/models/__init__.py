"""Models of rgbxseg: encoders, fusion layers, segmenters and the packaged pretrained weights.

``create_model`` builds any segmenter by name from :data:`MODELS`, a plain dict of small typed
builders (the shape of segment-anything's ``sam_model_registry`` and smp's ``create_model``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rgbxseg.errors import ConfigError
from rgbxseg.models.base import SegmentationModel
from rgbxseg.models.deeplabv3plus import DeepLabV3Plus
from rgbxseg.models.encoders import ENCODERS, Encoder
from rgbxseg.models.fmsi_deeplab import FMSIDeepLab

Builder = Callable[..., SegmentationModel]


def build_deeplabv3plus(encoder: Encoder, num_classes: int, modality_channels: Mapping[str, int], **options: Any) -> SegmentationModel:
    return DeepLabV3Plus(encoder, num_classes, modality_channels, **options)


def build_fmsi_deeplab(encoder: Encoder, num_classes: int, modality_channels: Mapping[str, int], **options: Any) -> SegmentationModel:
    return FMSIDeepLab(encoder, num_classes, modality_channels, **options)


MODELS: dict[str, Builder] = {
    "deeplabv3plus": build_deeplabv3plus,
    "fmsi_deeplab": build_fmsi_deeplab,
}


def create_model(
    name: str,
    num_classes: int,
    encoder: str = "mobilenet_v2",
    pretrained: bool = True,
    modalities: Mapping[str, int] | None = None,
    output_stride: int = 16,
    **options: Any,
) -> SegmentationModel:
    """Build segmenter ``name`` (a key of :data:`MODELS`).

    Args:
        name: ``deeplabv3plus`` or ``fmsi_deeplab``.
        num_classes: output classes.
        encoder: a key of :data:`rgbxseg.models.encoders.ENCODERS`.
        pretrained: load the encoder's packaged ImageNet weights.
        modalities: extra input sensors, name → channel count (e.g. ``{"depth": 1, "thermal": 1}``).
        output_stride: encoder output stride (16 for DeepLab).
        **options: the builder's keyword arguments (e.g. FMSI-DeepLab's ablation switches).
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}' (choose from {', '.join(MODELS)})")
    modality_channels = dict(modalities or {})
    backbone = Encoder(encoder, pretrained, output_stride, extra_channels=sum(modality_channels.values()))
    try:
        return MODELS[name](backbone, num_classes, modality_channels, **options)
    except TypeError as error:  # an unknown option name
        raise ConfigError(f"model '{name}': {error}") from None


__all__ = ["ENCODERS", "MODELS", "DeepLabV3Plus", "Encoder", "FMSIDeepLab", "SegmentationModel", "create_model"]
