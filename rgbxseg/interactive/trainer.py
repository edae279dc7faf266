"""Training of the MMMS head (SPEC 6): ``rgbxseg train --config configs/interactive/X.yaml``.

1. Extract the training views once (frozen backbone, :mod:`rgbxseg.interactive.views`; resumable).
2. Per step: a batch of views, one target per view (a surface, merged regions or one part of a class, cropped
   to ``data.train_crop``: :mod:`rgbxseg.interactive.targets`), RITM-style iterative click
   sampling — a first click (the simulator's, or a random pixel of the surface, sometimes with a random
   negative click), then 0..``max_rounds`` no-grad rounds that each add the simulator's click on the current
   error with the previous mask as input — and a gradient step on the last prediction: binary cross-entropy
   + soft IoU loss over the non-ignored pixels. Modalities are dropped per sample with ``modality_dropout``
   so that the fuser learns to work with any subset of sensors.
3. AdamW, linear warm-up then cosine decay over the iterations or the wall-clock budget; bf16 autocast on
   GPU; ``last.pt`` checkpoints (resume after a kill), ``train_log.csv`` (wall and process CPU seconds: a
   run sharing the machine is judged by its CPU time), weight snapshots every ``train.snapshot_every``
   iterations for learning curves (``benchmarks/mmms_learning_curve.py``); at the end the weights in float16
   as ``mmms.safetensors`` (see :mod:`rgbxseg.models.mmms.weights_file`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from rgbxseg.atomic import atomic_write_text
from rgbxseg.data.sample import IGNORE_INDEX
from rgbxseg.engine.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from rgbxseg.engine.csv_log import append_csv, truncate_csv
from rgbxseg.engine.schedule import autocast, lr_factor
from rgbxseg.interactive.click_simulator import PRED_THRESHOLD, Click, border_distance, click_maps, next_click
from rgbxseg.interactive.config import ClickSamplingConfig, InteractiveExperimentConfig
from rgbxseg.interactive.engine import weights_file
from rgbxseg.interactive.surfaces import surface_kind
from rgbxseg.interactive.targets import Targets, choose_targets, crop_view, crop_window
from rgbxseg.interactive.views import View, ViewDataset, extract_views
from rgbxseg.models.mmms.backbone import Dinov2Backbone
from rgbxseg.models.mmms.model import MMMSNet
from rgbxseg.models.mmms.weights_file import load_matching, save_mmms


def _random_pixel(region: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
    """A random pixel at least 2 px inside ``region`` (any pixel of it when it is thinner)."""
    inner = np.argwhere(border_distance(region) >= 2)
    candidates = inner if len(inner) else np.argwhere(region)
    if not len(candidates):
        return None
    y, x = candidates[int(rng.integers(len(candidates)))]
    return int(y), int(x)


def first_clicks(targets: Targets, cfg: ClickSamplingConfig, rng: np.random.Generator) -> list[list[Click]]:
    """The initial clicks of every sample (see the module docstring)."""
    batch = []
    for gt, valid in zip(targets.gt, targets.valid, strict=True):
        if rng.random() < cfg.simulated_first:
            clicks = [next_click(np.zeros_like(gt), gt, ~valid)]
        else:
            y, x = _random_pixel(gt, rng) or (0, 0)
            clicks = [Click(y, x, True)]
        if rng.random() < cfg.random_negative:
            negative = _random_pixel(~gt & valid, rng)
            if negative is not None:
                clicks.append(Click(*negative, False))
        batch.append(clicks)
    return batch


def interaction_batch(clicks: Sequence[Sequence[Click]], previous: np.ndarray) -> Tensor:
    """B×3×S×S network input: click disks (5 px) and the previous binary masks."""
    disks = np.stack([click_maps(c, previous.shape[1:]) for c in clicks])
    return torch.from_numpy(np.concatenate([disks, previous[:, None].astype(np.float32)], axis=1))


def segmentation_loss(logits: Tensor, gt: Tensor, valid: Tensor) -> Tensor:
    """Binary cross-entropy + soft IoU loss over the valid pixels (B×1×S×S logits, B×S×S masks)."""
    logits = logits[:, 0].float()
    weight = valid.float()
    bce = (
        F.binary_cross_entropy_with_logits(logits, gt.float(), reduction="none") * weight
    ).sum() / weight.sum().clamp(min=1)
    probability = torch.sigmoid(logits) * weight
    target = gt.float() * weight
    intersection = (probability * target).sum((1, 2))
    union = (probability + target - probability * target).sum((1, 2))
    return bce + (1 - intersection / union.clamp(min=1)).mean()


def batch_modalities(
    samples: Sequence[Mapping[str, Tensor]], known: Sequence[str], dropout: float, rng: np.random.Generator
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Stacked modality maps of the samples (zeros where a sample lacks one) and per-sample ``present`` flags
    after dropout."""
    maps, present = {}, {}
    for name in known:
        has = [name in m and rng.random() >= dropout for m in samples]
        if not any(has):
            continue
        reference = next(m[name] for m in samples if name in m)
        maps[name] = torch.stack([m.get(name, torch.zeros_like(reference)) for m in samples])
        present[name] = torch.tensor(has)
    return maps, present


def _batch_iou(prediction: np.ndarray, targets: Targets) -> float:
    inter = (prediction & targets.gt & targets.valid).sum((1, 2))
    union = ((prediction | targets.gt) & targets.valid).sum((1, 2))
    return float(np.mean(inter / np.maximum(union, 1)))


@dataclass
class Batch:
    """A training batch after target choice and cropping: backbone maps, targets, images, modalities."""

    tokens: list[Tensor]
    targets: Targets
    images: Tensor
    modalities: dict[str, Tensor]
    present: dict[str, Tensor]


def make_batch(views: Sequence[View], cfg: InteractiveExperimentConfig, rng: np.random.Generator) -> Batch:
    """Targets of ``views`` (:mod:`rgbxseg.interactive.targets`), each view cropped to ``data.train_crop``
    around its target (the whole view without a crop), stacked."""
    options = cfg.data.targets()
    surfaces = [v.surfaces.numpy() for v in views]
    chosen = choose_targets(surfaces, [v.kind for v in views], options, rng)
    size, crop = surfaces[0].shape[0], cfg.data.train_crop or surfaces[0].shape[0]
    patch = size // views[0].tokens[0].shape[-1]
    tokens: list[list[Tensor]] = [[] for _ in range(len(views[0].tokens))]
    gts, valids, images, modalities = [], [], [], []
    for view, gt, valid in zip(views, chosen.gt, chosen.valid, strict=True):
        top, left = crop_window(gt, crop, patch, rng) if crop < size else (0, 0)
        names = sorted(view.modalities)
        maps, (gt, valid, image, *extra) = crop_view(
            view.tokens, [gt, valid, view.image, *(view.modalities[n] for n in names)], top, left, crop, patch
        )
        for level, m in zip(tokens, maps, strict=True):
            level.append(m)
        gts.append(gt)
        valids.append(valid)
        images.append(image.float() / 255.0)
        modalities.append(dict(zip(names, extra, strict=True)))
    maps, present = batch_modalities(modalities, tuple(cfg.model.modalities), cfg.data.modality_dropout, rng)
    return Batch(
        [torch.stack(level) for level in tokens],
        Targets(np.stack(gts), np.stack(valids)),
        torch.stack(images),
        maps,
        present,
    )


def train_step(
    net: MMMSNet,
    views: Sequence[View],
    cfg: InteractiveExperimentConfig,
    rng: np.random.Generator,
    device: torch.device,
) -> tuple[Tensor, float]:
    """Loss of one batch after iterative click sampling, and the IoU of its final predictions."""
    batch = make_batch(views, cfg, rng)
    targets = batch.targets
    size = targets.gt.shape[1:]
    with autocast(cfg.train.amp, device):
        prepared = net.encode(
            [t.to(device) for t in batch.tokens],
            size,
            {k: v.to(device) for k, v in batch.modalities.items()},
            {k: v.to(device) for k, v in batch.present.items()},
            batch.images.to(device),
        )
        clicks = first_clicks(targets, cfg.clicks, rng)
        previous = np.zeros_like(targets.gt)
        with torch.no_grad():
            detached = [p.detach() for p in prepared]
            for _ in range(int(rng.integers(cfg.clicks.max_rounds + 1))):
                logits = net.click(detached, interaction_batch(clicks, previous).to(device))
                previous = (torch.sigmoid(logits[:, 0].float()) > PRED_THRESHOLD).cpu().numpy()
                for sample, (gt, valid) in enumerate(zip(targets.gt, targets.valid, strict=True)):
                    clicks[sample].append(next_click(previous[sample], gt, ~valid, clicks[sample]))
        logits = net.click(prepared, interaction_batch(clicks, previous).to(device))
    gt, valid = torch.from_numpy(targets.gt).to(device), torch.from_numpy(targets.valid).to(device)
    loss = segmentation_loss(logits, gt, valid)
    prediction = (torch.sigmoid(logits[:, 0].detach().float()) > PRED_THRESHOLD).cpu().numpy()
    return loss, _batch_iou(prediction, targets)


def training_views(
    cfg: InteractiveExperimentConfig, device: torch.device, progress: bool
) -> list[tuple[Path, str]]:
    """Extract (or find) the views of every source → (file, surface kind) pairs; the backbone is loaded only
    while it is needed."""
    backbone = Dinov2Backbone().to(device)
    directory = cfg.data.views_dir / backbone.backbone_id
    augment = cfg.data.augment(cfg.train.seed)
    views = []
    for source in cfg.data.sources:
        paths = extract_views(source.source(), backbone, directory, augment, cfg.data.min_area, progress)
        views.extend((path, surface_kind(source.dataset)) for path in paths)
    return views


def _progress(cfg: InteractiveExperimentConfig, iteration: int, elapsed: float) -> float:
    if cfg.train.iterations is not None:
        return iteration / cfg.train.iterations
    return elapsed / (60.0 * cfg.train.time_budget_minutes)


def train_interactive(
    cfg: InteractiveExperimentConfig, resume: bool = False, progress: bool = True
) -> dict[str, float]:
    """Run (or resume) an MMMS training; returns iterations, seconds and the last logged loss/IoU."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    views = training_views(cfg, device, progress)
    dataset = ViewDataset([p for p, _ in views], tuple(cfg.model.modalities), [k for _, k in views])
    net = MMMSNet(cfg.model.mmms())
    if cfg.model.init is not None and not resume:
        fresh = load_matching(net, weights_file(cfg.model.init))
        tqdm.write(f"started from {cfg.model.init}: {len(fresh)} tensors freshly initialised")
    net = net.to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    iteration, elapsed, cpu = 0, 0.0, 0.0
    if resume and (run_dir / "last.pt").exists():
        checkpoint = load_checkpoint(run_dir / "last.pt")
        net.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        iteration, elapsed = checkpoint["iteration"], checkpoint["elapsed"]
        cpu = checkpoint.get("cpu_seconds", 0.0)
        set_rng_state(checkpoint["rng"])
        truncate_csv(run_dir / "train_log.csv", iteration)
    else:
        (run_dir / "train_log.csv").unlink(missing_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.model_dump(mode="json"), indent=2))
    total = cfg.train.iterations or int(60 * cfg.train.time_budget_minutes)
    bar = tqdm(
        total=total,
        initial=min(total, iteration if cfg.train.iterations else int(elapsed)),
        desc=cfg.name,
        disable=not progress,
    )
    row = {"iteration": iteration, "loss": float("nan"), "iou": float("nan"), "lr": 0.0, "elapsed": elapsed}
    while _progress(cfg, iteration, elapsed) < 1.0:
        start, start_cpu = time.perf_counter(), time.process_time()
        factor = lr_factor(_progress(cfg, iteration, elapsed), iteration, "cosine", cfg.optim.warmup_iterations)
        for group in optimizer.param_groups:
            group["lr"] = cfg.optim.lr * factor
        generator = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + iteration)
        views = [dataset[int(i)] for i in torch.randint(len(dataset), (cfg.data.batch_size,), generator=generator)]
        loss, iou = train_step(net, views, cfg, np.random.default_rng([cfg.train.seed, iteration]), device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        iteration += 1
        step = time.perf_counter() - start
        elapsed += step
        cpu += time.process_time() - start_cpu
        row = {
            "iteration": iteration,
            "loss": round(loss.item(), 5),
            "iou": round(iou, 4),
            "lr": cfg.optim.lr * factor,
            "elapsed": round(elapsed, 1),
            "cpu_seconds": round(cpu, 3),
        }
        append_csv(run_dir / "train_log.csv", row)
        bar.update(1 if cfg.train.iterations else step)
        bar.set_postfix(loss=f"{row['loss']:.3f}", iou=f"{iou:.2f}")
        if iteration % cfg.train.checkpoint_every == 0 or _progress(cfg, iteration, elapsed) >= 1.0:
            payload = {
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "iteration": iteration,
                "elapsed": elapsed,
                "cpu_seconds": cpu,
            }
            save_checkpoint(run_dir / "last.pt", payload | {"config": cfg.model_dump(mode="json")})
        if cfg.train.snapshot_every and iteration % cfg.train.snapshot_every == 0:
            trained = {"iterations": iteration, "seconds": round(elapsed, 1), "cpu_seconds": round(cpu, 1)}
            save_mmms(net, run_dir / "snapshots" / f"iter_{iteration:06d}.safetensors", trained=trained)
    bar.close()
    save_mmms(
        net,
        run_dir / "mmms.safetensors",
        trained={"iterations": iteration, "seconds": round(elapsed, 1), "cpu_seconds": round(cpu, 1), "config": cfg.name},
    )
    return {"iterations": iteration, "seconds": elapsed, "loss": row["loss"], "iou": row["iou"]}
