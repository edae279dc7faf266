"""The ``rgbxseg`` command line. User errors print one line and exit with status 2, no traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from rgbxseg.errors import RgbxsegError

if TYPE_CHECKING:
    from rgbxseg.data.base import SegDataset

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets: counts, class histograms, pictures.")
app.add_typer(data_app, name="data")
console = Console()

RootOption = typer.Option(None, "--root", help="Folder that holds the dataset (not needed for 'synthetic').")
ModalitiesOption = typer.Option("", "--modalities", help="Comma-separated modality names (rgbx, mri, synthetic).")


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


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


def main() -> None:
    """Entry point: run the app, turning rgbxseg's user errors into one readable line."""
    try:
        app()
    except (RgbxsegError, IndexError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
