"""Evaluate a segmenter on a dataset split: mIoU / mAcc / aAcc / mF1 and per-class values."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from rgbxseg.config import EvalConfig
from rgbxseg.data import SegDataset, collate
from rgbxseg.engine.inference import predict_logits
from rgbxseg.metrics import SegMetrics


def evaluate(
    model: nn.Module, dataset: SegDataset, cfg: EvalConfig, device: torch.device, progress: bool = True
) -> dict[str, Any]:
    """Run ``model`` over ``dataset`` and return :class:`~rgbxseg.metrics.SegMetrics` results (percent),
    with the per-class lists keyed by class name under ``per_class``."""
    was_training = model.training
    model.eval()
    batch_size = cfg.batch_size if cfg.mode == "whole" else 1
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate)
    metrics = SegMetrics(dataset.num_classes, dataset.ignore_index)
    for batch in tqdm(loader, desc=f"eval {dataset.name}", leave=False, disable=not progress or None):
        batch = batch.to(device)
        logits = predict_logits(model, batch.image, batch.modalities, cfg.mode, cfg.window, cfg.stride, cfg.flip)
        metrics.update(logits.argmax(1), batch.label)
    model.train(was_training)
    result = metrics.compute()
    per_class = {name: {k: result[k][i] for k in ("IoU", "Acc", "F1")} for i, name in enumerate(dataset.classes)}
    return {k: result[k] for k in ("mIoU", "mAcc", "aAcc", "mF1")} | {"per_class": per_class}
