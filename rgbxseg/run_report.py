"""``rgbxseg report RUN_DIR``: one self-contained HTML page about a training run.

The page (built with the page kit of :mod:`rgbxseg.report`: same escaping, inline style, base64 PNGs, no
script, no network; written atomically after everything has been computed) shows:

1. the run: name, model, dataset, iterations, when its checkpoint was written; training loss and
   validation mIoU against the iteration (``train_log.csv``, ``val_log.csv``);
2. mIoU, mAcc, aAcc, mF1 and per-class IoU / Acc / F1 on the evaluated split
   (:func:`rgbxseg.engine.evaluate.evaluate`);
3. calibration: ECE / MCE over :data:`ECE_BINS` bins and reliability diagrams before and after temperature
   scaling (:class:`rgbxseg.metrics.calibration.CalibrationError`), with T fitted by
   :func:`rgbxseg.temperature.collect_logits` + :func:`rgbxseg.temperature.fit_temperature` on the val split;
4. robustness: ``RUN_DIR/robustness/robustness.json`` and its heat-map when ``rgbxseg eval --robustness``
   has written them, else the command that does;
5. examples: image, ground truth, prediction and uncertainty (normalised entropy at the fitted T,
   :class:`rgbxseg.predictor.Predictor`) for the first evaluated images.

Decision: the checkpoint is ``best.pt`` (best val mIoU) when the run has one, else ``last.pt``; ``--checkpoint``
picks another. The config is the one stored in that checkpoint (what the model was built from) unless
``--config`` names a YAML file (e.g. to point ``data.root`` elsewhere).
Decision: T is fitted on ``data.val_split`` when the config names one that the dataset has, else on the
train split (the page says so: the model has seen those pixels). The metrics, both calibration errors and
the examples come from one pass over the evaluated split plus a pass over the fit split; ``--limit N``
takes N images of each, evenly spaced (:func:`rgbxseg.data.base.spread`).
Decision: the date shown is the modification time of the checkpoint (UTC), so the same run gives the same
page; a robustness.json that cannot be read is reported in its section instead of failing the report.
"""

from __future__ import annotations

import csv
import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from rgbxseg.atomic import atomic_write_text
from rgbxseg.config import ExperimentConfig, load_config, parse_config
from rgbxseg.data import build_dataset, dataset_splits
from rgbxseg.data.base import SegDataset, SegSubset, spread
from rgbxseg.engine.checkpoint import load_checkpoint
from rgbxseg.engine.evaluate import evaluate
from rgbxseg.errors import ConfigError, DataError
from rgbxseg.metrics.calibration import CalibrationError
from rgbxseg.predictor import Predictor, trained_from_checkpoint
from rgbxseg.report import (
    Cell,
    Grid,
    OverlayRow,
    chart_card,
    data_uri,
    escape,
    examples_section,
    figure_png,
    fmt,
    html_page,
    html_table,
    mpl_text,
    page_header,
    plural,
    stat_tiles,
)
from rgbxseg.temperature import collect_logits, fit_temperature

ECE_BINS = 15
CHECKPOINTS = ("best.pt", "last.pt")  # the default checkpoint: the first one the run has
ROBUSTNESS_DIR = "robustness"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ACCENT, _SECOND, _GAP = "#0969da", "#bf8700", "#cf222e"


# ----------------------------------------------------------------------------------------------- facts
@dataclass
class Calibration:
    """Calibration of the evaluated split before (T = 1) and after temperature scaling.

    ``before`` / ``after`` are :meth:`CalibrationError.compute` results (ECE, MCE in percent, ``bins``).
    """

    temperature: float
    fit_split: str
    fit_images: int
    fit_pixels: int
    fit_on_train: bool  # the dataset / config has no val split
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass
class Robustness:
    """What ``rgbxseg eval --robustness`` left in the run folder (``error`` when it could not be read)."""

    path: Path
    summary: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    heatmap: bytes | None = None
    error: str = ""


@dataclass
class RunReport:
    """Everything the page shows, computed by :func:`build_run_report`; :meth:`html` renders it."""

    run_dir: Path
    checkpoint: Path
    config_source: str
    cfg: ExperimentConfig
    progress: dict[str, Any]
    run_info: dict[str, Any]
    trained_at: str
    parameters: int
    modalities: tuple[str, ...]
    classes: tuple[str, ...]
    palette: np.ndarray
    train_log: list[dict[str, float]]
    val_log: list[dict[str, float]]
    split: str
    images: int  # evaluated images
    split_images: int  # images in the whole split
    metrics: dict[str, Any]
    calibration: Calibration
    robustness: Robustness | None
    overlays: list[OverlayRow]

    def html(self) -> str:
        return render(self)


# ---------------------------------------------------------------------------------------------- inputs
def find_checkpoint(run_dir: Path, checkpoint: str | Path | None = None) -> Path:
    """The checkpoint to report: ``checkpoint`` (a name inside ``run_dir`` or a path), else best.pt, else last.pt.

    Raises:
        ConfigError: ``run_dir`` is missing or not a folder, or holds no checkpoint.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ConfigError(f"{run_dir}: run folder not found")
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a folder (expected a run folder written by 'rgbxseg train')")
    if checkpoint is not None:
        inside = run_dir / checkpoint
        return inside if inside.is_file() else Path(checkpoint)
    for name in CHECKPOINTS:
        if (run_dir / name).is_file():
            return run_dir / name
    raise ConfigError(f"{run_dir}: no checkpoint ({' or '.join(CHECKPOINTS)}) in this run folder")


def read_log(path: Path) -> list[dict[str, float]]:
    """The numeric columns of a training CSV log (``[]`` when there is none); unreadable cells are left out."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            values = {}
            for key, text in row.items():
                try:
                    values[str(key)] = float(text)
                except (TypeError, ValueError):
                    continue
            if "iteration" in values:
                rows.append(values)
    return rows


def read_robustness(run_dir: Path) -> Robustness | None:
    """``run_dir/robustness/robustness.json`` (+ its PNG heat-map), None when absent."""
    folder = Path(run_dir) / ROBUSTNESS_DIR
    path = folder / "robustness.json"
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
        summary = {str(k): float(v) for k, v in payload["summary"].items()}
        rows = [dict(row) for row in payload["rows"]]
        for row in rows:
            row["mIoU"], row["drop %"] = float(row["mIoU"]), float(row["drop %"])
            missing = {"name", "kind", "corruption", "severity"} - set(row)
            if missing:
                raise KeyError(f"a row lacks {sorted(missing)}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return Robustness(path, error=f"{path} could not be read ({type(error).__name__}: {error})")
    png = folder / "robustness.png"
    heatmap = png.read_bytes() if png.is_file() else None
    return Robustness(path, summary, rows, heatmap if heatmap and heatmap.startswith(_PNG_MAGIC) else None)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def fit_split(cfg: ExperimentConfig) -> tuple[str, bool]:
    """The split T is fitted on, and whether that is the train split (no val split to use)."""
    val = cfg.data.val_split
    if val is not None and val in dataset_splits(cfg.data.dataset):
        return val, False
    return cfg.data.train_split, True


def evaluation_split(cfg: ExperimentConfig, split: str, limit: int | None = None) -> tuple[SegDataset, int]:
    """Split ``split`` of the config's dataset, cut to ``limit`` images evenly spaced over it (the first and
    the last among them: a video split such as CamVid's keeps every sequence), and the split's full size."""
    data = cfg.data
    dataset = build_dataset(data.dataset, split, data.root, data.modalities, **data.options)
    total = len(dataset)
    if limit is not None and limit < total:
        dataset = SegSubset(dataset, spread(total, limit), dataset.transform)
    if len(dataset) == 0:
        raise ConfigError(f"{data.dataset}/{split} has no images to evaluate")
    return dataset, total


# --------------------------------------------------------------------------------------------- compute
def _calibrate(
    model: torch.nn.Module, cfg: ExperimentConfig, limit: int | None, device: torch.device
) -> tuple[float, str, int, int, bool]:
    split, on_train = fit_split(cfg)
    dataset, _ = evaluation_split(cfg, split, limit)
    e = cfg.eval
    try:
        logits, labels = collect_logits(
            model, dataset, device, batch_size=e.batch_size, mode=e.mode, window=e.window, stride=e.stride, flip=e.flip
        )
    except ValueError as error:  # no labelled pixel, or NaN logits: nothing to fit T on
        raise DataError(f"cannot fit the temperature on {cfg.data.dataset}/{split}: {error}") from None
    return fit_temperature(logits, labels), split, len(dataset), labels.numel(), on_train


def _overlay_rows(predictor: Predictor, dataset: SegDataset, count: int) -> list[OverlayRow]:
    rows = []
    for index in range(min(count, len(dataset))):
        raw = dataset.raw(index)
        prediction = predictor.predict(raw.image, raw.modalities)
        rows.append(
            OverlayRow(
                condition=str(raw.meta.get("id", f"image {index}")),
                image=np.round(np.clip(raw.image, 0.0, 1.0) * 255.0).astype(np.uint8),
                modalities={},
                label=raw.label,
                predictions={"prediction": prediction.labels},
                maps={"uncertainty": prediction.uncertainty},
            )
        )
    return rows


def build_run_report(
    run_dir: str | Path,
    *,
    config: str | Path | ExperimentConfig | None = None,
    checkpoint: str | Path | None = None,
    split: str | None = None,
    limit: int | None = None,
    overlays: int = 4,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> RunReport:
    """Compute what the run report shows (see the module docstring); nothing is written.

    Args:
        run_dir: A run folder of ``rgbxseg train`` (``best.pt`` / ``last.pt``, logs, ``run_info.json``).
        config: An experiment YAML (or a parsed config) to use instead of the config stored in the checkpoint.
        checkpoint: A checkpoint name inside ``run_dir`` or a path (default: best.pt, else last.pt).
        split: The split to evaluate (default: the config's ``eval.split``).
        limit: Only N images, evenly spaced, of the evaluated split and of the split T is fitted on.
        overlays: Example rows (the first evaluated images).
        device: Where to run the model.
        progress: Show evaluation progress bars.

    Raises:
        ConfigError / DataError: A missing run folder or checkpoint, a bad config, a dataset that cannot be
            built, or a model whose classes do not match the dataset's.
    """
    for name, value, low in (("limit", limit, 1), ("overlays", overlays, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
    run_dir = Path(run_dir)
    checkpoint_path = find_checkpoint(run_dir, checkpoint)
    state = load_checkpoint(checkpoint_path)
    device = torch.device(device)
    trained = trained_from_checkpoint(state, checkpoint_path, device)
    if isinstance(config, ExperimentConfig):
        cfg, source = config, f"the caller's config '{config.name}'"
    elif config is not None:
        cfg, source = load_config(config), str(config)
    else:
        cfg, source = parse_config(state["config"], checkpoint_path), f"the checkpoint ({checkpoint_path.name})"
    chosen = split or cfg.eval.split
    dataset, total = evaluation_split(cfg, chosen, limit)
    if len(trained.classes) != dataset.num_classes:
        raise ConfigError(
            f"{checkpoint_path}: the model has {len(trained.classes)} classes but "
            f"{cfg.data.dataset}/{chosen} has {dataset.num_classes}"
        )
    model = trained.model
    temperature, fit_name, fit_images, fit_pixels, on_train = _calibrate(model, cfg, limit, device)
    before, after = CalibrationError(ECE_BINS, dataset.ignore_index), CalibrationError(ECE_BINS, dataset.ignore_index)

    def calibration(logits: torch.Tensor, label: torch.Tensor) -> None:
        before.update(logits, label, from_logits=True)
        after.update(logits / temperature, label, from_logits=True)

    metrics = evaluate(model, dataset, cfg.eval, device, progress=progress, on_logits=calibration)
    e = cfg.eval
    predictor = Predictor(
        model, device, mode=e.mode, window=e.window, stride=e.stride, flip=e.flip, temperature=temperature
    )
    modified = datetime.fromtimestamp(checkpoint_path.stat().st_mtime, timezone.utc)
    return RunReport(
        run_dir=run_dir,
        checkpoint=checkpoint_path,
        config_source=source,
        cfg=cfg,
        progress=dict(state.get("progress", {})),
        run_info=_read_json(run_dir / "run_info.json"),
        trained_at=modified.strftime("%Y-%m-%d %H:%M UTC"),
        parameters=sum(p.numel() for p in model.parameters()),
        modalities=tuple(trained.modality_channels),
        classes=tuple(dataset.classes),
        palette=np.asarray(dataset.palette),
        train_log=read_log(run_dir / "train_log.csv"),
        val_log=read_log(run_dir / "val_log.csv"),
        split=chosen,
        images=len(dataset),
        split_images=total,
        metrics=metrics,
        calibration=Calibration(
            temperature, fit_name, fit_images, fit_pixels, on_train, before.compute(), after.compute()
        ),
        robustness=read_robustness(run_dir),
        overlays=_overlay_rows(predictor, dataset, overlays),
    )


def write_run_report(run_dir: str | Path, out: str | Path | None = None, **options: Any) -> tuple[Path, RunReport]:
    """Build the run report (:func:`build_run_report` ``options``) and write it atomically to ``out``
    (default ``RUN_DIR/report.html``); returns the path and the report."""
    report = build_run_report(run_dir, **options)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    page = report.html()
    atomic_write_text(path, page)
    return path, report


# ---------------------------------------------------------------------------------------------- charts
def _style(ax: Any) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)


def _smooth(values: np.ndarray) -> np.ndarray:
    """A centred moving average over ~2 % of the points (at least 5), for a long noisy loss curve."""
    window = max(5, len(values) // 50)
    kernel = np.ones(window) / window
    padded = np.pad(values, (window // 2, window - 1 - window // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _curves_chart(train_log: Sequence[dict[str, float]], val_log: Sequence[dict[str, float]]) -> tuple[str, int]:
    losses = [r for r in train_log if "loss" in r]
    scores = [r for r in val_log if "mIoU" in r]
    panels = [name for name, rows in (("loss", losses), ("val", scores)) if rows]
    fig = Figure(figsize=(5.6 * len(panels), 3.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharex=True)[0]
    for ax, panel in zip(axes, panels):
        if panel == "loss":
            x, y = np.array([r["iteration"] for r in losses]), np.array([r["loss"] for r in losses])
            few = len(x) <= 30
            ax.plot(
                x, y, color=_ACCENT, alpha=1.0 if few else 0.35, lw=1, marker="o" if few else None, ms=3, label="loss"
            )
            if not few:
                ax.plot(x, _smooth(y), color=_ACCENT, lw=1.6, label="moving average")
                ax.legend(frameon=False, fontsize=8)
            ax.set_title("training loss", fontsize=10)
        else:
            x, y = np.array([r["iteration"] for r in scores]), np.array([r["mIoU"] for r in scores])
            ax.plot(x, y, color=_SECOND, lw=1.6, marker="o", ms=4)
            best = int(np.nanargmax(y)) if np.isfinite(y).any() else None
            if best is not None:
                ax.annotate(f"{y[best]:.1f}", (x[best], y[best]), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize=8)  # fmt: skip
            ax.set_title("validation mIoU (%)", fontsize=10)
            ax.set_ylim(0, max(5.0, min(100.0, float(np.nanmax(y, initial=0.0)) * 1.2)))
        ax.set_xlabel("iteration")
        _style(ax)
    return figure_png(fig)


def _per_class_chart(classes: Sequence[str], per_class: dict[str, dict[str, float]]) -> tuple[str, int]:
    values = np.array([per_class[c]["IoU"] for c in classes], dtype=float)
    fig = Figure(figsize=(5.2, 0.8 + 0.26 * len(classes)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(classes))
    bars = ax.barh(y, np.nan_to_num(values), color=_ACCENT, height=0.7)
    ax.bar_label(bars, labels=[fmt(v) for v in values], fontsize=7, padding=2)
    ax.set_yticks(y, [mpl_text(c) for c in classes], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel("IoU (%)")
    ax.set_title("IoU per class", fontsize=10)
    _style(ax)
    return figure_png(fig)


def _reliability_chart(calibration: Calibration) -> tuple[str, int]:
    """Reliability diagrams (accuracy per confidence bin, gap to the diagonal) and the pixel share per bin."""
    fig = Figure(figsize=(10.0, 4.6), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    panels = (("before: T = 1", calibration.before), (f"after: T = {calibration.temperature:.3g}", calibration.after))
    for column, (title, result) in enumerate(panels):
        bins = result["bins"]
        width = 1.0 / len(bins["lower"])
        centres = np.array(bins["lower"]) + width / 2
        accuracy, confidence = np.array(bins["accuracy"], float), np.array(bins["confidence"], float)
        count = np.array(bins["count"], float)
        top, bottom = axes[0, column], axes[1, column]
        top.bar(centres, np.nan_to_num(accuracy), width, color=_ACCENT, edgecolor="white", label="accuracy")
        gap = np.nan_to_num(np.abs(accuracy - confidence))
        top.bar(centres, gap, width, bottom=np.nan_to_num(np.minimum(accuracy, confidence)), color=_GAP, alpha=0.25,
                edgecolor=_GAP, hatch="//", lw=0.5, label="gap to mean confidence")  # fmt: skip
        top.plot([0, 1], [0, 1], "--", color="#59636e", lw=1, label="perfect calibration")
        top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
        top.set_title(f"{title}   ECE {fmt(result['ECE'])} %", fontsize=10)
        share = 100 * count / max(count.sum(), 1.0)
        bottom.bar(centres, share, width, color="#8c959f", edgecolor="white")
        bottom.set(xlabel="confidence (max softmax probability)", ylabel="% pixels")
        for ax in (top, bottom):
            _style(ax)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=3, frameon=False, fontsize=8)
    return figure_png(fig)


# ---------------------------------------------------------------------------------------------- render
def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _iterations(report: RunReport) -> str:
    done = int(report.progress.get("iteration", 0))
    train = report.cfg.train
    if train.iterations is not None:
        return f"{done} of {train.iterations} iterations"
    return f"{done} iterations (time budget {train.time_budget_minutes:g} min)"


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{"".join(parts)}</section>'


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _cards(*cards: str) -> str:
    return f'<div class="cards">{"".join(cards)}</div>'


def _header(report: RunReport) -> str:
    cfg = report.cfg
    model = f"{cfg.model.name} ({cfg.model.encoder}, {report.parameters / 1e6:.2g} M parameters)"
    sensors = f"RGB + {', '.join(report.modalities)}" if report.modalities else "RGB only"
    meta = " · ".join([model, f"{cfg.data.dataset} ({sensors})", _iterations(report), f"trained {report.trained_at}"])
    progress, info = report.progress, report.run_info
    notes = [
        f"Run folder {report.run_dir}; checkpoint {report.checkpoint.name} at iteration "
        f"{int(progress.get('iteration', 0))} after {_duration(float(progress.get('elapsed', 0.0)))} of training; "
        f"config from {report.config_source}."
    ]
    if info:
        world = int(info.get("world_size", 1))
        processes = f"{world} process{'' if world == 1 else 'es'}"
        notes.append(
            f"Trained on {info.get('device', '?')} ({processes}, {info.get('threads', '?')} CPU thread(s)) with "
            f"{info.get('train_samples', '?')} training samples, batch {cfg.data.batch_size}."
        )
    links = [("training", "Training"), ("metrics", "Metrics"), ("calibration", "Calibration")]
    links += [("robustness", "Robustness")] + ([("examples", "Examples")] if report.overlays else [])
    return page_header(f"Run report: {cfg.name}", meta, notes, links)


def _training_section(report: RunReport) -> str:
    best = float(report.progress.get("best_miou", -1.0))
    tiles = [("iterations", str(int(report.progress.get("iteration", 0))))]
    tiles.append(("training time", _duration(float(report.progress.get("elapsed", 0.0)))))
    if report.train_log:
        tiles.append(("last loss", f"{report.train_log[-1].get('loss', math.nan):.3g}"))
    if best >= 0:
        tiles.append(("best val mIoU", fmt(best)))
    parts = [stat_tiles(tiles)]
    if any("loss" in r for r in report.train_log) or any("mIoU" in r for r in report.val_log):
        parts.append(_cards(chart_card(_curves_chart(report.train_log, report.val_log), "training curves")))
    if not report.train_log:
        parts.append(_note(f"No training log: {report.run_dir / 'train_log.csv'} is missing."))
    if not report.val_log:
        parts.append(_note("No validation log (val_log.csv): the run had no validation split or never validated."))
    return _section("training", "Training", *parts)


def _metrics_section(report: RunReport) -> str:
    m = report.metrics
    cfg = report.cfg.eval
    inference = f"{cfg.mode} inference{' with flip TTA' if cfg.flip else ''}"
    images = plural(report.split_images, "image")
    limited = f"{report.images} of {images}, evenly spaced (--limit)" if report.images < report.split_images else images
    hint = (
        f"{report.cfg.data.dataset}/{report.split}: {limited}, {inference}. Percent; –: the class is absent from "
        "both the ground truth and the prediction."
    )
    tiles = stat_tiles([(k, fmt(m[k])) for k in ("mIoU", "mAcc", "aAcc", "mF1")])
    rows = [(name, [Cell(fmt(v[k])) for k in ("IoU", "Acc", "F1")]) for name, v in m["per_class"].items()]
    rows.append(("mean", [Cell(fmt(m[k]), bold=True) for k in ("mIoU", "mAcc", "mF1")]))
    table = html_table(Grid("Per class", ["class", "IoU", "Acc", "F1"], rows))
    chart = chart_card(_per_class_chart(report.classes, m["per_class"]), "bar chart of the IoU of every class")
    return _section(
        "metrics", f"Metrics on {report.split}", f'<p class="hint">{escape(hint)}</p>', tiles, _cards(table, chart)
    )


def _confidence(result: dict[str, Any]) -> tuple[float, float]:
    """Mean confidence and pixel accuracy (percent) over every bin."""
    bins = result["bins"]
    count = np.array(bins["count"], float)
    total = count.sum()
    if total == 0:
        return math.nan, math.nan
    confidence = np.nansum(np.array(bins["confidence"], float) * count) / total
    accuracy = np.nansum(np.array(bins["accuracy"], float) * count) / total
    return 100 * float(confidence), 100 * float(accuracy)


def _calibration_section(report: RunReport) -> str:
    c = report.calibration
    t = f"{c.temperature:.3g}"
    tiles = stat_tiles([("temperature T", t), ("ECE before (T = 1)", f"{fmt(c.before['ECE'])} %"),
                        (f"ECE after (T = {t})", f"{fmt(c.after['ECE'])} %")])  # fmt: skip
    rows = []
    for label, temperature, result in (("before", "1", c.before), ("after", t, c.after)):
        confidence, accuracy = _confidence(result)
        cells = [temperature, fmt(result["ECE"]), fmt(result["MCE"]), fmt(confidence), fmt(accuracy)]
        rows.append((label, [Cell(x) for x in cells]))
    header = ["", "T", "ECE (%)", "MCE (%)", "mean confidence (%)", "pixel accuracy (%)"]
    caption = f"{ECE_BINS} equal-width confidence bins over every labelled pixel of {report.split}."
    table = html_table(Grid("Before and after temperature scaling", header, rows, caption))
    chart = chart_card(_reliability_chart(c), "reliability diagrams before and after temperature scaling")
    fitted = (
        f"T = {t} was fitted on the {c.fit_split} split ({plural(c.fit_images, 'image')}, "
        f"{c.fit_pixels:,} labelled pixels) by minimising the negative log-likelihood of softmax(logits / T) "
        "(rgbxseg.temperature: collect_logits + fit_temperature)."
    )
    notes = [fitted]
    if c.fit_on_train:
        notes.append(
            f"The dataset has no validation split (or the config names none), so T was fitted on the "
            f"{c.fit_split} split, whose pixels the model was trained on: T is likely too small."
        )
    elif c.fit_split == report.split:
        notes.append(
            f"T was fitted on the evaluated split itself ({report.split}), so the ECE after scaling is optimistic; "
            "evaluate another split with --split for an unbiased figure."
        )
    notes.append(
        "Dividing every logit of a pixel by the same T > 0 keeps their order, so the predicted labels, the mIoU and "
        "every metric above are unchanged by T; only the confidences (and the uncertainty maps below) change."
    )
    return _section("calibration", "Calibration", tiles, *(_note(n) for n in notes), _cards(table, chart))


def _robustness_tables(rows: Sequence[dict[str, Any]]) -> list[str]:
    corrupted = [r for r in rows if r.get("kind") == "corruption"]
    missing = [r for r in rows if r.get("kind") == "missing"]
    tables = []
    if corrupted:
        names = list(dict.fromkeys(str(r["corruption"]) for r in corrupted))
        severities = sorted({int(r["severity"]) for r in corrupted})
        grid = []
        for name in names:
            by = {int(r["severity"]): r for r in corrupted if r["corruption"] == name}
            cells = [Cell(fmt(by[s]["mIoU"]) if s in by else "–") for s in severities]
            drops = [by[s]["drop %"] for s in severities if s in by]
            cells.append(Cell(fmt(float(np.mean(drops))) if drops else "–"))
            grid.append((name, cells))
        header = ["corruption", *(f"severity {s}" for s in severities), "mean drop %"]
        tables.append(html_table(Grid("Corruptions: mIoU (%)", header, grid)))
    if missing:
        grid = [(str(r["name"]), [Cell(fmt(r["mIoU"])), Cell(fmt(r["drop %"]))]) for r in missing]
        tables.append(html_table(Grid("Missing modalities", ["protocol", "mIoU (%)", "drop %"], grid)))
    return tables


def _robustness_section(report: RunReport) -> str:
    result = report.robustness
    if result is None or result.error:
        best = report.run_dir / "best.pt"
        checkpoint = best if best.is_file() else report.checkpoint
        command = f"rgbxseg eval --robustness --config CONFIG.yaml --checkpoint {shlex.quote(str(checkpoint))}"
        how = (
            f'<p class="note">No robustness results in <code>{escape(report.run_dir / ROBUSTNESS_DIR)}</code>. '
            "Produce them (every corruption × severity and missing-modality protocol) with the run's config, then "
            f'run <code>rgbxseg report</code> again:</p><pre class="command">{escape(command)}</pre>'
        )
        problem = _note(result.error) if result is not None else ""
        return _section("robustness", "Robustness", problem, how)
    s = result.summary
    tiles = stat_tiles([(k, fmt(v)) for k, v in s.items()])
    hint = (
        f"From {result.path} (rgbxseg eval --robustness). Drop % = (clean mIoU − row mIoU) / clean mIoU; "
        "kept % = mean corrupted mIoU / clean mIoU."
    )
    cards = _robustness_tables(result.rows)
    if result.heatmap is not None:
        image = f'<img class="chart" src="{data_uri(result.heatmap)}" alt="robustness heat-map: mIoU kept, % of clean">'
        cards.append(f'<div class="card">{image}</div>')
    return _section("robustness", "Robustness", f'<p class="hint">{escape(hint)}</p>', tiles, _cards(*cards))


def render(report: RunReport) -> str:
    """The whole HTML page of ``report``."""
    parts = [
        _training_section(report),
        _metrics_section(report),
        _calibration_section(report),
        _robustness_section(report),
    ]
    if report.overlays:
        count = len(report.overlays)
        first = "The first evaluated image" if count == 1 else f"The first {count} evaluated images"
        hint = (
            f"{first} of {report.split}: ground truth and prediction blended "
            f"over the image; uncertainty = normalised entropy of softmax(logits / T) at T = "
            f"{report.calibration.temperature:.3g} (dark: confident, bright: classes tie)."
        )
        parts.append(examples_section(report.overlays, report.classes, report.palette, hint))
    title = f"Run report: {report.cfg.name}"
    return html_page(title, _header(report), "".join(parts), writer="rgbxseg.run_report")
