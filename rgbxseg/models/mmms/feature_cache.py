"""Feature cache for the black-box backbone: the ViT runs once per image, ever (SPEC 6).

Two levels, both keyed by ``sha256(backbone id, image shape, image bytes)``:

- memory: an LRU of the last ``capacity`` images (an annotator going back and forth between images);
- disk (optional): one safetensors file per image under ``directory/<backbone id>/``, written atomically,
  stored in float16 (half the size). Freshly computed features get the same rounding, so a cache hit and a
  miss return identical tensors.

``rgbxseg extract-features`` fills the disk level for a whole dataset ahead of time.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from rgbxseg.atomic import atomic_path
from rgbxseg.errors import DataError
from rgbxseg.models.mmms.backbone import FeatureBackbone


def image_key(backbone_id: str, image: Tensor) -> str:
    """Hex sha256 identifying the features of ``image`` (3×H×W float) under ``backbone_id``."""
    digest = hashlib.sha256(f"{backbone_id}|{tuple(image.shape)}|".encode())
    digest.update(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Memory-LRU + on-disk store of backbone features, computing them on a miss.

    Args:
        backbone: the frozen backbone whose features are cached.
        directory: folder of the disk store (``None``: memory only).
        capacity: images kept in memory.
    """

    def __init__(self, backbone: FeatureBackbone, directory: str | Path | None = None, capacity: int = 8) -> None:
        if capacity < 1:
            raise ValueError(f"FeatureCache: capacity must be >= 1, got {capacity}")
        self.backbone = backbone
        self.directory = Path(directory) / backbone.backbone_id if directory is not None else None
        self.capacity = capacity
        self._memory: OrderedDict[str, list[Tensor]] = OrderedDict()
        self.hits = {"memory": 0, "disk": 0, "computed": 0}

    def path(self, key: str) -> Path | None:
        return self.directory / f"{key}.safetensors" if self.directory is not None else None

    def features(self, image: Tensor) -> list[Tensor]:
        """Backbone features of one image (3×H×W in [0, 1]) as four 1×D×h×w float32 maps."""
        key = image_key(self.backbone.backbone_id, image)
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits["memory"] += 1
            return self._memory[key]
        maps = self._read(key)
        if maps is None:
            # rounded through float16 like the disk copy, so a hit and a miss give identical features
            maps = [m.to(torch.float16).float() for m in self.backbone(image.unsqueeze(0))]
            self._write(key, maps)
            self.hits["computed"] += 1
        else:
            self.hits["disk"] += 1
        self._remember(key, maps)
        return maps

    def contains(self, image: Tensor) -> bool:
        key = image_key(self.backbone.backbone_id, image)
        path = self.path(key)
        return key in self._memory or (path is not None and path.is_file())

    def _remember(self, key: str, maps: list[Tensor]) -> None:
        self._memory[key] = maps
        while len(self._memory) > self.capacity:
            self._memory.popitem(last=False)

    def _read(self, key: str) -> list[Tensor] | None:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            stored = load_file(path)
        except (SafetensorError, OSError) as error:
            raise DataError(f"{path}: unreadable cached features ({error}); delete the file to recompute") from error
        return [stored[f"block{i}"].float() for i in range(len(stored))]

    def _write(self, key: str, maps: list[Tensor]) -> None:
        path = self.path(key)
        if path is None:
            return
        tensors = {f"block{i}": m.to("cpu", torch.float16).contiguous() for i, m in enumerate(maps)}
        with atomic_path(path) as tmp:
            save_file(tensors, tmp)
