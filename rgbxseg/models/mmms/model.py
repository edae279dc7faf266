"""MMMSNet: the trainable part of MMMS (seeds/003, SPEC 6) on top of a frozen black-box ViT.

    once per image:  ViT tokens (blocks 3/6/9/12) → ParallelFPN → [MMFuser with the modalities] → CSNet.prepare
                     [+ ImageStem(RGB image) at stride 4]
    per click:       clicks + previous mask → MSPatchEmbed → CSNet → mask logits

:meth:`MMMSNet.encode` is the first line, :meth:`MMMSNet.click` the second; ``forward`` chains both for
training. The hyper-parameters live in :class:`MMMSConfig`, which travels with the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from rgbxseg.models.mmms.csnet import DEFAULT_DEPTHS, DEFAULT_WIDTHS, CSNet
from rgbxseg.models.mmms.image_stem import ImageStem
from rgbxseg.models.mmms.mmfuser import MMFuser
from rgbxseg.models.mmms.ms_patch_embed import MSPatchEmbed
from rgbxseg.models.mmms.parallel_fpn import DEFAULT_CHANNELS, ParallelFPN


@dataclass(frozen=True)
class MMMSConfig:
    """Architecture of an :class:`MMMSNet` (stored next to its weights).

    Attributes:
        embed_dim: width of the backbone tokens (384 for ViT-S/14).
        modalities: name → channels of each non-RGB modality (empty: RGB-only, no MMFuser).
        channels: feature-pyramid channels (ParallelFPN, MMFuser).
        widths / depths: CSNet stage widths and transformer blocks per stage.
        decoder_dim: CSNet head width.
        image_stem: channels at stride 2 of the full-resolution RGB path (:class:`ImageStem`); 0 = none.
    """

    embed_dim: int = 384
    modalities: dict[str, int] = field(default_factory=dict)
    channels: tuple[int, int, int, int] = DEFAULT_CHANNELS
    widths: tuple[int, int, int, int] = DEFAULT_WIDTHS
    depths: tuple[int, int, int, int] = DEFAULT_DEPTHS
    decoder_dim: int = 32
    image_stem: int = 0

    def __post_init__(self) -> None:
        # lists from YAML/JSON become tuples, so that configs compare and hash by value
        for name in ("channels", "widths", "depths"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        object.__setattr__(self, "modalities", {str(k): int(v) for k, v in self.modalities.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MMMSConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"MMMSConfig: unknown keys {sorted(unknown)}")
        return cls(**data)


class MMMSNet(nn.Module):
    """ParallelFPN + optional MMFuser + MSPatchEmbed + CSNet (see the module docstring)."""

    def __init__(self, config: MMMSConfig | None = None) -> None:
        super().__init__()
        self.config = config or MMMSConfig()
        c = self.config
        self.fpn = ParallelFPN(c.embed_dim, c.channels)
        self.fuser = MMFuser(c.modalities, c.channels) if c.modalities else None
        self.embed = MSPatchEmbed(c.widths)
        self.csnet = CSNet(c.channels, c.widths, c.depths, c.decoder_dim)
        self.stem = ImageStem(c.image_stem, c.widths[0]) if c.image_stem else None

    def encode(
        self,
        tokens: list[Tensor],
        image_size: tuple[int, int],
        modalities: Mapping[str, Tensor] | None = None,
        present: Mapping[str, Tensor] | None = None,
        image: Tensor | None = None,
    ) -> list[Tensor]:
        """Once per image: backbone tokens (+ modalities, H×W like the image; + the B×3×H×W RGB image in
        [0, 1] when the model has an :class:`ImageStem`) → CSNet-ready pyramid."""
        pyramid = self.fpn(tokens, image_size)
        if modalities:
            if self.fuser is None:
                raise ValueError(f"this MMMS model is RGB-only; it cannot use the modalities {sorted(modalities)}")
            pyramid = self.fuser(pyramid, modalities, present)
        prepared = self.csnet.prepare(pyramid)
        if self.stem is not None:
            if image is None:
                raise ValueError("this MMMS model has an image stem: encode() needs the RGB image")
            prepared[0] = prepared[0] + self.stem(image)
        return prepared

    def click(self, prepared: list[Tensor], interaction: Tensor) -> Tensor:
        """Per click: interaction tensor (B×3×H×W: positive disks, negative disks, previous mask) → logits
        B×1×H×W."""
        logits = self.csnet(prepared, self.embed(interaction))
        return F.interpolate(logits, size=interaction.shape[-2:], mode="bilinear", align_corners=False)

    def forward(
        self,
        tokens: list[Tensor],
        interaction: Tensor,
        modalities: Mapping[str, Tensor] | None = None,
        present: Mapping[str, Tensor] | None = None,
        image: Tensor | None = None,
    ) -> Tensor:
        return self.click(self.encode(tokens, interaction.shape[-2:], modalities, present, image), interaction)
