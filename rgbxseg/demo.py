"""The main job, ``rgbxseg demo`` (``make demo``): needs no files.

1. Generates SyntheticStreets RGB-D-T scenes (day / night / fog / random sensor failure).
2. Trains DAMCSeg on RGB + depth + thermal and an RGB-only DeepLabV3+ baseline with the same
   schedule: the same number of iterations of the same batches (on the CPU, or the GPU when there
   is one). DAMCSeg costs about three times as much per iteration; the report gives both FPS.
3. Evaluates both on held-out scenes under every condition of :data:`CONDITIONS`: by day, at night,
   in fog, with each sensor missing, at night without thermal, and by day with RGB only.
4. Runs the robustness suite (:mod:`rgbxseg.robustness`) on ``robustness_images`` test scenes (evenly
   spaced) and writes each model's run report (:mod:`rgbxseg.run_report`: per-class metrics, ECE before / after
   temperature scaling fitted on the val split, robustness heat-map, uncertainty maps) to
   ``<output>/<name>/report.html``.
5. Writes ``<output>/report.html`` (tables, bar charts, prediction overlays, calibration and robustness with
   links to the run reports), ``<output>/results.json`` and prints the same tables in the terminal.

The training runs are ordinary rgbxseg runs (``<output>/<name>/``: checkpoints, CSV logs), so
``rgbxseg eval``/``predict`` work on them afterwards.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from rgbxseg.atomic import atomic_write_text
from rgbxseg.config import ExperimentConfig, parse_config
from rgbxseg.data import SyntheticStreets, collate, to_sample
from rgbxseg.engine.evaluate import evaluate_robust
from rgbxseg.engine.trainer import Trainer
from rgbxseg.report import ModelSummary, OverlayRow, RunLink, print_tables, write_report
from rgbxseg.robustness.evaluate import evaluate_robustness, summary, table
from rgbxseg.run_report import ROBUSTNESS_DIR, evaluation_split, write_run_report

CONDITIONS = ("day", "night", "fog", "no_depth", "no_thermal", "night+no_thermal", "day+no_depth+no_thermal")
OVERLAY_CONDITIONS = ("day", "night", "fog", "night+no_thermal")
TEST_SEED = 2  # the synthetic test split's seed: scenes never seen in training (seed 0)
# DAMCSeg's three stages (SPEC 5) with the paper's learning rates ×10 for a minutes-long budget, as in
# configs/damcseg/synthetic_complete.yaml.
THREE_STAGES = [
    {"name": "warm-up", "fraction": 0.11, "lr": {"det_head": 5e-4, "seg_head": 1e-3, "fusion": 1e-3}},
    {"name": "joint", "fraction": 0.78, "lr": {"backbone": 3e-4, "det_head": 5e-4, "seg_head": 1e-3, "fusion": 1e-3}},
    {"name": "fine-tune", "fraction": 0.11, "lr": {"fusion": 1e-4}},
]


@dataclass(frozen=True)
class DemoSettings:
    """What the demo does. ``iterations``: training iterations of *each* model."""

    output_dir: Path = Path("runs/demo")
    iterations: int = 150
    size: tuple[int, int] = (192, 256)
    train_samples: int = 400
    eval_samples: int = 40
    robustness_images: int = 16
    batch_size: int = 8
    threads: int | None = None
    seed: int = 0


def _model_configs(settings: DemoSettings) -> dict[str, dict[str, Any]]:
    """The two experiments as config mappings (the same schema as a YAML config file)."""
    h, w = settings.size
    data = {
        "dataset": "synthetic",
        "val_split": None,
        "options": {"n": settings.train_samples, "size": [h, w]},
        "crop_size": [h, w],
        "scale": [0.75, 1.5],
        "batch_size": settings.batch_size,
        "num_workers": 0,
    }
    train = {"iterations": settings.iterations, "checkpoint_every": 50, "seed": settings.seed, "threads": settings.threads}
    damcseg_options = {"roi_size": 32, "modality_widths": [32, 64, 128, 256], "max_train_rois": 6, "bifpn_repeats": 1}
    return {
        "DAMCSeg (RGB+D+T)": {
            "name": "damcseg",
            "output_dir": str(settings.output_dir),
            "model": {"name": "damcseg", "options": damcseg_options},
            "data": data | {"modalities": ["depth", "thermal"], "occlusion": 0.3, "tiny_zoom": 0.3},
            "optim": {"schedule": "cosine", "warmup_iterations": 10, "stages": THREE_STAGES},
            "train": train,
        },
        "DeepLabV3+ (RGB)": {
            "name": "deeplabv3plus_rgb",
            "output_dir": str(settings.output_dir),
            "model": {"name": "deeplabv3plus"},
            "data": data | {"modalities": []},
            "optim": {"lr": 1e-3, "encoder_lr": 1e-4, "schedule": "cosine", "warmup_iterations": 10},
            "train": train,
        },
    }


def _train(cfg: ExperimentConfig) -> tuple[nn.Module, float]:
    """Train from scratch; the model in eval mode and the training seconds (data loading included)."""
    if cfg.run_dir.exists():
        shutil.rmtree(cfg.run_dir)  # the demo's own run folder: every demo starts fresh
    trainer = Trainer(cfg)
    state = trainer.run()
    return trainer.model.eval(), state.elapsed


def _run_report(label: str, cfg: ExperimentConfig, model: nn.Module, settings: DemoSettings) -> RunLink:
    """The robustness suite on ``robustness_images`` test scenes, then the run's own report, with T fitted
    on ``eval_samples`` val scenes (the demo trains without a val split; this config adds one)."""
    scenes = max(settings.eval_samples, settings.robustness_images)
    data = cfg.data.model_copy(update={"val_split": "val", "options": cfg.data.options | {"n": scenes}})
    cfg = cfg.model_copy(update={"data": data})
    device = next(model.parameters()).device
    dataset, _ = evaluation_split(cfg, "test", settings.robustness_images)
    out_dir = cfg.run_dir / ROBUSTNESS_DIR
    results, _ = evaluate_robustness(model, dataset, cfg.eval, device, out_dir, label, progress=False)
    path, report = write_run_report(cfg.run_dir, config=cfg, limit=settings.eval_samples, overlays=3, device=device)
    c, s = report.calibration, summary(table(results))
    href = path.relative_to(settings.output_dir).as_posix()
    return RunLink(label, href, c.temperature, c.before["ECE"], c.after["ECE"], s["clean mIoU"], s["kept %"])


def _test_set(model: nn.Module, condition: str, settings: DemoSettings) -> SyntheticStreets:
    return SyntheticStreets(settings.eval_samples, settings.size, TEST_SEED, (condition,), tuple(model.modality_channels))


@torch.inference_mode()
def frames_per_second(model: nn.Module, settings: DemoSettings, device: torch.device, runs: int = 15) -> float:
    """Batch-1 images per second at the demo size: 1 / median latency over ``runs`` after 3 warm-ups."""
    sample = to_sample(_test_set(model, "day", settings).load(0))
    batch = collate([sample]).to(device)
    times = []
    for i in range(runs + 3):
        start = time.perf_counter()
        model(batch.image, batch.modalities, batch.present)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


@torch.inference_mode()
def _overlays(models: dict[str, nn.Module], settings: DemoSettings, device: torch.device) -> list[OverlayRow]:
    rows = []
    scenes = SyntheticStreets(1, settings.size, TEST_SEED, ("day",))
    for condition in OVERLAY_CONDITIONS:
        raw = scenes.render(0, condition)
        predictions = {}
        for name, model in models.items():
            sample = to_sample(raw)
            sample.modalities = {k: v for k, v in sample.modalities.items() if k in model.modality_channels}
            batch = collate([sample]).to(device)
            predictions[name] = model(batch.image, batch.modalities, batch.present).argmax(1)[0].cpu().numpy()
        rows.append(
            OverlayRow(
                condition=condition,
                image=(raw.image * 255).round().astype(np.uint8),
                modalities={k: v[..., 0] for k, v in raw.modalities.items()},
                label=raw.label,
                predictions=predictions,
            )
        )
    return rows


def _notes(settings: DemoSettings, seconds: dict[str, float], device: torch.device) -> list[str]:
    took = ", ".join(f"{name}: {s / 60:.1f} min" for name, s in seconds.items())
    return [
        f"Each model trained for {settings.iterations} iterations on {device} ({took}), batch "
        f"{settings.batch_size}, on {settings.train_samples} synthetic scenes of {settings.size[0]}×{settings.size[1]} px "
        "rendered by day, at night, in fog and with a random sensor failing.",
        f"Test: {settings.eval_samples} unseen scenes (seed {TEST_SEED}), the same scenes under every condition. "
        "'no_depth' / 'no_thermal': that sensor is absent at inference (DAMCSeg replaces it with features predicted "
        "by its missing-modality complementation network); 'day+no_depth+no_thermal': RGB only.",
        "Metrics in percent: mIoU over classes; small-object mIoU over instances < 1024 px; boundary F (mean "
        "boundary F-score); tiny recall (instances < 100 px found); occluded recall (visible pixels of "
        "partly occluded instances labelled correctly). FPS: batch 1, median of 15 runs.",
    ]


def run_demo(settings: DemoSettings = DemoSettings(), console: Console | None = None) -> Path:
    """Run the whole demo (module docstring) and return the report's path."""
    console = console or Console()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    models: dict[str, nn.Module] = {}
    configs: dict[str, ExperimentConfig] = {}
    seconds: dict[str, float] = {}
    for label, mapping in _model_configs(settings).items():
        console.rule(f"training {label}: {settings.iterations} iterations")
        configs[label] = parse_config(mapping, f"demo:{label}")
        models[label], seconds[label] = _train(configs[label])
    device = next(next(iter(models.values())).parameters()).device
    summaries = []
    for label, model in models.items():
        console.rule(f"evaluating {label}")
        metrics = {c: evaluate_robust(model, _test_set(model, c, settings), device) for c in CONDITIONS}
        params = sum(p.numel() for p in model.parameters())
        summaries.append(ModelSummary(label, params, frames_per_second(model, settings, device), metrics))
    print_tables(summaries, console)
    runs = []
    for label, model in models.items():
        console.rule(f"robustness and calibration of {label}")
        runs.append(_run_report(label, configs[label], model, settings))
        console.print(
            f"ECE {runs[-1].ece_before:.2f} % → {runs[-1].ece_after:.2f} % at T = {runs[-1].temperature:.3g}; "
            f"corrupted mIoU {runs[-1].kept:.1f} % of clean → {settings.output_dir / runs[-1].href}"
        )
    report = settings.output_dir / "report.html"
    write_report(
        report,
        "rgbxseg demo: DAMCSeg (RGB + depth + thermal) vs an RGB-only DeepLabV3+ on SyntheticStreets",
        summaries,
        _overlays(models, settings, device),
        SyntheticStreets.classes,
        SyntheticStreets(1).palette,
        _notes(settings, seconds, device),
        runs,
    )
    results = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()}}
    results["models"] = [
        asdict(s) | {"train_seconds": round(seconds[s.name], 1), "run_report": asdict(r)}
        for s, r in zip(summaries, runs, strict=True)
    ]
    atomic_write_text(settings.output_dir / "results.json", json.dumps(results, indent=2))
    console.print(f"report: {report}")
    return report

