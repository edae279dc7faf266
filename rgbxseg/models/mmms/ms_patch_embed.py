"""MSPatchEmbed of MMMS (seeds/003, SPEC 6): the interaction tensor I (positive-click disks, negative-click
disks, previous mask; B×3×H×W) → an interaction pyramid I_1..I_4 with the shapes of CSNet's stages.

It runs on every click, so it is kept to four cheap strided convolutions: level i area-pools I to twice
its target size (from level i − 1's pooled copy) and applies a 3×3 stride-2 convolution + LayerNorm.
(Four convolutions straight on the full 448×448 tensor would cost ~10× more for the same receptive field
of a 5 px click disk.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from segmentation_models_pytorch.encoders.mix_transformer import LayerNorm
from torch import Tensor, nn

from rgbxseg.models.mmms.parallel_fpn import pyramid_sizes

#: positive clicks, negative clicks, previous mask
INTERACTION_CHANNELS = 3


class MSPatchEmbed(nn.Module):
    """B×3×H×W interaction tensor → 4 maps B×w_i×h_i×w_i at strides 4, 8, 16, 32 (:func:`pyramid_sizes`)."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            nn.Sequential(nn.Conv2d(INTERACTION_CHANNELS, w, 3, stride=2, padding=1), LayerNorm(w)) for w in widths
        )

    def forward(self, interaction: Tensor) -> list[Tensor]:
        if interaction.ndim != 4 or interaction.shape[1] != INTERACTION_CHANNELS:
            raise ValueError(f"MSPatchEmbed: expected B×3×H×W interaction maps, got {tuple(interaction.shape)}")
        outputs = []
        pooled = interaction
        for level, (h, w) in zip(self.levels, pyramid_sizes(*interaction.shape[-2:]), strict=True):
            pooled = F.adaptive_avg_pool2d(pooled, (2 * h, 2 * w))  # from the previous level's: ~2× each
            outputs.append(level(pooled))
        return outputs
