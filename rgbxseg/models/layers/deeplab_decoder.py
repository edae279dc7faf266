"""The DeepLabV3+ decoder (Chen et al., ECCV 2018, section 3.1 and Fig. 2), shared by
:class:`~rgbxseg.models.deeplabv3plus.DeepLabV3Plus` and :class:`~rgbxseg.models.fmsi_deeplab.FMSIDeepLab`.

The low-level (stride-4) features are reduced to 48 channels by 1×1 conv + BN + ReLU (few channels, so
they do not outweigh the rich encoder features), concatenated with the ASPP output upsampled ×4
(bilinear), refined by two 3×3 conv + BN + ReLU (256 channels) and classified by a 1×1 conv. The logits
are at stride 4; the segmentation model upsamples them to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from rgbxseg.models.layers.separable import SeparableConvBNReLU

# Index of the stride-4 map in smp's encoder feature list [input, s2, s4, s8, s16, s16/s32].
LOW_LEVEL_INDEX = 2


class DeepLabDecoder(nn.Module):
    """DeepLabV3+ decoder head: ``forward(context, low_level) -> logits`` at the low-level resolution.

    Args:
        context_channels: channels of the ASPP output.
        low_level_in_channels: channels of the stride-4 features.
        num_classes: number of output classes.
        low_level_channels: width the low-level features are reduced to (DeepLabV3+: 48).
        decoder_channels: width of the two 3×3 refinement convs (DeepLabV3+: 256).
        separable: depthwise-separable refinement convs (DeepLabV3+, section 3.2).
    """

    def __init__(
        self,
        context_channels: int,
        low_level_in_channels: int,
        num_classes: int,
        low_level_channels: int = 48,
        decoder_channels: int = 256,
        separable: bool = False,
    ) -> None:
        super().__init__()
        widths = (context_channels, low_level_in_channels, num_classes, low_level_channels, decoder_channels)
        if min(widths) < 1:
            raise ValueError(f"DeepLabDecoder: every channel count and num_classes must be >= 1, got {widths}")
        self.reduce = Conv2dNormActivation(low_level_in_channels, low_level_channels, 1)
        conv = SeparableConvBNReLU if separable else Conv2dNormActivation
        self.refine = nn.Sequential(
            conv(context_channels + low_level_channels, decoder_channels, 3),
            conv(decoder_channels, decoder_channels, 3),
        )
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, context: Tensor, low_level: Tensor) -> Tensor:
        context = F.interpolate(context, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.refine(torch.cat([context, self.reduce(low_level)], dim=1)))
