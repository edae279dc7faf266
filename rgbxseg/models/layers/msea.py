"""Multi-Scale channel-spatial Enhanced Attention (MSEA), FMSI-DeepLab paper section 2.2, eqs. (7)-(10),
Fig. 4; SPEC 4.

1. Multi-scale features M: depthwise-separable convolutions at kernels 3, 5 and 7. **Fusion choice**:
   the three depthwise k×k convs (each + BN) are concatenated and fused by one pointwise 1×1 conv
   (3C → C) + BN + ReLU, i.e. a depthwise-separable conv whose depthwise stage has three kernel sizes
   (as in MixConv); the fusion learns how much each scale contributes, for C·(3²+5²+7²) + 3C² weights.
2. Channel attention ``C_a = σ(MLP(avgpool(M)) + MLP(maxpool(M)))`` with the MLP = 1×1 conv → ReLU →
   1×1 conv shared by both poolings (eqs. 7-8), bottleneck ``max(1, C // reduction)``, reduction 8.
3. Spatial attention ``S_a = σ(conv7×7([mean_c(M), max_c(M)]))`` (eq. 9).
4. Output ``M · S_a + M · C_a`` (eq. 10): X_input of eq. 10 is the multi-scale feature map M, the
   input of the attention stage in Fig. 4. Output channels = input channels, same H×W.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation


def depthwise(channels: int, kernel_size: int) -> nn.Sequential:
    """Depthwise k×k conv (padding keeps H×W) + BN: the spatial half of a separable conv."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False),
        nn.BatchNorm2d(channels),
    )


class MSEA(nn.Module):
    """Multi-scale separable convs followed by channel and spatial attention: ``M·S_a + M·C_a``.

    Args:
        channels: C, input and output channels.
        kernel_sizes: odd kernel sizes of the depthwise convs (paper: 3, 5, 7).
        reduction: bottleneck ratio of the channel-attention MLP.
        spatial_kernel: odd kernel size of the spatial-attention conv (paper: 7).
    """

    def __init__(
        self, channels: int, kernel_sizes: Sequence[int] = (3, 5, 7), reduction: int = 8, spatial_kernel: int = 7
    ) -> None:
        super().__init__()
        kernels = tuple(kernel_sizes)
        if channels < 1 or reduction < 1:
            raise ValueError(f"MSEA: channels and reduction must be >= 1, got {channels} and {reduction}")
        if not kernels or any(k < 1 or k % 2 == 0 for k in (*kernels, spatial_kernel)):
            raise ValueError(f"MSEA: kernel sizes must be odd and positive, got {kernels} and {spatial_kernel}")
        self.scales = nn.ModuleList(depthwise(channels, k) for k in kernels)
        self.fuse = Conv2dNormActivation(len(kernels) * channels, channels, 1)
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        self.spatial = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2, bias=False)

    def multi_scale(self, x: Tensor) -> Tensor:
        """M: the concatenated depthwise 3/5/7 responses fused by the pointwise conv."""
        return self.fuse(torch.cat([scale(x) for scale in self.scales], dim=1))

    def channel_attention(self, m: Tensor) -> Tensor:
        """C_a = σ(MLP(avgpool) + MLP(maxpool)), B×C×1×1 (eqs. 7-8)."""
        return torch.sigmoid(self.mlp(m.mean((2, 3), keepdim=True)) + self.mlp(m.amax((2, 3), keepdim=True)))

    def spatial_attention(self, m: Tensor) -> Tensor:
        """S_a = σ(conv([mean over channels, max over channels])), B×1×H×W (eq. 9)."""
        return torch.sigmoid(self.spatial(torch.cat([m.mean(1, keepdim=True), m.amax(1, keepdim=True)], dim=1)))

    def forward(self, x: Tensor) -> Tensor:
        m = self.multi_scale(x)
        return m * self.spatial_attention(m) + m * self.channel_attention(m)  # eq. 10
