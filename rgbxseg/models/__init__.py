"""Models of rgbxseg: encoders, fusion layers, segmenters and the packaged pretrained weights.

``create_model`` builds any segmenter by name from :data:`MODELS`, a plain dict of small typed
builders (the shape of segment-anything's ``sam_model_registry`` and smp's ``create_model``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from rgbxseg.errors import ConfigError
from rgbxseg.models.base import SegmentationModel
from rgbxseg.models.damcseg import DAMCSeg
from rgbxseg.models.deeplabv3plus import DeepLabV3Plus
from rgbxseg.models.encoders import ENCODERS, Encoder
from rgbxseg.models.fmsi_deeplab import FMSIDeepLab

Builder = Callable[..., nn.Module]


def _early_fusion_encoder(encoder: str, pretrained: bool, output_stride: int, modality_channels: Mapping[str, int]) -> Encoder:
    return Encoder(encoder, pretrained, output_stride, extra_channels=sum(modality_channels.values()))


def build_deeplabv3plus(
    encoder: str, pretrained: bool, output_stride: int, num_classes: int, modality_channels: Mapping[str, int],
    thing_classes: Sequence[int], **options: Any,
) -> nn.Module:  # fmt: skip
    backbone = _early_fusion_encoder(encoder, pretrained, output_stride, modality_channels)
    return DeepLabV3Plus(backbone, num_classes, modality_channels, **options)


def build_fmsi_deeplab(
    encoder: str, pretrained: bool, output_stride: int, num_classes: int, modality_channels: Mapping[str, int],
    thing_classes: Sequence[int], **options: Any,
) -> nn.Module:  # fmt: skip
    backbone = _early_fusion_encoder(encoder, pretrained, output_stride, modality_channels)
    return FMSIDeepLab(backbone, num_classes, modality_channels, **options)


def build_damcseg(
    encoder: str, pretrained: bool, output_stride: int, num_classes: int, modality_channels: Mapping[str, int],
    thing_classes: Sequence[int], **options: Any,
) -> nn.Module:  # fmt: skip
    early = options.get("fusion", "lmmf") == "early"
    extra = sum(modality_channels.values()) if early else 0
    backbone = Encoder(encoder, pretrained, output_stride, extra_channels=extra)
    return DAMCSeg(backbone, num_classes, modality_channels, thing_classes, **options)


MODELS: dict[str, Builder] = {
    "deeplabv3plus": build_deeplabv3plus,
    "fmsi_deeplab": build_fmsi_deeplab,
    "damcseg": build_damcseg,
}


def create_model(
    name: str,
    num_classes: int,
    encoder: str = "mobilenet_v2",
    pretrained: bool = True,
    modalities: Mapping[str, int] | None = None,
    output_stride: int = 16,
    thing_classes: Sequence[int] = (),
    **options: Any,
) -> nn.Module:
    """Build segmenter ``name`` (a key of :data:`MODELS`).

    Args:
        name: ``deeplabv3plus``, ``fmsi_deeplab`` or ``damcseg``.
        num_classes: output classes.
        encoder: a key of :data:`rgbxseg.models.encoders.ENCODERS`.
        pretrained: load the encoder's packaged ImageNet weights.
        modalities: extra input sensors, name → channel count (e.g. ``{"depth": 1, "thermal": 1}``).
        output_stride: encoder output stride (16 for DeepLab and DAMCSeg).
        thing_classes: class ids with instances (DAMCSeg's detection head; ignored by the others).
        **options: the model's keyword arguments (e.g. FMSI-DeepLab's or DAMCSeg's ablation switches).
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}' (choose from {', '.join(MODELS)})")
    try:
        return MODELS[name](encoder, pretrained, output_stride, num_classes, dict(modalities or {}), tuple(thing_classes), **options)
    except TypeError as error:  # an unknown option name
        raise ConfigError(f"model '{name}': {error}") from None


__all__ = ["ENCODERS", "MODELS", "DAMCSeg", "DeepLabV3Plus", "Encoder", "FMSIDeepLab", "SegmentationModel", "create_model"]
