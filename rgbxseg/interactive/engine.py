"""MMMSEngine: the backbone, its feature cache and a trained MMMSNet behind two calls, the way SAM's
predictor is shaped (SPEC 6, 8):

- :meth:`MMMSEngine.embed` — once per image: resize to the network size, backbone features (cached),
  ParallelFPN, MMFuser with whatever modalities are present, CSNet's per-image projections;
- :meth:`MMMSEngine.predict` — per click: click disks + previous mask → MSPatchEmbed → CSNet → probability
  map at the image's own resolution.

Images are resized so that the long side is ``long_side`` (448 by default) with both sides multiples of the
ViT patch (14); clicks are given in the image's own pixel coordinates and drawn as 5 px disks at the network
resolution (RITM's convention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rgbxseg.errors import DataError
from rgbxseg.interactive.click_simulator import CLICK_RADIUS, Click, click_maps
from rgbxseg.models.mmms.backbone import Dinov2Backbone, FeatureBackbone
from rgbxseg.models.mmms.feature_cache import FeatureCache
from rgbxseg.models.mmms.model import MMMSNet
from rgbxseg.models.mmms.weights_file import load_mmms

LONG_SIDE = 448
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: weights shipped inside the package: name → file in rgbxseg/weights/
SHIPPED_WEIGHTS = {"vit_s14": "mmms_vits14.safetensors"}


def weights_file(weights: str | Path) -> Path:
    """A shipped weights name (:data:`SHIPPED_WEIGHTS`) or a path → the file, with a clear error if absent."""
    if str(weights) in SHIPPED_WEIGHTS:
        path = WEIGHTS_DIR / SHIPPED_WEIGHTS[str(weights)]
        if not path.is_file():
            raise DataError(f"{path}: the shipped MMMS weights are missing from this installation; reinstall rgbxseg")
        return path
    path = Path(weights)
    if not path.is_file():
        raise DataError(f"{path}: MMMS weights file not found (or use a shipped name: {', '.join(SHIPPED_WEIGHTS)})")
    return path


def network_size(height: int, width: int, long_side: int = LONG_SIDE, multiple: int = 14) -> tuple[int, int]:
    """Network input size for an H×W image: long side ≈ ``long_side``, both sides multiples of ``multiple``."""
    scale = long_side / max(height, width)
    return tuple(max(multiple, round(side * scale / multiple) * multiple) for side in (height, width))  # type: ignore[return-value]


def network_input(image: Tensor, long_side: int = LONG_SIDE, multiple: int = 14) -> Tensor:
    """The 3×H'×W' image the backbone sees: resized to :func:`network_size` (what the feature cache keys)."""
    size = network_size(*image.shape[-2:], long_side=long_side, multiple=multiple)
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0].clamp(0, 1)


def as_image_tensor(image: np.ndarray | Tensor) -> Tensor:
    """RGB image → 3×H×W float32 in [0, 1]: numpy H×W×3 (uint8, or float in [0, 1]) or torch 3×H×W float."""
    if isinstance(image, Tensor):
        tensor = image.float()
    else:
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3:
            raise DataError(f"expected an H×W×3 RGB image, got an array of shape {array.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()
        if array.dtype == np.uint8:
            tensor = tensor / 255.0
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise DataError(f"expected a 3×H×W RGB tensor, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise DataError("the image contains NaN or inf values")
    return tensor


def as_modality_tensor(name: str, value: np.ndarray | Tensor, size: tuple[int, int]) -> Tensor:
    """A modality map → C×H×W float32: numpy H×W or H×W×C (dataset layout on disk) or torch C×H×W."""
    if isinstance(value, Tensor):
        tensor = value.float()
        tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor
    else:
        array = np.asarray(value, dtype=np.float32)
        array = array[..., None] if array.ndim == 2 else array
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1) if array.ndim == 3 else None
    if tensor is None or tensor.ndim != 3 or tuple(tensor.shape[-2:]) != size:
        shape = tuple(value.shape)
        raise DataError(f"modality '{name}': shape {shape} does not match the image size {size[0]}×{size[1]}")
    if not torch.isfinite(tensor).all():
        raise DataError(f"modality '{name}' contains NaN or inf values")
    return tensor


@dataclass
class ImageEmbedding:
    """Everything computed once per image; :meth:`MMMSEngine.predict` only reads it."""

    prepared: list[Tensor]
    image_size: tuple[int, int]
    input_size: tuple[int, int]
    modalities: tuple[str, ...]


class MMMSEngine:
    """A trained :class:`MMMSNet` with its frozen backbone and feature cache.

    Args:
        net: the trainable MMMS part (weights loaded).
        backbone: the frozen ViT (or any :class:`FeatureBackbone`); also reachable as ``cache.backbone``.
        cache: feature cache (default: in memory, 8 images).
        long_side: network size of the image's long side.
        device: where the net runs (the backbone's own device is its business).
    """

    def __init__(
        self,
        net: MMMSNet,
        backbone: FeatureBackbone,
        cache: FeatureCache | None = None,
        long_side: int = LONG_SIDE,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.backbone = backbone
        self.cache = cache or FeatureCache(backbone)
        self.long_side = long_side

    @classmethod
    def from_weights(
        cls,
        weights: str | Path = "vit_s14",
        cache_dir: str | Path | None = None,
        long_side: int = LONG_SIDE,
        device: str | torch.device = "cpu",
    ) -> MMMSEngine:
        """The engine of a weights file (or of the weights shipped in the package) on the DINOv2 ViT-S/14
        backbone, with a feature cache in memory and, given ``cache_dir``, on disk."""
        net = load_mmms(weights_file(weights))
        backbone = Dinov2Backbone().to(device)
        return cls(net, backbone, FeatureCache(backbone, cache_dir), long_side, device)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.net.config.modalities)

    @torch.no_grad()
    def embed(
        self, image: np.ndarray | Tensor, modalities: Mapping[str, np.ndarray | Tensor] | None = None
    ) -> ImageEmbedding:
        """Once per image: backbone features (cached) + ParallelFPN + MMFuser + CSNet projections."""
        rgb = as_image_tensor(image)
        size = tuple(rgb.shape[-2:])
        unknown = set(modalities or {}) - set(self.modalities)
        if unknown:
            known = ", ".join(self.modalities) or "none (RGB-only model)"
            raise DataError(f"unknown modalities {sorted(unknown)}; this model knows: {known}")
        resized = network_input(rgb, self.long_side, self.backbone.patch_size)
        input_size = tuple(resized.shape[-2:])
        tokens = [t.to(self.device) for t in self.cache.features(resized)]
        extra = {
            name: F.interpolate(
                as_modality_tensor(name, value, size)[None], size=input_size, mode="bilinear", align_corners=False
            ).to(self.device)
            for name, value in (modalities or {}).items()
        }
        prepared = self.net.encode(tokens, input_size, extra)
        return ImageEmbedding(prepared, size, input_size, tuple(sorted(extra)))

    def interaction(self, embedding: ImageEmbedding, clicks: Sequence[Click], previous: np.ndarray | None) -> Tensor:
        """1×3×H'×W' network input: positive disks, negative disks, previous mask (all at network size)."""
        (height, width), (net_h, net_w) = embedding.image_size, embedding.input_size
        scaled = [
            Click(
                min(net_h - 1, max(0, round((c.y + 0.5) * net_h / height - 0.5))),
                min(net_w - 1, max(0, round((c.x + 0.5) * net_w / width - 0.5))),
                c.positive,
            )
            for c in clicks
        ]
        disks = torch.from_numpy(click_maps(scaled, (net_h, net_w), CLICK_RADIUS))
        if previous is None:
            mask = torch.zeros(1, 1, net_h, net_w)
        else:
            if previous.shape != (height, width):
                raise DataError(f"previous mask {previous.shape} does not match the image {height}×{width}")
            mask = torch.from_numpy(np.ascontiguousarray(previous, dtype=np.float32))[None, None]
            mask = F.interpolate(mask, size=(net_h, net_w), mode="bilinear", align_corners=False)
        return torch.cat([disks[None], mask], dim=1).to(self.device)

    @torch.no_grad()
    def predict(
        self, embedding: ImageEmbedding, clicks: Sequence[Click], previous: np.ndarray | None = None
    ) -> np.ndarray:
        """Per click: probability (H×W float32 at the image's resolution) that a pixel is the clicked surface."""
        logits = self.net.click(embedding.prepared, self.interaction(embedding, clicks, previous))
        logits = F.interpolate(logits, size=embedding.image_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)[0, 0].float().cpu().numpy()
