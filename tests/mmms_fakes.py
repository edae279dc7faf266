"""Stand-ins shared by the MMMS tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class CountingBackbone:
    """A stand-in ViT (the :class:`~rgbxseg.models.mmms.FeatureBackbone` protocol): the four token maps are
    the 14×14 patch means of the image, repeated to 384 channels and scaled by the block number; it counts
    its calls."""

    backbone_id = "counting-v1"
    patch_size = 14
    embed_dim = 384

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image: torch.Tensor) -> list[torch.Tensor]:
        self.calls += 1
        pooled = F.avg_pool2d(image, 14).repeat(1, 128, 1, 1)
        return [pooled * (i + 1) for i in range(4)]
