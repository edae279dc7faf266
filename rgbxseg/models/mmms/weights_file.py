"""MMMS weights on disk: one safetensors file (float16 by default) with the :class:`MMMSConfig` as JSON in
its metadata, so a file alone rebuilds its network. Written atomically; read without pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from rgbxseg.atomic import atomic_path
from rgbxseg.errors import DataError
from rgbxseg.models.mmms.model import MMMSConfig, MMMSNet

FORMAT = "rgbxseg-mmms-1"


def save_mmms(net: MMMSNet, path: str | Path, dtype: torch.dtype = torch.float16, **metadata: Any) -> None:
    """Write ``net``'s parameters and buffers (floats cast to ``dtype``) + its config; ``metadata`` is stored as
    JSON strings (e.g. how the weights were trained)."""
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in net.state_dict().items()
    }
    meta = {"format": FORMAT, "config": json.dumps(net.config.to_dict())} | {
        k: json.dumps(v) for k, v in metadata.items()
    }
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of an MMMS weights file (``config`` and whatever :func:`save_mmms` was given)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise DataError(f"{path}: unreadable MMMS weights ({error})") from error
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: not an MMMS weights file (format {meta.get('format')!r}, expected {FORMAT!r})")
    return {k: json.loads(v) for k, v in meta.items() if k != "format"}


def load_mmms(path: str | Path) -> MMMSNet:
    """Rebuild the network stored in ``path`` (float32) and load its weights strictly."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: MMMS weights file not found")
    config = MMMSConfig.from_dict(read_metadata(path)["config"])
    net = MMMSNet(config)
    with safe_open(str(path), framework="pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    expected = net.state_dict()
    if set(state) != set(expected):
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise DataError(
            f"{path}: weights do not match the stored config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    return net.eval()


def load_matching(net: MMMSNet, path: str | Path) -> list[str]:
    """Start ``net`` from another weights file: load every tensor of the file that ``net`` has (cast to the
    net's dtype; tensors ``net`` lacks, e.g. the fuser of another modality, are skipped) and return the names
    of ``net``'s tensors left as initialised — e.g. the MMFuser of modalities the file has not seen, whose
    zero-initialised CrossBlocks then leave the file's RGB behaviour unchanged.

    Raises:
        DataError: ``path`` is missing or not an MMMS weights file, or a shared tensor has another shape
            (another pyramid, CSNet or decoder size).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: MMMS weights file not found")
    read_metadata(path)  # the format check
    expected = net.state_dict()
    with safe_open(str(path), framework="pt") as handle:
        state = {k: handle.get_tensor(k) for k in handle.keys() if k in expected}  # noqa: SIM118
    mismatched = [k for k, v in state.items() if v.shape != expected[k].shape]
    if mismatched:
        raise DataError(
            f"{path}: {len(mismatched)} tensors have another shape than the network's (e.g. {mismatched[:3]}): "
            "the file was trained with other channels, widths, depths or decoder size"
        )
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)
    return sorted(set(expected) - set(state))
