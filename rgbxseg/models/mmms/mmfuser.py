"""MMFuser of MMMS (seeds/003, SPEC 6): mixes non-RGB modalities into the RGB feature pyramid without
touching the black-box backbone.

Per modality, a SegFormer-B1-style encoder (smp's ``MixVisionTransformer``: widths 64/128/320/512, depths
2/2/2/2, reductions 8/4/2/1) gives a pyramid M of the same shapes as F; per stage a :class:`CrossBlock`

    F ← F + EffCA(LN(F), LN(M)),    F ← F + MLP(LN(F))

with keys/values reduced by 8, 4, 2, 1 at strides 4..32. Several modalities: one encoder and one set of
CrossBlocks each, applied in a fixed order. An absent modality (for the whole batch, or per sample through
``present``) leaves F unchanged, so the same fuser serves every subset of sensors — and RGB-only MMMS has no
fuser at all. Everything here runs once per image, not per click.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import torch
from segmentation_models_pytorch.encoders.mix_transformer import LayerNorm, MixVisionTransformer, Mlp
from torch import Tensor, nn

from rgbxseg.models.layers.effca import EffCA
from rgbxseg.models.mmms.parallel_fpn import DEFAULT_CHANNELS

REDUCTIONS = (8, 4, 2, 1)


def heads_for(channels: int) -> int:
    """Attention heads of a stage: one per 64 channels (SegFormer-B1: 1, 2, 5, 8)."""
    return max(1, channels // 64)


def modality_encoder(in_channels: int, channels: Sequence[int] = DEFAULT_CHANNELS) -> MixVisionTransformer:
    """SegFormer-B1-style (MiT) encoder for one modality with ``in_channels`` input channels."""
    return MixVisionTransformer(
        in_chans=in_channels,
        embed_dims=list(channels),
        num_heads=[heads_for(c) for c in channels],
        mlp_ratios=[4, 4, 4, 4],
        qkv_bias=True,
        norm_layer=partial(LayerNorm, eps=1e-6),
        depths=[2, 2, 2, 2],
        sr_ratios=list(REDUCTIONS),
        drop_path_rate=0.1,
    )


class CrossBlock(nn.Module):
    """``F ← F + EffCA(LN(F), LN(M))``, ``F ← F + MLP(LN(F))`` (MLP = SegFormer's Mix-FFN).

    The two residual branches start at zero (zero-initialised output projections), so a freshly added
    modality leaves a trained RGB pyramid unchanged until it has learned something useful.
    """

    def __init__(self, dim: int, context_dim: int, reduction: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm_x = LayerNorm(dim)
        self.norm_context = LayerNorm(context_dim)
        self.attn = EffCA(dim, context_dim, heads_for(dim), reduction)
        self.norm_mlp = LayerNorm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        for projection in (self.attn.proj, self.mlp.fc2):
            nn.init.zeros_(projection.weight)
            nn.init.zeros_(projection.bias)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = x + self.attn(self.norm_x(x), self.norm_context(context))
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.mlp(self.norm_mlp(tokens), height, width)
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


class MMFuser(nn.Module):
    """RGB pyramid + any subset of ``modalities`` → fused pyramid of the same shapes.

    Args:
        modalities: name → channel count of every modality the fuser knows (e.g. ``{"depth": 1}``).
        channels: pyramid channels (those of the ParallelFPN; the modality encoders use the same).
    """

    def __init__(self, modalities: Mapping[str, int], channels: Sequence[int] = DEFAULT_CHANNELS) -> None:
        super().__init__()
        if not modalities:
            raise ValueError("MMFuser needs at least one modality (RGB-only MMMS has no fuser)")
        self.modalities = dict(modalities)
        self.encoders = nn.ModuleDict({name: modality_encoder(c, channels) for name, c in self.modalities.items()})
        self.cross = nn.ModuleDict(
            {
                name: nn.ModuleList(CrossBlock(c, c, r) for c, r in zip(channels, REDUCTIONS, strict=True))
                for name in self.modalities
            }
        )

    def forward(
        self,
        pyramid: list[Tensor],
        modalities: Mapping[str, Tensor],
        present: Mapping[str, Tensor] | None = None,
    ) -> list[Tensor]:
        """``present[name]`` (B bools) marks the samples that have the modality; missing keys mean all do."""
        unknown = set(modalities) - set(self.modalities)
        if unknown:
            raise ValueError(
                f"MMFuser: unknown modalities {sorted(unknown)}; it was built for {sorted(self.modalities)}"
            )
        for name in self.modalities:
            if name not in modalities:
                continue
            mask = None if present is None or name not in present else present[name]
            if mask is not None and not bool(mask.any()):
                continue
            context = self.encoders[name].forward_features(modalities[name])
            fused = [block(f, m) for block, f, m in zip(self.cross[name], pyramid, context, strict=True)]
            if mask is not None:
                keep = mask.view(-1, 1, 1, 1).to(torch.bool)
                fused = [torch.where(keep, new, old) for new, old in zip(fused, pyramid, strict=True)]
            pyramid = fused
        return pyramid
