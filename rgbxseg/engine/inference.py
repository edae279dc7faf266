"""Inference on whole images or with a sliding window, optionally with horizontal-flip TTA."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


def _forward(
    model: nn.Module, image: Tensor, modalities: Mapping[str, Tensor], flip: bool, present: Mapping[str, Tensor] | None
) -> Tensor:
    logits = model(image, modalities, present).float()
    if flip:
        flipped = {k: v.flip(-1) for k, v in modalities.items()}
        logits = logits + model(image.flip(-1), flipped, present).float().flip(-1)
        logits = logits / 2
    return logits


def _starts(size: int, window: int, stride: int) -> list[int]:
    if size <= window:
        return [0]
    starts = list(range(0, size - window, stride))
    return starts + [size - window]


def sliding_window(
    model: nn.Module,
    image: Tensor,
    modalities: Mapping[str, Tensor],
    window: tuple[int, int],
    stride: tuple[int, int],
    flip: bool,
    present: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Average the logits of overlapping windows (the last window of a row/column is aligned to the
    border, so every pixel is covered and no padding is needed)."""
    b, _, h, w = image.shape
    total: Tensor | None = None
    counts = image.new_zeros(1, 1, h, w)
    for y in _starts(h, window[0], stride[0]):
        for x in _starts(w, window[1], stride[1]):
            crop = (slice(None), slice(None), slice(y, y + window[0]), slice(x, x + window[1]))
            logits = _forward(model, image[crop], {k: v[crop] for k, v in modalities.items()}, flip, present)
            if total is None:
                total = image.new_zeros(b, logits.shape[1], h, w, dtype=torch.float32)
            total[crop] += logits
            counts[crop] += 1
    return total / counts


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    image: Tensor,
    modalities: Mapping[str, Tensor] | None = None,
    mode: str = "whole",
    window: tuple[int, int] = (512, 512),
    stride: tuple[int, int] = (341, 341),
    flip: bool = False,
    present: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """B×K×H×W float32 logits for B×3×H×W images (model in eval mode is the caller's job).
    ``present`` (B bool per sensor, :attr:`rgbxseg.data.Batch.present`) marks per-sample absent sensors."""
    modalities = dict(modalities or {})
    if mode == "whole":
        return _forward(model, image, modalities, flip, present)
    if mode == "slide":
        return sliding_window(model, image, modalities, window, stride, flip, present)
    raise ValueError(f"unknown inference mode '{mode}' (whole or slide)")
