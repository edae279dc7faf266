"""CSNet, the click segmentation network of MMMS (seeds/003, SPEC 6), designed for a ≤ 50 ms click on 2 CPU
threads at 448×448.

SegFormer-style stages at strides 4, 8, 16, 32 (smp's MiT ``Block``: efficient self-attention with
reductions 8/4/2/1 + Mix-FFN):

    stage 1 input:      F_1 + I_1
    stage i > 1 input:  PatchEmbed_i(out_{i−1}) + F_i + I_i

and SegFormer's all-MLP head → mask logits at stride 4. F is the (fused) feature pyramid, I the interaction
pyramid of :class:`MSPatchEmbed`.

Latency decisions (SPEC 6 asks for them; each was measured against NoC in BENCHMARKS.md):
- CSNet runs at its own narrow widths (default 32/64/128/256, SegFormer-B0-like) instead of the pyramid's
  64/128/320/512. The 1×1 projections of F to those widths do not depend on the clicks, so
  :meth:`CSNet.prepare` computes them once per image and only :meth:`CSNet.forward` runs per click.
- Stage 1 (stride 4, 12 544 tokens at 448²) has no transformer block by default (``depths[0] = 0``): it is
  the normalised sum F_1 + I_1, which feeds the head's fine detail and stage 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.encoders.mix_transformer import Block, LayerNorm, OverlapPatchEmbed
from torch import Tensor, nn

from rgbxseg.models.mmms.mmfuser import REDUCTIONS
from rgbxseg.models.mmms.parallel_fpn import DEFAULT_CHANNELS

DEFAULT_WIDTHS = (32, 64, 128, 256)
DEFAULT_DEPTHS = (0, 1, 2, 1)


def _stage(width: int, depth: int, reduction: int) -> nn.Sequential:
    norm = partial(LayerNorm, eps=1e-6)
    return nn.Sequential(
        *(
            Block(width, max(1, width // 32), mlp_ratio=4, qkv_bias=True, norm_layer=norm, sr_ratio=reduction)
            for _ in range(depth)
        )
    )


class MLPHead(nn.Module):
    """SegFormer's all-MLP decoder: per stage a linear map to ``dim``, upsampling to stride 4, concatenation,
    a fusing linear layer (+ BN, ReLU) and a linear classifier to one mask logit."""

    def __init__(self, widths: Sequence[int], dim: int) -> None:
        super().__init__()
        self.linear = nn.ModuleList(nn.Conv2d(w, dim, 1) for w in widths)
        self.fuse = nn.Sequential(
            nn.Conv2d(dim * len(widths), dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True)
        )
        self.classify = nn.Conv2d(dim, 1, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        size = features[0].shape[-2:]
        maps = [linear(f) for linear, f in zip(self.linear, features, strict=True)]
        maps = [maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
        return self.classify(self.fuse(torch.cat(maps, dim=1)))


class CSNet(nn.Module):
    """Feature pyramid + interaction pyramid → mask logits (B×1×H/4×W/4).

    Args:
        pyramid_channels: channels of the feature pyramid F (ParallelFPN / MMFuser output).
        widths: CSNet stage widths (the interaction pyramid must use the same).
        depths: transformer blocks per stage.
        decoder_dim: width of the all-MLP head.
    """

    def __init__(
        self,
        pyramid_channels: Sequence[int] = DEFAULT_CHANNELS,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        depths: Sequence[int] = DEFAULT_DEPTHS,
        decoder_dim: int = 32,
    ) -> None:
        super().__init__()
        if not len(pyramid_channels) == len(widths) == len(depths) == 4:
            raise ValueError(
                f"CSNet: expected 4 stages, got channels {pyramid_channels}, widths {widths}, depths {depths}"
            )
        self.widths = tuple(widths)
        self.inputs = nn.ModuleList(nn.Conv2d(c, w, 1) for c, w in zip(pyramid_channels, widths, strict=True))
        self.downsample = nn.ModuleList(
            OverlapPatchEmbed(patch_size=3, stride=2, in_chans=a, embed_dim=b) for a, b in zip(widths, widths[1:])
        )
        self.stages = nn.ModuleList(_stage(w, d, r) for w, d, r in zip(widths, depths, REDUCTIONS, strict=True))
        self.norms = nn.ModuleList(LayerNorm(w, eps=1e-6) for w in widths)
        self.head = MLPHead(widths, decoder_dim)

    def prepare(self, pyramid: list[Tensor]) -> list[Tensor]:
        """The click-independent part: F_i projected to CSNet's widths. Compute once per image."""
        return [project(f) for project, f in zip(self.inputs, pyramid, strict=True)]

    def forward(self, prepared: list[Tensor], interaction: list[Tensor]) -> Tensor:
        """``prepared`` from :meth:`prepare` (batch 1 broadcasts over the interaction batch)."""
        outputs: list[Tensor] = []
        for i, (stage, norm, f, embedded) in enumerate(
            zip(self.stages, self.norms, prepared, interaction, strict=True)
        ):
            x = f + embedded if i == 0 else self.downsample[i - 1](outputs[-1]) + f + embedded
            outputs.append(norm(stage(x)))
        return self.head(outputs)
