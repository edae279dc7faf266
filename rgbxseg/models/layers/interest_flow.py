"""FMSI-DeepLab's "interest flow" (paper section 2.2; SPEC 4): an FPN top-down pathway (Lin et al.,
CVPR 2017) that gives the decoder's low-level input the context of the deeper stages.

The exit-flow features (encoder's last map, stride 16) are upsampled ×2 and added to the middle-flow
features (stride 8); the sum is upsampled ×2 and added to the entry-flow features (stride 4). Each input
first goes through a 1×1 lateral conv to a common width (default 128: wide enough to carry the deep
context, narrow enough that the stride-4 3×3 smoothing conv stays cheap next to the DeepLab decoder);
a 3×3 conv + BN + ReLU smooths the stride-4 sum, which is the output.

"×2 up" is bilinear interpolation to the finer map's exact size, so odd sizes and encoders whose last
stage is not at stride 16 (output stride 8 or 32) work too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation


def upsample_to(x: Tensor, reference: Tensor) -> Tensor:
    """Bilinear resize of ``x`` to ``reference``'s height and width."""
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


class InterestFlow(nn.Module):
    """FPN top-down fusion of entry (stride 4), middle (stride 8) and exit (stride 16) features.

    Args:
        in_channels: channels of the (entry, middle, exit) features, finest first.
        out_channels: the common lateral width and the output channels.

    ``forward(entry, middle, exit_features)`` returns ``out_channels`` × the entry features' H×W.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 128) -> None:
        super().__init__()
        if len(in_channels) != 3 or min(in_channels) < 1 or out_channels < 1:
            raise ValueError(
                f"InterestFlow needs three positive input widths (entry, middle, exit) and out_channels >= 1, "
                f"got {tuple(in_channels)} and {out_channels}"
            )
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.smooth = Conv2dNormActivation(out_channels, out_channels, 3)

    def forward(self, entry: Tensor, middle: Tensor, exit_features: Tensor) -> Tensor:
        lateral_entry, lateral_middle, lateral_exit = self.lateral
        top = lateral_middle(middle) + upsample_to(lateral_exit(exit_features), middle)
        top = lateral_entry(entry) + upsample_to(top, entry)
        return self.smooth(top)
