"""DAMCSeg's global segmentation path (SPEC 5): a light ASPP (rates 1/6/12/18 — the 1×1 branch and
atrous 3×3 branches at 6, 12, 18 — with pruned channels and depthwise-separable convs) on the
segmentation copy of the last encoder stage, and DeepLabV3+'s decoder with the stride-4 features.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from rgbxseg.models.layers import ASPP, DeepLabDecoder


class GlobalBranch(nn.Module):
    """Args:
    in_channels: channels of the last-stage features.
    low_level_channels: channels of the stride-4 features.
    num_classes: output classes.
    aspp_channels: pruned ASPP width (DeepLab: 256).
    decoder_channels: decoder width (DeepLabV3+: 256).
    """

    def __init__(
        self, in_channels: int, low_level_channels: int, num_classes: int, aspp_channels: int = 128, decoder_channels: int = 96
    ) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, aspp_channels, rates=(6, 12, 18), separable=True, reduce_to=aspp_channels)
        self.decoder = DeepLabDecoder(
            aspp_channels, low_level_channels, num_classes, decoder_channels=decoder_channels, separable=True
        )

    def forward(self, context: Tensor, low_level: Tensor, size: tuple[int, int]) -> Tensor:
        """Logits at ``size`` from the last-stage and stride-4 features."""
        logits = self.decoder(self.aspp(context), low_level)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
