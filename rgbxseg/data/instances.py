"""Instances of "thing" classes from a semantic label map (connected components)."""

from __future__ import annotations

import cv2
import numpy as np


def components_to_instances(
    label: np.ndarray, thing_classes: tuple[int, ...], min_area: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Split every thing class of ``label`` into 8-connected components.

    Used where a dataset has no instance annotation (CamVid): touching objects of one class merge
    into one instance, which is the best the label map allows. Returns ``(masks N×H×W bool,
    classes N int64)``; components smaller than ``min_area`` pixels are dropped.
    """
    masks: list[np.ndarray] = []
    classes: list[int] = []
    for cls in thing_classes:
        binary = (label == cls).astype(np.uint8)
        if not binary.any():
            continue
        count, components, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for k in range(1, count):
            if stats[k, cv2.CC_STAT_AREA] >= min_area:
                masks.append(components == k)
                classes.append(cls)
    if not masks:
        return np.zeros((0, *label.shape), dtype=bool), np.zeros((0,), dtype=np.int64)
    return np.stack(masks), np.asarray(classes, dtype=np.int64)
