"""Typed, validated YAML configs for training and evaluation.

A config is one YAML file, safe-loaded and validated by pydantic models that forbid unknown keys,
so a typo (``learning_rate`` for ``lr``) is an error naming the key and the file — never silently
ignored. No inheritance between files and no names evaluated as code: what you read is what runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rgbxseg.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ConfigT = TypeVar("ConfigT", bound=Strict)


class ModelConfig(Strict):
    """Which network: ``name`` is a key of :data:`rgbxseg.models.MODELS`; ``options`` are that
    builder's keyword arguments (e.g. FMSI-DeepLab's ablation switches)."""

    name: str
    encoder: str = "mobilenet_v2"
    pretrained: bool = True
    num_classes: int | None = Field(default=None, ge=1, description="default: the dataset's class count")
    options: dict[str, Any] = Field(default_factory=dict)


class DataConfig(Strict):
    """Which data and how it is augmented (``rgbxseg.data.DATASETS`` names)."""

    dataset: str
    root: Path | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    modalities: tuple[str, ...] | None = Field(default=None, description="extra sensors; null: the dataset's default, []: RGB only")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the dataset class")
    crop_size: tuple[int, int] = (352, 480)
    scale: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    color_jitter: float = Field(default=0.2, ge=0)
    batch_size: int = Field(default=8, ge=1)
    num_workers: int = Field(default=2, ge=0)
    subset: int | None = Field(default=None, ge=1, description="use only the first N training samples")
    occlusion: float = Field(default=0.0, ge=0, le=1, description="probability of random occlusion (DAMCSeg)")
    tiny_zoom: float = Field(default=0.0, ge=0, le=1, description="probability of an upscaled tiny-target crop (DAMCSeg)")
    corruption: float = Field(
        default=0.0, ge=0, le=1, description="probability of a random corruption of the RGB image (rgbxseg.robustness)"
    )
    corruption_names: tuple[str, ...] | None = Field(default=None, description="corruptions to draw from; null: all")


class StageConfig(Strict):
    """One stage of a multi-stage schedule (DAMCSeg's warm-up / joint / fine-tune): the ``fraction`` of
    the run it lasts and the learning rate of each parameter part the model names (its
    ``parameter_parts()``, e.g. ``backbone``, ``det_head``, ``seg_head``, ``fusion``); parts left out
    are frozen during the stage."""

    name: str
    fraction: float = Field(gt=0, le=1)
    lr: dict[str, float]


class OptimConfig(Strict):
    """AdamW with a decoder/head learning rate and a (lower) encoder learning rate, or per-part
    learning rates in ``stages``; the poly/cosine factor multiplies all of them."""

    lr: float = Field(default=1e-3, gt=0)
    encoder_lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    schedule: Literal["poly", "cosine"] = "poly"
    poly_power: float = 0.9
    warmup_iterations: int = Field(default=0, ge=0)
    stages: tuple[StageConfig, ...] = ()

    @model_validator(mode="after")
    def _stages_cover_the_run(self) -> OptimConfig:
        total = sum(stage.fraction for stage in self.stages)
        if self.stages and abs(total - 1.0) > 1e-6:
            raise ValueError(f"optim.stages fractions must add up to 1, got {total:g}")
        return self


class Budget(Strict):
    """Exactly one of ``iterations`` / ``time_budget_minutes`` bounds a training run; with a time budget the
    schedule decays over wall-clock time (the CPU benchmark protocol)."""

    iterations: int | None = Field(default=None, ge=1)
    time_budget_minutes: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_bound(self) -> Budget:
        if (self.iterations is None) == (self.time_budget_minutes is None):
            raise ValueError("set exactly one of train.iterations and train.time_budget_minutes")
        return self


class TrainConfig(Budget):
    """How long (:class:`Budget`) and how often."""

    val_every: int = Field(default=500, ge=1)
    checkpoint_every: int = Field(default=100, ge=1)
    seed: int = 0
    amp: Literal["auto", "bf16", "off"] = "auto"
    channels_last: bool = Field(default=True, description="NHWC memory format (≈1.5× faster training on CPU here)")
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads (default: all cores)")


class EvalConfig(Strict):
    """Inference for validation/testing: whole image or sliding window, optional flip TTA."""

    split: str = "test"
    mode: Literal["whole", "slide"] = "whole"
    window: tuple[int, int] = (360, 480)
    stride: tuple[int, int] = (240, 320)
    flip: bool = False
    batch_size: int = Field(default=4, ge=1)


class ExperimentConfig(Strict):
    """A whole training run: ``rgbxseg train --config file.yaml``."""

    name: str
    output_dir: Path = Path("runs")
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = OptimConfig()
    train: TrainConfig
    eval: EvalConfig = EvalConfig()

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name


def _format_error(path: Path | str, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key '{where}'")
        else:
            problems.append(f"{where}: {item['msg']}")
    return f"{path}: invalid config — " + "; ".join(problems)


def parse_config(data: dict[str, Any], source: Path | str = "<config>") -> ExperimentConfig:
    """Validate a segmentation config mapping; :class:`ConfigError` names the source and every bad key."""
    return validate_config(ExperimentConfig, data, source)


def read_yaml(path: str | Path, overrides: dict[str, Any] | None = None) -> Any:
    """Safe-load a YAML config file and apply ``overrides`` (dotted keys such as ``train.iterations``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if overrides and not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value, path)
    return data


def validate_config(model: type[ConfigT], data: Any, source: Path | str) -> ConfigT:
    """Validate a config mapping with ``model``; :class:`ConfigError` names the source and every bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a YAML mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_error(source, error)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read and validate a YAML config; ``overrides`` maps dotted keys (``train.iterations``) to values."""
    return parse_config(read_yaml(path, overrides), path)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, source: Path) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: cannot override '{dotted}': '{key}' is not a mapping")
        node = child
    node[leaf] = value
