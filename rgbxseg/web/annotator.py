"""The annotation domain behind the web server: the images of a folder, one :class:`InteractiveSession` per
open image, every operation validated, applied, logged (fsynced) and its mask saved before it is answered.

Image ids are the images' paths relative to the image folder, POSIX style, fixed when the server starts; a
client only ever names an id from that list, never a path (so no client string reaches the file system).
Opening an image replays its operation log through a fresh session: the engine is deterministic, so the
masks come back exactly as they were acknowledged.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rgbxseg.config import read_yaml
from rgbxseg.data.base import default_palette
from rgbxseg.data.io import IMAGE_SUFFIXES, MAP_SUFFIXES, find_file, read_map, read_rgb
from rgbxseg.errors import ConfigError, DataError
from rgbxseg.interactive.engine import MMMSEngine
from rgbxseg.interactive.session import InteractiveSession
from rgbxseg.web.project import AnnotationProject

STATUSES = ("new", "in_progress", "done")


class UnknownImage(DataError):
    """An image id that the server did not list."""


@dataclass(frozen=True)
class ClassSpec:
    id: int
    name: str
    color: str


def load_classes(path: Path | None) -> list[ClassSpec]:
    """Classes from a YAML file — a list of names, or of ``{name, color}`` mappings — numbered from 1 (0 is
    background in the exported label maps); without a file, one class ``object``."""
    entries: Any = ["object"] if path is None else read_yaml(path)
    if path is not None and (not isinstance(entries, list) or not entries):
        raise ConfigError(f"{path}: expected a non-empty list of class names or {{name, color}} mappings")
    palette = default_palette(len(entries))
    classes = []
    for index, entry in enumerate(entries, start=1):
        name, color = entry, None
        if isinstance(entry, dict):
            name, color = entry.get("name"), entry.get("color")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}: class {index} has no name")
        default = "#{:02x}{:02x}{:02x}".format(*palette[index - 1])
        classes.append(ClassSpec(index, name.strip(), str(color or default)))
    return classes


def image_folder(folder: Path) -> Path:
    """Where the images are: ``folder/rgb`` in the RGB-X folder layout, else ``folder`` itself."""
    return folder / "rgb" if (folder / "rgb").is_dir() else folder


def list_images(folder: Path) -> dict[str, Path]:
    """Image id → file for every image under the image folder; files (or symlinks) resolving outside it
    are left out."""
    base = image_folder(folder)
    if not base.is_dir():
        raise DataError(f"{folder}: folder not found")
    root = base.resolve()
    images = {}
    for path in sorted(base.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and path.resolve().is_relative_to(root):
            images[path.relative_to(base).as_posix()] = path
    if not images:
        raise DataError(f"{base}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return images


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes at zlib level 1: answers go to a browser on this machine, so encoding time beats size."""
    ok, encoded = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise DataError("could not encode a PNG")
    return encoded.tobytes()


def display_map(array: np.ndarray) -> np.ndarray:
    """A modality map as 8-bit for display: first channel (or RGB), min–max scaled."""
    shown = array[..., :3] if array.shape[2] >= 3 else array[..., 0]
    low, high = float(np.nanmin(shown)), float(np.nanmax(shown))
    scaled = (shown - low) / (high - low) if high > low else np.zeros_like(shown)
    out = (scaled * 255).round().astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_RGB2BGR) if out.ndim == 3 else out


@dataclass
class OpenImage:
    """A session and what the web layer adds to it: the class of each surface, timing of the last click."""

    session: InteractiveSession
    classes: dict[int, int]
    status: str = "new"
    click_ms: float | None = None
    log: list[dict] = field(default_factory=list)


class Annotator:
    """All annotation state of one server (thread-safe: one lock around the engine and the sessions).

    Args:
        folder: the data folder (images in it or in ``folder/rgb``; modality ``m`` in ``folder/m``).
        engine: the MMMS engine.
        project: where operations and masks are stored.
        classes: the label set.
        modalities: modality folders to load (for display; those the engine knows also feed it).
        max_open: images kept open (embedded) at once.
    """

    def __init__(
        self,
        folder: Path,
        engine: MMMSEngine,
        project: AnnotationProject,
        classes: Sequence[ClassSpec],
        modalities: Sequence[str] = (),
        max_open: int = 4,
    ) -> None:
        self.folder = Path(folder)
        self.engine = engine
        self.project = project
        self.classes = {c.id: c for c in classes}
        self.modalities = tuple(modalities)
        self.images = list_images(self.folder)
        self.max_open = max_open
        self.lock = threading.RLock()
        self._open: OrderedDict[str, OpenImage] = OrderedDict()

    # ------------------------------------------------------------------------------------------ reading

    def path(self, image_id: str) -> Path:
        if image_id not in self.images:
            raise UnknownImage(f"no image '{image_id}' in {self.folder}")
        return self.images[image_id]

    def modality_path(self, image_id: str, name: str) -> Path:
        if name not in self.modalities:
            raise UnknownImage(f"no modality '{name}' (served: {', '.join(self.modalities) or 'none'})")
        stem = Path(image_id).with_suffix("").as_posix()
        path = find_file(self.folder / name, stem, MAP_SUFFIXES)
        if not path.resolve().is_relative_to((self.folder / name).resolve()):
            raise UnknownImage(f"modality '{name}' of '{image_id}' lies outside its folder")
        return path

    def rgb_png(self, image_id: str) -> bytes:
        rgb = read_rgb(self.path(image_id))
        return png_bytes(cv2.cvtColor((rgb * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR))

    def modality_png(self, image_id: str, name: str) -> bytes:
        return png_bytes(display_map(read_map(self.modality_path(image_id, name))))

    def listing(self) -> list[dict[str, Any]]:
        statuses = self.project.statuses()
        summaries = {i: self.project.summary(i) for i in statuses}
        return [
            {
                "id": image_id,
                "name": Path(image_id).name,
                "status": statuses.get(image_id, "new"),
                "surfaces": len((summaries.get(image_id) or {}).get("surfaces", [])),
            }
            for image_id in self.images
        ]

    # ------------------------------------------------------------------------------------------ sessions

    def _load(self, image_id: str) -> OpenImage:
        rgb = read_rgb(self.path(image_id))
        extra = {}
        for name in self.modalities:
            if name in self.engine.modalities:
                try:
                    extra[name] = read_map(self.modality_path(image_id, name))
                except DataError:
                    continue  # a missing sensor is absent, not an error (the engine handles it)
        first = self.default_class()
        opened = OpenImage(InteractiveSession(self.engine, rgb, extra, self.classes[first].name), {1: first})
        for op in self.project.ops(image_id):
            self._apply(opened, op)
        return opened

    def default_class(self) -> int:
        return min(self.classes)

    def opened(self, image_id: str) -> OpenImage:
        with self.lock:
            if image_id in self._open:
                self._open.move_to_end(image_id)
                return self._open[image_id]
            opened = self._load(image_id)
            self._open[image_id] = opened
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)
            return opened

    def _apply(self, opened: OpenImage, op: dict[str, Any]) -> None:
        """Apply one validated operation to a session (raises ValueError / LookupError on a bad one)."""
        session, kind = opened.session, op["op"]
        if kind == "click":
            start = time.perf_counter()
            session.add_click(int(op["y"]), int(op["x"]), bool(op["positive"]))
            opened.click_ms = 1000 * (time.perf_counter() - start)
            opened.status = "in_progress" if opened.status == "new" else opened.status
        elif kind == "undo":
            if not session.undo():
                raise LookupError("nothing to undo")
        elif kind == "redo":
            if not session.redo():
                raise LookupError("nothing to redo")
        elif kind == "surface":
            class_id = int(op["class_id"])
            if class_id not in self.classes:
                raise ValueError(f"unknown class id {class_id} (classes: {sorted(self.classes)})")
            if session.clicks:  # an untouched current surface is relabelled instead of left empty
                session.next_surface(self.classes[class_id].name)
            opened.classes[session.surface] = class_id
        elif kind == "select":
            session.select_surface(int(op["surface"]))
        elif kind == "delete":
            session.delete_surface(int(op["surface"]))
            opened.classes.setdefault(session.surface, self.default_class())
        elif kind == "status":
            if op["status"] not in STATUSES[1:]:
                raise ValueError(f"status must be in_progress or done, got {op['status']!r}")
            opened.status = op["status"]
        else:
            raise ValueError(f"unknown operation {kind!r}")

    def apply(self, image_id: str, op: dict[str, Any]) -> dict[str, Any]:
        """Apply an operation, then log it (fsynced) and save the mask; the state to answer with."""
        with self.lock:
            opened = self.opened(image_id)
            self._apply(opened, op)
            self.project.append(image_id, op)
            self.project.save_mask(image_id, opened.session.joint_mask(), self.surfaces(opened), opened.status)
            return self.state(image_id)

    # ------------------------------------------------------------------------------------------ answers

    def surfaces(self, opened: OpenImage) -> list[dict[str, Any]]:
        session = opened.session
        described = []
        for surface in session.names:
            spec = self.classes[opened.classes.get(surface, self.default_class())]
            clicks = session.clicks_of(surface)
            described.append(
                {
                    "id": surface,
                    "class_id": spec.id,
                    "name": spec.name,
                    "color": spec.color,
                    "clicks": [{"y": c.y, "x": c.x, "positive": c.positive} for c in clicks],
                }
            )
        return described

    def state(self, image_id: str) -> dict[str, Any]:
        with self.lock:
            opened = self.opened(image_id)
            session = opened.session
            height, width = session.embedding.image_size
            state: dict[str, Any] = {
                "id": image_id,
                "width": width,
                "height": height,
                "status": opened.status,
                "current": session.surface,
                "surfaces": self.surfaces(opened),
                "mask": base64.b64encode(png_bytes(session.joint_mask().astype(np.uint8))).decode(),
                "can_undo": session.can_undo,
                "can_redo": session.can_redo,
                "saved": True,
                "timing_ms": {"click": opened.click_ms},
            }
            probability = session.probability()
            if probability is not None:
                uncertainty = (255 * (1 - np.abs(2 * probability - 1))).round().astype(np.uint8)
                state["uncertainty"] = base64.b64encode(png_bytes(uncertainty)).decode()
            return state
