"""Atrous depthwise-separable convolution (Chen et al., ECCV 2018, section 3.2): a depthwise 3×3 conv
at a dilation followed by a pointwise 1×1 conv, BN and ReLU — DeepLabV3+'s ASPP and decoder use it
to cut the cost of the 3×3 convs by roughly the kernel area."""

from __future__ import annotations

from torch import nn


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise ``kernel_size``×``kernel_size`` conv (dilated, 'same' padding) → 1×1 conv → BN → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding, dilation=dilation, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
