"""FMSI-DeepLab (Tang, Cheng, Zhang: "Optimization of the DeepLabv3+ Segmentation Network by Integrating
Multi-Scale Spatial Information"; SPEC section 4): DeepLabV3+ with a deformable ASPP + GGCA on the
encoder side and interest flow (FPN) + MSEA on the decoder's low-level input.

Every module has a switch so the paper's ablations can be built: :data:`TABLE3_GROUPS` holds the
keyword arguments of Table 3's five cumulative groups and of Table 2's dilation comparison
(:func:`ablation_kwargs` builds any other combination).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from rgbxseg.models.base import SegmentationModel
from rgbxseg.models.encoders import Encoder
from rgbxseg.models.layers import ASPP, LOW_LEVEL_INDEX, MSEA, DeepLabDecoder, DeformableASPP, InterestFlow

PAPER_DILATIONS = (6, 8, 12, 18, 24)
DEEPLAB_RATES = (6, 12, 18)
MIDDLE_INDEX = 3  # stride-8 map in smp's feature list; the exit flow is the last map

SWITCHES = ("deformable_aspp", "interest_flow", "ggca", "msea")


def ablation_kwargs(*enabled: str, dilations: Sequence[int] = PAPER_DILATIONS) -> dict[str, Any]:
    """:class:`FMSIDeepLab` keyword arguments with the named :data:`SWITCHES` on and the others off."""
    unknown = set(enabled) - set(SWITCHES)
    if unknown:
        raise ValueError(f"unknown FMSI-DeepLab switches {sorted(unknown)} (choose from {', '.join(SWITCHES)})")
    return {**{name: name in enabled for name in SWITCHES}, "dilations": tuple(dilations)}


TABLE3_GROUPS: dict[str, dict[str, Any]] = {
    "baseline": ablation_kwargs(dilations=DEEPLAB_RATES),
    "defconv": ablation_kwargs("deformable_aspp"),
    "defconv_fpn": ablation_kwargs("deformable_aspp", "interest_flow"),
    "defconv_fpn_ggca": ablation_kwargs("deformable_aspp", "interest_flow", "ggca"),
    "full": ablation_kwargs(*SWITCHES),
    "defconv_rates_6_12_18": ablation_kwargs("deformable_aspp", dilations=DEEPLAB_RATES),  # Table 2, model a
}


class FMSIDeepLab(SegmentationModel):
    """FMSI-DeepLab: DeepLabV3+ with deformable ASPP, GGCA, interest flow and MSEA, each switchable.

    Encoder side: the ASPP on the last features has deformable 3×3 branches at ``dilations`` plus image
    pooling (``deformable_aspp``; otherwise the standard ASPP with 1×1 and atrous branches at
    ``dilations``), with GGCA on the concatenated branches (``ggca``). Decoder side: the low-level input
    is the FPN fusion of the stride-4 (entry), stride-8 (middle) and last (exit) features
    (``interest_flow``; otherwise the stride-4 features), re-weighted by MSEA (``msea``), then the
    DeepLabV3+ decoder. With every switch off and ``dilations=(6, 12, 18)`` the model is
    :class:`~rgbxseg.models.deeplabv3plus.DeepLabV3Plus` (same modules, parameter names and count).

    Args:
        encoder: the feature extractor (the paper uses Xception; OS16); for modalities, built with
            ``extra_channels`` = the sum of ``modality_channels``.
        num_classes: number of output classes (logit channels).
        modality_channels: extra input modalities fused early, name → channel count (None: RGB only).
        deformable_aspp: deformable ASPP (paper Table 3, Def-Conv) instead of the standard one.
        dilations: rates of the ASPP's 3×3 branches (paper: 6, 8, 12, 18, 24; DeepLabV3+: 6, 12, 18).
        interest_flow: FPN top-down fusion on the decoder's low-level input (Table 3, FPN).
        ggca: GGCA on the concatenated ASPP branches (Table 3, GGCA).
        msea: MSEA on the low-level features before their reduction (Table 3, MSEA).
        aspp_channels: width of every ASPP branch and of its output.
        aspp_dropout: dropout after ASPP's projection.
        decoder_channels: width of the decoder's two 3×3 convs.
        low_level_channels: width the low-level features are reduced to before the concatenation.
        fpn_channels: common width of the interest-flow laterals and output.
        ggca_groups: GGCA's channel groups (SPEC decision: 8); must divide
            ``aspp_channels × number of ASPP branches (pooling included)``.
        separable: depthwise-separable 3×3 convs in the standard ASPP and the decoder (as DeepLabV3+);
            the deformable branches are always standard deformable convs.
        aspp_reduce: if set, a 1×1 conv first reduces the encoder's last features to this width
            before the (deformable) ASPP — what keeps five deformable branches affordable on CPU.

    Returns (``forward(image, modalities)``): B×num_classes×H×W logits at the input size.
    """

    def __init__(
        self,
        encoder: Encoder,
        num_classes: int,
        modality_channels: Mapping[str, int] | None = None,
        deformable_aspp: bool = True,
        dilations: Sequence[int] = PAPER_DILATIONS,
        interest_flow: bool = True,
        ggca: bool = True,
        msea: bool = True,
        aspp_channels: int = 256,
        aspp_dropout: float = 0.1,
        decoder_channels: int = 256,
        low_level_channels: int = 48,
        fpn_channels: int = 128,
        ggca_groups: int = 8,
        separable: bool = True,
        aspp_reduce: int | None = None,
    ) -> None:
        super().__init__(encoder, num_classes, modality_channels)
        widths = encoder.out_channels
        aspp_args = (widths[-1], aspp_channels, dilations, aspp_dropout, ggca, ggca_groups)
        if deformable_aspp:
            self.aspp: ASPP = DeformableASPP(*aspp_args, reduce_to=aspp_reduce)
        else:
            self.aspp = ASPP(*aspp_args, separable=separable, reduce_to=aspp_reduce)
        pyramid = (widths[LOW_LEVEL_INDEX], widths[MIDDLE_INDEX], widths[-1])  # entry, middle, exit flows
        self.interest_flow = InterestFlow(pyramid, fpn_channels) if interest_flow else None
        low_width = fpn_channels if interest_flow else widths[LOW_LEVEL_INDEX]
        self.msea = MSEA(low_width) if msea else nn.Identity()
        self.decoder = DeepLabDecoder(
            aspp_channels, low_width, num_classes, low_level_channels, decoder_channels, separable
        )

    def low_level(self, features: list[Tensor]) -> Tensor:
        """The decoder's stride-4 input: entry features, or their interest-flow fusion, then MSEA."""
        entry = features[LOW_LEVEL_INDEX]
        if self.interest_flow is not None:
            entry = self.interest_flow(entry, features[MIDDLE_INDEX], features[-1])
        return self.msea(entry)

    def decode(self, features: list[Tensor]) -> Tensor:
        return self.decoder(self.aspp(features[-1]), self.low_level(features))
