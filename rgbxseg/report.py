"""The demo report: comparison tables in the terminal (rich) and one self-contained HTML page.

Not a paper part: this is how the demo shows SPEC 10's comparison of DAMCSeg (SPEC 5: mIoU, small-object
mIoU, boundary F, tiny / occluded recall, parameters, FPS) against the baseline per condition (day /
night / fog / a sensor missing), plus example predictions.

The page has no script and reaches no network: inline CSS, images as base64 PNG data URIs. It is
written atomically (:func:`rgbxseg.atomic.atomic_write_text`) after every input has been checked.

Decision: Jinja2 is not a dependency, so the page is built from plain strings; every caller-provided
string (title, notes, model, condition, metric and class names) goes through :func:`html.escape`, and
through :func:`rich.markup.escape` in the terminal and a ``$`` escape in matplotlib text (mathtext).
Decision: numbers print with one decimal (parameters in millions below one million: two significant
digits, so a small model does not read 0.0); a missing or NaN value (a metric with nothing to measure)
prints as "–" and never counts as best.
Decision: bold marks the best model for a (condition, metric) pair, higher being better for every metric:
in the mIoU-by-condition table that is the best value of the row, in a model's own table it marks where
that model wins. Ties are all bold; nothing is bold when fewer than two models have a value. In the cost
table the fewest parameters and the highest FPS are bold.
Decision: the difference column is the first summary minus the second (the caller lists the proposed
model first); it is green when positive, red when negative.
Decision: models keep the caller's order, conditions their order of first appearance, metrics the
order of :data:`METRICS` followed by any other key in order of first appearance.
Decision: overlay tiles are at most :data:`TILE_WIDTH` pixels wide (``cv2.INTER_AREA`` for the RGB and
the modalities, ``cv2.INTER_NEAREST_EXACT`` for label maps) to keep the page small; ground truth and
predictions are blended over the RGB with the palette (:func:`rgbxseg.data.visualize.overlay`, alpha
:data:`OVERLAY_ALPHA`; ignore pixels show the RGB); a sensor or a model missing in a row gets an
"absent" cell.
Decision: the legend lists the classes that occur in the overlays' ground truth or predictions (every
class when there are no overlays).
Decision: no timestamp in the page, so the same inputs give the same bytes.
Decision: the page kit is public and shared with the run report (:mod:`rgbxseg.run_report`), so both
pages escape, embed and look the same: :func:`html_page` (document, inline style, footer),
:func:`page_header`, :class:`Grid` / :class:`Cell` with :func:`html_table`, :func:`figure_png`,
:func:`chart_card`, :func:`png_data_uri` / :func:`data_uri`, :func:`examples_section` (legend and overlay
grid; :attr:`OverlayRow.maps` are drawn with :data:`HEAT_MAP`, e.g. uncertainty), :func:`escape`,
:func:`fmt`, :func:`mpl_text`.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

from rgbxseg.atomic import atomic_write_text
from rgbxseg.data.sample import IGNORE_INDEX
from rgbxseg.data.visualize import overlay

METRICS: tuple[str, ...] = ("mIoU", "small-object mIoU", "boundary F", "tiny recall", "occluded recall")
TILE_WIDTH = 320  # pixels of an overlay tile's PNG; the page shows tiles at up to 240 CSS pixels
OVERLAY_ALPHA = 0.5
HEAT_MAP = "magma"  # colormap of OverlayRow.maps (0 = dark, 1 = bright)
CHART_DPI = 100
MISSING = "–"
_PAGE_WIDTH = 1192  # CSS pixels inside the page's padding, used to size the overlay tiles
_ROW_HEADER_WIDTH = 110


@dataclass
class ModelSummary:
    """One model's results for the report.

    Args:
        name: Display name, e.g. ``"DAMCSeg (RGB+D+T)"``; unique within a report.
        params: Number of parameters.
        fps: Images per second at batch 1 (NaN when not measured).
        metrics: ``condition -> metric -> value`` in percent; metric keys as in :data:`METRICS`
            (others are shown after them). NaN values are shown as missing.
    """

    name: str
    params: int
    fps: float
    metrics: dict[str, dict[str, float]]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"ModelSummary.name must be a non-empty string, got {self.name!r}")
        if self.params < 0:
            raise ValueError(f"ModelSummary {self.name!r}: params must be >= 0, got {self.params}")
        if self.fps < 0:
            raise ValueError(f"ModelSummary {self.name!r}: fps must be >= 0 (or NaN), got {self.fps}")


@dataclass
class OverlayRow:
    """One example row of the overlay grid.

    Args:
        condition: What the row shows, e.g. ``"night"`` or ``"thermal missing"``.
        image: H×W×3 uint8, the RGB the models saw.
        modalities: ``name -> H×W`` (or H×W×1) float in [0, 1], drawn in grey; may be empty or miss a sensor.
        label: H×W int ground truth (:data:`~rgbxseg.data.sample.IGNORE_INDEX` = ignore).
        predictions: ``model name -> H×W`` int labels.
        maps: ``name -> H×W`` float in [0, 1] drawn with the :data:`HEAT_MAP` colormap after the
            predictions, e.g. an uncertainty map; may be empty.
    """

    condition: str
    image: np.ndarray
    modalities: dict[str, np.ndarray]
    label: np.ndarray
    predictions: dict[str, np.ndarray]
    maps: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"OverlayRow {self.condition!r}"
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"{where}: image must be H×W×3 uint8, got {self.image.shape} {self.image.dtype}")
        size = self.image.shape[:2]
        _check_map(f"{where}: label", self.label, size, integer=True)
        for name, array in self.modalities.items():
            _check_map(f"{where}: modality {name!r}", _squeeze(array), size, integer=False)
        for name, array in self.predictions.items():
            _check_map(f"{where}: prediction of {name!r}", array, size, integer=True)
        for name, array in self.maps.items():
            _check_map(f"{where}: map {name!r}", array, size, integer=False)


def _squeeze(array: np.ndarray) -> np.ndarray:
    return array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array


def _check_map(what: str, array: np.ndarray, size: tuple[int, ...], integer: bool) -> None:
    if array.shape != size:
        raise ValueError(f"{what} is {'×'.join(map(str, array.shape))} but the image is {size[0]}×{size[1]}")
    if integer and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must hold integer class ids, got dtype {array.dtype}")
    if not integer and not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{what} must be numeric, got dtype {array.dtype}")


# ----------------------------------------------------------------------------------------- table model
@dataclass(frozen=True)
class RunLink:
    """A model's own run report (:mod:`rgbxseg.run_report`), linked from a comparison page with its
    headline calibration and robustness numbers (percent; NaN: not measured).

    Args:
        name: The model's display name (as in the summaries).
        href: The run report's path relative to the comparison page.
        temperature: The fitted calibration temperature.
        ece_before: ECE at T = 1.
        ece_after: ECE after temperature scaling.
        clean_miou: mIoU of the robustness suite's clean row.
        kept: Mean mIoU over every corruption × severity, in percent of ``clean_miou``.
    """

    name: str
    href: str
    temperature: float
    ece_before: float
    ece_after: float
    clean_miou: float
    kept: float


@dataclass(frozen=True)
class Cell:
    """A table cell: its text, bold or not, and a tone (``"pos"``/``"neg"``: green/red)."""

    text: str
    bold: bool = False
    tone: str = ""  # "pos" / "neg" for signed differences


@dataclass(frozen=True)
class Grid:
    """A table shared by the terminal and the page: a title, column headers, labelled rows, a caption."""

    title: str
    header: list[str]
    rows: list[tuple[str, list[Cell]]]
    caption: str = ""


def fmt(value: float) -> str:
    """One decimal; NaN and infinities print as :data:`MISSING`."""
    return f"{value:.1f}" if math.isfinite(value) else MISSING


def _value(summary: ModelSummary, condition: str, metric: str) -> float:
    return float(summary.metrics.get(condition, {}).get(metric, math.nan))


def _best(values: Sequence[float], lowest: bool = False) -> set[int]:
    """Indices of the best finite values (ties included); empty when fewer than two values are finite."""
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    if len(finite) < 2:
        return set()
    target = min(finite)[0] if lowest else max(finite)[0]
    return {i for v, i in finite if v == target}


def _ordered(keys: Iterable[str], first: Sequence[str] = ()) -> list[str]:
    """``first`` entries that occur in ``keys``, then the other keys in order of first appearance."""
    seen = list(dict.fromkeys(keys))
    return [k for k in first if k in seen] + [k for k in seen if k not in first]


def _conditions(summaries: Sequence[ModelSummary]) -> list[str]:
    return _ordered(c for s in summaries for c in s.metrics)


def _metrics(summaries: Sequence[ModelSummary]) -> list[str]:
    return _ordered((m for s in summaries for values in s.metrics.values() for m in values), METRICS)


def _difference(value: float) -> Cell:
    if not math.isfinite(value):
        return Cell(MISSING)
    return Cell(f"{value:+.1f}", tone="pos" if value > 0 else "neg" if value < 0 else "")


def _miou_grid(summaries: Sequence[ModelSummary], conditions: Sequence[str]) -> Grid:
    """Rows = conditions, a column per model, plus first − second when there are two models or more."""
    names = [s.name for s in summaries]
    compare = len(summaries) >= 2
    rows = []
    for condition in conditions:
        values = [_value(s, condition, "mIoU") for s in summaries]
        best = _best(values)
        cells = [Cell(fmt(v), bold=i in best) for i, v in enumerate(values)]
        if compare:
            cells.append(_difference(values[0] - values[1]))
        rows.append((condition, cells))
    caption = f"Δ = {names[0]} − {names[1]}, in mIoU points." if compare else ""
    return Grid("mIoU (%) by condition", ["condition", *names, *(["Δ"] if compare else [])], rows, caption)


def _model_grid(
    summary: ModelSummary, summaries: Sequence[ModelSummary], conditions: Sequence[str], metrics: Sequence[str]
) -> Grid:
    """Rows = conditions, columns = metrics of one model; bold where it is the best of all models."""
    index = list(summaries).index(summary)
    rows = []
    for condition in conditions:
        cells = []
        for metric in metrics:
            values = [_value(s, condition, metric) for s in summaries]
            cells.append(Cell(fmt(values[index]), bold=index in _best(values)))
        rows.append((condition, cells))
    return Grid(summary.name, ["condition", *metrics], rows)


def _millions(value: float) -> str:
    """Parameters in millions: one decimal, two significant digits below one million (0.05, not 0.1)."""
    return fmt(value) if value >= 1 else f"{value:.2g}"


def _cost_grid(summaries: Sequence[ModelSummary]) -> Grid:
    params = [s.params / 1e6 for s in summaries]
    fps = [float(s.fps) for s in summaries]
    fewest, fastest = _best(params, lowest=True), _best(fps)
    rows = [
        (s.name, [Cell(_millions(p), bold=i in fewest), Cell(fmt(f), bold=i in fastest)])
        for i, (s, p, f) in enumerate(zip(summaries, params, fps))
    ]
    return Grid("Cost", ["model", "params (M)", "FPS (batch 1)"], rows)


def _grids(summaries: Sequence[ModelSummary]) -> tuple[Grid, list[Grid], Grid]:
    conditions, metrics = _conditions(summaries), _metrics(summaries)
    per_model = [_model_grid(s, summaries, conditions, metrics) for s in summaries]
    return _miou_grid(summaries, conditions), per_model, _cost_grid(summaries)


def _check_summaries(summaries: Sequence[ModelSummary]) -> None:
    if not summaries:
        raise ValueError("no model summaries: the report needs at least one model")
    names = [s.name for s in summaries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"model names must be unique, repeated: {duplicates}")


# -------------------------------------------------------------------------------------------- terminal
def _rich_table(grid: Grid) -> Table:
    table = Table(title=rich_escape(grid.title), caption=rich_escape(grid.caption) or None)
    for i, column in enumerate(grid.header):
        table.add_column(rich_escape(column), justify="left" if i == 0 else "right")
    tones = {"pos": "green", "neg": "red"}
    for label, cells in grid.rows:
        texts = []
        for cell in cells:
            text = rich_escape(cell.text)
            text = f"[bold]{text}[/bold]" if cell.bold else text
            texts.append(f"[{tones[cell.tone]}]{text}[/{tones[cell.tone]}]" if cell.tone else text)
        table.add_row(rich_escape(label), *texts)
    return table


def print_tables(summaries: Sequence[ModelSummary], console: Console | None = None) -> None:
    """Print the comparison tables: mIoU by condition, every metric per model, and the cost table.

    Args:
        summaries: The models, the proposed one first (the difference column is first − second).
        console: Where to print (a new :class:`rich.console.Console` when None).
    """
    _check_summaries(summaries)
    console = console or Console()
    miou, per_model, cost = _grids(summaries)
    for grid in (miou, *per_model, cost):
        console.print(_rich_table(grid))


# ------------------------------------------------------------------------------------------------ page
def escape(text: str) -> str:
    """``text`` safe inside HTML text and double-quoted attributes."""
    return html.escape(str(text), quote=True)


def html_table(grid: Grid, heading: bool = True) -> str:
    """The grid as a card; ``heading=False`` leaves out its title where the section heading already says it."""
    head = "".join(f'<th scope="col">{escape(c)}</th>' for c in grid.header)
    body = []
    for label, cells in grid.rows:
        tds = []
        for cell in cells:
            text = f"<strong>{escape(cell.text)}</strong>" if cell.bold else escape(cell.text)
            classes = " ".join(["num", *([cell.tone] if cell.tone else [])])
            tds.append(f'<td class="{classes}">{text}</td>')
        body.append(f'<tr><th scope="row">{escape(label)}</th>{"".join(tds)}</tr>')
    caption = f'<p class="caption">{escape(grid.caption)}</p>' if grid.caption else ""
    title = f"<h3>{escape(grid.title)}</h3>" if heading else ""
    return (
        f'<div class="card">{title}<table class="data"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{caption}</div>"
    )


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_data_uri(array: np.ndarray) -> str:
    """An H×W (grey) or H×W×3 (RGB) uint8 array as a PNG data URI."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return data_uri(buffer.getvalue())


def figure_png(fig: Figure) -> tuple[str, int]:
    """The figure as a PNG data URI, and its width in pixels."""
    FigureCanvasAgg(fig)  # Agg canvas without pyplot: no GUI backend, no global figure state
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=CHART_DPI, metadata={"Software": None})
    return data_uri(buffer.getvalue()), round(fig.get_figwidth() * CHART_DPI)


def mpl_text(text: str) -> str:
    """``text`` safe in matplotlib labels (no mathtext)."""
    return text.replace("$", r"\$")  # a name with two "$" would otherwise be typeset as mathtext


def _colours(count: int) -> list[tuple[float, ...]]:
    palette = colormaps["tab10"].colors
    return [tuple(palette[i % len(palette)]) for i in range(count)]


def _bars(ax: Axes, summaries: Sequence[ModelSummary], conditions: Sequence[str], metric: str) -> None:
    """Grouped bars: one group per condition, one bar per model, each labelled with its value."""
    x = np.arange(len(conditions))
    width = 0.8 / len(summaries)
    top = 0.0
    for i, (summary, colour) in enumerate(zip(summaries, _colours(len(summaries)))):
        values = np.array([_value(summary, c, metric) for c in conditions])
        offset = (i - (len(summaries) - 1) / 2) * width
        bars = ax.bar(x + offset, np.nan_to_num(values), width, color=colour, label=mpl_text(summary.name))
        ax.bar_label(bars, labels=[fmt(v) for v in values], fontsize=7, padding=2)
        top = max(top, float(np.nanmax(values, initial=0.0)))
    rotated = len(conditions) > 5
    labels = [mpl_text(c) for c in conditions]
    ax.set_xticks(x, labels, rotation=25 if rotated else 0, ha="right" if rotated else "center")
    ax.set_ylim(0, min(105.0, top * 1.15) if top > 0 else 100.0)
    ax.set_title(mpl_text(metric), fontsize=10)
    ax.set_ylabel("%")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _miou_chart(summaries: Sequence[ModelSummary], conditions: Sequence[str]) -> tuple[str, int]:
    width = min(12.0, max(5.6, 1.0 + len(conditions) * (0.3 * len(summaries) + 0.4)))
    fig = Figure(figsize=(width, 3.4), layout="constrained")
    ax = fig.subplots()
    _bars(ax, summaries, conditions, "mIoU")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(summaries), 4), frameon=False, fontsize=8)
    return figure_png(fig)


def _metric_charts(
    summaries: Sequence[ModelSummary], conditions: Sequence[str], metrics: Sequence[str]
) -> tuple[str, int]:
    """Small multiples: one grouped bar chart per metric other than mIoU, two per line."""
    columns = min(2, len(metrics))
    lines = math.ceil(len(metrics) / columns)
    fig = Figure(figsize=(6.0 * columns, 2.9 * lines + 0.4), layout="constrained")
    axes = fig.subplots(lines, columns, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        _bars(ax, summaries, conditions, metric)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(summaries), 4), frameon=False, fontsize=9)
    return figure_png(fig)


def _tile_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) of a tile: at most TILE_WIDTH wide, same aspect ratio."""
    if width <= TILE_WIDTH:
        return width, height
    return TILE_WIDTH, max(1, round(height * TILE_WIDTH / width))


def _resize(array: np.ndarray, size: tuple[int, int], labels: bool) -> np.ndarray:
    if (array.shape[1], array.shape[0]) == size:
        return array
    if labels:  # OpenCV has no int64 resize; ids fit in int32
        return cv2.resize(array.astype(np.int32), size, interpolation=cv2.INTER_NEAREST_EXACT)
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)


def _label_tile(rgb: np.ndarray, label: np.ndarray, palette: np.ndarray) -> str:
    labels = _resize(label, (rgb.shape[1], rgb.shape[0]), True)
    blended = overlay(rgb.astype(np.float32) / 255.0, labels, palette, alpha=OVERLAY_ALPHA)
    return png_data_uri(np.round(blended * 255.0).astype(np.uint8))


def _unit(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map clipped to [0, 1] (NaN = 0) and resized to ``size``."""
    return _resize(np.clip(np.nan_to_num(_squeeze(values).astype(np.float32)), 0.0, 1.0), size, False)


def _grey_tile(modality: np.ndarray, size: tuple[int, int]) -> str:
    return png_data_uri(np.round(_unit(modality, size) * 255.0).astype(np.uint8))


def _heat_tile(values: np.ndarray, size: tuple[int, int]) -> str:
    colours = colormaps[HEAT_MAP](_unit(values, size), bytes=True)[..., :3]
    return png_data_uri(np.ascontiguousarray(colours))


def heat_ramp(stops: int = 9) -> str:
    """An inline CSS gradient of :data:`HEAT_MAP` from 0 to 1 (a colour bar without an image)."""
    colours = colormaps[HEAT_MAP](np.linspace(0.0, 1.0, stops), bytes=True)[:, :3]
    gradient = ",".join("#{:02x}{:02x}{:02x}".format(*(int(v) for v in c)) for c in colours)
    return f'<span class="ramp" style="background:linear-gradient(to right,{gradient})"></span>'


def _cell(src: str | None, column: str, condition: str, size: tuple[int, int]) -> str:
    """A grid cell: the tile, or a hatched "absent" box of the same shape when ``src`` is None."""
    if src is None:
        return f'<td><div class="absent" style="aspect-ratio:{size[0]}/{size[1]}">absent</div></td>'
    return f'<td><img src="{src}" alt="{escape(f"{column} — {condition}")}" width="{size[0]}" height="{size[1]}"></td>'


def _overlay_row(
    row: OverlayRow, modalities: Sequence[str], models: Sequence[str], maps: Sequence[str], palette: np.ndarray
) -> str:
    size = _tile_size(*row.image.shape[:2])
    rgb = _resize(row.image, size, False)
    grey = {name: _grey_tile(array, size) for name, array in row.modalities.items()}
    predicted = {name: _label_tile(rgb, labels, palette) for name, labels in row.predictions.items()}
    heat = {name: _heat_tile(array, size) for name, array in row.maps.items()}
    cells = [
        _cell(png_data_uri(rgb), "RGB", row.condition, size),
        *(_cell(grey.get(name), name, row.condition, size) for name in modalities),
        _cell(_label_tile(rgb, row.label, palette), "ground truth", row.condition, size),
        *(_cell(predicted.get(name), name, row.condition, size) for name in models),
        *(_cell(heat.get(name), name, row.condition, size) for name in maps),
    ]
    return f'<tr><th scope="row">{escape(row.condition)}</th>{"".join(cells)}</tr>'


def _overlay_grid(overlays: Sequence[OverlayRow], palette: np.ndarray) -> str:
    """Rows = examples; columns = RGB, each modality (grey), ground truth, each model's prediction, each map."""
    modalities = _ordered(name for row in overlays for name in row.modalities)
    models = _ordered(name for row in overlays for name in row.predictions)
    maps = _ordered(name for row in overlays for name in row.maps)
    headers = ["", "RGB", *modalities, "ground truth", *models, *maps]
    columns = len(headers) - 1
    tile = int(np.clip((_PAGE_WIDTH - _ROW_HEADER_WIDTH) / columns - 8, 120, 240))
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join(_overlay_row(row, modalities, models, maps, palette) for row in overlays)
    return (
        f'<div class="grid-wrap"><table class="grid" style="--tile:{tile}px"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _present_classes(overlays: Sequence[OverlayRow], count: int) -> list[int]:
    if not overlays:
        return list(range(count))
    ids = np.unique(np.concatenate([np.unique(m) for row in overlays for m in (row.label, *row.predictions.values())]))
    return [int(i) for i in ids if 0 <= i < count]


def _legend(overlays: Sequence[OverlayRow], classes: Sequence[str], palette: np.ndarray) -> str:
    chips = []
    for index in _present_classes(overlays, len(classes)):
        colour = "#{:02x}{:02x}{:02x}".format(*(int(v) for v in palette[index]))
        swatch = f'<span class="swatch" style="background:{colour}"></span>'
        chips.append(f'<span class="chip">{swatch}{escape(classes[index])}</span>')
    return f'<div class="legend" aria-label="class colours">{"".join(chips)}</div>'


def _check_palette(palette: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    array = np.asarray(palette)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"palette must be K×3 RGB, got shape {array.shape}")
    if len(array) < len(classes):
        raise ValueError(f"palette has {len(array)} colours for {len(classes)} classes")
    if array.min(initial=0) < 0 or array.max(initial=0) > 255:
        raise ValueError("palette values must lie in 0..255")
    return array.astype(np.uint8)


def _check_ids(what: str, array: np.ndarray, count: int) -> None:
    bad = np.unique(array[((array < 0) | (array >= count)) & (array != IGNORE_INDEX)])
    if bad.size:
        raise ValueError(f"{what} has class ids {bad[:10].tolist()} outside 0..{count - 1} ({IGNORE_INDEX} = ignore)")


def _check_overlays(overlays: Sequence[OverlayRow], count: int) -> None:
    for row in overlays:
        _check_ids(f"OverlayRow {row.condition!r}: ground truth", row.label, count)
        for name, prediction in row.predictions.items():
            _check_ids(f"OverlayRow {row.condition!r}: prediction of {name!r}", prediction, count)


_STYLE = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d8dee4;--soft:#f6f8fa;--accent:#0969da;--pos:#1a7f37;--neg:#cf222e}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:#fff;
font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.wrap{max-width:1240px;margin:0 auto;padding:0 24px}
header{background:var(--soft);border-bottom:1px solid var(--line)}
header .wrap{padding:28px 24px 18px}
h1{margin:0 0 2px;font-size:27px;line-height:1.25}
.meta{margin:0 0 10px;color:var(--muted);font-size:14px}
.notes p{max-width:88ch;margin:8px 0}
nav{margin-top:12px;font-size:14px}
nav a{color:var(--accent);text-decoration:none;margin-right:18px}
nav a:hover{text-decoration:underline}
h2{font-size:20px;margin:36px 0 14px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:0 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.card{min-width:0;border:1px solid var(--line);border-radius:8px;padding:14px 16px;background:#fff}
table.data{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:14px}
table.data th,table.data td{padding:4px 12px;border-bottom:1px solid var(--line);white-space:nowrap}
table.data thead th{text-align:right;font-weight:600;border-bottom:2px solid #c3ccd5}
table.data thead th:first-child,table.data tbody th{text-align:left;font-weight:500}
table.data tbody tr:nth-child(even){background:var(--soft)}
td.num{text-align:right}
td.pos{color:var(--pos)}
td.neg{color:var(--neg)}
.caption,.hint{color:var(--muted);font-size:13px;margin:8px 0 0}
.hint{margin:0 0 12px}
img.chart{display:block;max-width:100%;height:auto}
.grid-wrap{overflow-x:auto}
table.grid{border-collapse:separate;border-spacing:6px}
table.grid thead th{font-size:13px;font-weight:600;color:var(--muted);text-align:center;max-width:var(--tile)}
table.grid tbody th{font-size:13px;font-weight:600;text-align:right;padding-right:6px;max-width:110px}
table.grid td{padding:0;vertical-align:middle}
table.grid img{display:block;width:var(--tile);height:auto;border-radius:4px}
.absent{display:flex;align-items:center;justify-content:center;width:var(--tile);border-radius:4px;
color:var(--muted);font-size:12px;background:repeating-linear-gradient(45deg,#f6f8fa 0 8px,#eaeef2 8px 16px)}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:0 0 10px;font-size:13px}
.chip{display:inline-flex;align-items:center;gap:6px}
.swatch{display:inline-block;width:14px;height:14px;border-radius:3px;border:1px solid rgba(0,0,0,.25)}
.stats{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 16px}
.stat{border:1px solid var(--line);border-radius:8px;padding:8px 16px;min-width:120px;background:var(--soft)}
.stat span{display:block;color:var(--muted);font-size:13px}
.stat b{font-size:22px;font-variant-numeric:tabular-nums}
.note{max-width:100ch;margin:0 0 12px}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);border-radius:4px}
code{padding:1px 5px}
pre.command{margin:0 0 12px;padding:8px 12px;border:1px solid var(--line);overflow-x:auto}
.ramp{display:inline-block;width:160px;height:12px;vertical-align:middle;border-radius:3px;margin:0 6px;
border:1px solid rgba(0,0,0,.25)}
footer{margin-top:40px;border-top:1px solid var(--line);color:var(--muted);font-size:12px}
footer .wrap{padding:14px 24px 24px}
"""


def plural(number: int, noun: str) -> str:
    """``"1 model"``, ``"2 models"``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _header(
    title: str, summaries: Sequence[ModelSummary], overlays: Sequence[OverlayRow], notes: Sequence[str], runs: bool
) -> str:
    meta = " · ".join(
        [
            plural(len(summaries), "model"),
            plural(len(_conditions(summaries)), "condition"),
            plural(len(_metrics(summaries)), "metric"),
            plural(len(overlays), "example"),
        ]
    )
    links = [("miou", "mIoU"), ("metrics", "All metrics"), ("cost", "Cost")]
    links += [("runs", "Calibration and robustness")] if runs else []
    links += [("examples", "Examples")] if overlays else []
    return page_header(title, meta, notes, links)


def page_header(title: str, meta: str, notes: Sequence[str], links: Sequence[tuple[str, str]]) -> str:
    """The page's banner: title, a muted meta line, note paragraphs and ``(anchor, text)`` section links."""
    paragraphs = "".join(f"<p>{escape(note)}</p>" for note in notes)
    nav = "".join(f'<a href="#{escape(anchor)}">{escape(text)}</a>' for anchor, text in links)
    return (
        f'<header><div class="wrap"><h1>{escape(title)}</h1><p class="meta">{escape(meta)}</p>'
        f'<div class="notes">{paragraphs}</div><nav>{nav}</nav></div></header>'
    )


def stat_tiles(items: Sequence[tuple[str, str]]) -> str:
    """A row of headline numbers: ``(label, value)`` tiles."""
    tiles = "".join(f'<div class="stat"><span>{escape(k)}</span><b>{escape(v)}</b></div>' for k, v in items)
    return f'<div class="stats">{tiles}</div>'


def chart_card(chart: tuple[str, int], alt: str) -> str:
    """A card that sits beside the previous one when 85 % of the chart's width fits there, else takes a line."""
    src, width = chart
    image = f'<img class="chart" src="{src}" alt="{escape(alt)}">'
    return f'<div class="card" style="flex:1 1 {round(0.85 * width)}px">{image}</div>'


def _miou_section(summaries: Sequence[ModelSummary], grid: Grid) -> str:
    chart = _miou_chart(summaries, _conditions(summaries))
    return (
        f'<section id="miou"><h2>mIoU (%) by condition</h2><div class="cards">{html_table(grid, heading=False)}'
        f'{chart_card(chart, "bar chart of mIoU by condition")}</div></section>'
    )


def _metrics_section(summaries: Sequence[ModelSummary], grids: Sequence[Grid]) -> str:
    hint = "Bold: the best model for that condition and metric (higher is better). –: not measured."
    tables = "".join(html_table(grid) for grid in grids)
    others = [m for m in _metrics(summaries) if m != "mIoU"]
    chart = ""
    if others:
        chart = chart_card(_metric_charts(summaries, _conditions(summaries), others), "bar charts of every metric")
    return (
        f'<section id="metrics"><h2>All metrics</h2><p class="hint">{escape(hint)}</p>'
        f'<div class="cards">{tables}{chart}</div></section>'
    )


EXAMPLES_HINT = "Ground truth and predictions blended over the RGB; modalities in grey (white = 1)."


def examples_section(
    overlays: Sequence[OverlayRow],
    classes: Sequence[str],
    palette: np.ndarray,
    hint: str = EXAMPLES_HINT,
    title: str = "Examples",
) -> str:
    """The ``examples`` section: a hint, the class legend and the overlay grid (maps get a colour bar).

    Raises:
        ValueError: A bad palette or class ids out of range in the overlays.
    """
    colours = _check_palette(palette, classes)
    _check_overlays(overlays, len(classes))
    ramp = ""
    if any(row.maps for row in overlays):
        ramp = f'<p class="hint ramp-key">0 {heat_ramp()} 1</p>'
    return (
        f'<section id="examples"><h2>{escape(title)}</h2><p class="hint">{escape(hint)}</p>{ramp}'
        f"{_legend(overlays, classes, colours)}{_overlay_grid(overlays, colours)}</section>"
    )


def _runs_section(runs: Sequence[RunLink]) -> str:
    header = ["T", "ECE before", "ECE after", "clean mIoU", "corrupted, % kept"]
    rows = [
        (r.name, [Cell(f"{r.temperature:.3g}"), *(Cell(fmt(v)) for v in (r.ece_before, r.ece_after, r.clean_miou, r.kept))])
        for r in runs
    ]
    caption = (
        "ECE (15 bins, %) before and after temperature scaling fitted on the val split; clean and corrupted mIoU "
        "from the robustness suite (6 corruptions × 5 severities on RGB), on the images each run report names."
    )
    grid = Grid("Calibration and robustness", header, rows, caption)
    links = " · ".join(f'<a href="{escape(r.href)}">{escape(r.name)}</a>' for r in runs)
    return (
        f'<section id="runs"><h2>Calibration and robustness</h2><p class="hint">Each model\'s run report '
        f"(metrics, per-class table, reliability diagrams, robustness heat-map, uncertainty maps): {links}</p>"
        f'<div class="cards">{html_table(grid, heading=False)}</div></section>'
    )


def _body(
    summaries: Sequence[ModelSummary],
    overlays: Sequence[OverlayRow],
    classes: Sequence[str],
    palette: np.ndarray,
    runs: Sequence[RunLink] = (),
) -> str:
    miou, per_model, cost = _grids(summaries)
    parts = [
        _miou_section(summaries, miou),
        _metrics_section(summaries, per_model),
        f'<section id="cost"><h2>Cost</h2><div class="cards">{html_table(cost, heading=False)}</div></section>',
    ]
    if runs:
        parts.append(_runs_section(runs))
    if overlays:
        parts.append(examples_section(overlays, classes, palette))
    return "".join(parts)


def write_report(
    path: Path,
    title: str,
    summaries: Sequence[ModelSummary],
    overlays: Sequence[OverlayRow],
    classes: Sequence[str],
    palette: np.ndarray,
    notes: Sequence[str] = (),
    runs: Sequence[RunLink] = (),
) -> Path:
    """Write the self-contained HTML report (tables, bar charts, overlay grid, class legend) atomically.

    Args:
        path: Where to write the page (its folder is created).
        title: Page title.
        summaries: The models, the proposed one first (the difference column is first − second).
        overlays: Example rows of the overlay grid (may be empty: no examples section).
        classes: Class names, indexed by class id.
        palette: K×3 RGB colours (K >= number of classes), indexed by class id.
        notes: Paragraphs shown under the title (what was run, how to read it).
        runs: Links to each model's run report with its calibration and robustness headline.

    Returns:
        ``path``.

    Raises:
        ValueError: No summaries, repeated model names, a bad palette, or class ids out of range in the
            overlays (checked before anything is written).
    """
    _check_summaries(summaries)
    colours = _check_palette(palette, classes)
    _check_overlays(overlays, len(classes))
    body = _body(summaries, overlays, classes, colours, runs)
    atomic_write_text(path, html_page(title, _header(title, summaries, overlays, notes, bool(runs)), body))
    return Path(path)


def html_page(title: str, header: str, main: str, writer: str = "rgbxseg.report") -> str:
    """The whole document: inline style, ``header`` (see :func:`page_header`), ``main`` and a footer."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        f'<style>{_STYLE}</style></head><body>{header}<main class="wrap">{main}</main>'
        f'<footer><div class="wrap">Written by {escape(writer)}: one self-contained file, no scripts, no network.'
        "</div></footer></body></html>\n"
    )
