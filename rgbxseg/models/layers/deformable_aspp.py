"""Deformable ASPP of FMSI-DeepLab (paper section 2.1, eq. (1), Fig. 2; SPEC 4).

Five parallel 3×3 deformable convolutions at dilations (6, 8, 12, 18, 24) plus image pooling,
concatenated, optionally re-weighted by GGCA, then projected by 1×1 conv + BN + ReLU + dropout, as in
:class:`~rgbxseg.models.layers.aspp.ASPP`. Following the paper and SPEC 4 there is no 1×1 branch: the
pyramid is the deformable convolutions and image pooling only.

Each branch samples ``y(p) = Σ_k w_k · x(p + p_k + Δp_k)`` (eq. 1), where p_k runs over the 3×3 grid
dilated by the branch's rate and the offsets Δp_k (2·K·K = 18 channels: a (dy, dx) pair per kernel
point) come from a dedicated 3×3 conv with the same dilation. That offset conv is zero-initialised,
so a fresh branch is exactly the plain atrous conv; it learns to deform from there (Dai et al., ICCV
2017). Uses ``torchvision.ops.DeformConv2d`` (bilinear sampling, zeros outside the map).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.ops import DeformConv2d

from rgbxseg.models.layers.aspp import ASPP

KERNEL_SIZE = 3


class DeformableAtrousConv(nn.Module):
    """3×3 deformable conv at a given dilation (eq. 1) with its own offset predictor, then BN + ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        dilation: the atrous rate of the regular sampling grid p_k (padding = dilation keeps H×W).
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__()
        if dilation < 1:
            raise ValueError(f"dilation must be >= 1, got {dilation}")
        self.dilation = dilation
        self.offset = nn.Conv2d(
            in_channels, 2 * KERNEL_SIZE * KERNEL_SIZE, KERNEL_SIZE, padding=dilation, dilation=dilation
        )
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = DeformConv2d(
            in_channels, out_channels, KERNEL_SIZE, padding=dilation, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x, self.offset(x))))


class DeformableASPP(ASPP):
    """ASPP whose branches are :class:`DeformableAtrousConv` at the given dilations (FMSI-DeepLab).

    Args:
        in_channels: channels of the encoder features.
        out_channels: channels of every branch and of the output.
        rates: dilations of the deformable branches (paper: 6, 8, 12, 18, 24; Table 2 compares 6, 12, 18).
        dropout: dropout probability after the projection.
        ggca: apply GGCA to the concatenated branches before the projection (paper Table 3, group 4).
        ggca_groups: GGCA's number of channel groups.
        reduce_to: if set, a 1×1 conv + BN + ReLU first reduces the input to this many channels (the
            deformable branches are standard convs, so this is what keeps them affordable on CPU).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = (6, 8, 12, 18, 24),
        dropout: float = 0.1,
        ggca: bool = False,
        ggca_groups: int = 8,
        reduce_to: int | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, rates, dropout, ggca, ggca_groups, reduce_to=reduce_to)

    def make_branches(self, in_channels: int, out_channels: int, rates: tuple[int, ...]) -> list[nn.Module]:
        return [DeformableAtrousConv(in_channels, out_channels, r) for r in rates]
