"""The black-box RGB backbone B of MMMS (seeds/003, SPEC 6): a frozen ViT giving the token maps after
blocks 3, 6, 9 and 12. It is never trained and never back-propagated through.

Everything downstream only sees :class:`FeatureBackbone`: an id (used as the feature-cache key), the patch
size and width, and a call from an RGB batch to four B×D×(H/p)×(W/p) maps. A local PyTorch ViT, an ONNX
Runtime session or a remote feature service can all stand behind it; :class:`Dinov2Backbone` is the local
default (DINOv2 ViT-S/14 from the packaged weights, SPEC 11).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from rgbxseg.models.weights import IMAGENET_MEAN, IMAGENET_STD, PRETRAINED, create_pretrained_model

#: Blocks whose outputs MMMS reads (1-based, as in the paper); timm indexes them from 0.
FEATURE_BLOCKS = (3, 6, 9, 12)


@runtime_checkable
class FeatureBackbone(Protocol):
    """What MMMS needs from an RGB foundation model."""

    #: identifies the model and its weights; two backbones with the same id give the same features
    backbone_id: str
    patch_size: int
    embed_dim: int

    def __call__(self, image: Tensor) -> list[Tensor]:
        """RGB in [0, 1], B×3×H×W with H, W multiples of ``patch_size`` → 4 maps B×embed_dim×H/p×W/p."""
        ...


class Dinov2Backbone(nn.Module):
    """Frozen DINOv2 ViT-S/14 (22 M parameters) returning the token maps after blocks 3, 6, 9, 12.

    Normalises with the ImageNet mean/std the weights expect; any H, W multiple of 14 works (the position
    grid is resampled bicubically, as DINOv2 does).
    """

    weights_name = "vit_small_patch14_dinov2"
    patch_size = 14
    embed_dim = 384

    def __init__(self) -> None:
        super().__init__()
        self.vit = create_pretrained_model(
            self.weights_name, features_only=True, out_indices=tuple(b - 1 for b in FEATURE_BLOCKS)
        )
        self.vit.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone_id = f"dinov2_vits14-{PRETRAINED[self.weights_name].sha256[:8]}"

    def train(self, mode: bool = True) -> Dinov2Backbone:
        """The backbone stays in eval mode: it is a black box, never trained."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, image: Tensor) -> list[Tensor]:
        height, width = image.shape[-2:]
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"{self.backbone_id}: expected a B×3×H×W RGB batch, got {tuple(image.shape)}")
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"{self.backbone_id}: H and W must be multiples of {self.patch_size}, got {height}×{width}"
            )
        image = image.to(self.mean.device)
        return list(self.vit((image - self.mean) / self.std))
