"""Evaluate a segmenter on a dataset split: mIoU / mAcc / aAcc / mF1 and per-class values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from rgbxseg.config import EvalConfig
from rgbxseg.data import SegDataset, collate
from rgbxseg.engine.inference import predict_logits
from rgbxseg.metrics import BoundaryFScore, OccludedRecall, SegMetrics, SmallObjectIoU, TinyRecall


def evaluate(
    model: nn.Module,
    dataset: SegDataset,
    cfg: EvalConfig,
    device: torch.device,
    progress: bool = True,
    on_logits: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> dict[str, Any]:
    """Run ``model`` over ``dataset`` and return :class:`~rgbxseg.metrics.SegMetrics` results (percent),
    with the per-class lists keyed by class name under ``per_class``.

    ``on_logits(logits, label)``, when given, sees every batch's B×K×H×W logits and B×H×W labels (on
    ``device``), so other measures (e.g. a calibration error) share this single pass."""
    was_training = model.training
    model.eval()
    batch_size = cfg.batch_size if cfg.mode == "whole" else 1
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate)
    metrics = SegMetrics(dataset.num_classes, dataset.ignore_index)
    for batch in tqdm(loader, desc=f"eval {dataset.name}", leave=False, disable=not progress or None):
        batch = batch.to(device)
        logits = predict_logits(
            model, batch.image, batch.modalities, cfg.mode, cfg.window, cfg.stride, cfg.flip, batch.present
        )
        metrics.update(logits.argmax(1), batch.label)
        if on_logits is not None:
            on_logits(logits, batch.label)
    model.train(was_training)
    result = metrics.compute()
    per_class = {name: {k: result[k][i] for k in ("IoU", "Acc", "F1")} for i, name in enumerate(dataset.classes)}
    return {k: result[k] for k in ("mIoU", "mAcc", "aAcc", "mF1")} | {"per_class": per_class}


def evaluate_robust(
    model: nn.Module, dataset: SegDataset, device: torch.device, batch_size: int = 4, progress: bool = True
) -> dict[str, float]:
    """The demo's and the robustness tables' metrics on ``dataset`` (whole-image inference), percent:
    ``mIoU``, ``small-object mIoU`` (instances < 1024 px), ``boundary F`` (mean boundary F-score),
    ``tiny recall`` (instances < 100 px) and ``occluded recall``; the instance metrics are NaN for a
    dataset without instances."""
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate)
    semantic = SegMetrics(dataset.num_classes, dataset.ignore_index)
    boundary = BoundaryFScore(dataset.num_classes, dataset.ignore_index)
    small = SmallObjectIoU(dataset.num_classes, ignore_index=dataset.ignore_index)
    tiny = TinyRecall(ignore_index=dataset.ignore_index)
    occluded = OccludedRecall(ignore_index=dataset.ignore_index)
    for batch in tqdm(loader, desc=f"eval {dataset.name}", leave=False, disable=not progress or None):
        batch = batch.to(device)
        pred = predict_logits(model, batch.image, batch.modalities, present=batch.present).argmax(1)
        semantic.update(pred, batch.label)
        boundary.update(pred, batch.label)
        for metric in (small, tiny, occluded):
            metric.update(pred, batch.label, batch.instances)
    model.train(was_training)
    return {
        "mIoU": float(semantic.compute()["mIoU"]),
        "small-object mIoU": float(small.compute()["small_mIoU"]),
        "boundary F": float(boundary.compute()["mBF"]),
        "tiny recall": float(tiny.compute()["tiny_recall"]),
        "occluded recall": float(occluded.compute()["occluded_recall"]),
    }
