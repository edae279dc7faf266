"""Pictures of samples: colour label maps, overlays, and a panel figure of RGB + modalities + label."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from rgbxseg.data.sample import IGNORE_INDEX, RawSample


def colorize(label: np.ndarray, palette: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """H×W ids → H×W×3 uint8 colours; ignore and out-of-palette ids are black."""
    valid = (label >= 0) & (label < len(palette)) & (label != ignore_index)
    out = np.zeros((*label.shape, 3), dtype=np.uint8)
    out[valid] = palette[label[valid]]
    return out


def overlay(image: np.ndarray, label: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the colour label over an H×W×3 float image in [0, 1]; ignore pixels keep the image."""
    colours = colorize(label, palette).astype(np.float32) / 255.0
    labelled = (label != IGNORE_INDEX)[..., None]
    return np.where(labelled, (1 - alpha) * image + alpha * colours, image).clip(0, 1)


def _boxes(masks: np.ndarray) -> list[tuple[int, int, int, int]]:
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        if len(ys):
            boxes.append((int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))
    return boxes


def sample_figure(raw: RawSample, classes: tuple[str, ...], palette: np.ndarray, panel_width: float = 4.0) -> Figure:
    """One row: RGB, each modality (first channel, viridis), label overlay with instance boxes, legend."""
    panels = 2 + len(raw.modalities)
    h, w = raw.image.shape[:2]
    fig = Figure(figsize=(panel_width * panels, panel_width * h / w + 0.8))  # no pyplot: no GUI backend, no global state
    axes = fig.subplots(1, panels, squeeze=False)
    axes = axes[0]
    axes[0].imshow(raw.image.clip(0, 1))
    axes[0].set_title(f"RGB — {raw.meta.get('id', '')}")
    for ax, (name, array) in zip(axes[1:], raw.modalities.items()):
        ax.imshow(array[..., 0], cmap="viridis")
        ax.set_title(name)
    ax = axes[-1]
    ax.imshow(overlay(raw.image.clip(0, 1), raw.label, palette))
    ax.set_title("label")
    if raw.instance_masks is not None:
        for x0, y0, x1, y1 in _boxes(raw.instance_masks):
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec="white", lw=0.6))
    present = [int(c) for c in np.unique(raw.label) if 0 <= c < len(classes) and c != IGNORE_INDEX]
    handles = [Patch(color=palette[c] / 255.0, label=classes[c]) for c in present[:20]]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 1))
    return fig
