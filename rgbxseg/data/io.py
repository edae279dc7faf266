"""Reading images, label maps and modality maps from disk with errors that name the file.

OpenCV reads every raster format the datasets use (PNG 8/16-bit, JPEG, BMP, lossless WebP, TIFF);
``.npy`` float maps are read with ``allow_pickle=False``. Label maps and masks stored as palette
("P" mode) PNGs (DAVIS, PASCAL VOC-style) are read as their palette indices with Pillow.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from rgbxseg.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
MAP_SUFFIXES = (*IMAGE_SUFFIXES, ".npy")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE_COLOUR_TYPE = 3  # IHDR colour type of an indexed-colour PNG


def _exists(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: file not found")


def _imread(path: Path, flags: int) -> np.ndarray:
    _exists(path)
    array = cv2.imread(str(path), flags)
    if array is None:
        raise DataError(f"{path}: cannot decode the file as an image (corrupt or unsupported format)")
    return array


def is_palette_png(path: str | Path) -> bool:
    """Whether ``path`` is a ``.png`` whose header declares indexed colour (Pillow mode "P").

    Only the first 26 bytes (signature + IHDR) are read; a missing, short or non-PNG file gives False
    and is left to the decoder to report.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        return False
    try:
        with path.open("rb") as file:
            header = file.read(26)
    except OSError:
        return False
    return (
        len(header) == 26
        and header.startswith(_PNG_SIGNATURE)
        and header[12:16] == b"IHDR"
        and header[25] == _PNG_PALETTE_COLOUR_TYPE
    )


def _read_palette_indices(path: Path) -> np.ndarray:
    """The palette indices of an indexed-colour PNG as H×W int64.

    OpenCV has no flag that keeps palette indices (``IMREAD_UNCHANGED`` expands them to BGR colour),
    so these files are decoded with Pillow.
    """
    _exists(path)
    try:
        with Image.open(path) as image:
            mode, indices = image.mode, np.asarray(image)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot decode the palette PNG (corrupt or unsupported: {err})") from err
    if mode != "P":
        raise DataError(f"{path}: expected a palette PNG, Pillow decodes it as mode {mode}")
    return indices.astype(np.int64)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as H×W×3 float32 RGB in [0, 1] (grey images are repeated to 3 channels)."""
    path = Path(path)
    array = _imread(path, cv2.IMREAD_UNCHANGED)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.shape[2] == 4:
        array = array[..., :3]
    elif array.shape[2] != 3:
        raise DataError(f"{path}: expected an RGB image, got {array.shape[2]} channels")
    scale = _integer_scale(array, path)
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB).astype(np.float32) / scale


def _integer_scale(array: np.ndarray, path: Path) -> float:
    if array.dtype == np.uint8:
        return 255.0
    if array.dtype == np.uint16:
        return 65535.0
    if np.issubdtype(array.dtype, np.floating):
        return 1.0
    raise DataError(f"{path}: unsupported pixel type {array.dtype}")


def read_label(path: str | Path) -> np.ndarray:
    """Read a label map (8- or 16-bit, one channel) as H×W int64.

    A palette PNG gives its palette indices (the ids of PASCAL VOC-style label maps), not its colours.
    A 3-channel file is accepted only if its channels are equal (a grey label saved as RGB).
    """
    path = Path(path)
    if is_palette_png(path):
        return _read_palette_indices(path)
    array = _imread(path, cv2.IMREAD_UNCHANGED)
    if array.ndim == 3:
        if not all(np.array_equal(array[..., 0], array[..., c]) for c in range(1, array.shape[2])):
            raise DataError(f"{path}: a label map must have one channel (got {array.shape[2]} differing channels)")
        array = array[..., 0]
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{path}: a label map must hold integer ids, got {array.dtype}")
    return array.astype(np.int64)


def read_mask(path: str | Path) -> np.ndarray:
    """Read an 8/16-bit object mask as H×W int64.

    A palette PNG (DAVIS) gives its palette indices (check with :func:`is_palette_png`); any other
    colour file contributes its first channel (Berkeley's masks are RGB with equal channels).
    """
    path = Path(path)
    if is_palette_png(path):
        return _read_palette_indices(path)
    array = _imread(path, cv2.IMREAD_UNCHANGED)
    if array.ndim == 3:
        array = array[..., 0]
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{path}: a mask must hold integer values, got {array.dtype}")
    return array.astype(np.int64)


def read_map(path: str | Path) -> np.ndarray:
    """Read a modality map as H×W×C float32.

    8-bit rasters are divided by 255, 16-bit by 65535; float rasters and ``.npy`` arrays (H×W or
    H×W×C) are kept as stored.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        _exists(path)
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise DataError(f"{path}: cannot read the .npy array ({err})") from err
        if array.ndim not in (2, 3) or not np.issubdtype(array.dtype, np.number):
            raise DataError(f"{path}: expected a numeric H×W or H×W×C array, got {array.dtype} {array.shape}")
        scale = 1.0
    else:
        array = _imread(path, cv2.IMREAD_UNCHANGED)
        scale = _integer_scale(array, path)
        if array.ndim == 3 and array.shape[2] in (3, 4):
            array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGB if array.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    array = array.astype(np.float32) / scale
    return array[..., None] if array.ndim == 2 else array


def find_file(folder: Path, stem: str, suffixes: tuple[str, ...] = MAP_SUFFIXES) -> Path:
    """The file ``folder/stem.<suffix>`` for the first suffix that exists (case-insensitive)."""
    for suffix in suffixes:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    raise DataError(f"{folder / stem}.*: file not found (looked for {', '.join(suffixes)})")


def read_split(path: str | Path) -> list[str]:
    """Read a split list: one entry per line, blank lines and ``#`` comments skipped; must not be empty."""
    path = Path(path)
    _exists(path)
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    entries = [ln for ln in lines if ln and not ln.startswith("#")]
    if not entries:
        raise DataError(f"{path}: the split list is empty")
    return entries
