"""``rgbxseg interactive-eval``: NoC / NoF / mIoU-per-click and multi-surface NoCMS / FRMS of a click engine
on a dataset (SPEC 6, 10), with the time per click measured with and without the per-image backbone.

NoC (:func:`evaluate_object`) takes every surface of an image as one object — the object of a GrabCut,
Berkeley or DAVIS-style mask, each lesion of an MRI slice; the multi-surface protocol
(:func:`evaluate_surfaces`) runs on CamVid, BSDS500 and MRI. Surfaces come from
:mod:`rgbxseg.interactive.surfaces`. ``modalities=False`` evaluates with every extra sensor withheld.

An engine is anything with ``embed`` and ``predict`` (:class:`ClickEngine`): the MMMS engine, and the
classical peer :class:`~rgbxseg.interactive.grabcut_engine.GrabCutEngine`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
from torch import Tensor
from tqdm import tqdm

from rgbxseg.atomic import atomic_path
from rgbxseg.data.base import SegDataset, spread
from rgbxseg.data.sample import IGNORE_INDEX, RawSample
from rgbxseg.errors import DataError
from rgbxseg.interactive.click_simulator import MAX_CLICKS, Click
from rgbxseg.interactive.surfaces import surface_ids, surface_map
from rgbxseg.metrics.interactive import evaluate_object, evaluate_surfaces, miou_curve, noc, nocms_frms, nof

E = TypeVar("E")  # what an engine computes once per image (its embedding), opaque to the evaluation


@runtime_checkable
class ClickEngine(Protocol[E]):
    """What the evaluation (and ``rgbxseg interactive-eval``) needs of an interactive engine: ``embed`` once
    per image, ``predict`` per click → H×W float32 probability at the image's size; clicks are in the image's
    own pixels. ``modalities`` are the extra sensors it reads (empty: RGB only), ``runtime`` where it runs."""

    @property
    def modalities(self) -> tuple[str, ...]: ...

    @property
    def runtime(self) -> str: ...

    def embed(self, image: np.ndarray | Tensor, modalities: Mapping[str, np.ndarray | Tensor] | None = None) -> E: ...

    def predict(self, embedding: E, clicks: Sequence[Click], previous: np.ndarray | None = None) -> np.ndarray: ...


@dataclass
class Timer(Generic[E]):
    """Wall-clock seconds of the per-image and per-click calls of an evaluation."""

    embed: list[float] = field(default_factory=list)
    click: list[float] = field(default_factory=list)

    def embedded(self, engine: ClickEngine[E], raw: RawSample, modalities: bool) -> E:
        start = time.perf_counter()
        embedding = engine.embed(raw.image, raw.modalities if modalities else None)
        self.embed.append(time.perf_counter() - start)
        return embedding

    def predict(
        self, engine: ClickEngine[E], embedding: E, clicks: list[Click], previous: np.ndarray | None
    ) -> np.ndarray:
        start = time.perf_counter()
        probability = engine.predict(embedding, clicks, previous)
        self.click.append(time.perf_counter() - start)
        return probability

    def summary(self) -> dict[str, float]:
        clicks = max(len(self.click), 1)
        return {
            "click_ms_median": 1000 * float(np.median(self.click)) if self.click else float("nan"),
            "click_ms_mean": 1000 * float(np.mean(self.click)) if self.click else float("nan"),
            "image_ms_median": 1000 * float(np.median(self.embed)) if self.embed else float("nan"),
            "click_ms_with_backbone": 1000 * (sum(self.embed) + sum(self.click)) / clicks,
        }


@dataclass(frozen=True)
class _RunOptions:
    min_area: int
    modalities: bool
    limit: int | None
    progress: bool


def _embedded_images(
    engine: ClickEngine[E], dataset: SegDataset, kind: str, options: _RunOptions, timer: Timer[E], desc: str
) -> Iterator[tuple[np.ndarray, list[int], E]]:
    """(surface map, surface ids, embedding) of every image with a surface of ``min_area`` pixels or more."""
    indices = range(len(dataset)) if options.limit is None else spread(len(dataset), options.limit)
    for index in tqdm(indices, desc=f"{desc} {dataset.name}", unit="image", disable=not options.progress):
        raw = dataset.raw(index)
        surfaces = surface_map(raw, kind)
        ids = surface_ids(surfaces, options.min_area)
        if ids:
            yield surfaces, ids, timer.embedded(engine, raw, options.modalities)



def evaluate_single_object(
    engine: ClickEngine[Any],
    dataset: SegDataset,
    kind: str,
    max_clicks: int = MAX_CLICKS,
    thresholds: Sequence[float] = (0.85, 0.90),
    min_area: int = 1,
    modalities: bool = True,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """NoC@k, NoF@k, the mIoU-per-click curve and timings, every surface of every image taken as one object
    (GrabCut/Berkeley: the one object of each mask; MRI: each lesion)."""
    timer, all_ious = Timer(), []
    options = _RunOptions(min_area, modalities, limit, progress)
    for surfaces, ids, embedding in _embedded_images(engine, dataset, kind, options, timer, "NoC"):

        def predict(
            clicks: list[Click], previous: np.ndarray | None, embedding: Any = embedding
        ) -> np.ndarray:
            return timer.predict(engine, embedding, clicks, previous)

        ignore = surfaces == IGNORE_INDEX
        all_ious.extend(evaluate_object(predict, surfaces == s, ignore, max_clicks) for s in ids)
    if not all_ious:
        raise DataError(f"{dataset.name}: no object of at least {min_area} pixels to evaluate")
    result: dict[str, Any] = {"objects": len(all_ious), "max_clicks": max_clicks}
    for k in thresholds:
        result[f"NoC@{round(100 * k)}"] = float(np.mean([noc(ious, k, max_clicks) for ious in all_ious]))
        result[f"NoF@{round(100 * k)}"] = nof(all_ious, k, max_clicks)
    result["mIoU_per_click"] = [round(float(v), 4) for v in miou_curve(all_ious, max_clicks)]
    return result | timer.summary()


def evaluate_multi_surface(
    engine: ClickEngine[Any],
    dataset: SegDataset,
    kind: str,
    k1: float = 0.80,
    k2: float = 0.70,
    max_clicks: int = MAX_CLICKS,
    min_area: int = 1,
    modalities: bool = True,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """NoCMS@(k1, k2) and FRMS@(k1, k2) over the images of a multi-surface set, the mean final IoU over all
    surfaces (J == surface when the protocol ends), and timings."""
    timer, results = Timer(), []
    options = _RunOptions(min_area, modalities, limit, progress)
    for surfaces, ids, embedding in _embedded_images(engine, dataset, kind, options, timer, "NoCMS"):

        def predict(
            surface: int, clicks: list[Click], previous: np.ndarray | None, embedding: Any = embedding
        ) -> np.ndarray:
            return timer.predict(engine, embedding, clicks, previous)

        results.append(evaluate_surfaces(predict, surfaces, ids, surfaces == IGNORE_INDEX, k1, k2, max_clicks))
    scores = nocms_frms(results)
    k = f"({round(100 * k1)},{round(100 * k2)})"
    summary = {"images": len(results), "surfaces": sum(len(r.clicks) for r in results)}
    final = float(np.mean([iou for r in results for iou in r.ious.values()]))
    scores = {f"NoCMS@{k}": scores["nocms"], f"FRMS@{k}": scores["frms"], "final mIoU": final}
    return summary | scores | timer.summary()


def plot_curves(curves: dict[str, Sequence[float]], path: Path, title: str) -> None:
    """mIoU after each click, one line per run, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=label)
    ax.set(xlabel="clicks", ylabel="mIoU", title=title, ylim=(0, 1))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
