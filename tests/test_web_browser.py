"""End-to-end tests of the annotation UI in a real headless Chromium (playwright), against a live uvicorn server
running in a thread of the test process, with a stand-in engine whose segmentation has errors that clicks fix.

Every answer the page shows is checked against the server's truth (``GET /api/images/<id>/state``, the project
folder on disk, a second server replaying the same project), and every page is watched for console errors,
uncaught exceptions and failed requests. Also writes the UI screenshots of the docs (docs/annotation-ui*.png).

Chromium is the system one (``apt-get install chromium``, see the Makefile); without it these tests skip.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from pycocotools import mask as coco_mask

from rgbxseg.interactive.click_simulator import Click
from rgbxseg.interactive.engine import ImageEmbedding
from rgbxseg.web.annotator import Annotator, ClassSpec
from rgbxseg.web.project import AnnotationProject
from rgbxseg.web.server import create_app

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
DOCS = Path(__file__).resolve().parents[1] / "docs"
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 15_000

CLASSES = [ClassSpec(1, "object", "#e6194b"), ClassSpec(2, "background", "#3cb44b")]
IMAGE_ID = "scene.png"
H, W = 240, 320
BACKGROUND_RGB = (30, 34, 40)
OBJECT_RGB = (200, 190, 70)
OBJECT_BOX = (50, 190, 70, 260)  # rows y0:y1, columns x0:x1 of the object (the ground truth)
PATCH_BOX = (205, 228, 15, 45)  # a patch of the object's colour, not touching it (not part of the object)
FIRST_CLICK = (95, 120)  # inside the object, off its centre
BACKGROUND_CLICK = (25, 160)  # background, above the object
OPACITY = 0.55  # the UI's default mask opacity
UNSURE = 0.3  # the engine's probability just beyond its reach


def _hex(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _blend(under: tuple[int, ...], color: str, alpha: float = OPACITY) -> tuple[float, ...]:
    return tuple((1 - alpha) * u + alpha * c for u, c in zip(under, _hex(color), strict=True))


# ---------------------------------------------------------------------------------------------- data and engine


def ground_truth() -> np.ndarray:
    gt = np.zeros((H, W), bool)
    y0, y1, x0, x1 = OBJECT_BOX
    gt[y0:y1, x0:x1] = True
    return gt


def depth_map() -> np.ndarray:
    """16-bit depth in mm: a ramp behind, the object in front, the patch in between."""
    depth = np.tile((2000 + 10 * np.arange(W)).astype(np.uint16), (H, 1))
    depth[ground_truth()] = 800
    y0, y1, x0, x1 = PATCH_BOX
    depth[y0:y1, x0:x1] = 1500
    return depth


def depth_display(y: int, x: int) -> int:
    """The grey value the server's display PNG has at (y, x) (min–max scaled, as display_map does)."""
    depth = depth_map().astype(np.float64)
    return round(255 * (depth[y, x] - depth.min()) / (depth.max() - depth.min()))


def write_scene(folder: Path) -> None:
    """``folder/rgb/scene.png`` (dark background, a bright object, a same-coloured patch apart from it, a little
    noise) and ``folder/depth/scene.png`` (16-bit): the RGB-X folder layout."""
    rng = np.random.default_rng(0)
    rgb = np.empty((H, W, 3), np.int16)
    rgb[...] = BACKGROUND_RGB
    rgb[ground_truth()] = OBJECT_RGB
    y0, y1, x0, x1 = PATCH_BOX
    rgb[y0:y1, x0:x1] = OBJECT_RGB
    rgb = np.clip(rgb + rng.integers(-6, 7, rgb.shape), 0, 255).astype(np.uint8)
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    assert cv2.imwrite(str(folder / "rgb" / IMAGE_ID), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert cv2.imwrite(str(folder / "depth" / IMAGE_ID), depth_map())


class ColourRegionEngine:
    """A deterministic engine with errors that clicks correct: the connected region of pixels close in colour to
    the pixel under the first positive click, cut to disks around the positive clicks whose radius grows with
    their number (40 px, 80 px, 120 px, ...), minus 10 px disks around the negative clicks. Where the region goes
    on for 8 px beyond the disks the probability is 0.3 (background, but uncertain: the uncertainty overlay)."""

    modalities: tuple[str, ...] = ("depth",)
    runtime = "fake"

    def __init__(self) -> None:
        self.embedded: list[tuple[str, ...]] = []  # the modalities of every embedded image

    def embed(self, image: np.ndarray, modalities: dict[str, Any] | None = None) -> ImageEmbedding:
        rgb = np.asarray(image, np.float32)
        rgb = rgb / 255 if rgb.max() > 1.5 else rgb
        height, width = rgb.shape[:2]
        embedding = ImageEmbedding(
            prepared=[], image_size=(height, width), valid_size=(height, width), side=max(height, width),
            modalities=tuple(sorted(modalities or {})),
        )  # fmt: skip
        embedding.rgb = rgb  # type: ignore[attr-defined]  # what predict reads the colours from
        self.embedded.append(embedding.modalities)
        return embedding

    def predict(self, embedding: ImageEmbedding, clicks: list[Click], previous: np.ndarray | None) -> np.ndarray:
        rgb = embedding.rgb  # type: ignore[attr-defined]
        yy, xx = np.mgrid[: embedding.image_size[0], : embedding.image_size[1]]
        positives = [c for c in clicks if c.positive]
        if not positives:
            return np.zeros(embedding.image_size, np.float32)
        first = positives[0]
        similar = (np.abs(rgb - rgb[first.y, first.x]).max(axis=2) < 0.15).astype(np.uint8)
        _, labels = cv2.connectedComponents(similar, connectivity=4)
        radius = 40 + 40 * (len(positives) - 1)
        reach = np.zeros(embedding.image_size, bool)
        near = np.zeros(embedding.image_size, bool)
        for click in positives:
            reach |= (yy - click.y) ** 2 + (xx - click.x) ** 2 <= radius**2
            near |= (yy - click.y) ** 2 + (xx - click.x) ** 2 <= (radius + 8) ** 2
        region = labels == labels[first.y, first.x]
        probability = np.where(region & reach, 1.0, np.where(region & near, UNSURE, 0.0)).astype(np.float32)
        for click in clicks:
            if not click.positive:
                probability[(yy - click.y) ** 2 + (xx - click.x) ** 2 <= 100] = 0.0
        return probability


def decode_png(encoded: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(encoded), np.uint8), cv2.IMREAD_UNCHANGED)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def farthest_pixel(region: np.ndarray) -> tuple[int, int]:
    """The pixel of ``region`` farthest from its border (where the click simulator would click)."""
    distance = cv2.distanceTransform(np.pad(region, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(y), int(x)


# ---------------------------------------------------------------------------------------------- server


class LiveServer:
    """uvicorn serving ``create_app(annotator, token)`` on a free local port, in a daemon thread."""

    def __init__(self, annotator: Annotator, token: str | None = None) -> None:
        self.annotator, self.token = annotator, token
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(create_app(annotator, token), host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name=f"uvicorn-{port}")
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=20)

    @property
    def project(self) -> Path:
        return self.annotator.project.folder

    def state(self, image_id: str = IMAGE_ID) -> dict[str, Any]:
        """The server's truth, fetched outside the browser."""
        response = self.http.get(f"/api/images/{image_id}/state")
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browser") / "data"
    write_scene(folder)
    return folder


@pytest.fixture
def serve(data_folder: Path, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start servers (by default on a fresh project folder of the test); all are stopped after the test."""
    servers: list[LiveServer] = []

    def start(project: Path | None = None, token: str | None = None) -> LiveServer:
        project = project or tmp_path / f"project{len(servers)}"
        annotator = Annotator(
            data_folder, ColourRegionEngine(), AnnotationProject(project), CLASSES, ("depth",)  # type: ignore[arg-type]
        )
        servers.append(LiveServer(annotator, token))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


# ---------------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: the browser tests need the system Chromium (make installs it with apt)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


PIXEL_JS = """([selector, y, x, height, width]) => {
  const c = document.querySelector(selector);
  const bx = Math.floor((x + 0.5) * c.width / width), by = Math.floor((y + 0.5) * c.height / height);
  return Array.from(c.getContext('2d').getImageData(bx, by, 1, 1).data.slice(0, 3));
}"""

COLOUR_NEAR_JS = """([selector, y, x, height, width, rgb, tol]) => {
  const c = document.querySelector(selector);
  if (!c || c.width < 2) return false;
  const bx = Math.floor((x + 0.5) * c.width / width), by = Math.floor((y + 0.5) * c.height / height);
  const d = c.getContext('2d').getImageData(bx, by, 1, 1).data;
  return [0, 1, 2].every((i) => Math.abs(d[i] - rgb[i]) <= tol);
}"""

TWO_FRAMES_JS = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


class Ui:
    """One browser page on a server, with the page's console errors, uncaught exceptions and failed requests."""

    def __init__(
        self, browser: Any, server: LiveServer, image_id: str = IMAGE_ID, size: tuple[int, int] = (H, W)
    ) -> None:
        self.server, self.image_id, self.size = server, image_id, size
        self.context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.failed: list[tuple[int, str, str]] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("response", self._response)
        self.expected_clicks = 0

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.failed.append((response.status, response.request.method, response.url))

    # ------------------------------------------------------------------ navigation and waiting

    def open(self, token: str | None = None) -> None:
        """Load the page; wait until the (only) image is open, idle, and its RGB drawn on the canvas."""
        self.page.goto(self.server.url + "/" + (f"#token={token}" if token else ""))
        self.wait_opened()

    def wait_opened(self) -> None:
        self.wait(f"document.body.dataset.image === '{self.image_id}'")
        if self.image_id == IMAGE_ID:
            self.wait_colour(5, 5, BACKGROUND_RGB, tol=10)  # the RGB image is loaded and drawn
        self.expected_clicks = int(self.page.evaluate("document.body.dataset.clicks"))

    def wait(self, condition: str = "true") -> None:
        """Wait until the request queue is idle and ``condition`` (a JS expression) holds."""
        self.page.wait_for_function(f"() => document.body.dataset.ready === '1' && ({condition})")

    def settle(self) -> None:
        """Idle queue, then two animation frames (scheduled re-renders have run)."""
        self.wait()
        self.page.evaluate(TWO_FRAMES_JS)

    # ------------------------------------------------------------------ canvas

    def rect(self, canvas: str = "#canvas") -> tuple[float, float, float, float]:
        r = self.page.eval_on_selector(canvas, "c => { const r = c.getBoundingClientRect(); "
                                               "return [r.left, r.top, r.width, r.height]; }")  # fmt: skip
        return tuple(r)

    def to_page(self, y: int, x: int, canvas: str = "#canvas") -> tuple[int, int, int, int]:
        """Whole page coordinates of image pixel (y, x), and the pixel the UI maps them back to (its toImage)."""
        left, top, width, height = self.rect(canvas)
        h, w = self.size
        px, py = round(left + (x + 0.5) * width / w), round(top + (y + 0.5) * height / h)
        mx = min(w - 1, max(0, int(np.floor((px - left) / width * w))))
        my = min(h - 1, max(0, int(np.floor((py - top) / height * h))))
        return px, py, my, mx

    def click(self, y: int, x: int, right: bool = False, canvas: str = "#canvas") -> tuple[int, int]:
        """Click image pixel (y, x) and wait for the answer; the pixel that was clicked (±1 of (y, x))."""
        px, py, my, mx = self.to_page(y, x, canvas)
        assert abs(my - y) <= 1 and abs(mx - x) <= 1, (y, x, my, mx)
        self.page.mouse.click(px, py, button="right" if right else "left")
        self.expected_clicks += 1
        self.wait(f"document.body.dataset.clicks === '{self.expected_clicks}'")
        return my, mx

    def press(self, key: str, condition: str) -> None:
        self.page.keyboard.press(key)
        self.wait(condition)

    def pixel(self, y: int, x: int, canvas: str = "#canvas") -> tuple[int, int, int]:
        return tuple(self.page.evaluate(PIXEL_JS, [canvas, y, x, *self.size]))

    def wait_colour(self, y: int, x: int, rgb: tuple[float, ...], tol: float = 12, canvas: str = "#canvas") -> None:
        """Wait until the canvas shows about ``rgb`` at image pixel (y, x)."""
        try:
            self.page.wait_for_function(COLOUR_NEAR_JS, arg=[canvas, y, x, *self.size, list(rgb), tol], timeout=5000)
        except Exception as error:  # the colour it shows instead makes the failure readable
            raise AssertionError(f"{canvas} at ({y}, {x}) shows {self.pixel(y, x, canvas)}, expected ~{rgb}") from error

    def snapshot(self, canvas: str = "#canvas") -> str:
        self.settle()
        return self.page.eval_on_selector(canvas, "c => c.toDataURL('image/png')")

    # ------------------------------------------------------------------ checks

    def data(self, name: str) -> str:
        return self.page.evaluate(f"document.body.dataset.{name}")

    def mask(self) -> np.ndarray:
        return decode_png(self.server.state(self.image_id)["mask"])

    def assert_clean(self, allowed_statuses: tuple[int, ...] = ()) -> None:
        """No console error, uncaught exception or failed request, but for responses of ``allowed_statuses``."""
        failed = [f for f in self.failed if f[0] not in allowed_statuses]
        errors = [
            e for e in self.errors
            if not any(f"status of {status}" in e for status in allowed_statuses)
        ]  # fmt: skip
        assert not failed and not errors, f"failed requests {failed}, console errors {errors}"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_ui(browser: Any, serve: Callable[..., LiveServer]) -> Iterator[Callable[..., Ui]]:
    """Open pages (closed after the test, before its servers stop)."""
    pages: list[Ui] = []

    def make(server: LiveServer, token: str | None = None, load: bool = True) -> Ui:
        pages.append(Ui(browser, server))
        if load:
            pages[-1].open(token)
        return pages[-1]

    yield make
    for ui in pages:
        ui.close()


def segment_object(ui: Ui, max_clicks: int = 4) -> list[float]:
    """Left clicks (the first at FIRST_CLICK, then on the middle of the largest missed part) until IoU > 0.85;
    the IoU after each click."""
    gt, ious = ground_truth(), []
    target = FIRST_CLICK
    for _ in range(max_clicks):
        ui.click(*target)
        mask = ui.mask() == ui.server.state()["current"]
        ious.append(iou(mask, gt))
        if ious[-1] > 0.85:
            break
        target = farthest_pixel(gt & ~mask)
    return ious


# ---------------------------------------------------------------------------------------------- tests


def test_clicks_segment_the_object(serve: Callable[..., LiveServer], open_ui: Callable[..., Ui]) -> None:
    server = serve()
    ui = open_ui(server)
    page = ui.page
    items = page.locator("#image-list li[data-id]")
    assert items.count() == 1
    assert items.first.get_attribute("data-id") == IMAGE_ID and items.first.get_attribute("data-status") == "new"
    assert "current" in (items.first.get_attribute("class") or "")
    assert page.inner_text("#dims") == f"{W} × {H}" and ui.data("clicks") == "0"
    assert "engine fake" in page.inner_text("#engine") and "depth" in page.inner_text("#engine")
    ui.wait_colour(150, 200, OBJECT_RGB)  # the object, not yet masked

    # The first click: a partial mask, shown on the canvas, the click drawn as a green dot.
    y, x = ui.click(*FIRST_CLICK)
    state = server.state()
    mask = decode_png(state["mask"])
    assert mask.shape == (H, W) and mask[y, x] == 1
    first_iou = iou(mask == 1, ground_truth())
    assert 0.1 < first_iou < 0.85
    assert state["surfaces"][0]["clicks"] == [{"y": y, "x": x, "positive": True}]
    assert state["surfaces"][0]["class_id"] == 1 and state["status"] == "in_progress"
    ui.wait_colour(FIRST_CLICK[0] + 20, FIRST_CLICK[1] + 15, _blend(OBJECT_RGB, "#e6194b"))  # masked: overlay
    ui.wait_colour(150, 200, OBJECT_RGB)  # not reached by the first click: unchanged
    ui.wait_colour(y, x, _hex("#22c55e"), tol=3)  # the positive click's dot
    assert items.first.get_attribute("data-status") == "in_progress"
    assert page.locator("#surface-list li[data-surface='1'].current").count() == 1

    # The uncertainty overlay (u, or its checkbox): magenta where the engine is unsure, 4 px beyond its reach.
    unsure = (y, x + 44)
    value = round(255 * (1 - abs(2 * UNSURE - 1)))
    assert decode_png(state["uncertainty"])[unsure] == value and decode_png(state["mask"])[unsure] == 0
    ui.wait_colour(*unsure, OBJECT_RGB)
    ui.page.keyboard.press("u")
    assert page.is_checked("#uncertainty-toggle")
    ui.wait_colour(*unsure, _blend(OBJECT_RGB, "#ff00ff", round(value * 0.6) / 255))
    page.click("#uncertainty-toggle")
    assert not page.is_checked("#uncertainty-toggle")
    ui.wait_colour(*unsure, OBJECT_RGB)

    # More left clicks on what was missed: IoU > 0.85 within 4 clicks in all, rising with every click.
    ious = [first_iou, *segment_object_more(ui, mask == 1)]
    assert ious[-1] > 0.85 and len(ious) <= 4, ious
    assert all(b > a for a, b in zip(ious, ious[1:], strict=False)), ious
    ui.wait_colour(150, 200, _blend(OBJECT_RGB, "#e6194b"))

    # A right click on the background: a negative click at that pixel (±1), the object mask unchanged.
    before = ui.mask()
    ny, nx = ui.click(20, 20, right=True)
    assert abs(ny - 20) <= 1 and abs(nx - 20) <= 1
    state = server.state()
    clicks = state["surfaces"][0]["clicks"]
    assert len(clicks) == len(ious) + 1 and clicks[-1] == {"y": ny, "x": nx, "positive": False}
    assert np.array_equal(decode_png(state["mask"]), before)
    ui.wait_colour(ny, nx, _hex("#ef4444"), tol=3)  # the negative click's dot, red
    assert page.locator("#surface-list li[data-surface='1'] .neg").inner_text() == "−1"
    ui.assert_clean()


def segment_object_more(ui: Ui, mask: np.ndarray) -> list[float]:
    """Clicks on the middle of the largest missed part of the object until IoU > 0.85 (at most 3 more)."""
    gt, ious = ground_truth(), []
    for _ in range(3):
        ui.click(*farthest_pixel(gt & ~mask))
        mask = ui.mask() == 1
        ious.append(iou(mask, gt))
        if ious[-1] > 0.85:
            break
    return ious


def test_undo_and_redo(serve: Callable[..., LiveServer], open_ui: Callable[..., Ui]) -> None:
    server = serve()
    ui = open_ui(server)
    empty = ui.snapshot()
    ui.click(*FIRST_CLICK)
    one, canvas_one = ui.mask(), ui.snapshot()
    hole = (FIRST_CLICK[0] + 15, FIRST_CLICK[1] + 15)  # a negative click inside the mask cuts a hole
    hy, hx = ui.click(*hole, right=True)
    two, canvas_two = ui.mask(), ui.snapshot()
    assert one[hy, hx] == 1 and two[hy, hx] == 0 and (two == 1).sum() < (one == 1).sum()

    ui.page.click("#undo")
    ui.wait("document.body.dataset.clicks === '1'")
    state = server.state()
    assert np.array_equal(decode_png(state["mask"]), one) and state["can_redo"] and state["can_undo"]
    assert ui.snapshot() == canvas_one  # the page shows exactly what it showed after the first click

    ui.press("y", "document.body.dataset.clicks === '2'")
    assert np.array_equal(ui.mask(), two) and ui.snapshot() == canvas_two
    ui.press("z", "document.body.dataset.clicks === '1'")
    assert np.array_equal(ui.mask(), one)
    ui.press("Control+z", "document.body.dataset.clicks === '0'")
    state = server.state()
    assert not decode_png(state["mask"]).any() and not state["can_undo"] and state["can_redo"]
    assert ui.snapshot() == empty

    # Nothing left to undo: the page says so without asking the server (no 409).
    posts = len(server.annotator.project.ops(IMAGE_ID))
    ui.press("z", "document.getElementById('status').textContent === 'nothing to undo'")
    assert len(server.annotator.project.ops(IMAGE_ID)) == posts

    ui.page.click("#redo")
    ui.wait("document.body.dataset.clicks === '1'")
    ui.press("Control+Shift+z", "document.body.dataset.clicks === '2'")
    state = server.state()
    assert np.array_equal(decode_png(state["mask"]), two) and not state["can_redo"]
    assert [c["positive"] for c in state["surfaces"][0]["clicks"]] == [True, False]
    ui.assert_clean()


def test_modality_views(serve: Callable[..., LiveServer], open_ui: Callable[..., Ui]) -> None:
    server = serve()
    ui = open_ui(server)
    page = ui.page
    views = page.eval_on_selector_all("#modality-view option", "os => os.map((o) => o.value)")
    assert views == ["rgb", "depth", "side-by-side"]
    assert page.locator("#side-pane").is_hidden()

    with page.expect_response(lambda r: "/modality/depth" in r.url) as answer:
        page.select_option("#modality-view", "depth")
    response = answer.value
    assert response.status == 200 and response.headers["content-type"] == "image/png"
    assert IMAGE_ID in response.url and page.inner_text("#main-label") == "depth"
    # The depth map drawn instead of the RGB: min–max scaled grey values of the 16-bit file.
    for y, x in ((20, 300), (20, 30), (120, 150), (215, 30)):
        grey = depth_display(y, x)
        ui.wait_colour(y, x, (grey, grey, grey), tol=2)

    # Clicks work on the depth view too, and the engine was fed the depth map.
    y, x = ui.click(*FIRST_CLICK)
    assert ui.mask()[y, x] == 1
    assert server.annotator.engine.embedded == [("depth",)]

    page.select_option("#modality-view", "side-by-side")
    side = page.locator("#canvas-side")
    side.wait_for(state="visible")
    assert page.locator("#canvas").is_visible()
    main_rect, side_rect = ui.rect("#canvas"), ui.rect("#canvas-side")
    assert main_rect[2:] == side_rect[2:] and side_rect[0] > main_rect[0] + main_rect[2]  # same size, on the right
    assert page.inner_text("#main-label") == "RGB" and page.inner_text("#side-label") == "depth"
    ui.wait_colour(20, 300, BACKGROUND_RGB, canvas="#canvas")
    grey = depth_display(20, 300)
    ui.wait_colour(20, 300, (grey, grey, grey), tol=2, canvas="#canvas-side")
    # Masks on both panes; a click on the depth pane lands on the same image pixel.
    masked = (FIRST_CLICK[0] + 20, FIRST_CLICK[1] + 15)
    ui.wait_colour(*masked, _blend(OBJECT_RGB, "#e6194b"), canvas="#canvas")
    depth_grey = depth_display(*masked)
    ui.wait_colour(*masked, _blend((depth_grey,) * 3, "#e6194b"), canvas="#canvas-side")
    sy, sx = ui.click(150, 220, canvas="#canvas-side")
    clicks = server.state()["surfaces"][0]["clicks"]
    assert clicks[-1] == {"y": sy, "x": sx, "positive": True} and abs(sy - 150) <= 1 and abs(sx - 220) <= 1
    ui.press("1", "document.getElementById('status').textContent === 'class for new surfaces: object'")
    ui.settle()  # a screenshot without timings in it: the same bytes every run (no churn in the repo)
    page.screenshot(path=str(DOCS / "annotation-ui-side-by-side.png"))

    page.select_option("#modality-view", "rgb")
    side.wait_for(state="hidden")
    assert page.inner_text("#main-label") == "RGB"
    ui.assert_clean()


def test_surfaces_of_two_classes(serve: Callable[..., LiveServer], open_ui: Callable[..., Ui]) -> None:
    server = serve()
    ui = open_ui(server)
    page = ui.page
    ious = segment_object(ui)
    assert ious[-1] > 0.85
    object_mask = ui.mask() == 1

    page.select_option("#class-picker", "2")
    assert page.eval_on_selector("#class-swatch", "s => getComputedStyle(s).backgroundColor") == "rgb(60, 180, 75)"
    ui.press("n", "document.body.dataset.current === '2'")
    state = server.state()
    assert [(s["id"], s["class_id"], s["name"]) for s in state["surfaces"]] == [
        (1, 1, "object"), (2, 2, "background"),
    ]  # fmt: skip
    assert state["current"] == 2 and state["surfaces"][1]["clicks"] == []
    assert page.locator("#surface-list li[data-surface]").count() == 2
    assert page.locator("#surface-list li.current").get_attribute("data-surface") == "2"

    by, bx = ui.click(*BACKGROUND_CLICK)
    joint = ui.mask()
    assert set(np.unique(joint).tolist()) == {0, 1, 2} and joint[by, bx] == 2
    assert np.array_equal(joint == 1, object_mask)  # the background surface took none of the object
    assert not (joint == 2)[ground_truth()].any()
    ui.wait_colour(BACKGROUND_CLICK[0] + 10, BACKGROUND_CLICK[1] + 25, _blend(BACKGROUND_RGB, "#3cb44b"))
    ui.wait_colour(150, 200, _blend(OBJECT_RGB, "#e6194b", OPACITY * 0.7))  # other surfaces: fainter
    items = page.locator("#surface-list li[data-surface]")
    assert "background #2" in items.nth(1).inner_text() and "object #1" in items.nth(0).inner_text()
    assert page.locator("#image-list li[data-id] .count").inner_text() == "2"
    ui.press("2", "document.getElementById('status').textContent === 'class for new surfaces: background'")
    page.mouse.move(0, 0)
    ui.settle()  # a screenshot without timings in it: the same bytes every run (no churn in the repo)
    page.screenshot(path=str(DOCS / "annotation-ui.png"))

    # d deletes the current surface (undoably); its pixels go back to the background.
    ui.press("d", "document.body.dataset.current === '1'")
    state = server.state()
    assert [s["id"] for s in state["surfaces"]] == [1] and state["current"] == 1
    assert np.array_equal(decode_png(state["mask"]), np.where(object_mask, 1, 0))
    assert page.locator("#surface-list li[data-surface]").count() == 1
    ui.press("z", "document.body.dataset.current === '2'")
    assert np.array_equal(ui.mask(), joint)
    ui.page.click("#delete-surface")
    ui.wait("document.body.dataset.current === '1'")
    assert set(np.unique(ui.mask()).tolist()) == {0, 1}

    # The button starts a surface of the picked class; pressed again on the untouched one it makes no other.
    page.click("#next-surface")
    ui.wait("document.body.dataset.current === '3'")
    page.select_option("#class-picker", "1")
    page.click("#next-surface")
    ui.wait("document.getElementById('status').textContent.includes('(object)')")
    state = server.state()
    assert [(s["id"], s["class_id"]) for s in state["surfaces"]] == [(1, 1), (3, 1)] and state["current"] == 3
    ui.assert_clean()


def test_reload_and_restart_show_the_same(
    serve: Callable[..., LiveServer], open_ui: Callable[..., Ui], tmp_path: Path
) -> None:
    server = serve(tmp_path / "kept")
    ui = open_ui(server)
    page = ui.page
    segment_object(ui)
    ui.click(20, 20, right=True)
    ui.press("2", "document.getElementById('class-picker').value === '2'")
    ui.press("n", "document.body.dataset.current === '2'")
    ui.click(*BACKGROUND_CLICK)
    ui.click(215, 160)
    ui.press("z", f"document.body.dataset.clicks === '{ui.expected_clicks - 1}'")  # an undo is part of the log
    before = server.state()
    canvas = ui.snapshot()
    listing = page.inner_text("#surface-list")
    clicks = ui.data("clicks")

    page.reload()
    ui.wait_opened()
    assert ui.data("clicks") == clicks and ui.data("current") == "2"
    assert page.inner_text("#surface-list") == listing
    assert page.locator("#surface-list li.current").get_attribute("data-surface") == "2"
    assert ui.snapshot() == canvas
    assert server.state() == before
    ui.assert_clean()

    # A new server on the same project replays the log from disk: the same state, the same page.
    restarted = serve(server.project)
    assert restarted.annotator is not server.annotator
    after = restarted.state()
    assert np.array_equal(decode_png(after["mask"]), decode_png(before["mask"]))
    assert {k: v for k, v in after.items() if k != "timing_ms"} == {k: v for k, v in before.items() if k != "timing_ms"}
    other = open_ui(restarted)
    assert other.snapshot() == canvas and other.page.inner_text("#surface-list") == listing
    other.press("y", f"document.body.dataset.clicks === '{int(clicks) + 1}'")  # the undone click can be redone
    assert restarted.state()["surfaces"][1]["clicks"][-1]["y"] in (214, 215, 216)
    other.assert_clean()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools, numpy 2
def test_export_button(serve: Callable[..., LiveServer], open_ui: Callable[..., Ui]) -> None:
    server = serve()
    ui = open_ui(server)
    page = ui.page
    segment_object(ui)
    page.select_option("#class-picker", "2")
    ui.press("n", "document.body.dataset.current === '2'")
    ui.click(*BACKGROUND_CLICK)
    joint = ui.mask()
    assert page.inner_text("#progress") == "0 / 1 done"
    page.click("#mark-done")
    ui.wait(f"document.querySelector('#image-list li[data-id=\"{IMAGE_ID}\"]').dataset.status === 'done'")
    assert server.state()["status"] == "done" and page.inner_text("#progress") == "1 / 1 done"
    assert page.inner_text("#image-status") == "done" and page.inner_text("#mark-done") == "Reopen"

    page.click("#export")
    page.locator("#export-result").wait_for(state="visible")
    ui.wait()
    folder = server.project / "export"
    assert str(folder) in page.inner_text("#export-result") and "exported 4 files" in page.inner_text("#status")
    listed = page.eval_on_selector_all("#export-result details div", "ds => ds.map((d) => d.textContent)")
    assert sorted(listed) == [
        "annotations.coco.json", "labels/scene.png", "surfaces/scene/surface_1_object.png",
        "surfaces/scene/surface_2_background.png",
    ]  # fmt: skip

    coco = json.loads((folder / "annotations.coco.json").read_text())
    assert coco["images"] == [{"id": 1, "file_name": IMAGE_ID, "height": H, "width": W}]
    assert coco["categories"] == [{"id": 1, "name": "object"}, {"id": 2, "name": "background"}]
    assert [a["category_id"] for a in coco["annotations"]] == [1, 2]
    for annotation, surface in zip(coco["annotations"], (1, 2), strict=True):
        rle = dict(annotation["segmentation"], counts=annotation["segmentation"]["counts"].encode())
        decoded = coco_mask.decode(rle).astype(bool)
        assert np.array_equal(decoded, joint == surface) and annotation["area"] == (joint == surface).sum()
    labels = cv2.imread(str(folder / "labels" / "scene.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(labels, joint)  # surface 1 is class 1, surface 2 class 2
    surface = cv2.imread(str(folder / "surfaces" / "scene" / "surface_2_background.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(surface == 255, joint == 2)
    ui.assert_clean()


def test_help_overlay_and_a_stale_page(serve: Callable[..., LiveServer], open_ui: Callable[..., Ui]) -> None:
    server = serve()
    ui = open_ui(server)
    page = ui.page
    help_box = page.locator("#help")
    assert help_box.is_hidden()
    page.keyboard.press("?")
    help_box.wait_for(state="visible")
    assert "Shortcuts" in help_box.inner_text()
    page.keyboard.press("Escape")
    help_box.wait_for(state="hidden")
    page.keyboard.press("h")
    help_box.wait_for(state="visible")
    page.keyboard.press("h")
    help_box.wait_for(state="hidden")
    page.click("#help-button")
    help_box.wait_for(state="visible")
    page.click("#help-close")
    help_box.wait_for(state="hidden")

    # While the help is open, annotation keys do nothing (the queue runs in order, so a click made after the
    # help closed would follow an undo, had z been obeyed).
    ui.click(*FIRST_CLICK)
    undos: list[str] = []
    page.on("request", lambda r: undos.append(r.url) if r.url.endswith("/undo") else None)
    page.keyboard.press("?")
    help_box.wait_for(state="visible")
    page.keyboard.press("z")
    page.keyboard.press("n")
    page.keyboard.press("Escape")
    help_box.wait_for(state="hidden")
    ui.click(150, 220)
    state = server.state()
    assert not undos and len(state["surfaces"]) == 1 and len(state["surfaces"][0]["clicks"]) == 2
    ui.assert_clean()

    # A second page whose state went stale (the first one undid everything): its undo meets a 409, which it
    # reports as "nothing to undo" (a 409 provoked on purpose: the only failed request of the session).
    stale = open_ui(server)
    assert stale.data("clicks") == "2"
    ui.press("z", "document.body.dataset.clicks === '1'")
    ui.press("z", "document.body.dataset.clicks === '0'")
    stale.page.keyboard.press("z")
    stale.wait("document.getElementById('status').textContent === 'nothing to undo'")
    assert [status for status, _, _ in stale.failed] == [409]
    stale.assert_clean(allowed_statuses=(409,))
    ui.assert_clean()


def test_token(serve: Callable[..., LiveServer], open_ui: Callable[..., Ui]) -> None:
    server = serve(token="t0k")
    ui = open_ui(server, token="t0k")
    y, x = ui.click(*FIRST_CLICK)
    state = server.state()
    assert state["surfaces"][0]["clicks"] == [{"y": y, "x": x, "positive": True}] and decode_png(state["mask"])[y, x]
    assert httpx.get(f"{server.url}/api/images/{IMAGE_ID}/state").status_code == 401
    ui.assert_clean()

    for suffix in ("", "#token=wrong"):
        locked = open_ui(server, load=False)
        locked.page.goto(server.url + "/" + suffix)
        locked.page.wait_for_function(
            "() => document.body.dataset.ready === '1' && document.getElementById('status').classList.contains('error')"
        )
        status = locked.page.inner_text("#status")
        assert "missing or wrong token" in status and "#token=" in status, status
        assert locked.page.locator("#image-list li").count() == 0 and locked.data("image") is None
        assert {code for code, _, _ in locked.failed} == {401}
        locked.assert_clean(allowed_statuses=(401,))
