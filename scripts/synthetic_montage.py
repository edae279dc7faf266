"""Draw docs/synthetic_montage.png: the same synthetic scene by day, at night, in fog and with a failed sensor.

One row per condition (the failed sensor is the thermal camera: ``no_thermal``); per scene the columns
are RGB, depth, thermal ("absent" when the sensor is missing), the label map (class palette) and the
instances (visible outline in the class colour, occluded amodal part hatched in white). The document
shows one scene: two side by side (``--scenes 3 28``) make ten columns, too small to read once the
README scales the picture down. The PNG is written to a temporary file and renamed (atomic). Usage::

    .venv/bin/python scripts/synthetic_montage.py [--scenes 3 [28]] [--seed 0] [--out docs/synthetic_montage.png]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from rgbxseg.data.sample import RawSample  # noqa: E402
from rgbxseg.data.synthetic import CLASSES, PALETTE, THING_CLASSES, SyntheticStreets  # noqa: E402

ROWS = (("day", "day"), ("night", "night"), ("fog", "fog"), ("no_thermal", "sensor failure\n(thermal lost)"))
COLUMNS = ("RGB", "depth (near → far)", "thermal (cold → warm)", "label", "instances (occluded: hatched)")


def instance_overlay(raw: RawSample) -> np.ndarray:
    """Grey RGB with each instance's visible outline in its class colour and its occluded part hatched."""
    grey = raw.image.mean(axis=2, keepdims=True) * 0.6
    out = np.repeat(grey, 3, axis=2)
    h, w = raw.label.shape
    hatch = ((np.arange(h)[:, None] + np.arange(w)[None, :]) % 4 == 0)
    kernel = np.ones((3, 3), np.uint8)
    for visible, occluded, cls in zip(raw.instance_masks, raw.occluded_masks, raw.instance_classes, strict=True):
        outline = visible & ~cv2.erode(visible.astype(np.uint8), kernel).astype(bool)
        out[occluded & hatch] = 1.0
        out[outline] = PALETTE[cls] / 255.0
    return out


def panels(raw: RawSample) -> list[tuple[np.ndarray | None, dict]]:
    """The five panels of one sample: (image or None for an absent sensor, imshow options)."""
    depth, thermal = raw.modalities.get("depth"), raw.modalities.get("thermal")
    return [
        (raw.image, {}),
        (None if depth is None else depth[..., 0], {"cmap": "magma_r", "vmin": 0, "vmax": 1}),
        (None if thermal is None else thermal[..., 0], {"cmap": "inferno", "vmin": 0, "vmax": 1}),
        (PALETTE[raw.label], {}),
        (instance_overlay(raw), {}),
    ]


def show(ax: plt.Axes, image: np.ndarray | None, options: dict, size: tuple[int, int]) -> None:
    """One panel without ticks; a blank panel of the image's size saying "absent" for a missing sensor."""
    ax.set_xticks([])
    ax.set_yticks([])
    if image is None:
        ax.imshow(np.full((*size, 3), 0.85), interpolation="nearest")
        ax.text(0.5, 0.5, "absent", ha="center", va="center", transform=ax.transAxes, fontsize=14, color="0.3")
    else:
        ax.imshow(image, interpolation="nearest", **options)


def save_atomically(fig: plt.Figure, out: Path) -> None:
    """Write the PNG to a temporary file in the same folder, then rename it over ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(suffix=".png", dir=out.parent)
    os.close(handle)
    try:
        fig.savefig(tmp, dpi=100)
        os.chmod(tmp, 0o644)  # mkstemp creates it private
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def draw(dataset: SyntheticStreets, scenes: list[int], out: Path) -> None:
    ncols = len(COLUMNS) * len(scenes)
    fig, axes = plt.subplots(len(ROWS), ncols, figsize=(3.6 * ncols, 2.8 * len(ROWS) + 0.8), squeeze=False)
    for r, (condition, title) in enumerate(ROWS):
        for s, k in enumerate(scenes):
            raw = dataset.render(k, condition)
            for c, (image, options) in enumerate(panels(raw)):
                ax = axes[r, s * len(COLUMNS) + c]
                show(ax, image, options, raw.label.shape)
                if r == 0:
                    ax.set_title(f"scene {k}: {COLUMNS[c]}" if len(scenes) > 1 else COLUMNS[c], fontsize=12)
                if c == 0 and s == 0:
                    ax.set_ylabel(title, fontsize=13)
    names = [name + (" (thing)" if i in THING_CLASSES else "") for i, name in enumerate(CLASSES)]
    legend = [Patch(color=PALETTE[i] / 255.0, label=name) for i, name in enumerate(names)]
    fig.legend(handles=legend, loc="lower center", ncol=len(CLASSES), fontsize=11, frameon=False)
    fig.tight_layout(rect=(0, 0.035, 1, 1), h_pad=0.4, w_pad=0.3)
    try:
        save_atomically(fig, out)
    finally:
        plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, nargs="+", default=[3], help="scene indices, side by side")
    parser.add_argument("--seed", type=int, default=0)
    default_out = Path(__file__).resolve().parents[1] / "docs" / "synthetic_montage.png"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    draw(SyntheticStreets(n=max(args.scenes) + 1, seed=args.seed), args.scenes, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
