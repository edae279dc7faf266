"""The training loop: ``rgbxseg train --config X.yaml [--resume]``.

* Iteration-bounded or wall-clock-bounded (the CPU benchmark protocol); the learning rate follows
  poly or cosine decay over that progress, with optional warm-up. AdamW with one learning rate for
  the encoder and another for everything else.
* bf16 autocast on GPU (``train.amp: auto``), float32 on CPU.
* Every ``checkpoint_every`` iterations ``last.pt`` is written atomically with the model, optimizer,
  counters, elapsed time and RNG states; ``--resume`` continues from it exactly: the data order and
  every augmentation are functions of (seed, epoch, index) (:mod:`rgbxseg.engine.loader`).
* Validation every ``val_every`` iterations and at the end; ``best.pt`` keeps the best val mIoU.
* ``train_log.csv`` (iteration, epoch, loss, lr, elapsed) and ``val_log.csv`` (iteration, metrics)
  in the run folder; ``run_info.json`` says how it ran (processes, device, threads).
* Data parallel under torchrun (:mod:`rgbxseg.engine.distributed`); only rank 0 writes files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from rgbxseg.atomic import atomic_write_text
from rgbxseg.config import ExperimentConfig
from rgbxseg.data import Batch, SegDataset, build_dataset, train_transforms
from rgbxseg.data.augment import Pipeline, with_damcseg_augmentations
from rgbxseg.data.base import SegSubset
from rgbxseg.engine import distributed
from rgbxseg.engine.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from rgbxseg.engine.csv_log import append_csv, truncate_csv
from rgbxseg.engine.evaluate import evaluate
from rgbxseg.engine.loader import SeededView, epoch_loader, steps_per_epoch
from rgbxseg.engine.schedule import autocast, lr_factor
from rgbxseg.errors import ConfigError
from rgbxseg.models import create_model
from rgbxseg.robustness.augment import RandomCorruption


@dataclass
class Progress:
    """Where a run is; saved in every checkpoint."""

    iteration: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed: float = 0.0  # wall-clock seconds of training: data loading + steps, validation excluded
    best_miou: float = -1.0


def build_datasets(cfg: ExperimentConfig) -> tuple[SegDataset, SegDataset | None]:
    data = cfg.data
    train = build_dataset(data.dataset, data.train_split, data.root, data.modalities, **data.options)
    if data.subset is not None:
        train = SegSubset(train, range(min(data.subset, len(train))))
    joint = train_transforms(data.crop_size, data.scale, data.hflip, data.color_jitter, seed=cfg.train.seed)
    transform = with_damcseg_augmentations(joint, data.occlusion, data.tiny_zoom)
    if data.corruption > 0:
        try:
            transform = Pipeline([transform, RandomCorruption(data.corruption, data.corruption_names)])
        except ValueError as error:
            raise ConfigError(f"data.corruption_names: {error}") from None
    train.transform = transform
    val = build_dataset(data.dataset, data.val_split, data.root, data.modalities, **data.options) if data.val_split else None
    return train, val


def build_model(cfg: ExperimentConfig, dataset: SegDataset, pretrained: bool | None = None) -> nn.Module:
    num_classes = cfg.model.num_classes or dataset.num_classes
    return create_model(
        cfg.model.name,
        num_classes,
        encoder=cfg.model.encoder,
        pretrained=cfg.model.pretrained if pretrained is None else pretrained,
        modalities=dataset.modality_channels,
        thing_classes=dataset.thing_classes,
        **cfg.model.options,
    )


def param_groups(model: nn.Module, cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """One AdamW group per parameter part the model names (``parameter_parts()``). Without stages the
    model's ``pretrained_parts`` start at ``optim.encoder_lr`` and the others at ``optim.lr``; with
    stages :meth:`Trainer._apply_stage` sets them."""
    parts = model.parameter_parts()
    known = set(parts)
    for stage in cfg.optim.stages:
        unknown = set(stage.lr) - known
        if unknown:
            raise ConfigError(
                f"optim.stages '{stage.name}': unknown parameter parts {sorted(unknown)} (this model has {sorted(known)})"
            )
    groups = []
    for name, params in parts.items():
        if params:
            lr = cfg.optim.encoder_lr if name in model.pretrained_parts else cfg.optim.lr
            groups.append({"params": params, "lr": lr, "base_lr": lr, "part": name})
    return groups


def stage_index(cfg: ExperimentConfig, fraction: float) -> int:
    """Which of ``cfg.optim.stages`` a run at progress ``fraction`` is in."""
    end = 0.0
    for index, stage in enumerate(cfg.optim.stages):
        end += stage.fraction
        if fraction < end - 1e-9:
            return index
    return len(cfg.optim.stages) - 1


def _progress_fraction(cfg: ExperimentConfig, state: Progress) -> float:
    if cfg.train.iterations is not None:
        return state.iteration / cfg.train.iterations
    return state.elapsed / (60.0 * cfg.train.time_budget_minutes)


def _done(cfg: ExperimentConfig, state: Progress) -> bool:
    return _progress_fraction(cfg, state) >= 1.0


class Trainer:
    """One training run (see the module docstring)."""

    def __init__(self, cfg: ExperimentConfig, resume: bool = False, progress_bar: bool = True) -> None:
        self.cfg = cfg
        self.env = distributed.setup()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        self.run_dir = cfg.run_dir
        self.train_set, self.val_set = build_datasets(cfg)
        self.model = build_model(cfg, self.train_set).to(self.env.device)
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg), weight_decay=cfg.optim.weight_decay)
        self.state = Progress()
        self.progress_bar = progress_bar and self.env.is_main
        if resume:
            self._resume()
        elif (self.run_dir / "last.pt").exists():
            raise ConfigError(f"{self.run_dir}/last.pt exists: pass --resume to continue that run, or change 'name'")
        self.frozen: set[str] = set()
        self.net: nn.Module = (
            DistributedDataParallel(
                self.model,
                device_ids=[self.env.device] if self.env.device.type == "cuda" else None,
                find_unused_parameters=getattr(self.model, "may_skip_parameters", False),
            )
            if self.env.enabled
            else self.model
        )

    def _resume(self) -> None:
        path = self.run_dir / "last.pt"
        checkpoint = load_checkpoint(path)
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.state = Progress(**checkpoint["progress"])
        set_rng_state(checkpoint["rng"])
        if self.env.is_main:
            for log in ("train_log.csv", "val_log.csv"):
                truncate_csv(self.run_dir / log, self.state.iteration)

    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "progress": vars(self.state).copy(),
            "config": self.cfg.model_dump(mode="json"),
            "classes": list(self.train_set.classes),
            "modality_channels": dict(self.train_set.modality_channels),
            "thing_classes": list(self.train_set.thing_classes),
        }

    def _save(self, name: str) -> None:
        if self.env.is_main:
            save_checkpoint(self.run_dir / name, self.checkpoint_payload())

    def _apply_stage(self) -> None:
        """Per-part learning rates of the current stage; parts it leaves out are frozen. Frozen parts
        keep ``requires_grad`` (DDP needs a fixed set of parameters) but their gradients are dropped
        before the optimizer step, so AdamW neither moves them nor updates their moments."""
        if not self.cfg.optim.stages:
            return
        stage = self.cfg.optim.stages[stage_index(self.cfg, _progress_fraction(self.cfg, self.state))]
        self.frozen = {g["part"] for g in self.optimizer.param_groups if g["part"] not in stage.lr}
        for group in self.optimizer.param_groups:
            group["base_lr"] = stage.lr.get(group["part"], 0.0)

    def _set_lr(self) -> float:
        self._apply_stage()
        factor = lr_factor(
            _progress_fraction(self.cfg, self.state), self.state.iteration, self.cfg.optim.schedule,
            self.cfg.optim.warmup_iterations, self.cfg.optim.poly_power,
        )  # fmt: skip
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        return self.optimizer.param_groups[-1]["lr"]

    def _step(self, batch: Batch) -> tuple[float, dict[str, float]]:
        batch = batch.to(self.env.device, non_blocking=True)
        image = batch.image.contiguous(memory_format=self.memory_format)
        modalities = {k: v.contiguous(memory_format=self.memory_format) for k, v in batch.modalities.items()}
        with autocast(self.cfg.train.amp, self.env.device):
            output = self.net(image, modalities, **self.model.training_inputs(batch))
            loss, parts = self.model.loss(output, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in self.optimizer.param_groups:
            if group["part"] in self.frozen:
                for p in group["params"]:
                    p.grad = None
        self.optimizer.step()
        return float(loss.detach()), parts

    def _validate(self) -> None:
        if self.val_set is None:
            return
        if self.env.is_main:
            result = evaluate(self.model, self.val_set, self.cfg.eval, self.env.device, progress=self.progress_bar)
            row = {"iteration": self.state.iteration} | {k: round(result[k], 4) for k in ("mIoU", "mAcc", "aAcc", "mF1")}
            append_csv(self.run_dir / "val_log.csv", row)
            if result["mIoU"] > self.state.best_miou:
                self.state.best_miou = result["mIoU"]
                self._save("best.pt")
        distributed.barrier(self.env)

    def _write_run_info(self) -> None:
        info = {
            "world_size": self.env.world_size,
            "device": str(self.env.device),
            "threads": torch.get_num_threads(),
            "train_samples": len(self.train_set),
            "steps_per_epoch": steps_per_epoch(len(self.train_set), self.cfg.data.batch_size, self.env.world_size),
            "config": self.cfg.model_dump(mode="json"),
        }
        atomic_write_text(self.run_dir / "run_info.json", json.dumps(info, indent=2))

    def run(self) -> Progress:
        """Train to the configured bound, validating and checkpointing on the way."""
        cfg, state = self.cfg, self.state
        if self.env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_run_info()
        view = SeededView(self.train_set, cfg.train.seed)
        self.net.train()
        total = cfg.train.iterations
        bar = tqdm(total=total, initial=state.iteration if total else 0, desc=cfg.name, disable=not self.progress_bar or None)
        while not _done(cfg, state):
            loader = epoch_loader(
                view, state.epoch, state.batch_in_epoch, cfg.data.batch_size, cfg.data.num_workers,
                self.env.rank, self.env.world_size,
            )  # fmt: skip
            started = time.perf_counter()
            for batch in loader:
                lr = self._set_lr()
                loss, parts = self._step(batch)
                loss = distributed.mean_across(loss, self.env)
                now = time.perf_counter()
                state.elapsed += now - started  # data loading and the step; validation is excluded
                started = now
                state.iteration += 1
                state.batch_in_epoch += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
                if self.env.is_main:
                    row = {"iteration": state.iteration, "epoch": state.epoch, "loss": round(loss, 5), "lr": lr}
                    row["elapsed"] = round(state.elapsed, 2)
                    row |= {name: round(value, 5) for name, value in parts.items()}
                    append_csv(self.run_dir / "train_log.csv", row)
                if state.iteration % cfg.train.checkpoint_every == 0:
                    self._save("last.pt")
                if state.iteration % cfg.train.val_every == 0:
                    self._validate()
                    started = time.perf_counter()
                if _done(cfg, state):
                    break
            else:
                state.epoch += 1
                state.batch_in_epoch = 0
        bar.close()
        self._save("last.pt")
        if state.iteration % cfg.train.val_every != 0:
            self._validate()
        distributed.teardown(self.env)
        return state


def train(cfg: ExperimentConfig, resume: bool = False, progress_bar: bool = True) -> Progress:
    """Run (or resume) the training described by ``cfg``; files go to ``cfg.run_dir``."""
    return Trainer(cfg, resume, progress_bar).run()
