"""The on-disk store of one annotation project, safe against a crash at any point.

Layout of a project folder::

    project.json        {"format": 1, "images": {key: image id}}
    log/<key>.jsonl     the image's operation log: one compact JSON object per line, oldest first
    masks/<key>.png     the latest joint mask: uint8, pixel = surface id, 0 = background
    masks/<key>.json    its summary: {"id", "width", "height", "status", "surfaces": [{"id", "class_id", "name"}],
                        "mask_sha256"}

``key`` is the first 20 hex digits of the SHA-256 of the image id. Image ids (relative POSIX paths such as
``"sub/0001.png"``) arrive in requests and are never used as file names.

Crash safety: :meth:`AnnotationProject.append` returns only once its line is flushed and fsynced, so an acknowledged
operation survives ``kill -9`` (and a power cut). A crash during that write leaves at most an unterminated last line,
never acknowledged: :meth:`AnnotationProject.ops` ignores it and the next append cuts it off. Every other file is
replaced atomically. The mask PNG is written before its summary, which records the PNG's SHA-256: the summary is the
commit record, and a PNG that does not match it (a crash between the two writes) is reported, never paired with the
wrong surfaces. The log is the source of truth; the masks can always be rebuilt by replaying it.

One process owns a project folder; within it, a lock serialises writes (and mask reads) of concurrent requests.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np

from rgbxseg.atomic import atomic_write_bytes, atomic_write_text
from rgbxseg.errors import DataError

FORMAT_VERSION = 1
OPS = ("click", "undo", "redo", "surface", "select", "delete", "status")
STATUSES = ("new", "in_progress", "done")
KEY_LENGTH = 20
_SUMMARY_KEYS = ("id", "width", "height", "status", "surfaces", "mask_sha256")


def image_key(image_id: str) -> str:
    """The file-name key of an image id: the first 20 hex digits of the SHA-256 of its UTF-8 bytes.

    ``surrogatepass`` keeps ids made from undecodable file names (Python's surrogate escapes) hashable.
    """
    return hashlib.sha256(image_id.encode("utf-8", "surrogatepass")).hexdigest()[:KEY_LENGTH]


def encode_png(array: np.ndarray, path: Path) -> bytes:
    """PNG bytes of a uint8 array (``path`` only names the file in the error)."""
    ok, buffer = cv2.imencode(".png", array)
    if not ok:
        raise DataError(f"{path}: OpenCV cannot encode a {array.shape} {array.dtype} array as PNG")
    return buffer.tobytes()


def write_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a PNG file atomically (parent folders are created)."""
    atomic_write_bytes(path, encode_png(array, path))


class AnnotationProject:
    """The store of one annotation project folder, created when missing (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._index_path = self.folder / "project.json"
        self._lock = threading.Lock()
        _make_folders(self.folder / "log", self.folder / "masks")
        if self._index_path.exists():
            self._ids = _read_index(self._index_path)
        else:
            self._ids = {}
            self._write_index(self._ids)

    def images(self) -> list[str]:
        """Every image id the project has seen (an operation or a mask), sorted."""
        return sorted(self._ids.values())

    def append(self, image_id: str, op: dict[str, Any]) -> None:
        """Append ``op`` to the image's log; return only once it is on disk (flushed and fsynced).

        ``op["op"]`` must be one of :data:`OPS` and ``op`` JSON-serialisable (ValueError otherwise).
        """
        line = _encode_op(op)
        with self._lock:
            self._register(image_id)
            _append_line(self._log_path(image_id), line)

    def ops(self, image_id: str) -> list[dict[str, Any]]:
        """The image's operations, oldest first ([] when it has none).

        An unterminated last line (a write cut by a crash, never acknowledged) is ignored; any other line that is
        not an operation raises :class:`DataError` naming the file and the line number.
        """
        path = self._log_path(image_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as error:
            raise DataError(f"{path}: cannot read the operation log ({error})") from error
        lines = data.split(b"\n")[:-1]  # what follows the last newline is a torn write (or nothing)
        return [_decode_op(line, path, number) for number, line in enumerate(lines, start=1)]

    def save_mask(self, image_id: str, joint: np.ndarray, surfaces: list[dict[str, Any]], status: str) -> None:
        """Store the image's latest joint mask and its summary, each atomically (PNG first, summary last).

        ``joint`` is a 2-D integer array of surface ids 0..255; ``surfaces`` lists dicts with an ``id`` (1..255),
        a ``class_id`` (≥ 1) and a ``name`` (other keys are not stored), and must name every id found in
        ``joint``; ``status`` is one of :data:`STATUSES`. A violation raises :class:`DataError`.
        """
        png_path, summary_path = self._mask_path(image_id), self._summary_path(image_id)
        joint = _checked_joint(joint, png_path)
        summary = {
            "id": image_id, "height": joint.shape[0], "width": joint.shape[1],
            "status": _checked_status(status, summary_path),
            "surfaces": _checked_surfaces(surfaces, joint, summary_path),
        }  # fmt: skip
        data = encode_png(joint, png_path)
        summary["mask_sha256"] = hashlib.sha256(data).hexdigest()
        with self._lock:
            self._register(image_id)
            atomic_write_bytes(png_path, data)
            atomic_write_text(summary_path, _dumps(summary))

    def summary(self, image_id: str) -> dict[str, Any] | None:
        """The image's mask summary (see the module docstring), or None when no mask was saved."""
        path = self._summary_path(image_id)
        if not path.exists():
            return None
        summary = _read_json(path)
        if not isinstance(summary, dict) or any(key not in summary for key in _SUMMARY_KEYS):
            raise DataError(f"{path}: not a mask summary (it needs the keys {', '.join(_SUMMARY_KEYS)})")
        if summary["id"] != image_id:
            raise DataError(f"{path}: the summary of image {summary['id']!r}, expected {image_id!r}")
        return summary

    def mask(self, image_id: str) -> np.ndarray | None:
        """The image's latest joint mask (H×W uint8), or None when no mask was saved."""
        saved = self.saved(image_id)
        return None if saved is None else saved[1]

    def saved(self, image_id: str) -> tuple[dict[str, Any], np.ndarray] | None:
        """The summary and the joint mask, read together so that they match even while another thread saves."""
        with self._lock:
            summary = self.summary(image_id)
            if summary is None:
                return None
            path = self._mask_path(image_id)
            try:
                data = path.read_bytes()
            except OSError as error:
                raise DataError(f"{path}: cannot read the mask ({error})") from error
        if hashlib.sha256(data).hexdigest() != summary["mask_sha256"]:
            raise DataError(
                f"{path}: the mask does not match its summary {self._summary_path(image_id)} (a crash between the "
                "two writes?); reopen the image to rebuild its mask from the operation log"
            )
        return summary, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)

    def statuses(self) -> dict[str, str]:
        """Image id → status of every image with a saved mask."""
        summaries = {image_id: self.summary(image_id) for image_id in self.images()}
        return {image_id: summary["status"] for image_id, summary in summaries.items() if summary is not None}

    def _log_path(self, image_id: str) -> Path:
        return self.folder / "log" / f"{image_key(image_id)}.jsonl"

    def _mask_path(self, image_id: str) -> Path:
        return self.folder / "masks" / f"{image_key(image_id)}.png"

    def _summary_path(self, image_id: str) -> Path:
        return self.folder / "masks" / f"{image_key(image_id)}.json"

    def _register(self, image_id: str) -> None:
        """Record key → id in project.json the first time an image is seen (the caller holds the lock)."""
        if not isinstance(image_id, str) or not image_id:
            raise ValueError(f"an image id is a non-empty str, got {image_id!r}")
        key = image_key(image_id)
        known = self._ids.get(key)
        if known == image_id:
            return
        if known is not None:
            raise DataError(f"{self._index_path}: images {known!r} and {image_id!r} share the key {key}")
        ids = {**self._ids, key: image_id}
        self._write_index(ids)
        self._ids = ids

    def _write_index(self, ids: dict[str, str]) -> None:
        atomic_write_text(self._index_path, _dumps({"format": FORMAT_VERSION, "images": ids}))


def _make_folders(*folders: Path) -> None:
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(f"{folder}: cannot create the project folder ({error})") from error


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read the JSON file ({error})") from error


def _read_index(path: Path) -> dict[str, str]:
    data = _read_json(path)
    version = data.get("format") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise DataError(f"{path}: project format version {version!r}; this rgbxseg reads version {FORMAT_VERSION}")
    images = data.get("images")
    if not isinstance(images, dict) or not all(
        isinstance(image_id, str) and image_key(image_id) == key for key, image_id in images.items()
    ):
        raise DataError(f"{path}: 'images' must map each image's key (see image_key) to its image id")
    return images


def _encode_op(op: dict[str, Any]) -> bytes:
    if not isinstance(op, dict) or op.get("op") not in OPS:
        raise ValueError(f"an operation is a dict whose 'op' is one of {', '.join(OPS)}; got {op!r}")
    try:
        text = json.dumps(op, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"operation {op!r} cannot be written as JSON ({error})") from error
    return (text + "\n").encode()


def _decode_op(line: bytes, path: Path, number: int) -> dict[str, Any]:
    try:
        op = json.loads(line)
    except ValueError as error:
        raise DataError(f"{path}, line {number}: corrupt operation ({error})") from error
    if not isinstance(op, dict) or op.get("op") not in OPS:
        raise DataError(f"{path}, line {number}: not an operation (a JSON object whose 'op' is one of {OPS})")
    return op


def _append_line(path: Path, line: bytes) -> None:
    new = not path.exists()
    with open(path, "a+b") as handle:
        _cut_torn_tail(handle)
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    if new:
        _fsync_folder(path.parent)


def _cut_torn_tail(handle: BinaryIO) -> None:
    """Cut an unterminated last line (a write that a crash interrupted, never acknowledged) off the log."""
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return
    handle.seek(0)
    handle.truncate(handle.read().rfind(b"\n") + 1)


def _fsync_folder(folder: Path) -> None:
    """Make a new file's directory entry durable (POSIX; Windows cannot open a folder for fsync)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _checked_joint(joint: np.ndarray, path: Path) -> np.ndarray:
    if not isinstance(joint, np.ndarray) or joint.ndim != 2 or joint.size == 0:
        shape = joint.shape if isinstance(joint, np.ndarray) else type(joint).__name__
        raise DataError(f"{path}: the joint mask must be a non-empty 2-D array, got {shape}")
    if not np.issubdtype(joint.dtype, np.integer):
        raise DataError(f"{path}: the joint mask must hold integers (surface ids), got {joint.dtype}")
    low, high = int(joint.min()), int(joint.max())
    if low < 0 or high > 255:
        raise DataError(f"{path}: joint mask values must be surface ids 0..255, got {low}..{high}")
    return joint.astype(np.uint8)


def _checked_status(status: str, path: Path) -> str:
    if status not in STATUSES:
        raise DataError(f"{path}: status must be one of {', '.join(STATUSES)}, got {status!r}")
    return status


def _checked_surfaces(surfaces: list[dict[str, Any]], joint: np.ndarray, path: Path) -> list[dict[str, Any]]:
    checked = [_checked_surface(surface, path) for surface in surfaces]
    ids = [surface["id"] for surface in checked]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: surface ids repeat: {ids}")
    missing = sorted(set(np.unique(joint).tolist()) - {0, *ids})
    if missing:
        raise DataError(f"{path}: the joint mask holds surface ids {missing} that are not in the surface list")
    return checked


def _checked_surface(surface: Mapping[str, Any], path: Path) -> dict[str, Any]:
    if isinstance(surface, Mapping):
        sid, class_id, name = surface.get("id"), surface.get("class_id"), surface.get("name")
        if _is_int(sid) and 1 <= sid <= 255 and _is_int(class_id) and class_id >= 1 and isinstance(name, str):
            return {"id": int(sid), "class_id": int(class_id), "name": name}
    raise DataError(f"{path}: a surface needs an int id 1..255, an int class_id ≥ 1 and a str name, got {surface!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
