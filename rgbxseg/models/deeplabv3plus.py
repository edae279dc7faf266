"""DeepLabV3+ (Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation", ECCV 2018): the baseline of SPEC section 3 and group 1 of the FMSI-DeepLab ablation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from rgbxseg.models.base import SegmentationModel
from rgbxseg.models.encoders import Encoder
from rgbxseg.models.layers import ASPP, LOW_LEVEL_INDEX, DeepLabDecoder


class DeepLabV3Plus(SegmentationModel):
    """DeepLabV3+: encoder → ASPP on the last features → decoder with stride-4 skip → logits.

    The encoder should run at output stride 16 (``Encoder(..., output_stride=16)``, the default) for the
    paper's rates 6/12/18; other strides work but change the rates' meaning. The decoder reduces the stride-4 features to
    ``low_level_channels``, concatenates the ASPP output upsampled ×4, applies two 3×3 convs and a 1×1
    classifier; the logits (stride 4) are upsampled ×4 to the input size by :class:`SegmentationModel`.

    Args:
        encoder: the feature extractor (any :class:`~rgbxseg.models.encoders.Encoder`); for modalities,
            built with ``extra_channels`` = the sum of ``modality_channels``.
        num_classes: number of output classes (logit channels).
        modality_channels: extra input modalities fused early, name → channel count (None: RGB only).
        aspp_rates: atrous rates of ASPP's 3×3 branches.
        aspp_channels: width of every ASPP branch and of its output.
        aspp_dropout: dropout after ASPP's projection.
        decoder_channels: width of the decoder's two 3×3 convs.
        low_level_channels: width the stride-4 features are reduced to before the concatenation.
        separable: depthwise-separable 3×3 convs in ASPP and decoder (Chen et al.'s "atrous separable
            convolution", section 3.2); False gives standard convs.
        aspp_reduce: if set, a 1×1 conv first reduces the encoder's last features to this width.

    Returns (``forward(image, modalities)``): B×num_classes×H×W logits at the input size.
    """

    def __init__(
        self,
        encoder: Encoder,
        num_classes: int,
        modality_channels: Mapping[str, int] | None = None,
        aspp_rates: Sequence[int] = (6, 12, 18),
        aspp_channels: int = 256,
        aspp_dropout: float = 0.1,
        decoder_channels: int = 256,
        low_level_channels: int = 48,
        separable: bool = True,
        aspp_reduce: int | None = None,
    ) -> None:
        super().__init__(encoder, num_classes, modality_channels)
        self.aspp = ASPP(
            encoder.out_channels[-1], aspp_channels, aspp_rates, aspp_dropout, separable=separable, reduce_to=aspp_reduce
        )
        self.decoder = DeepLabDecoder(
            aspp_channels, encoder.out_channels[LOW_LEVEL_INDEX], num_classes, low_level_channels, decoder_channels,
            separable,
        )

    def decode(self, features: list[Tensor]) -> Tensor:
        return self.decoder(self.aspp(features[-1]), features[LOW_LEVEL_INDEX])
