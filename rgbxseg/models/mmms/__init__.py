"""MMMS: multi-modal, multi-surface interactive segmentation on a frozen black-box ViT (seeds/003, SPEC 6)."""

from rgbxseg.models.mmms.backbone import FEATURE_BLOCKS, Dinov2Backbone, FeatureBackbone
from rgbxseg.models.mmms.csnet import CSNet
from rgbxseg.models.mmms.feature_cache import FeatureCache, image_key
from rgbxseg.models.mmms.mmfuser import CrossBlock, MMFuser
from rgbxseg.models.mmms.model import MMMSConfig, MMMSNet
from rgbxseg.models.mmms.ms_patch_embed import MSPatchEmbed
from rgbxseg.models.mmms.parallel_fpn import ParallelFPN, pyramid_sizes

__all__ = [
    "FEATURE_BLOCKS",
    "CSNet",
    "CrossBlock",
    "Dinov2Backbone",
    "FeatureBackbone",
    "FeatureCache",
    "MMFuser",
    "MMMSConfig",
    "MMMSNet",
    "MSPatchEmbed",
    "ParallelFPN",
    "image_key",
    "pyramid_sizes",
]
