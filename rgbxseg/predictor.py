"""Run a trained segmenter on images: ``Predictor(model).predict(image, modalities)``.

A :class:`Prediction` holds class ids, softmax probabilities and a per-pixel uncertainty (the normalised
entropy of :func:`rgbxseg.uncertainty.entropy_map`). A temperature fitted with
:mod:`rgbxseg.temperature` (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017) calibrates
the probabilities and the uncertainty; the labels never depend on it.

Also :func:`load_trained`, which rebuilds a model from an rgbxseg checkpoint (its config, classes and
modalities travel inside the checkpoint, read with ``weights_only=True``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rgbxseg.config import parse_config
from rgbxseg.engine.checkpoint import load_checkpoint
from rgbxseg.engine.inference import predict_logits
from rgbxseg.models import create_model
from rgbxseg.temperature import check_temperature
from rgbxseg.uncertainty import entropy_map


@dataclass
class Trained:
    """A model restored from a checkpoint, with what is needed to use it."""

    model: nn.Module
    classes: tuple[str, ...]
    modality_channels: dict[str, int]


def load_trained(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> Trained:
    """Rebuild the model of an rgbxseg training checkpoint and load its weights."""
    return trained_from_checkpoint(load_checkpoint(checkpoint_path), checkpoint_path, device)


def trained_from_checkpoint(
    checkpoint: Mapping[str, Any], source: str | Path = "<checkpoint>", device: str | torch.device = "cpu"
) -> Trained:
    """:func:`load_trained` for a checkpoint already read with :func:`~rgbxseg.engine.checkpoint.load_checkpoint`
    (``source`` names it in errors)."""
    cfg = parse_config(checkpoint["config"], source)
    classes = tuple(checkpoint["classes"])
    modality_channels = dict(checkpoint["modality_channels"])
    model = create_model(
        cfg.model.name,
        cfg.model.num_classes or len(classes),
        encoder=cfg.model.encoder,
        pretrained=False,
        modalities=modality_channels,
        thing_classes=checkpoint.get("thing_classes", ()),
        **cfg.model.options,
    )
    model.load_state_dict(checkpoint["model"])
    return Trained(model.to(device).eval(), classes, modality_channels)


@dataclass
class Prediction:
    """One image's prediction; ``probabilities`` and ``uncertainty`` use the predictor's temperature."""

    labels: np.ndarray  # H×W int64 class ids (argmax of the logits, whatever the temperature)
    probabilities: np.ndarray  # K×H×W float32 softmax(logits / T)
    uncertainty: np.ndarray  # H×W float32 in [0, 1]: entropy of the probabilities / log K (1 = classes tie)


class Predictor:
    """Inference on single images (numpy H×W×3 in [0, 1] or uint8, modalities H×W×C).

    Args:
        model: a trained rgbxseg segmenter (any model of :data:`rgbxseg.models.MODELS`).
        device: where to run (default: CUDA when available).
        mode, window, stride, flip: whole-image or sliding-window inference and flip TTA.
        temperature: T > 0 dividing the logits before the softmax (e.g. from
            :func:`rgbxseg.temperature.fit_temperature`); changes probabilities and uncertainty, never labels.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device | None = None,
        mode: str = "whole",
        window: tuple[int, int] = (512, 512),
        stride: tuple[int, int] = (341, 341),
        flip: bool = False,
        temperature: float = 1.0,
    ) -> None:
        self.temperature = check_temperature(temperature)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.mode, self.window, self.stride, self.flip = mode, window, stride, flip

    @staticmethod
    def _tensor(array: np.ndarray) -> torch.Tensor:
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[..., None]
        scale = 255.0 if array.dtype == np.uint8 else 1.0
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32) / scale)[None]

    def predict(self, image: np.ndarray, modalities: Mapping[str, np.ndarray] | None = None) -> Prediction:
        """Class ids, probabilities and uncertainty for one image; absent modalities are simply left out."""
        x = self._tensor(image).to(self.device)
        mods = {k: self._tensor(v).to(self.device) for k, v in (modalities or {}).items()}
        logits = predict_logits(self.model, x, mods, self.mode, self.window, self.stride, self.flip)[0]
        scaled = logits / self.temperature
        return Prediction(
            labels=logits.argmax(0).cpu().numpy().astype(np.int64),
            probabilities=scaled.softmax(0).cpu().numpy(),
            uncertainty=entropy_map(scaled).cpu().numpy(),
        )
