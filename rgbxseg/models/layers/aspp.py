"""Atrous Spatial Pyramid Pooling (ASPP) of DeepLabV3/V3+ (Chen et al., "Encoder-Decoder with Atrous
Separable Convolution for Semantic Image Segmentation", ECCV 2018, section 3.1; DeepLabV3, arXiv
1706.05587, section 3.3).

Parallel branches on the encoder's last (stride-16) features: one 1×1 conv, one 3×3 atrous conv per
rate (default 6, 12, 18) and image pooling (global average → 1×1 conv → upsampled back), each followed
by BN + ReLU; their concatenation is projected by a 1×1 conv + BN + ReLU and dropout (0.1). With
``separable=True`` the atrous convs are depthwise-separable (DeepLabV3+'s "atrous separable
convolution", section 3.2); ``reduce_to`` first projects the encoder features to fewer channels with
a 1×1 conv + BN + ReLU (cheap branches on wide encoders such as MobileNetV2's 1280 channels).

FMSI-DeepLab (paper section 2.1) optionally inserts GGCA between the concatenation and the projection;
``ggca=False`` (the default) is exactly Chen et al.'s module. :class:`DeformableASPP` reuses this class
with deformable branches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from rgbxseg.models.layers.ggca import GGCA
from rgbxseg.models.layers.separable import SeparableConvBNReLU


def check_rates(rates: Sequence[int]) -> tuple[int, ...]:
    """The atrous rates as a tuple; ValueError unless they are a non-empty sequence of positive integers."""
    rates = tuple(rates)
    if not rates or any(not isinstance(r, int) or r < 1 for r in rates):
        raise ValueError(f"atrous rates must be a non-empty sequence of positive integers, got {rates}")
    return rates


class ImagePooling(nn.Module):
    """ASPP's image-level branch: global average pooling → 1×1 conv → BN → ReLU → bilinear upsampling.

    Like every BatchNorm on a 1×1 map it needs more than one sample per batch in training mode.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = Conv2dNormActivation(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.conv(self.pool(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling (Chen et al. 2018), optionally with GGCA on the concatenation.

    Args:
        in_channels: channels of the encoder features.
        out_channels: channels of every branch and of the output (DeepLab: 256).
        rates: atrous rates of the 3×3 branches (DeepLabV3+ at output stride 16: 6, 12, 18).
        dropout: dropout probability after the projection.
        ggca: apply :class:`GGCA` to the concatenated branches before the projection (FMSI-DeepLab).
        ggca_groups: GGCA's number of channel groups (must divide the concatenated channel count).
        separable: depthwise-separable 3×3 atrous branches instead of standard convs.
        reduce_to: if set, a 1×1 conv + BN + ReLU first reduces the input to this many channels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        dropout: float = 0.1,
        ggca: bool = False,
        ggca_groups: int = 8,
        separable: bool = False,
        reduce_to: int | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"ASPP channels must be >= 1, got in={in_channels}, out={out_channels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ASPP dropout must be in [0, 1), got {dropout}")
        self.rates = check_rates(rates)
        self.separable = separable
        self.reduce = Conv2dNormActivation(in_channels, reduce_to, 1) if reduce_to else nn.Identity()
        in_channels = reduce_to or in_channels
        self.branches = nn.ModuleList(self.make_branches(in_channels, out_channels, self.rates))
        self.pooling = ImagePooling(in_channels, out_channels)
        concat_channels = out_channels * (len(self.branches) + 1)
        self.attention = GGCA(concat_channels, ggca_groups) if ggca else nn.Identity()
        self.project = nn.Sequential(Conv2dNormActivation(concat_channels, out_channels, 1), nn.Dropout(dropout))

    def make_branches(self, in_channels: int, out_channels: int, rates: tuple[int, ...]) -> list[nn.Module]:
        """The 1×1 branch and one 3×3 atrous conv + BN + ReLU per rate (padding = rate keeps the size)."""
        if self.separable:
            atrous = [SeparableConvBNReLU(in_channels, out_channels, 3, dilation=r) for r in rates]
        else:
            atrous = [Conv2dNormActivation(in_channels, out_channels, 3, dilation=r) for r in rates]
        return [Conv2dNormActivation(in_channels, out_channels, 1), *atrous]

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduce(x)
        pyramid = [branch(x) for branch in self.branches] + [self.pooling(x)]
        return self.project(self.attention(torch.cat(pyramid, dim=1)))
