"""Typed config of an MMMS training run: ``rgbxseg train --config configs/interactive/X.yaml``.

The YAML carries ``task: interactive``; the rest is validated like every rgbxseg config (unknown keys are
errors naming the key and the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rgbxseg.config import Budget, Strict, read_yaml, validate_config
from rgbxseg.interactive.targets import TargetOptions
from rgbxseg.interactive.views import ViewAugment, ViewSource
from rgbxseg.models.mmms.model import MMMSConfig


class ViewSourceConfig(Strict):
    """A dataset split to extract training views from (see :class:`rgbxseg.interactive.views.ViewSource`)."""

    dataset: str
    split: str
    root: Path | None = None
    views: int = Field(default=1, ge=1)
    modalities: tuple[str, ...] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = Field(default=None, ge=1)

    def source(self) -> ViewSource:
        return ViewSource(**self.model_dump())


class InteractiveDataConfig(Strict):
    views_dir: Path = Path("runs/views")
    sources: tuple[ViewSourceConfig, ...] = Field(min_length=1)
    crop_size: int = Field(default=448, ge=28)
    scale: tuple[float, float] = (0.75, 1.4)
    hflip: bool = True
    batch_size: int = Field(default=8, ge=1)
    min_area: int = Field(default=64, ge=1, description="smallest surface (pixels) used as a training target")
    modality_dropout: float = Field(default=0.3, ge=0, le=1, description="per sample and modality")
    train_crop: int | None = Field(
        default=None, ge=28, description="train on this square window of each view (patch-aligned, around the target)"
    )
    merge: float = Field(default=0.0, ge=0, le=1, description="probability of merging a region with 1-2 neighbours")
    component: float = Field(default=0.0, ge=0, le=1, description="probability of one connected part of a class")

    @field_validator("crop_size", "train_crop")
    @classmethod
    def _patch_multiple(cls, value: int | None) -> int | None:
        if value is not None and value % 14:
            raise ValueError(f"must be a multiple of the ViT patch size 14, got {value}")
        return value

    @model_validator(mode="after")
    def _crop_fits(self) -> InteractiveDataConfig:
        if self.train_crop is not None and self.train_crop > self.crop_size:
            raise ValueError(f"train_crop {self.train_crop} is larger than the views (crop_size {self.crop_size})")
        return self

    def augment(self, seed: int) -> ViewAugment:
        return ViewAugment(self.crop_size, self.scale, self.hflip, seed)

    def targets(self) -> TargetOptions:
        return TargetOptions(self.min_area, self.merge, self.component)


class ClickSamplingConfig(Strict):
    """RITM-style iterative click sampling: a first click, then 0..``max_rounds`` no-grad rounds that add the
    simulator's click on the current error before the gradient step."""

    max_rounds: int = Field(default=3, ge=0)
    simulated_first: float = Field(default=0.5, ge=0, le=1, description="else a random pixel of the surface")
    random_negative: float = Field(default=0.3, ge=0, le=1, description="probability of an extra negative click")


class InteractiveModelConfig(Strict):
    init: str | None = Field(
        default=None, description="weights to start from (a shipped name such as vit_s14, or a path); matching tensors only"
    )
    modalities: dict[str, int] = Field(default_factory=dict)
    channels: tuple[int, int, int, int] = MMMSConfig.channels
    widths: tuple[int, int, int, int] = MMMSConfig.widths
    depths: tuple[int, int, int, int] = MMMSConfig.depths
    decoder_dim: int = MMMSConfig.decoder_dim
    image_stem: int = Field(default=MMMSConfig.image_stem, ge=0, description="full-resolution RGB path (0: none)")

    def mmms(self) -> MMMSConfig:
        return MMMSConfig(**self.model_dump(exclude={"init"}))


class InteractiveOptimConfig(Strict):
    lr: float = Field(default=5e-4, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    warmup_iterations: int = Field(default=50, ge=0)


class InteractiveTrainConfig(Budget):
    checkpoint_every: int = Field(default=50, ge=1)
    snapshot_every: int | None = Field(default=None, ge=1, description="keep the weights every N iterations")
    seed: int = 0
    amp: Literal["auto", "bf16", "off"] = Field(default="auto", description="auto: bf16 on GPU, off on CPU")
    threads: int | None = Field(default=None, ge=1)


class InteractiveExperimentConfig(Strict):
    task: Literal["interactive"]
    name: str
    output_dir: Path = Path("runs")
    model: InteractiveModelConfig = InteractiveModelConfig()
    data: InteractiveDataConfig
    clicks: ClickSamplingConfig = ClickSamplingConfig()
    optim: InteractiveOptimConfig = InteractiveOptimConfig()
    train: InteractiveTrainConfig

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name


def config_task(path: str | Path) -> str:
    """The ``task`` of a config file: ``interactive`` for MMMS runs, ``segmentation`` otherwise."""
    data = read_yaml(path)
    return data.get("task", "segmentation") if isinstance(data, dict) else "segmentation"


def load_interactive_config(path: str | Path, overrides: dict[str, Any] | None = None) -> InteractiveExperimentConfig:
    """Read and validate an MMMS training config (``task: interactive``)."""
    return validate_config(InteractiveExperimentConfig, read_yaml(path, overrides), path)
