"""MMMSEngine: the backbone, its feature cache and a trained MMMSNet behind two calls, the way SAM's
predictor is shaped (SPEC 6, 8):

- :meth:`MMMSEngine.embed` — once per image: resize to the network size, backbone features (cached),
  ParallelFPN, MMFuser with whatever modalities are present, CSNet's per-image projections;
- :meth:`MMMSEngine.predict` — per click: click disks + previous mask → MSPatchEmbed → CSNet → probability
  map at the image's own resolution.

As in SAM, every image is resized so that its long side is ``long_side`` (448 by default, a multiple of the
ViT patch 14) and zero-padded to a ``long_side``² square: one network shape for all images. Clicks are given
in the image's own pixel coordinates and drawn as 5 px disks at the network resolution (RITM's convention).

Two inference-time options (measured against NoC in ``benchmarks/mmms_inference_options.py``):

- ``refine``: edge-aware refinement of each predicted map (:mod:`rgbxseg.interactive.refine`: ``"guided"``
  filter or ``"grabcut"``). :meth:`MMMSEngine.from_weights` — the engine of the CLI and the annotator —
  refines with :data:`DEFAULT_REFINE` (``"grabcut"``: NoC@90 on GrabCut / Berkeley 15.8 → 6.1 / 19.0 → 10.6
  with the head of 2026-11-21, 4.94 → 3.20 / 10.21 → 7.45 with the head of 2026-12-05, ~20 ms per click); the constructor's default is the head alone (``"none"``),
  which is also what to evaluate when the head itself is measured (training curves);
- ``zoom``: from the 2nd click of an object on, predict on a crop around it (:mod:`rgbxseg.interactive.zoom`);
  the crop's embedding is cached in the image's :class:`ImageEmbedding`, and ``embedding.zoom.last`` says
  whether a click kept the crop or moved it (a moved crop runs the backbone again). Off by default: it helps
  on Berkeley and not on GrabCut with the shipped weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rgbxseg.errors import DataError
from rgbxseg.interactive.click_simulator import CLICK_RADIUS, Click, click_maps
from rgbxseg.interactive.onnx_head import onnx_click_head
from rgbxseg.interactive.refine import Refiner, make_refiner
from rgbxseg.interactive.zoom import CropBox, ZoomIn, ZoomState, ZoomStep, paste
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
#: the refinement of :meth:`MMMSEngine.from_weights`: clearly better than none on both GrabCut and Berkeley
#: (module docstring of :mod:`rgbxseg.interactive.refine`, ``benchmarks/mmms_inference_options.py``)
DEFAULT_REFINE = "grabcut"


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
    With zoom on, the engine also keeps the image (``source``: 3×H×W float, ``source_modalities``: C×H×W maps)
    to embed crops of it, and the zoom state (current crop, cached crop embeddings, last step) in ``zoom``;
    with a refinement on, the image as H×W×3 uint8 RGB in ``rgb8``.
    """

    prepared: list[Tensor]
    image_size: tuple[int, int]
    valid_size: tuple[int, int]
    side: int
    modalities: tuple[str, ...]
    source: Tensor | None = field(default=None, repr=False, compare=False)
    source_modalities: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)
    rgb8: np.ndarray | None = field(default=None, repr=False, compare=False)
    zoom: ZoomState = field(default_factory=ZoomState, repr=False, compare=False)


def as_rgb8(rgb: Tensor) -> np.ndarray:
    """3×H×W float in [0, 1] → H×W×3 uint8 RGB (what the refiners read)."""
    array = rgb.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255
    return np.ascontiguousarray(array.round().astype(np.uint8))


class MMMSEngine:
    """A trained :class:`MMMSNet` with its frozen backbone and feature cache.

    Args:
        net: the trainable MMMS part (weights loaded).
        backbone: the frozen ViT (or any :class:`FeatureBackbone`); also reachable as ``cache.backbone``.
        cache: feature cache (default: in memory, 8 images).
        long_side: network size of the image's long side.
        device: where the net runs (the backbone's own device is its business).
        runtime: where the per-click path runs (:data:`RUNTIMES`).
        refine: edge-aware refinement of each prediction: ``"none"`` (default here: the head alone),
            ``"guided"``, ``"grabcut"`` (:data:`rgbxseg.interactive.refine.REFINES`) or a refiner object.
        zoom: predict on a crop around the object from the 2nd click on: ``True`` (RITM's settings,
            :class:`~rgbxseg.interactive.zoom.ZoomIn`), a ``ZoomIn`` or ``False``.
    """

    def __init__(
        self,
        net: MMMSNet,
        backbone: FeatureBackbone,
        cache: FeatureCache | None = None,
        long_side: int = LONG_SIDE,
        device: str | torch.device = "cpu",
        runtime: str = "torch",
        refine: str | Refiner | None = "none",
        zoom: bool | ZoomIn = False,
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
        self.refiner = make_refiner(refine)
        self.zoom: ZoomIn | None = ZoomIn() if zoom is True else (zoom or None)

    @classmethod
    def from_weights(
        cls,
        weights: str | Path = "vit_s14",
        cache_dir: str | Path | None = None,
        long_side: int = LONG_SIDE,
        device: str | torch.device = "cpu",
        runtime: str = "auto",
        refine: str | Refiner | None = DEFAULT_REFINE,
        zoom: bool | ZoomIn = False,
    ) -> MMMSEngine:
        """The engine of a weights file (or of the weights shipped in the package) on the DINOv2 ViT-S/14
        backbone, with a feature cache in memory and, given ``cache_dir``, on disk. ``runtime`` ``auto``
        runs the click path on ONNX Runtime on a CPU and in PyTorch on a GPU; ``refine`` (default
        :data:`DEFAULT_REFINE`; ``"none"`` for the head alone) and ``zoom``: see the class."""
        net = load_mmms(weights_file(weights))
        backbone = Dinov2Backbone().to(device)
        return cls(net, backbone, FeatureCache(backbone, cache_dir), long_side, device, runtime, refine, zoom)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.net.config.modalities)

    @torch.no_grad()
    def embed(
        self, image: np.ndarray | Tensor, modalities: Mapping[str, np.ndarray | Tensor] | None = None
    ) -> ImageEmbedding:
        """Once per image: backbone features (cached) + ParallelFPN + MMFuser + CSNet projections."""
        rgb = as_image_tensor(image)
        size = (int(rgb.shape[-2]), int(rgb.shape[-1]))
        unknown = set(modalities or {}) - set(self.modalities)
        if unknown:
            known = ", ".join(self.modalities) or "none (RGB-only model)"
            raise DataError(f"unknown modalities {sorted(unknown)}; this model knows: {known}")
        extra = {name: as_modality_tensor(name, value, size) for name, value in (modalities or {}).items()}
        square = network_input(rgb, self.long_side)
        embedding = self._encode(square, size, extra, self.cache.features(square))
        if self.zoom is not None:
            embedding.source, embedding.source_modalities = rgb, extra
        if self.refiner is not None:
            embedding.rgb8 = as_rgb8(rgb)
        return embedding

    def _encode(
        self, square: Tensor, size: tuple[int, int], extra: Mapping[str, Tensor], tokens: list[Tensor]
    ) -> ImageEmbedding:
        """The embedding of an image of ``size`` from its network input ``square`` (3×S×S), its modalities
        at ``size`` (C×H×W) and the backbone tokens of ``square``."""
        side, valid = self.long_side, resized_size(*size, self.long_side)
        nets = {name: _pad_square(_resize(value, valid), side)[None].to(self.device) for name, value in extra.items()}
        stem = {"image": square[None].to(self.device)} if getattr(self.net, "stem", None) is not None else {}
        prepared = self.net.encode([t.to(self.device) for t in tokens], (side, side), nets, **stem)
        return ImageEmbedding(prepared, size, valid, side, tuple(sorted(extra)))

    @torch.no_grad()
    def embed_crop(self, embedding: ImageEmbedding, box: CropBox) -> ImageEmbedding:
        """The embedding of the crop ``box`` of an image embedded with zoom on, as if the crop were an image
        (resized to the network size). The backbone runs directly, not through the feature cache: crops are
        many and short-lived; the image's :class:`ZoomState` keeps the few that are reused."""
        if embedding.source is None:
            raise ValueError("this embedding has no image to crop: embed it with an engine that has zoom on")
        rows, cols = box.slices
        crop = embedding.source[:, rows, cols]
        extra = {name: value[:, rows, cols] for name, value in embedding.source_modalities.items()}
        square = network_input(crop, self.long_side)
        # rounded through float16 as the feature cache does, so a crop and a whole image are treated alike
        tokens = [t.to(torch.float16).float() for t in self.backbone(square.unsqueeze(0))]
        return self._encode(square, (box.height, box.width), extra, tokens)

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
        """Per click: probability (H×W float32 at the image's resolution) that a pixel is the clicked surface.

        With zoom on (and an embedding made with it), the prediction runs on the crop the zoom chooses and
        ``embedding.zoom.last`` records the step; with a refinement on, the map is refined last."""
        start = time.perf_counter()
        if self.zoom is not None and embedding.source is not None:
            probability, step = self._predict_zoomed(embedding, clicks, previous)
        else:
            probability, step = self._predict(embedding, clicks, previous), None
        if self.refiner is not None and clicks:
            if embedding.rgb8 is None and embedding.source is not None:
                embedding.rgb8 = as_rgb8(embedding.source)
            if embedding.rgb8 is not None:  # else embedded before the refinement was switched on: none
                probability = self.refiner(probability, embedding.rgb8, clicks).astype(np.float32, copy=False)
        if step is not None:
            embedding.zoom.last = ZoomStep(step.box, step.kind, step.backbone, time.perf_counter() - start)
        return probability

    @torch.no_grad()
    def _predict(self, embedding: ImageEmbedding, clicks: Sequence[Click], previous: np.ndarray | None) -> np.ndarray:
        """The head's probability on ``embedding`` (a whole image or a crop's own embedding)."""
        logits = self.click(embedding.prepared, self.interaction(embedding, clicks, previous))[0].to(self.device)
        valid_h, valid_w = embedding.valid_size
        logits = _resize(logits[:, :valid_h, :valid_w], embedding.image_size)
        return torch.sigmoid(logits)[0].float().cpu().numpy()

    def _predict_zoomed(
        self, embedding: ImageEmbedding, clicks: Sequence[Click], previous: np.ndarray | None
    ) -> tuple[np.ndarray, ZoomStep]:
        """Zoom-in (:mod:`rgbxseg.interactive.zoom`): choose the crop, embed it unless cached, predict there
        with the clicks and the previous mask in crop coordinates, paste into an all-zero map."""
        assert self.zoom is not None
        state, size = embedding.zoom, embedding.image_size
        if previous is not None and previous.shape != size:
            raise DataError(f"previous mask {previous.shape} does not match the image {size[0]}×{size[1]}")
        if previous is None or len(clicks) <= self.zoom.skip_clicks:
            state.box = None  # a new object (or its first clicks): start from the full image
        box = self.zoom.choose(state.box, previous, clicks, size)
        kind = "full" if box is None else ("kept" if box == state.box else "moved")
        state.box = box
        if box is None:
            return self._predict(embedding, clicks, previous), ZoomStep(None, kind, False)
        crop, computed = state.crop(box, lambda b: self.embed_crop(embedding, b), self.zoom.capacity)
        inside = [box.to_crop(c) for c in clicks if box.holds(c)]  # negatives outside: 0 there already
        crop_previous = None if previous is None else previous[box.slices]
        return paste(self._predict(crop, inside, crop_previous), box, size), ZoomStep(box, kind, computed)
