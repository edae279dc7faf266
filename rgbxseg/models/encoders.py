"""Encoders by name: segmentation_models_pytorch encoders (torchvision / timm ``features_only``) with
the packaged pretrained weights of :mod:`rgbxseg.models.weights`.

``ENCODERS`` is a plain dict from our name to an :class:`EncoderSpec`. Every encoder returns smp's
feature list ``[input, s2, s4, s8, s16, s32]``; with ``output_stride=16`` the last stage is dilated
instead of strided, so the last two maps both have stride 16 (DeepLab's OS16).

Input sizes: the segmentation models pad the input on the bottom/right to a multiple of
``Encoder.size_divisor`` and crop the logits back, so any H×W works (no error, no resize).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from segmentation_models_pytorch.encoders import get_encoder
from torch import Tensor, nn

from rgbxseg.errors import ConfigError
from rgbxseg.models.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TF_LITE_MEAN,
    TF_LITE_STD,
    load_pretrained,
    load_state_into,
)

# Extra (non-RGB) input channels are maps in [0, 1]; they are centred the same way for every encoder.
MODALITY_MEAN, MODALITY_STD = 0.5, 0.25


@dataclass(frozen=True)
class EncoderSpec:
    """``smp_name``: name for ``segmentation_models_pytorch.encoders.get_encoder``; ``weights``: key of
    :data:`rgbxseg.models.weights.PRETRAINED` (None: random init only); ``mean``/``std``: the RGB
    normalisation the weights expect."""

    smp_name: str
    weights: str | None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


ENCODERS: dict[str, EncoderSpec] = {
    "mobilenet_v2": EncoderSpec("mobilenet_v2", "mobilenet_v2"),
    "efficientnet_lite0": EncoderSpec("tu-tf_efficientnet_lite0", "efficientnet_lite0", TF_LITE_MEAN, TF_LITE_STD),
    "efficientnet_lite1": EncoderSpec("tu-tf_efficientnet_lite1", "efficientnet_lite1", TF_LITE_MEAN, TF_LITE_STD),
    "efficientnet_lite2": EncoderSpec("tu-tf_efficientnet_lite2", "efficientnet_lite2", TF_LITE_MEAN, TF_LITE_STD),
    "mobilenetv4_conv_large": EncoderSpec("tu-mobilenetv4_conv_large", None),
    "tf_efficientnetv2_b3": EncoderSpec("tu-tf_efficientnetv2_b3", None),
    "xception65": EncoderSpec("tu-xception65", None),
}


def _first_conv(module: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    for name, child in module.named_modules():
        if isinstance(child, nn.Conv2d) and child.in_channels == 3:
            parent_name, _, attr = name.rpartition(".")
            return module.get_submodule(parent_name) if parent_name else module, attr, child
    raise ConfigError(f"{type(module).__name__}: no 3-channel input convolution to widen for extra modalities")


def widen_input(module: nn.Module, extra: int) -> None:
    """Give the first 3-channel convolution ``extra`` more input channels (early fusion).

    The RGB filters keep their (pretrained) weights; each extra channel starts as the mean of the RGB
    filters, the initialisation smp uses for non-RGB inputs.
    """
    parent, attr, conv = _first_conv(module)
    wider = nn.Conv2d(
        3 + extra, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, conv.bias is not None, conv.padding_mode,
    )  # fmt: skip
    with torch.no_grad():
        wider.weight[:, :3] = conv.weight
        wider.weight[:, 3:] = conv.weight.mean(dim=1, keepdim=True)
        if conv.bias is not None:
            wider.bias.copy_(conv.bias)
    setattr(parent, attr, wider)


class Encoder(nn.Module):
    """A named encoder: normalises its input, then returns smp's feature list.

    Args:
        name: a key of :data:`ENCODERS`.
        pretrained: load the packaged ImageNet weights (an error names the encoders that have some).
        output_stride: 16 (DeepLab default; last stage dilated) or 32 (or 8).
        extra_channels: modality channels concatenated after RGB (early fusion; 0 = RGB only).
    """

    def __init__(self, name: str, pretrained: bool = True, output_stride: int = 16, extra_channels: int = 0) -> None:
        super().__init__()
        if name not in ENCODERS:
            raise ConfigError(f"unknown encoder '{name}' (choose from {', '.join(ENCODERS)})")
        spec = ENCODERS[name]
        if pretrained and spec.weights is None:
            with_weights = [k for k, v in ENCODERS.items() if v.weights]
            raise ConfigError(f"encoder '{name}' has no packaged pretrained weights (those with: {', '.join(with_weights)})")
        if output_stride not in (8, 16, 32):
            raise ConfigError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.name = name
        self.body = get_encoder(spec.smp_name, in_channels=3, depth=5, weights=None, output_stride=output_stride)
        if pretrained:
            target = self.body.model if hasattr(self.body, "model") else self.body
            load_state_into(target, load_pretrained(spec.weights))
        if extra_channels:
            widen_input(self.body, extra_channels)
        mean = list(spec.mean) + [MODALITY_MEAN] * extra_channels
        std = list(spec.std) + [MODALITY_STD] * extra_channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.out_channels: Sequence[int] = tuple(self.body.out_channels)
        self.output_stride = output_stride
        self.size_divisor = 32

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x``: B×(3+extra)×H×W in [0, 1], H and W multiples of :attr:`size_divisor`."""
        return self.body((x - self.mean) / self.std)
