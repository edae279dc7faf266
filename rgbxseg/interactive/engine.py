"""MMMSEngine: the backbone, its feature cache and a trained MMMSNet behind two calls, the way SAM's
predictor is shaped (SPEC 6, 8):

- :meth:`MMMSEngine.embed` — once per image: resize to the network size, backbone features (cached),
  ParallelFPN, MMFuser with whatever modalities are present, CSNet's per-image projections;
- :meth:`MMMSEngine.predict` — per click: click disks + previous mask → MSPatchEmbed → CSNet → probability
  map at the image's own resolution.

As in SAM, every image is resized so that its long side is ``long_side`` (448 by default, a multiple of the
ViT patch 14) and zero-padded to a ``long_side``² square: one network shape for all images. Clicks are given
in the image's own pixel coordinates and drawn as 5 px disks at the network resolution (RITM's convention).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rgbxseg.errors import DataError
from rgbxseg.interactive.click_simulator import CLICK_RADIUS, Click, click_maps
from rgbxseg.interactive.onnx_head import onnx_click_head
from rgbxseg.models.mmms.backbone import Dinov2Backbone, FeatureBackbone
from rgbxseg.models.mmms.feature_cache import FeatureCache
from rgbxseg.models.mmms.model import MMMSNet
from rgbxseg.models.mmms.weights_file import load_mmms

LONG_SIDE = 448
#: where the per-click path runs: eager PyTorch, ONNX Runtime, or auto (ONNX Runtime on CPU)
RUNTIMES = ("torch", "onnx", "auto")
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


def resized_size(height: int, width: int, long_side: int = LONG_SIDE) -> tuple[int, int]:
    """Size of an H×W image scaled so that its long side is ``long_side`` (aspect kept)."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]


def _pad_square(x: Tensor, side: int) -> Tensor:
    """C×h×w → C×side×side, zeros below and to the right (SAM's layout)."""
    return F.pad(x, (0, side - x.shape[-1], 0, side - x.shape[-2]))


def network_input(image: Tensor, long_side: int = LONG_SIDE) -> Tensor:
    """The ``long_side``² image the backbone sees (what the feature cache keys): the 3×H×W image resized to
    :func:`resized_size` and zero-padded to a square, as SAM does — one fixed network shape for every image."""
    return _pad_square(_resize(image, resized_size(*image.shape[-2:], long_side)).clamp(0, 1), long_side)


def as_image_tensor(image: np.ndarray | Tensor) -> Tensor:
    """RGB image → 3×H×W float32 in [0, 1]: numpy H×W×3 (uint8, or float in [0, 1]) or torch 3×H×W float."""
    if isinstance(image, Tensor):
        tensor = image.float()
    else:
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3:
            raise DataError(f"expected an H×W×3 RGB image, got an array of shape {array.shape}")
        tensor = torch.tensor(array).permute(2, 0, 1).float()  # a copy: PIL's arrays are read-only
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
    """Everything computed once per image; :meth:`MMMSEngine.predict` only reads it.

    ``image_size`` is the image's own H×W, ``valid_size`` the part of the ``side``² network input it covers.
    """

    prepared: list[Tensor]
    image_size: tuple[int, int]
    valid_size: tuple[int, int]
    side: int
    modalities: tuple[str, ...]


class MMMSEngine:
    """A trained :class:`MMMSNet` with its frozen backbone and feature cache.

    Args:
        net: the trainable MMMS part (weights loaded).
        backbone: the frozen ViT (or any :class:`FeatureBackbone`); also reachable as ``cache.backbone``.
        cache: feature cache (default: in memory, 8 images).
        long_side: network size of the image's long side.
        device: where the net runs (the backbone's own device is its business).
        runtime: where the per-click path runs (:data:`RUNTIMES`).
    """

    def __init__(
        self,
        net: MMMSNet,
        backbone: FeatureBackbone,
        cache: FeatureCache | None = None,
        long_side: int = LONG_SIDE,
        device: str | torch.device = "cpu",
        runtime: str = "torch",
    ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if long_side % backbone.patch_size:
            raise ValueError(f"long_side must be a multiple of the backbone's patch size {backbone.patch_size}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.backbone = backbone
        self.cache = cache or FeatureCache(backbone)
        self.long_side = long_side
        use_onnx = runtime == "onnx" or (runtime == "auto" and self.device.type == "cpu")
        self.click: Callable[[list[Tensor], Tensor], Tensor] = (
            onnx_click_head(self.net, long_side) if use_onnx else self.net.click
        )
        self.runtime = "onnx" if use_onnx else "torch"

    @classmethod
    def from_weights(
        cls,
        weights: str | Path = "vit_s14",
        cache_dir: str | Path | None = None,
        long_side: int = LONG_SIDE,
        device: str | torch.device = "cpu",
        runtime: str = "auto",
    ) -> MMMSEngine:
        """The engine of a weights file (or of the weights shipped in the package) on the DINOv2 ViT-S/14
        backbone, with a feature cache in memory and, given ``cache_dir``, on disk. ``runtime`` ``auto``
        runs the click path on ONNX Runtime on a CPU and in PyTorch on a GPU."""
        net = load_mmms(weights_file(weights))
        backbone = Dinov2Backbone().to(device)
        return cls(net, backbone, FeatureCache(backbone, cache_dir), long_side, device, runtime)

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
        side, valid = self.long_side, resized_size(*size, self.long_side)
        tokens = [t.to(self.device) for t in self.cache.features(network_input(rgb, side))]
        extra = {
            name: _pad_square(_resize(as_modality_tensor(name, value, size), valid), side)[None].to(self.device)
            for name, value in (modalities or {}).items()
        }
        prepared = self.net.encode(tokens, (side, side), extra)
        return ImageEmbedding(prepared, size, valid, side, tuple(sorted(extra)))

    def interaction(self, embedding: ImageEmbedding, clicks: Sequence[Click], previous: np.ndarray | None) -> Tensor:
        """1×3×S×S network input: positive disks, negative disks, previous mask (all at network resolution)."""
        (height, width), (valid_h, valid_w), side = embedding.image_size, embedding.valid_size, embedding.side
        scaled = [
            Click(
                min(valid_h - 1, max(0, round((c.y + 0.5) * valid_h / height - 0.5))),
                min(valid_w - 1, max(0, round((c.x + 0.5) * valid_w / width - 0.5))),
                c.positive,
            )
            for c in clicks
        ]
        disks = torch.from_numpy(click_maps(scaled, (side, side), CLICK_RADIUS))
        if previous is None:
            mask = torch.zeros(1, side, side)
        else:
            if previous.shape != (height, width):
                raise DataError(f"previous mask {previous.shape} does not match the image {height}×{width}")
            mask = torch.from_numpy(np.ascontiguousarray(previous, dtype=np.float32))[None]
            mask = _pad_square(_resize(mask, (valid_h, valid_w)), side)
        return torch.cat([disks, mask])[None].to(self.device)

    @torch.no_grad()
    def predict(
        self, embedding: ImageEmbedding, clicks: Sequence[Click], previous: np.ndarray | None = None
    ) -> np.ndarray:
        """Per click: probability (H×W float32 at the image's resolution) that a pixel is the clicked surface."""
        logits = self.click(embedding.prepared, self.interaction(embedding, clicks, previous))[0].to(self.device)
        valid_h, valid_w = embedding.valid_size
        logits = _resize(logits[:, :valid_h, :valid_w], embedding.image_size)
        return torch.sigmoid(logits)[0].float().cpu().numpy()
