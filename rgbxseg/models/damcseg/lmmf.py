"""Lightweight Multi-Modal Fusion (LMMF), DAMCSeg paper section III.B, Fig. 2, eqs. (1)-(3); SPEC 5.

Three parts, applied at every level of the RGB encoder's pyramid (strides 4, 8, 16, 32 or 16):

* **Modal feature extraction** (III.B.1.b): each extra sensor (depth, thermal, ...) has a
  :class:`ModalityEncoder` of 4 conv blocks (64 → 128 → 256 → 512 channels) with dilated convs.
* **Missing-modality complementation** (eq. 3, ``F_m̂ = MCN(F_exist)``):
  :class:`MissingModalityComplementation` predicts each modality's features from what exists and
  replaces the absent ones; trained by modality dropout plus a feature-reconstruction loss.
* **Modal adaptive attention** (eqs. 1-2, ``ω_m = σ(W_m F_m + b_m)``, ``F = Σ_m ω_m F_m``):
  :class:`ModalAdaptiveAttention` fuses RGB and the (complete) modality features.

:class:`LMMF` ties them together: :meth:`LMMF.encode` runs the modality encoders once per batch and
:meth:`LMMF.fuse` is called after every RGB encoder stage ``k``: ``x, rec_k = lmmf.fuse(k, x, encoded)``.

Decisions (the paper leaves these open):

* Encoder blocks (SPEC 5): block 1 is a stride-4 stem (two 3×3 stride-2 convs, the first at half
  the block width, ``max(1, w // 2)``, the usual cheap stem), later blocks one 3×3 stride-2 conv;
  each block ends with a 3×3 conv at dilation 2; every conv is followed by BN + ReLU. A block asked
  for no stride change (e.g. ``strides=(4, 8, 16, 16)``) replaces its stride by dilation as DeepLab's
  output stride 16 does: from that block on the rate doubles (first conv dilation ``rate``, last conv
  ``2·rate``). Sensor maps in [0, 1] are centred with ``(x − 0.5) / 0.25``
  (:data:`~rgbxseg.models.encoders.MODALITY_MEAN` / ``MODALITY_STD``).
* Attention: ``W_m`` is a 1×1 conv giving ``heads`` pixel-wise weights, one per channel group of
  ``channels / heads`` channels (the paper's 8 "heads"); the weight of modality ``m`` depends on
  ``F_m`` alone (eq. 1) and weights are independent sigmoids, not normalised across modalities
  (eq. 2). Non-RGB features are first projected to the RGB width by a 1×1 conv + BN. The RGB gate's
  bias starts at 2 (ω_rgb ≈ 0.88), the modalities' at 0 (ω ≈ 0.5): the pretrained RGB features pass
  almost unchanged while the sensors count from the first step. (A zero-initialised projection scale,
  Goyal et al. 2017, was tried first: under AdamW a parameter moves about one learning rate per
  step, so after 150 steps at 1e-3 the sensors had at most 15 % of their weight and the fused model
  did no better at night than RGB alone.)
* MCN: per target modality ``m``, a 2-layer MLP of 1×1 convs (hidden = width of ``m``, ReLU between)
  from the RGB features (always present) concatenated — when there is more than one modality — with
  the mean of the *present* other modalities' features, each projected to the RGB width by its own
  1×1 conv (zeros where no other is present). Its output is linear (no ReLU) to keep gradients alive.
* Reconstruction loss: MSE between the prediction and the real features (detached) over the samples
  whose modality is present, averaged over the modalities that have any; 0 when none does. The MCN's
  inputs are not detached, so the loss also acts as a cross-modal auxiliary signal on the RGB branch.
* Modality dropout (training only): each (sample, modality) is dropped independently with
  probability ``dropout`` in :meth:`LMMF.encode`, before any encoder runs. An absent sample's input is
  never encoded (the encoders only see the present samples, so absent inputs cannot leak through
  BatchNorm batch statistics either); its features are zeros replaced by the MCN's prediction.
* A modality missing from ``modalities`` is absent in every sample (a failed sensor); the batch's
  spatial size and batch size then come from the RGB features given to :meth:`LMMF.fuse`.
* Modality features whose size differs from the RGB features (rounding on odd inputs) are resized to
  the RGB size with bilinear interpolation (``align_corners=False``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgbxseg.models.encoders import MODALITY_MEAN, MODALITY_STD

RGB = "rgb"  # key of the RGB features in attention weights; not allowed as a modality name
RGB_GATE_BIAS = 2.0  # initial ω_rgb = σ(2) ≈ 0.88 (module docstring)


def _check_names(owner: str, modality_channels: Mapping[str, int]) -> None:
    """Modality names must be usable as ``nn.ModuleDict`` keys and distinct from :data:`RGB`."""
    if not modality_channels:
        raise ValueError(f"{owner} needs at least one modality besides RGB (an RGB-only model must not build it)")
    for name, channels in modality_channels.items():
        if not isinstance(name, str) or not name or "." in name or name == RGB:
            raise ValueError(f"{owner}: invalid modality name {name!r} (non-empty, no '.', not {RGB!r})")
        if channels < 1:
            raise ValueError(f"{owner}: modality '{name}' must have >= 1 channel, got {channels}")


def _check_rgb(owner: str, rgb: Tensor, channels: int) -> None:
    if rgb.ndim != 4 or rgb.shape[1] != channels:
        raise ValueError(f"{owner} expects RGB features B×{channels}×h×w, got {tuple(rgb.shape)}")


def _check_feature(name: str, feature: Tensor, shape: tuple[int, ...]) -> None:
    if feature.shape != shape:
        raise ValueError(f"modality '{name}' features must be {'×'.join(map(str, shape))}, got {tuple(feature.shape)}")


def _check_mask(name: str, mask: Tensor, batch: int) -> None:
    if mask.shape != (batch,) or mask.dtype != torch.bool:
        raise ValueError(f"present['{name}'] must be bool of shape ({batch},), got {mask.dtype} {tuple(mask.shape)}")


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3×3 conv ('same' padding at ``dilation``) → BN → ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ModalityEncoder(nn.Module):
    """Light encoder of one sensor (depth, thermal, ...): a pyramid matching the RGB encoder's.

    Args:
        in_channels: channels of the sensor map (B×in_channels×H×W, values in [0, 1]).
        widths: output channels of the blocks (paper: 64, 128, 256, 512).
        strides: output stride of each block; the first must be 4 (the stem), each next one equal to
            or twice the previous (equal: the block is dilated instead of strided).
    """

    def __init__(
        self, in_channels: int, widths: Sequence[int] = (64, 128, 256, 512), strides: Sequence[int] = (4, 8, 16, 32)
    ) -> None:
        super().__init__()
        widths, strides = tuple(widths), tuple(strides)
        if in_channels < 1:
            raise ValueError(f"ModalityEncoder: in_channels must be >= 1, got {in_channels}")
        if not widths or len(widths) != len(strides) or min(widths) < 1:
            raise ValueError(f"ModalityEncoder: need one positive width per stride, got {widths} for {strides}")
        if strides[0] != 4 or any(b not in (a, 2 * a) for a, b in zip(strides, strides[1:])):
            raise ValueError(f"ModalityEncoder: strides must start at 4 and stay or double, got {strides}")
        self.in_channels = in_channels
        self.out_channels = widths
        self.strides = strides
        stem_width = max(1, widths[0] // 2)
        blocks = [
            nn.Sequential(
                _conv_bn_relu(in_channels, stem_width, stride=2),
                _conv_bn_relu(stem_width, widths[0], stride=2),
                _conv_bn_relu(widths[0], widths[0], dilation=2),
            )
        ]
        rate = 1
        for k in range(1, len(widths)):
            step = strides[k] // strides[k - 1]
            if step == 1:  # dilation replaces the stride from here on
                rate *= 2
            blocks.append(
                nn.Sequential(
                    _conv_bn_relu(widths[k - 1], widths[k], stride=step, dilation=rate),
                    _conv_bn_relu(widths[k], widths[k], dilation=2 * rate),
                )
            )
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x``: B×in_channels×H×W in [0, 1] → per block a map of ``widths[k]`` channels at ``strides[k]``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ModalityEncoder expects B×{self.in_channels}×H×W, got {tuple(x.shape)}")
        x = (x - MODALITY_MEAN) / MODALITY_STD
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class ModalAdaptiveAttention(nn.Module):
    """Eqs. (1)-(2): ``ω_m = σ(W_m F_m + b_m)`` per modality (RGB included), ``F = Σ_m ω_m F_m``.

    Args:
        rgb_channels: C, channels of the RGB features (and of the output).
        modality_channels: modality name → channels of its features (projected to C by 1×1 conv + BN).
        heads: pixel-wise weights per modality, each shared by a group of C / heads channels; must divide C.
    """

    def __init__(self, rgb_channels: int, modality_channels: Mapping[str, int], heads: int = 8) -> None:
        super().__init__()
        _check_names("ModalAdaptiveAttention", modality_channels)
        if rgb_channels < 1 or heads < 1:
            raise ValueError(f"ModalAdaptiveAttention: rgb_channels, heads must be >= 1, got {rgb_channels}, {heads}")
        if rgb_channels % heads:
            raise ValueError(f"ModalAdaptiveAttention: heads ({heads}) must divide rgb_channels ({rgb_channels})")
        self.rgb_channels = rgb_channels
        self.modality_channels = dict(modality_channels)
        self.heads = heads
        self.projections = nn.ModuleDict(
            {
                name: nn.Sequential(nn.Conv2d(channels, rgb_channels, 1, bias=False), nn.BatchNorm2d(rgb_channels))
                for name, channels in modality_channels.items()
            }
        )
        self.gates = nn.ModuleDict({name: nn.Conv2d(rgb_channels, heads, 1) for name in (RGB, *modality_channels)})
        nn.init.constant_(self.gates[RGB].bias, RGB_GATE_BIAS)

    def _aligned(self, rgb: Tensor, modalities: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Check the inputs; RGB features and every modality's features projected to the RGB width."""
        _check_rgb("ModalAdaptiveAttention", rgb, self.rgb_channels)
        missing = set(self.modality_channels) - set(modalities)
        unknown = set(modalities) - set(self.modality_channels)
        if missing or unknown:
            raise ValueError(
                f"ModalAdaptiveAttention needs exactly the modalities {sorted(self.modality_channels)} "
                f"(missing {sorted(missing)}, unknown {sorted(unknown)}); complete absent ones first"
            )
        b, _, h, w = rgb.shape
        aligned = {RGB: rgb}
        for name, channels in self.modality_channels.items():
            _check_feature(name, modalities[name], (b, channels, h, w))
            aligned[name] = self.projections[name](modalities[name])
        return aligned

    def _weights(self, aligned: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {name: torch.sigmoid(self.gates[name](feature)) for name, feature in aligned.items()}  # eq. 1

    def weights(self, rgb: Tensor, modalities: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Reliability weights ω (eq. 1): name (``"rgb"`` and each modality) → B×heads×h×w in (0, 1)."""
        return self._weights(self._aligned(rgb, modalities))

    def forward(self, rgb: Tensor, modalities: Mapping[str, Tensor]) -> Tensor:
        """``rgb``: B×C×h×w; ``modalities``: every modality's features B×C_m×h×w → fused B×C×h×w (eq. 2)."""
        aligned = self._aligned(rgb, modalities)
        weights = self._weights(aligned)
        fused = sum(aligned[name].unflatten(1, (self.heads, -1)) * weights[name].unsqueeze(2) for name in aligned)
        return fused.flatten(1, 2)


class MissingModalityComplementation(nn.Module):
    """Eq. (3), ``F_m̂ = MCN(F_exist)``: predicts each modality's features and replaces the absent ones.

    Args:
        rgb_channels: C, channels of the RGB features of this level.
        modality_channels: modality name → channels of its features at this level.
    """

    def __init__(self, rgb_channels: int, modality_channels: Mapping[str, int]) -> None:
        super().__init__()
        _check_names("MissingModalityComplementation", modality_channels)
        if rgb_channels < 1:
            raise ValueError(f"MissingModalityComplementation: rgb_channels must be >= 1, got {rgb_channels}")
        self.rgb_channels = rgb_channels
        self.modality_channels = dict(modality_channels)
        with_context = len(modality_channels) > 1  # a single modality has no other one to learn from
        context = {name: nn.Conv2d(channels, rgb_channels, 1) for name, channels in modality_channels.items()}
        self.context = nn.ModuleDict(context if with_context else {})
        in_channels = rgb_channels * (2 if with_context else 1)
        self.predictors = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Conv2d(in_channels, channels, 1), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 1)
                )
                for name, channels in modality_channels.items()
            }
        )

    def _check(self, rgb: Tensor, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> None:
        _check_rgb("MissingModalityComplementation", rgb, self.rgb_channels)
        b, _, h, w = rgb.shape
        for name, channels in self.modality_channels.items():
            if name not in features or name not in present:
                raise ValueError(f"MissingModalityComplementation: features and present must both name '{name}'")
            _check_feature(name, features[name], (b, channels, h, w))
            _check_mask(name, present[name], b)

    def _inputs(self, rgb: Tensor, features: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per target modality: RGB features, concatenated with the mean of the present others' projections."""
        if not self.context:
            return {name: rgb for name in self.modality_channels}
        projected = {name: conv(features[name]) * _as_map(present[name], rgb) for name, conv in self.context.items()}
        inputs = {}
        for name in self.modality_channels:
            others = [other for other in self.modality_channels if other != name]
            count = sum(_as_map(present[other], rgb) for other in others).clamp(min=1)
            inputs[name] = torch.cat([rgb, sum(projected[other] for other in others) / count], dim=1)
        return inputs

    def forward(
        self, rgb: Tensor, features: Mapping[str, Tensor], present: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Complete the modality features.

        Args:
            rgb: B×C×h×w RGB features (always present).
            features: modality name → B×C_m×h×w features (anything, e.g. zeros, for absent samples).
            present: modality name → B bool, whether the sample has that modality.

        Returns:
            (name → features: real where present, predicted where absent; reconstruction loss: MSE between
            prediction and detached real features over present samples, mean over modalities with any
            present sample, 0 when none has).
        """
        self._check(rgb, features, present)
        present = {name: present[name].to(rgb.device) for name in self.modality_channels}
        inputs = self._inputs(rgb, features, present)
        complete: dict[str, Tensor] = {}
        losses = []
        for name, predictor in self.predictors.items():
            prediction = predictor(inputs[name])
            mask = present[name]
            complete[name] = torch.where(mask.view(-1, 1, 1, 1), features[name], prediction)
            if mask.any():
                losses.append(F.mse_loss(prediction[mask], features[name][mask].detach()))
        loss = torch.stack(losses).mean() if losses else rgb.new_zeros(())
        return complete, loss


def _as_map(present: Tensor, like: Tensor) -> Tensor:
    """B bool → B×1×1×1 in ``like``'s dtype and device, to broadcast over feature maps."""
    return present.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)


@dataclass
class EncodedModalities:
    """What :meth:`LMMF.encode` hands to :meth:`LMMF.fuse`.

    Attributes:
        features: per level, modality name → B×widths[level]×h×w features, zeros for absent samples;
            only modalities with at least one present sample appear.
        present: modality name → B bool after modality dropout, for every modality given to ``encode``;
            a modality not listed is absent in every sample.
    """

    features: list[dict[str, Tensor]]
    present: dict[str, Tensor]


class LMMF(nn.Module):
    """Lightweight Multi-Modal Fusion: modality encoders, and per level MCN then modal adaptive attention.

    Args:
        rgb_channels: channels of the RGB encoder's features at each fused level (e.g. strides 4, 8, 16, 32).
        modality_channels: sensor input channels by name, e.g. ``{"depth": 1, "thermal": 1}`` (at least one).
        widths: the modality encoders' widths per level (paper: 64, 128, 256, 512).
        strides: the modality encoders' output strides per level, matching the RGB encoder's.
        heads: attention heads (channel groups) per level; must divide every ``rgb_channels`` entry.
        dropout: probability of dropping each (sample, modality) in training (0 disables it).
    """

    def __init__(
        self,
        rgb_channels: Sequence[int],
        modality_channels: Mapping[str, int],
        widths: Sequence[int] = (64, 128, 256, 512),
        strides: Sequence[int] = (4, 8, 16, 32),
        heads: int = 8,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        _check_names("LMMF", modality_channels)
        rgb_channels, widths = tuple(rgb_channels), tuple(widths)
        if len(rgb_channels) != len(widths):
            raise ValueError(f"LMMF: one RGB channel count per level is needed, got {rgb_channels} for widths {widths}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"LMMF: dropout must be in [0, 1], got {dropout}")
        self.modality_channels = dict(modality_channels)
        self.widths = widths
        self.dropout = dropout
        self.encoders = nn.ModuleDict(
            {name: ModalityEncoder(channels, widths, strides) for name, channels in modality_channels.items()}
        )
        self.complementation = nn.ModuleList(
            MissingModalityComplementation(c, dict.fromkeys(modality_channels, w)) for c, w in zip(rgb_channels, widths)
        )
        self.attention = nn.ModuleList(
            ModalAdaptiveAttention(c, dict.fromkeys(modality_channels, w), heads) for c, w in zip(rgb_channels, widths)
        )

    @property
    def levels(self) -> int:
        return len(self.widths)

    def _present(self, modalities: Mapping[str, Tensor], present: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
        """Check the inputs; per given modality a B bool mask (all True when ``present`` omits it)."""
        unknown = (set(modalities) | set(present or {})) - set(self.modality_channels)
        if unknown:
            raise ValueError(f"LMMF: unknown modalities {sorted(unknown)}; it takes {sorted(self.modality_channels)}")
        masks: dict[str, Tensor] = {}
        batch = {x.shape[0] for x in modalities.values() if x.ndim == 4}
        for name, x in modalities.items():
            channels = self.modality_channels[name]
            if x.ndim != 4 or x.shape[1] != channels or len(batch) != 1:
                raise ValueError(f"LMMF: modality '{name}' must be B×{channels}×H×W (same B), got {tuple(x.shape)}")
            mask = (present or {}).get(name, torch.ones(x.shape[0], dtype=torch.bool))
            _check_mask(name, mask, x.shape[0])
            masks[name] = mask.to(x.device)
        for name, mask in (present or {}).items():
            if name not in modalities and bool(mask.any()):
                raise ValueError(f"LMMF: present['{name}'] marks samples present but no '{name}' input was given")
        return masks

    def encode(
        self, modalities: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None
    ) -> EncodedModalities:
        """Run every modality encoder on the samples that have (and, in training, keep) that modality.

        Args:
            modalities: name → B×C×H×W sensor maps in [0, 1]; absent samples' entries are ignored (zeros
                by convention); a name left out is absent in every sample.
            present: name → B bool, which samples have the modality (None or a name left out: all).

        Returns:
            The per-level features and the presence masks after modality dropout, for :meth:`fuse`.
        """
        masks = self._present(modalities, present)
        if self.training and self.dropout > 0:
            kept = {name: torch.rand(len(mask), device=mask.device) >= self.dropout for name, mask in masks.items()}
            masks = {name: mask & kept[name] for name, mask in masks.items()}
        features: list[dict[str, Tensor]] = [{} for _ in range(self.levels)]
        for name, mask in masks.items():
            if mask.any():
                for level, feature in enumerate(self._encode_present(name, modalities[name], mask)):
                    features[level][name] = feature
        return EncodedModalities(features, masks)

    def _encode_present(self, name: str, x: Tensor, mask: Tensor) -> list[Tensor]:
        """Encode only the samples ``mask`` marks present (the others never reach the encoder, not even its
        BatchNorm statistics); their features are zeros."""
        if mask.all():
            return self.encoders[name](x)
        index = mask.nonzero().squeeze(1)
        return [f.new_zeros(len(mask), *f.shape[1:]).index_copy(0, index, f) for f in self.encoders[name](x[index])]

    def fuse(self, level: int, rgb: Tensor, encoded: EncodedModalities) -> tuple[Tensor, Tensor]:
        """Fuse the RGB features of one level with the modalities (absent ones predicted by the MCN).

        Args:
            level: index of the level (0 = stride 4).
            rgb: B×rgb_channels[level]×h×w features of the RGB encoder at that level.
            encoded: the output of :meth:`encode` for the same batch.

        Returns:
            (fused B×rgb_channels[level]×h×w features, reconstruction loss of this level).
        """
        if not 0 <= level < self.levels:
            raise ValueError(f"LMMF: level must be in [0, {self.levels}), got {level}")
        if rgb.ndim != 4:
            raise ValueError(f"LMMF: RGB features must be B×C×h×w, got {tuple(rgb.shape)}")
        b, _, h, w = rgb.shape
        features: dict[str, Tensor] = {}
        present: dict[str, Tensor] = {}
        for name in self.modality_channels:
            mask = encoded.present.get(name, torch.zeros(b, dtype=torch.bool))
            if mask.shape != (b,):
                raise ValueError(f"LMMF: encoded '{name}' has batch size {mask.shape[0]}, RGB features have {b}")
            present[name] = mask.to(rgb.device)
            feature = encoded.features[level].get(name)
            if feature is None:
                feature = rgb.new_zeros(b, self.widths[level], h, w)
            elif feature.shape[-2:] != (h, w):
                feature = F.interpolate(feature, size=(h, w), mode="bilinear", align_corners=False)
            features[name] = feature
        complete, loss = self.complementation[level](rgb, features, present)
        return self.attention[level](rgb, complete), loss
