"""What every automatic segmenter shares: modality handling, padding to the encoder's size divisor,
and upsampling the decoder's logits back to the input size."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgbxseg.data.sample import IGNORE_INDEX
from rgbxseg.errors import ConfigError
from rgbxseg.models.encoders import Encoder

if TYPE_CHECKING:
    from rgbxseg.data import Batch


class SegmentationModel(nn.Module, ABC):
    pretrained_parts = ("encoder",)

    """Base class: ``forward(image, modalities) -> logits`` at the input resolution.

    ``image`` is B×3×H×W RGB in [0, 1] (normalisation happens inside the encoder); ``modalities``
    maps the names given at construction to B×C×H×W maps. Baselines fuse early: modality channels
    are concatenated after RGB. An absent modality (missing key) is fed as zeros — the simplest
    honest behaviour for an early-fusion baseline; DAMCSeg replaces absent sensors by predicted
    features instead. The input is padded on the bottom/right to a multiple of the encoder's size
    divisor and the logits are cropped back, so every H×W works.
    """

    def __init__(self, encoder: Encoder, num_classes: int, modality_channels: Mapping[str, int] | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        self.encoder = encoder
        self.num_classes = num_classes
        self.modality_channels = dict(modality_channels or {})

    @property
    def modalities(self) -> Sequence[str]:
        return tuple(self.modality_channels)

    def _stack_inputs(self, image: Tensor, modalities: Mapping[str, Tensor] | None) -> Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be B×3×H×W, got {tuple(image.shape)}")
        modalities = modalities or {}
        unknown = set(modalities) - set(self.modality_channels)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; this model takes {list(self.modality_channels) or 'RGB only'}")
        parts = [image]
        b, _, h, w = image.shape
        for name, channels in self.modality_channels.items():
            m = modalities.get(name)
            if m is None:
                m = image.new_zeros(b, channels, h, w)
            elif m.shape != (b, channels, h, w):
                raise ValueError(f"modality '{name}' must be {b}×{channels}×{h}×{w}, got {tuple(m.shape)}")
            parts.append(m.to(image.dtype))
        return torch.cat(parts, dim=1) if len(parts) > 1 else image

    def parameter_parts(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups for per-part learning rates: ``encoder`` and ``head``."""
        encoder = list(self.encoder.parameters())
        ids = {id(p) for p in encoder}
        return {"encoder": encoder, "head": [p for p in self.parameters() if id(p) not in ids]}

    def training_inputs(self, batch: Batch) -> dict[str, Any]:
        """Keyword arguments a training forward needs besides image and modalities (none here)."""
        return {}

    def loss(self, logits: Tensor, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Pixel-wise cross-entropy (the ignore id is skipped) and no named parts."""
        return F.cross_entropy(logits.float(), batch.label, ignore_index=IGNORE_INDEX), {}

    def forward(
        self, image: Tensor, modalities: Mapping[str, Tensor] | None = None, present: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """Logits B×K×H×W. ``present`` (B bool per sensor) is accepted for a uniform interface: the
        batch's absent sensors are already zeros, which is what this early-fusion model feeds."""
        x = self._stack_inputs(image, modalities)
        h, w = x.shape[-2:]
        d = self.encoder.size_divisor
        x = F.pad(x, (0, (-w) % d, 0, (-h) % d))
        logits = self.decode(self.encoder(x))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]

    @abstractmethod
    def decode(self, features: list[Tensor]) -> Tensor:
        """Encoder features (smp's list: input, strides 2, 4, 8, 16, 16-or-32) → logits at any stride."""
