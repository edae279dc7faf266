"""ParallelFPN of MMMS (seeds/003, SPEC 6; supplementary section I): four parallel scaling modules turn the
ViT token maps after blocks 3, 6, 9, 12 (stride = patch size p, e.g. 14) into a pyramid at strides 4, 8, 16,
32 with channels C = (64, 128, 320, 512) by default.

Like ViTDet's SimpleFPN each scale is a short feed-forward stack of convolutions / transposed convolutions,
LayerNorm (GroupNorm with one group) and GELU; because p = 14 is not a power of two, each scale interpolates
bilinearly to the exact pyramid size. The pyramid sizes follow the SegFormer convention used by
every MMMS pyramid (stride-4 stem with padding, then stride-2 steps): ``ceil(H / 4)``, then halved with
ceiling — :func:`pyramid_sizes`.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_CHANNELS = (64, 128, 320, 512)
STRIDES = (4, 8, 16, 32)


def pyramid_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """(h, w) of the stride 4, 8, 16, 32 maps of an H×W input: ceil(·/4), then repeated ceil-halving."""
    sizes = [(math.ceil(height / 4), math.ceil(width / 4))]
    for _ in STRIDES[1:]:
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


def layer_norm(channels: int) -> nn.GroupNorm:
    """LayerNorm over channels of a B×C×H×W map (GroupNorm with a single group, as the paper does)."""
    return nn.GroupNorm(1, channels)


class _Scale(nn.Module):
    """One scaling module: 1×1 conv D→C + LN + GELU at token resolution → ``resample`` (towards the target
    stride) → bilinear resize to the exact size → depthwise 3×3 + pointwise conv → LN."""

    def __init__(self, embed_dim: int, channels: int, resample: nn.Module) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(embed_dim, channels, 1, bias=False), layer_norm(channels), nn.GELU())
        self.resample = resample
        self.refine = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            layer_norm(channels),
        )

    def forward(self, tokens: Tensor, size: tuple[int, int]) -> Tensor:
        x = self.resample(self.reduce(tokens))
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.refine(x)


def _upsample(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(channels, channels, 2, stride=2), layer_norm(channels), nn.GELU())


class ParallelFPN(nn.Module):
    """ViT token maps (4 × B×D×H/p×W/p) → feature pyramid (B×C_i×h_i×w_i at strides 4, 8, 16, 32).

    Block 3 → stride 4 and block 6 → stride 8 upsample ×2 with a transposed convolution (p/2 = 7, then
    interpolated to 4 or 8), block 9 → stride 16 only interpolates, block 12 → stride 32 halves with a
    stride-2 depthwise convolution. Channels are reduced first, at token resolution, and the spatial 3×3
    filtering is depthwise-separable: the FPN is trained on every batch, so its cost is training time.

    Args:
        embed_dim: ViT width D (384 for ViT-S).
        channels: pyramid channels C_1..C_4.
    """

    def __init__(self, embed_dim: int = 384, channels: tuple[int, int, int, int] = DEFAULT_CHANNELS) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"ParallelFPN: expected 4 pyramid channels, got {channels}")
        c4, c8, c16, c32 = channels
        self.channels = tuple(channels)
        self.scales = nn.ModuleList(
            [
                _Scale(embed_dim, c4, _upsample(c4)),
                _Scale(embed_dim, c8, _upsample(c8)),
                _Scale(embed_dim, c16, nn.Identity()),
                _Scale(embed_dim, c32, nn.Conv2d(c32, c32, 3, stride=2, padding=1, groups=c32)),
            ]
        )

    def forward(self, tokens: list[Tensor], image_size: tuple[int, int]) -> list[Tensor]:
        if len(tokens) != 4:
            raise ValueError(f"ParallelFPN: expected the maps of 4 ViT blocks, got {len(tokens)}")
        sizes = pyramid_sizes(*image_size)
        return [scale(t, size) for scale, t, size in zip(self.scales, tokens, sizes, strict=True)]
