"""Checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint holds the model, optimizer and progress counters, the RNG states (torch, Python,
numpy — the numpy state stored as tensors so that it loads with ``weights_only=True``) and the
config as plain data. It is written to a temporary file and renamed, so a run killed mid-write
leaves the previous checkpoint intact. Loading always uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rgbxseg.atomic import atomic_path
from rgbxseg.errors import ConfigError


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "cached": cached},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` (plus the current RNG states) to ``path``."""
    with atomic_path(path) as tmp:
        torch.save({**payload, "rng": rng_state()}, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a clear error for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a corrupt or non-checkpoint file
        raise ConfigError(f"{path}: not a readable rgbxseg checkpoint ({error})") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "config" not in checkpoint:
        raise ConfigError(f"{path}: not an rgbxseg checkpoint (no model/config entries)")
    return checkpoint
