"""rgbxseg: RGB-X semantic segmentation — multi-modal training, interactive annotation, honest evaluation."""

import os

# No network at run time: hub look-ups (timm, huggingface) must fail at once, never retry for a minute,
# and albumentations must not phone home for updates.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from rgbxseg.errors import ConfigError, DataError, RgbxsegError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "RgbxsegError", "__version__"]
