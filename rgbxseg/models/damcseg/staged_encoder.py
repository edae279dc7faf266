"""The RGB encoder as a list of stages, so that DAMCSeg can fuse modalities between stages and give
each task its own copy of the last stage (SPEC 5: "first ~80 % of stages shared, last stage duplicated
per task").

smp's encoders return only the stage outputs; running a stage at a time needs the module sequence
and where the outputs are tapped. Two layouts cover the encoders with packaged weights and the
light random-init ones: smp's MobileNetV2 (``features`` + ``_out_indexes``) and timm's
EfficientNet/MobileNetV3/V4 feature extractors (``conv_stem``, ``bn1``, optional ``act1``, ``blocks``
and ``_stage_out_idx``). Other encoders (Xception65) get a clear error.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

from rgbxseg.errors import ConfigError
from rgbxseg.models.encoders import Encoder


def _smp_mobilenet_modules(body: nn.Module) -> tuple[list[nn.Module], list[int]]:
    return list(body.features), list(body._out_indexes)


def _timm_efficient_modules(model: nn.Module) -> tuple[list[nn.Module], list[int]]:
    stem = nn.Sequential(model.conv_stem, model.bn1, getattr(model, "act1", nn.Identity()))
    modules = [stem, *model.blocks]
    # timm's index 0 is the stem output and index i + 1 the output of blocks[i]: the same as a
    # position in ``modules``.
    return modules, sorted(model._stage_out_idx)


def _module_sequence(encoder: Encoder) -> tuple[list[nn.Module], list[int]]:
    body = encoder.body
    if hasattr(body, "features") and hasattr(body, "_out_indexes"):
        return _smp_mobilenet_modules(body)
    model = getattr(body, "model", None)
    if model is not None and all(hasattr(model, a) for a in ("conv_stem", "bn1", "blocks", "_stage_out_idx")):
        return _timm_efficient_modules(model)
    raise ConfigError(
        f"encoder '{encoder.name}' cannot be run stage by stage (DAMCSeg needs that to fuse modalities between "
        "stages); use mobilenet_v2, efficientnet_lite0/1/2, mobilenetv4_conv_large or tf_efficientnetv2_b3"
    )


class StagedEncoder(nn.Module):
    """``encoder``'s five stages (strides 2, 4, 8, 16 and 16 or 32) as :attr:`stages`.

    ``normalize`` applies the encoder's input normalisation (RGB, plus early-fused modality channels
    when the encoder was widened); ``stages[k]`` maps the output of stage
    ``k - 1`` to that of stage ``k``. :meth:`duplicate_last` returns an independent copy of the last
    stage (same initial weights) for a second task.
    """

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        modules, taps = _module_sequence(encoder)
        if len(taps) != 5:
            raise ConfigError(f"encoder '{encoder.name}': expected 5 stage outputs, found {len(taps)}")
        bounds = [-1, *taps]
        self.stages = nn.ModuleList(nn.Sequential(*modules[a + 1 : b + 1]) for a, b in zip(bounds, bounds[1:]))
        self.register_buffer("mean", encoder.mean.clone(), persistent=False)
        self.register_buffer("std", encoder.std.clone(), persistent=False)
        self.out_channels: tuple[int, ...] = tuple(encoder.out_channels[1:])
        self.name = encoder.name
        self.size_divisor = encoder.size_divisor

    def normalize(self, image: Tensor) -> Tensor:
        return (image - self.mean) / self.std

    def duplicate_last(self) -> nn.Module:
        return copy.deepcopy(self.stages[-1])
