"""Building blocks of the DeepLab family: ASPP (Chen et al. 2018), the DeepLabV3+ decoder, and the
FMSI-DeepLab modules (deformable ASPP, GGCA, interest flow, MSEA)."""

from rgbxseg.models.layers.aspp import ASPP, ImagePooling
from rgbxseg.models.layers.deeplab_decoder import LOW_LEVEL_INDEX, DeepLabDecoder
from rgbxseg.models.layers.deformable_aspp import DeformableASPP, DeformableAtrousConv
from rgbxseg.models.layers.ggca import GGCA
from rgbxseg.models.layers.interest_flow import InterestFlow
from rgbxseg.models.layers.msea import MSEA

__all__ = [
    "ASPP",
    "GGCA",
    "LOW_LEVEL_INDEX",
    "MSEA",
    "DeepLabDecoder",
    "DeformableASPP",
    "DeformableAtrousConv",
    "ImagePooling",
    "InterestFlow",
]
