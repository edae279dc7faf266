"""The ``rgbxseg`` command line. User errors print one line and exit with status 2, no traceback."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from rgbxseg.errors import RgbxsegError
from rgbxseg.web.cli import annotate_app

if TYPE_CHECKING:
    from rgbxseg.data.base import SegDataset
    from rgbxseg.interactive.evaluate import ClickEngine

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets: counts, class histograms, pictures.")
app.add_typer(data_app, name="data")
app.add_typer(annotate_app, name="annotate")
console = Console()

RootOption = typer.Option(None, "--root", help="Folder that holds the dataset (not needed for 'synthetic').")
ModalitiesOption = typer.Option("", "--modalities", help="Comma-separated modality names (rgbx, mri, synthetic).")


def _names(text: str) -> tuple[str, ...] | None:
    """Comma-separated names; None (the dataset's default sensors) for an empty option."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    return names or None


def _label_statistics(ds: SegDataset, desc: str) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """Pixel count per class and the set of label sizes over a whole split."""
    counts = np.zeros(ds.num_classes, dtype=np.int64)
    sizes: set[tuple[int, int]] = set()
    for i in tqdm(range(len(ds)), desc=desc, leave=False, disable=None):
        label = ds.load_label(i)
        sizes.add(label.shape)
        valid = label[(label >= 0) & (label < ds.num_classes)]
        counts += np.bincount(valid.ravel(), minlength=ds.num_classes)
    return counts, sizes


def _sizes_text(sizes: set[tuple[int, int]], shown: int = 4) -> str:
    ordered = sorted(sizes)
    text = ", ".join(f"{h}×{w}" for h, w in ordered[:shown])
    return text + (f" (+{len(ordered) - shown} more)" if len(ordered) > shown else "")


@data_app.command("info")
def data_info(
    dataset: str = typer.Argument(..., help="Dataset name: camvid, rgbx, grabcut, berkeley, davis, bsds, mri, synthetic."),
    root: Path | None = RootOption,
    modalities: str = ModalitiesOption,
) -> None:
    """Samples per split, image sizes, modalities and the class histogram (share of labelled pixels)."""
    from rgbxseg.data import build_dataset, dataset_splits

    splits = {name: build_dataset(dataset, name, root, _names(modalities)) for name in dataset_splits(dataset)}
    stats = {name: _label_statistics(ds, f"{dataset}/{name}") for name, ds in splits.items()}
    first = next(iter(splits.values()))
    total = sum(len(ds) for ds in splits.values())
    summary = Table(title=f"{dataset}: {total} samples; modalities: {', '.join(first.modalities) or 'none (RGB only)'}")
    for column in ("split", "samples", "sizes (H×W)"):
        summary.add_column(column)
    for name, ds in splits.items():
        summary.add_row(name, str(len(ds)), _sizes_text(stats[name][1]))
    console.print(summary)
    histogram = Table(title="class histogram (% of labelled pixels)")
    for column in ("id", "class", *splits):
        histogram.add_column(column, justify="left" if column == "class" else "right")
    shares = {name: 100 * counts / max(int(counts.sum()), 1) for name, (counts, _) in stats.items()}
    for c in range(first.num_classes):
        if any(stats[name][0][c] for name in splits):
            histogram.add_row(str(c), first.classes[c], *(f"{shares[name][c]:.2f}" for name in splits))
    console.print(histogram)


@data_app.command("show")
def data_show(
    dataset: str = typer.Argument(..., help="Dataset name (see 'rgbxseg data info --help')."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    index: int = typer.Option(0, "--index", help="Sample index within the split."),
    split: str | None = typer.Option(None, "--split", help="Split (default: the dataset's first one)."),
    root: Path | None = RootOption,
    modalities: str = ModalitiesOption,
) -> None:
    """Write a picture of one sample: RGB, every modality, and the label over the image."""
    from rgbxseg.atomic import atomic_path
    from rgbxseg.data import build_dataset, dataset_splits
    from rgbxseg.data.visualize import sample_figure

    ds = build_dataset(dataset, split or dataset_splits(dataset)[0], root, _names(modalities))
    raw = ds.raw(index)
    fig = sample_figure(raw, ds.classes, ds.palette)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    console.print(f"wrote {out}")


def _overrides(pairs: list[str]) -> dict[str, object]:
    import yaml

    from rgbxseg.errors import ConfigError

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value (e.g. train.iterations=100), got '{pair}'")
        out[key.strip()] = yaml.safe_load(value)
    return out


SetOption = typer.Option([], "--set", help="Override a config value: dotted.key=value (repeatable).")


@app.command()
def train(
    config: Path = typer.Option(..., "--config", help="Experiment YAML (see configs/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run from its last.pt."),
    overrides: list[str] = SetOption,
) -> None:
    """Train a segmenter, or the MMMS interactive head (a config with 'task: interactive'); checkpoints and
    logs go to <output_dir>/<name>/. Use torchrun for data parallel (segmenters)."""
    from rgbxseg.config import load_config
    from rgbxseg.engine.trainer import train as run_training
    from rgbxseg.interactive.config import config_task, load_interactive_config

    if config_task(config) == "interactive":
        from rgbxseg.interactive.trainer import train_interactive

        icfg = load_interactive_config(config, _overrides(overrides))
        result = train_interactive(icfg, resume=resume)
        console.print(
            f"finished {icfg.name}: {result['iterations']} iterations in {result['seconds'] / 60:.1f} min, "
            f"last batch IoU {result['iou']:.3f} → {icfg.run_dir / 'mmms.safetensors'}"
        )
        return
    cfg = load_config(config, _overrides(overrides))
    state = run_training(cfg, resume=resume)
    console.print(f"finished {cfg.name}: {state.iteration} iterations, best val mIoU {state.best_miou:.2f} → {cfg.run_dir}")


def _metrics_table(title: str, result: dict) -> Table:
    table = Table(title=title)
    for column in ("class", "IoU", "Acc", "F1"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, values in result["per_class"].items():
        table.add_row(name, *(f"{values[k]:.2f}" for k in ("IoU", "Acc", "F1")))
    table.add_row("[bold]mean[/bold]", f"{result['mIoU']:.2f}", f"{result['mAcc']:.2f}", f"{result['mF1']:.2f}")
    return table


@app.command("eval")
def evaluate_command(
    config: Path = typer.Option(..., "--config", help="Experiment YAML that names the dataset."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A checkpoint written by 'rgbxseg train'."),
    split: str | None = typer.Option(None, "--split", help="Split to evaluate (default: eval.split of the config)."),
    out: Path | None = typer.Option(None, "--out", help="Also write the metrics as JSON here."),
    robustness: bool = typer.Option(
        False, "--robustness", help="Also every corruption × severity and missing-modality protocol."
    ),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Robustness outputs (default: CHECKPOINT_DIR/robustness)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only N images of the split, evenly spaced."),
    overrides: list[str] = SetOption,
) -> None:
    """Evaluate a checkpoint: mIoU, mAcc (MPA), aAcc, mF1 and per-class IoU/Acc/F1; with --robustness the
    mIoU and its drop under every corruption and missing-modality protocol (JSON, CSV, heat-map PNG)."""
    import json

    from rgbxseg.atomic import atomic_write_text
    from rgbxseg.config import load_config
    from rgbxseg.engine.evaluate import evaluate
    from rgbxseg.predictor import load_trained
    from rgbxseg.run_report import evaluation_split

    cfg = load_config(config, _overrides(overrides))
    device = torch_device()
    trained = load_trained(checkpoint, device)
    dataset, _ = evaluation_split(cfg, split or cfg.eval.split, limit)
    if robustness:
        _robustness(trained.model, dataset, cfg, device, out_dir or checkpoint.parent / "robustness")
        return
    result = evaluate(trained.model, dataset, cfg.eval, device)
    console.print(_metrics_table(f"{cfg.name} on {dataset.name}/{split or cfg.eval.split} (aAcc {result['aAcc']:.2f})", result))
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2))
        console.print(f"wrote {out}")


def _robustness(model, dataset, cfg, device, out_dir: Path) -> None:  # noqa: ANN001 (torch types imported lazily)
    from rgbxseg.robustness.evaluate import evaluate_robustness, summary, table

    results, paths = evaluate_robustness(model, dataset, cfg.eval, device, out_dir, cfg.name)
    rows = table(results)
    grid = Table(title=f"{cfg.name}: robustness on {dataset.name} ({len(dataset)} images)")
    for column in ("row", "mIoU", "drop %"):
        grid.add_column(column, justify="left" if column == "row" else "right")
    for row in rows:
        grid.add_row(row["name"], f"{row['mIoU']:.2f}", f"{row['drop %']:.1f}")
    console.print(grid)
    console.print(summary(rows))
    for path in paths:
        console.print(f"wrote {path}")


def torch_device():  # noqa: ANN201 - torch.device, imported lazily to keep --help fast
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run folder written by 'rgbxseg train' (best.pt / last.pt and logs)."),
    out: Path | None = typer.Option(None, "--out", help="HTML file to write (default: RUN_DIR/report.html)."),
    config: Path | None = typer.Option(
        None, "--config", help="Experiment YAML to use instead of the config stored in the checkpoint."
    ),
    checkpoint: str | None = typer.Option(
        None, "--checkpoint", help="best.pt, last.pt (inside RUN_DIR) or a path (default: best.pt, else last.pt)."
    ),
    split: str | None = typer.Option(None, "--split", help="Split to evaluate (default: eval.split of the config)."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Only N images, evenly spaced, of the evaluated split (and of the split T is fitted on)."
    ),
    overlays: int = typer.Option(4, "--overlays", min=0, help="Example rows: image, ground truth, prediction, uncertainty."),
) -> None:
    """One self-contained HTML page about a training run: curves, metrics and per-class table, calibration (ECE,
    reliability diagrams) before and after temperature scaling, robustness results, example predictions."""
    from rgbxseg.run_report import write_run_report

    path, result = write_run_report(
        run_dir, out, config=config, checkpoint=checkpoint, split=split, limit=limit, overlays=overlays,
        device=torch_device(), progress=True,
    )  # fmt: skip
    c = result.calibration
    console.print(
        f"{result.cfg.name} on {result.split}: mIoU {result.metrics['mIoU']:.2f}; ECE {c.before['ECE']:.2f} % → "
        f"{c.after['ECE']:.2f} % at T = {c.temperature:.3g}"
    )
    console.print(f"wrote {path}")


@app.command()
def predict(
    image: Path = typer.Argument(..., help="RGB image file."),
    checkpoint: Path = typer.Option(..., "--checkpoint"),
    modality: list[str] = typer.Option([], "--modality", help="name=path of an aligned modality map (repeatable)."),
    out_dir: Path = typer.Option(Path("predictions"), "--out-dir"),
    flip: bool = typer.Option(False, "--flip", help="Average with the horizontally flipped prediction."),
    temperature: float = typer.Option(
        1.0, "--temperature", help="T > 0 dividing the logits (a fitted calibration temperature); labels never change."
    ),
) -> None:
    """Segment one image: writes <stem>_label.png (class ids), <stem>_overlay.png (colours over the image) and
    <stem>_uncertainty.png (normalised entropy of the softmax, 8-bit, 255 = most uncertain)."""
    import math

    import cv2

    from rgbxseg.atomic import atomic_path
    from rgbxseg.data.base import default_palette
    from rgbxseg.data.io import read_map, read_rgb
    from rgbxseg.data.visualize import overlay
    from rgbxseg.errors import ConfigError, DataError
    from rgbxseg.predictor import Predictor, load_trained

    if not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"--temperature must be a finite number > 0, got {temperature}")
    trained = load_trained(checkpoint, torch_device())
    rgb = read_rgb(image)
    maps = {}
    for item in modality:
        name, sep, path = item.partition("=")
        if not sep:
            raise DataError(f"--modality expects name=path, got '{item}'")
        maps[name] = read_map(path)
        if maps[name].shape[:2] != rgb.shape[:2]:
            size, image_size = "×".join(map(str, maps[name].shape[:2])), "×".join(map(str, rgb.shape[:2]))
            raise DataError(f"{path}: modality '{name}' is {size} but the image is {image_size}")
    prediction = Predictor(trained.model, flip=flip, temperature=temperature).predict(rgb, maps)
    palette = default_palette(len(trained.classes))
    blended = (overlay(rgb, prediction.labels, palette) * 255).astype("uint8")
    outputs = {
        "label": prediction.labels.astype("uint8"),
        "overlay": cv2.cvtColor(blended, cv2.COLOR_RGB2BGR),
        "uncertainty": (prediction.uncertainty * 255).round().astype("uint8"),
    }
    for suffix, array in outputs.items():
        with atomic_path(out_dir / f"{image.stem}_{suffix}.png") as tmp:
            cv2.imwrite(str(tmp), array)
    console.print("wrote " + ", ".join(str(out_dir / f"{image.stem}_{suffix}.png") for suffix in outputs))


@app.command("extract-features")
def extract_features(
    dataset: str = typer.Argument(..., help="bsds, camvid, synthetic, mri, grabcut, berkeley, davis or rgbx."),
    root: Path | None = RootOption,
    split: str | None = typer.Option(None, "--split", help="Split (default: the dataset's first)."),
    modalities: str = ModalitiesOption,
    views: int = typer.Option(
        0, "--views", min=0, help="0: cache what the annotation engine needs; N: write N augmented training views per image."
    ),
    out: Path = typer.Option(Path("runs/features"), "--out", help="Feature cache (or training views) folder."),
    size: int = typer.Option(448, "--size", help="Long side (cache) or crop side (views); a multiple of 14."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N images."),
) -> None:
    """Run the frozen DINOv2 backbone over a whole dataset once, ahead of annotation or training."""
    from rgbxseg.data import build_dataset, dataset_splits
    from rgbxseg.interactive.engine import as_image_tensor, network_input
    from rgbxseg.interactive.views import ViewAugment, ViewSource, extract_views
    from rgbxseg.models.mmms import Dinov2Backbone, FeatureCache

    chosen = split or dataset_splits(dataset)[0]
    backbone = Dinov2Backbone()
    if views:
        source = ViewSource(dataset, chosen, root, views, _names(modalities), {}, limit)
        written = extract_views(source, backbone, out / backbone.backbone_id, ViewAugment(size=size))
        console.print(f"{len(written)} training views in {out / backbone.backbone_id / source.key()}")
        return
    data = build_dataset(dataset, chosen, root, _names(modalities))
    cache = FeatureCache(backbone, out, capacity=1)
    count = len(data) if limit is None else min(limit, len(data))
    for index in tqdm(range(count), desc=f"features {dataset}/{chosen}", unit="image"):
        cache.features(network_input(as_image_tensor(data.load(index).image), size))
    computed, cached = cache.hits["computed"], cache.hits["disk"]
    console.print(f"features of {count} images: {computed} computed, {cached} already cached → {cache.directory}")


class ClickEngineName(StrEnum):
    """``interactive-eval --engine``: the learned MMMS engine, or OpenCV GrabCut seeded by the clicks (the
    classical peer of SPEC 10; RGB only, no weights)."""

    mmms = "mmms"
    grabcut = "grabcut"


ENGINE_TITLES = {ClickEngineName.mmms: "MMMS", ClickEngineName.grabcut: "GrabCut (OpenCV)"}


def _click_engine(
    name: ClickEngineName, weights: str, cache: Path | None, runtime: str, refine: str, zoom: bool
) -> ClickEngine:
    """The engine ``interactive-eval --engine`` names; GrabCut takes no weights, cache, runtime, refinement
    or zoom."""
    if name == ClickEngineName.grabcut:
        from rgbxseg.interactive.grabcut_engine import GrabCutEngine

        return GrabCutEngine()
    from rgbxseg.errors import ConfigError
    from rgbxseg.interactive.engine import MMMSEngine
    from rgbxseg.interactive.refine import REFINES

    if refine not in REFINES:
        raise ConfigError(f"--refine must be one of {', '.join(REFINES)}, got '{refine}'")

    return MMMSEngine.from_weights(weights, cache, runtime=runtime, refine=refine, zoom=zoom)


@app.command("interactive-eval")
def interactive_eval(
    dataset: str = typer.Option(..., "--dataset", help="grabcut, berkeley, davis (NoC); camvid, bsds (NoCMS); mri."),
    root: Path | None = RootOption,
    split: str | None = typer.Option(None, "--split", help="Split (default: test, else val, else the only one)."),
    engine_name: ClickEngineName = typer.Option(
        ClickEngineName.mmms, "--engine", help="mmms, or grabcut: OpenCV GrabCut seeded by the clicks (the classical peer)."
    ),
    weights: str = typer.Option(
        "vit_s14", "--weights", help="MMMS weights: a shipped name or a .safetensors file (not used by grabcut)."
    ),
    protocol: str = typer.Option(
        "auto", "--protocol", help="noc, nocms or auto (noc for object sets, nocms for camvid/bsds, both for mri)."
    ),
    max_clicks: int = typer.Option(20, "--max-clicks", min=1),
    options: list[str] = typer.Option([], "--option", help="Dataset option key=value (e.g. patients=[patient26])."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only N images, evenly spaced."),
    cache: Path | None = typer.Option(None, "--cache", help="Feature cache folder (see extract-features; mmms only)."),
    runtime: str = typer.Option(
        "auto", "--runtime", help="MMMS click path on torch, onnx, or auto (ONNX Runtime on CPU); grabcut runs on OpenCV."
    ),
    refine: str = typer.Option(
        "grabcut", "--refine", help="MMMS: edge-aware refinement of each mask: none, guided or grabcut (the default)."
    ),
    zoom: bool = typer.Option(False, "--zoom/--no-zoom", help="MMMS: predict on a crop around the object from click 2."),
    out: Path | None = typer.Option(None, "--out", help="Write the results as JSON here."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the mIoU-per-click curve(s) as PNG here."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads (0: torch's / OpenCV's default)."),
) -> None:
    """Simulated-click evaluation of an interactive engine (MMMS, or the GrabCut peer): NoC@85/90, NoF, mIoU per
    click, NoCMS/FRMS@(80,70) and seconds per click with and without the per-image part (MMMS: the backbone).
    A model with modalities is also run with them withheld."""
    import json

    import cv2
    import torch

    from rgbxseg.atomic import atomic_write_text
    from rgbxseg.data import build_dataset, dataset_splits
    from rgbxseg.interactive.evaluate import evaluate_multi_surface, evaluate_single_object, plot_curves
    from rgbxseg.interactive.surfaces import surface_kind

    if threads:
        torch.set_num_threads(threads)
        if engine_name == ClickEngineName.grabcut:
            cv2.setNumThreads(threads)
    kind = surface_kind(dataset)
    splits = dataset_splits(dataset)
    chosen = split or next((s for s in ("test", "val") if s in splits), splits[0])
    protocols = _protocols(dataset, protocol)
    engine = _click_engine(engine_name, weights, cache, runtime, refine, zoom)
    data = build_dataset(dataset, chosen, root, **_overrides(options))
    runs = {"with modalities": True, "RGB only": False} if engine.modalities else {"RGB only": False}
    results: dict[str, dict] = {}
    for label, use in runs.items():
        if "noc" in protocols:
            results[f"NoC, {label}"] = evaluate_single_object(
                engine, data, kind, max_clicks, modalities=use, limit=limit
            )
        if "nocms" in protocols:
            results[f"NoCMS, {label}"] = evaluate_multi_surface(
                engine, data, kind, max_clicks=max_clicks, modalities=use, limit=limit
            )
    title = f"{ENGINE_TITLES[engine_name]} on {dataset}/{chosen}"
    _print_interactive(results, title)
    if out is not None:
        payload = {"engine": engine_name.value, "dataset": dataset, "split": chosen}
        if engine_name == ClickEngineName.mmms:
            payload |= {"refine": refine, "zoom": zoom}
        payload |= {"weights": weights if engine_name == ClickEngineName.mmms else None, "runtime": engine.runtime}
        payload["threads"] = torch.get_num_threads() if engine_name == ClickEngineName.mmms else cv2.getNumThreads()
        payload["results"] = results
        atomic_write_text(out, json.dumps(payload, indent=2))
    if plot is not None:
        curves = {k: v["mIoU_per_click"] for k, v in results.items() if "mIoU_per_click" in v}
        if curves:
            plot_curves(curves, plot, title)
            console.print(f"wrote {plot}")


def _protocols(dataset: str, protocol: str) -> tuple[str, ...]:
    from rgbxseg.errors import ConfigError

    if protocol == "auto":
        return {"camvid": ("nocms",), "bsds": ("nocms",), "mri": ("noc", "nocms")}.get(dataset, ("noc",))
    if protocol not in ("noc", "nocms"):
        raise ConfigError(f"--protocol must be noc, nocms or auto, got '{protocol}'")
    return (protocol,)


def _print_interactive(results: dict[str, dict], title: str) -> None:
    """One row per metric, one column per run (the mIoU-per-click curve goes to --plot / --out)."""
    table = Table(title=f"Interactive evaluation of {title}")
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    keys = [k for k in dict.fromkeys(k for r in results.values() for k in r) if k != "mIoU_per_click"]
    for key in keys:
        cells = [results[name].get(key, "") for name in results]
        table.add_row(key, *(f"{c:.2f}" if isinstance(c, float) else str(c) for c in cells))
    console.print(table)


@app.command()
def export(
    checkpoint: Path = typer.Option(..., "--checkpoint"),
    out: Path = typer.Option(..., "--out", help="ONNX file to write."),
    size: tuple[int, int] = typer.Option((360, 480), "--size", help="Input height and width."),
) -> None:
    """Export a checkpoint to ONNX (batch 1, fixed size) and check it against PyTorch with ONNX Runtime."""
    from rgbxseg.export import export_onnx, onnx_parity
    from rgbxseg.predictor import load_trained

    trained = load_trained(checkpoint)
    export_onnx(trained.model, out, size)
    diff = onnx_parity(trained.model, out, size)
    console.print(f"wrote {out}; max |ONNX Runtime − PyTorch| logit difference: {diff:.2e}")


@app.command()
def demo(
    output: Path = typer.Option(Path("runs/demo"), "--output", help="Folder for the runs, report.html and results.json."),
    iterations: int = typer.Option(150, "--iterations", min=1, help="Training iterations of each of the two models."),
    size: tuple[int, int] = typer.Option((192, 256), "--size", help="Scene height and width."),
    eval_samples: int = typer.Option(40, "--eval-samples", min=1, help="Test scenes per condition."),
    robustness_images: int = typer.Option(
        16, "--robustness-images", min=1, help="Test scenes per row of the robustness suite."
    ),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads (0: all cores)."),
) -> None:
    """The main job, on embedded data: train DAMCSeg (RGB+depth+thermal) and an RGB-only DeepLabV3+ on
    SyntheticStreets, evaluate them by day, at night, in fog and with sensors missing, write a report."""
    from rgbxseg.demo import DemoSettings, run_demo

    settings = DemoSettings(
        output, iterations, size, eval_samples=eval_samples, robustness_images=robustness_images, threads=threads or None
    )
    run_demo(settings, console)


def main() -> None:
    """Entry point: run the app, turning rgbxseg's user errors into one readable line."""
    try:
        app()
    except (RgbxsegError, IndexError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
