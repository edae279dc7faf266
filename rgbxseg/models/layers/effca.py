"""Efficient cross-attention (EffCA) of MMMS (seeds/003, SPEC 6).

SegFormer's efficient self-attention (Xie et al. 2021) shortens the key/value sequence by a spatial
reduction ratio R (a strided R×R convolution + LayerNorm) while every pixel keeps its query. MMMS extends it
to cross-attention: the queries come from the RGB feature map F, the keys and values from a modality map M
of the same spatial size, reduced by R:

    EffCA(F, M) = softmax(Q Kᵀ / √d) V,   Q = F W_q,   K, V = LN(Reduce_R(M)) W_k, W_v

with ``heads`` heads and an output projection. With ``M = F`` it is SegFormer's efficient self-attention.
Written here because smp's MiT attention (``segmentation_models_pytorch.encoders.mix_transformer.Attention``)
only attends a map to itself; this one uses ``scaled_dot_product_attention`` for the product.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class EffCA(nn.Module):
    """Efficient cross-attention: queries from ``x`` (B×C×H×W), keys/values from ``context`` (B×C_ctx×H×W).

    Args:
        dim: channels of the query map (and of the output).
        context_dim: channels of the key/value map (default ``dim``).
        heads: attention heads; ``dim`` must be divisible by it.
        reduction: spatial reduction ratio R of the keys/values (MMMS uses 8, 4, 2, 1 at strides 4..32).
    """

    def __init__(self, dim: int, context_dim: int | None = None, heads: int = 1, reduction: int = 1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"EffCA: dim {dim} is not divisible by heads {heads}")
        if reduction < 1:
            raise ValueError(f"EffCA: reduction must be >= 1, got {reduction}")
        context_dim = context_dim or dim
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.reduce: nn.Module = (
            nn.Conv2d(context_dim, context_dim, reduction, stride=reduction) if reduction > 1 else nn.Identity()
        )
        self.norm: nn.Module = nn.LayerNorm(context_dim) if reduction > 1 else nn.Identity()

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        batch, dim, height, width = x.shape
        if context.shape[0] != batch or context.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"EffCA: context {tuple(context.shape)} does not match the query map {tuple(x.shape)}")
        queries = self._split(self.q(x.flatten(2).transpose(1, 2)))
        reduced = self.norm(self.reduce(context).flatten(2).transpose(1, 2))
        keys, values = self.kv(reduced).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(queries, self._split(keys), self._split(values))
        out = self.proj(out.transpose(1, 2).reshape(batch, height * width, dim))
        return out.transpose(1, 2).reshape(batch, dim, height, width)

    def _split(self, tokens: Tensor) -> Tensor:
        """B×N×C → B×heads×N×(C/heads)."""
        batch, length, dim = tokens.shape
        return tokens.reshape(batch, length, self.heads, dim // self.heads).transpose(1, 2)
