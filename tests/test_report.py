"""The demo report: terminal tables, the self-contained HTML page, its tiles, escaping and atomic writing."""

from __future__ import annotations

import base64
import io
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from rgbxseg.report import METRICS, TILE_WIDTH, ModelSummary, OverlayRow, print_tables, write_report

CLASSES = ("road", "car", "person", "unused")
PALETTE = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0], [0, 0, 200]], np.uint8)
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def summaries() -> list[ModelSummary]:
    first = {"day": {m: 60.0 + i for i, m in enumerate(METRICS)}, "night": {m: 50.0 for m in METRICS}}
    second = {"day": {m: 55.0 for m in METRICS}, "night": {m: 52.25 for m in METRICS}}
    second["night"]["occluded recall"] = math.nan
    return [ModelSummary("Fused", 12_345_678, 41.26, first), ModelSummary("Baseline", 5_800_000, 73.94, second)]


def overlay_rows() -> list[OverlayRow]:
    image = np.zeros((8, 10, 3), np.uint8)
    label = np.ones((8, 10), np.int64)
    label[0, 0] = 255
    day = OverlayRow(
        "day",
        image,
        {"depth": np.full((8, 10), 0.5, np.float32), "thermal": np.zeros((8, 10, 1), np.float32)},
        label,
        {"Fused": np.ones((8, 10), np.int64), "Baseline": np.full((8, 10), 2, np.int64)},
    )
    night = OverlayRow("night", image, {"thermal": np.ones((8, 10), np.float32)}, label, {"Fused": label})
    return [day, night]


class PageParser(HTMLParser):
    """Collects the images (alt -> src), the text, and checks that every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: dict[str, str] = {}
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            values = dict(attrs)
            self.images[values["alt"] or ""] = values["src"] or ""
        elif tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    parser.close()
    assert parser.stack == [], f"unclosed elements {parser.stack}"
    return parser


def decode(src: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :]))))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, PageParser]:
    path = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    notes = ("Trained for 20 minutes.", "Second paragraph.")
    written = write_report(path, "Demo", summaries(), overlay_rows(), CLASSES, PALETTE, notes)
    text = path.read_text()
    return written, text, parse(text)


def test_page_has_every_name_and_is_well_formed(page: tuple[Path, str, PageParser]) -> None:
    path, text, parser = page
    assert path.is_file() and text.startswith("<!DOCTYPE html>")
    words = " ".join(parser.text)
    for word in ("Demo", "Fused", "Baseline", "day", "night", *METRICS, "Trained for 20 minutes.", "Second paragraph."):
        assert word in words
    assert "script" not in parser.tags and "link" not in parser.tags
    assert all(src.startswith("data:image/png;base64,") for src in parser.images.values())
    assert "http://" not in text and "https://" not in text
    # two charts + day: RGB, depth, thermal, ground truth, 2 models; night: RGB, thermal, ground truth, Fused
    assert len(parser.images) == 2 + 6 + 4
    assert text.count('class="absent"') == 2  # night lacks depth and the Baseline prediction


def test_numbers_one_decimal_best_bold_missing_dash(page: tuple[Path, str, PageParser]) -> None:
    _, text, _ = page
    assert "<strong>60.0</strong>" in text and "<strong>55.0</strong>" not in text  # day mIoU: Fused wins
    assert "<strong>52.2</strong>" in text and "<strong>50.0</strong>" not in text  # night mIoU: Baseline wins
    assert '<td class="num pos">+5.0</td>' in text and '<td class="num neg">-2.2</td>' in text  # Δ first − second
    assert '<td class="num">–</td>' in text  # the NaN occluded recall, not bold
    assert "<strong>12.3</strong>" not in text and "<strong>5.8</strong>" in text  # fewest parameters
    assert "<strong>73.9</strong>" in text and "41.3" in text  # highest FPS


def test_overlay_tiles_blend_the_palette(page: tuple[Path, str, PageParser]) -> None:
    images = page[2].images
    fused, baseline, truth = images["Fused — day"], images["Baseline — day"], images["ground truth — day"]
    np.testing.assert_allclose(decode(fused)[4, 4], [100, 0, 0], atol=1)  # class 1 red at alpha 0.5 over black
    np.testing.assert_allclose(decode(baseline)[4, 4], [0, 100, 0], atol=1)
    assert decode(truth)[0, 0].tolist() == [0, 0, 0]  # ignore pixel keeps the RGB
    assert decode(images["depth — day"]).tolist() == np.full((8, 10), 128).tolist()  # grey, white = 1
    assert decode(images["thermal — day"]).shape == (8, 10)  # H×W×1 accepted


def test_legend_lists_present_classes(page: tuple[Path, str, PageParser]) -> None:
    _, text, _ = page
    legend = text.split('class="legend"')[1].split("</div>")[0]
    assert "car" in legend and "person" in legend and "#c80000" in legend
    assert "unused" not in legend and "road" not in legend


def test_strings_are_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    models = summaries()
    models[0].name = evil
    zeros = np.zeros((4, 4), np.int64)
    row = OverlayRow("a&b <i>", np.zeros((4, 4, 3), np.uint8), {}, zeros, {evil: zeros})
    classes = ("<img src=x>", "b", "c", "d")
    path = write_report(tmp_path / "r.html", f"title {evil}", models, [row], classes, PALETTE, (evil,))
    text = path.read_text()
    assert "<script" not in text and "<i>" not in text and "<img src=x>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "a&amp;b &lt;i&gt;" in text
    parser = parse(text)
    assert f"{evil} — a&b <i>" in parser.images  # alt text round-trips through the escaping


def test_large_images_are_downscaled(tmp_path: Path) -> None:
    image = np.zeros((20, 700, 3), np.uint8)
    label = np.zeros((20, 700), np.int64)
    label[:, 350:] = 1
    row = OverlayRow("wide", image, {}, label, {"Fused": label})
    text = write_report(tmp_path / "r.html", "t", summaries(), [row], CLASSES, PALETTE).read_text()
    tile = decode(parse(text).images["Fused — wide"])
    assert tile.shape == (9, TILE_WIDTH, 3)
    assert tile[4, 0].tolist() == [0, 0, 0] and tile[4, -1].tolist() == [100, 0, 0]


def test_write_is_atomic_and_checks_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    write_report(path, "first", summaries(), [], CLASSES, PALETTE)
    before = path.read_text()
    assert 'id="examples"' not in before  # no overlays, no examples section
    bad = overlay_rows()[:1]
    bad[0].predictions["Fused"][0, 0] = 7
    with pytest.raises(ValueError, match=r"prediction of 'Fused' has class ids \[7\] outside 0..3"):
        write_report(path, "second", summaries(), bad, CLASSES, PALETTE)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_input_errors(tmp_path: Path) -> None:
    image, label = np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), np.int64)
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        OverlayRow("x", image.astype(np.float32), {}, label, {})
    with pytest.raises(ValueError, match="prediction of 'm' is 4×4 but the image is 4×5"):
        OverlayRow("x", image, {}, label, {"m": np.zeros((4, 4), np.int64)})
    with pytest.raises(ValueError, match="label must hold integer class ids"):
        OverlayRow("x", image, {}, label.astype(np.float32), {})
    with pytest.raises(ValueError, match="params must be >= 0"):
        ModelSummary("m", -1, 1.0, {})
    with pytest.raises(ValueError, match="non-empty string"):
        ModelSummary(" ", 1, 1.0, {})
    with pytest.raises(ValueError, match="at least one model"):
        print_tables([])
    twice = summaries()
    twice[1].name = "Fused"
    with pytest.raises(ValueError, match=r"unique, repeated: \['Fused'\]"):
        print_tables(twice)
    with pytest.raises(ValueError, match="palette has 2 colours for 4 classes"):
        write_report(tmp_path / "r.html", "t", summaries(), [], CLASSES, PALETTE[:2])
    assert not any(tmp_path.iterdir())


def test_print_tables_prints_the_numbers() -> None:
    models = summaries()
    models[1].name = "[bold]Base"
    console = Console(record=True, width=200)
    print_tables(models, console)
    text = console.export_text()
    for word in ("Fused", "[bold]Base", "day", "night", *METRICS, "mIoU (%) by condition", "Cost"):
        assert word in text
    assert "60.0" in text and "52.2" in text and "+5.0" in text and "-2.2" in text  # values and Δ
    assert "12.3" in text and "5.8" in text and "41.3" in text and "73.9" in text  # params (M), FPS
    assert "–" in text  # the NaN metric


def test_maps_are_heat_tiles_after_the_predictions(tmp_path: Path) -> None:
    from matplotlib import colormaps

    from rgbxseg.report import HEAT_MAP

    image, label = np.zeros((4, 6, 3), np.uint8), np.ones((4, 6), np.int64)
    ramp = np.tile(np.linspace(0.0, 1.0, 6, dtype=np.float32), (4, 1))
    rows = [
        OverlayRow("a", image, {}, label, {"Fused": label}, maps={"uncertainty": ramp}),
        OverlayRow("b", image, {}, label, {"Fused": label}),
    ]
    text = write_report(tmp_path / "r.html", "t", summaries(), rows, CLASSES, PALETTE).read_text()
    head = text.split('<table class="grid"')[1].split("</thead>")[0]
    assert head.index(">Fused<") < head.index(">uncertainty<")  # maps come after the predictions
    tile = decode(parse(text).images["uncertainty — a"])
    expected = colormaps[HEAT_MAP]([0.0, 1.0], bytes=True)[:, :3]
    assert tile[0, 0].tolist() == expected[0].tolist() and tile[0, -1].tolist() == expected[1].tolist()
    assert text.count('class="absent"') == 1 and 'class="ramp"' in text  # row b has no map; a colour bar
    with pytest.raises(ValueError, match="map 'uncertainty' is 4×5 but the image is 4×6"):
        OverlayRow("c", image, {}, label, {}, maps={"uncertainty": ramp[:, :5]})
