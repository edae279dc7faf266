"""Global Grouped Coordinate Attention (GGCA), FMSI-DeepLab paper section 2.1, eqs. (2)-(6), Fig. 3.

The input X (B×C×H×W) is split into G channel groups of C/G channels. For every group, average and
max pooling over the width give H×1 descriptors (eqs. 2-3) and over the height give 1×W descriptors
(eqs. 4-5). One 1×1 conv → BN → ReLU → 1×1 conv, shared by all groups, all four descriptors and both
directions, reduces and restores the C/G channels. **Decision** (SPEC 4): the average and max paths are
summed after the shared conv, then a sigmoid gives A_h (H×1) and A_w (1×W), and the output is
``O = X · A_h · A_w`` (eq. 6), the attention maps broadcast over the other spatial axis.

Implementation choices (the paper leaves them open): the H and W descriptors go through the shared
conv together, concatenated along the spatial axis as Coordinate Attention (Hou et al., CVPR 2021)
does, so BatchNorm sees one batch per forward; the bottleneck has ``max(1, (C/G) // reduction)``
channels with ``reduction = 16`` by default; any H×W works (no fixed pooling sizes).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GGCA(nn.Module):
    """Global Grouped Coordinate Attention: ``O = X · A_h · A_w`` per channel group.

    Args:
        channels: C, the number of input (and output) channels.
        groups: G, the number of channel groups (SPEC 4 decision: 8); must divide ``channels``.
        reduction: bottleneck ratio of the shared 1×1 convs (hidden = max(1, (C/G) // reduction)).
    """

    def __init__(self, channels: int, groups: int = 8, reduction: int = 16) -> None:
        super().__init__()
        if channels < 1 or groups < 1 or reduction < 1:
            raise ValueError(f"GGCA: channels, groups, reduction must be >= 1, got {channels}, {groups}, {reduction}")
        if channels % groups:
            raise ValueError(f"GGCA: channels ({channels}) must be divisible by groups ({groups})")
        self.channels = channels
        self.groups = groups
        group_channels = channels // groups
        hidden = max(1, group_channels // reduction)
        self.shared = nn.Sequential(
            nn.Conv2d(group_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, group_channels, 1),
        )

    def attention(self, grouped: Tensor) -> tuple[Tensor, Tensor]:
        """(B·G)×(C/G)×H×W → (A_h of shape (B·G)×(C/G)×H×1, A_w of shape (B·G)×(C/G)×1×W)."""
        n, cg, h, w = grouped.shape
        along_h = torch.stack([grouped.mean(3, keepdim=True), grouped.amax(3, keepdim=True)])  # eqs. 2-3: H×1
        along_w = torch.stack([grouped.mean(2, keepdim=True), grouped.amax(2, keepdim=True)])  # eqs. 4-5: 1×W
        descriptors = torch.cat([along_h, along_w.transpose(3, 4)], dim=3)  # 2×n×cg×(H+W)×1
        mixed = self.shared(descriptors.reshape(2 * n, cg, h + w, 1)).reshape(2, n, cg, h + w, 1)
        a_h, a_w = torch.sigmoid(mixed.sum(0)).split([h, w], dim=2)  # avg + max, then sigmoid
        return a_h, a_w.transpose(2, 3)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"GGCA expects B×{self.channels}×H×W, got {tuple(x.shape)}")
        b, c, h, w = x.shape
        grouped = x.reshape(b * self.groups, c // self.groups, h, w)
        a_h, a_w = self.attention(grouped)
        return (grouped * a_h * a_w).reshape(b, c, h, w)  # eq. 6
