"""MMMS inference-time options against NoC (SPEC 6, 10): edge-aware refinement and zoom-in, same run.

Every variant is an :class:`MMMSEngine` built here on the same network, backbone and feature cache (the
backbone runs once per image for all variants; crops of the zoom-in are computed afresh every time) and run
through :func:`rgbxseg.interactive.evaluate.evaluate_single_object` — RITM's protocol, 20 simulated clicks per
object. Variants are named ``[zoom+]REFINE`` with REFINE one of ``none``, ``guided``, ``grabcut``
(:mod:`rgbxseg.interactive.refine`, :mod:`rgbxseg.interactive.zoom`); ``zoom`` alone is ``zoom+none``.

Reported per dataset and variant: NoC@85/90, NoF@90, mIoU after 1 and 5 clicks, the median ms of a whole
``predict`` call (the click), of the refinement alone (OpenCV on one thread; wall clock and this thread's CPU
time, which does not count the time other processes take the core away) and, with zoom, of the clicks that
keep the crop, that move it (a backbone run unless cached) and that run on the full image, with the number of
backbone runs per object. The refiners run with their defaults (``GuidedRefine()``, ``GrabCutRefine()`` of
:mod:`rgbxseg.interactive.refine`); the sweeps behind those defaults called :func:`run_variant` with other
refiners.

    nice -n 5 .venv/bin/python benchmarks/mmms_inference_options.py --threads 2 [--cache-dir DIR] \\
        --out benchmarks/results/DATE_mmms_inference_options.json

``--cache-dir`` keeps the whole images' backbone features on disk between runs (the per-image time is not
reported here; ``rgbxseg interactive-eval`` and ``benchmarks/mmms_speed.py`` measure it).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from rgbxseg.atomic import atomic_write_text
from rgbxseg.data import build_dataset
from rgbxseg.interactive.click_simulator import Click
from rgbxseg.interactive.engine import ImageEmbedding, MMMSEngine, weights_file
from rgbxseg.interactive.evaluate import evaluate_single_object
from rgbxseg.interactive.refine import Refiner, make_refiner
from rgbxseg.interactive.zoom import ZOOM_KINDS, ZoomIn
from rgbxseg.models.mmms import Dinov2Backbone, FeatureCache
from rgbxseg.models.mmms.weights_file import load_mmms

DEFAULT_VARIANTS = ("none", "guided", "grabcut", "zoom", "zoom+grabcut")
DATASETS = ("grabcut", "berkeley")


class TimedRefiner:
    """A refiner that records the wall-clock and CPU seconds (this thread's: the refiners run on one) of
    each of its calls; the CPU time is what a call costs on an idle core, whatever else the machine runs."""

    def __init__(self, refiner: Refiner) -> None:
        self.refiner = refiner
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []

    def __call__(self, probability: np.ndarray, image: np.ndarray, clicks: Sequence[Click]) -> np.ndarray:
        start, cpu = time.perf_counter(), time.thread_time()
        out = self.refiner(probability, image, clicks)
        self.cpu_seconds.append(time.thread_time() - cpu)
        self.seconds.append(time.perf_counter() - start)
        return out


class Recorder:
    """The engine's ``embed`` / ``predict`` as the evaluation calls them, recording each click's seconds and
    zoom kind (full / kept / moved) and whether a backbone ran for it."""

    def __init__(self, engine: MMMSEngine) -> None:
        self.engine = engine
        self.clicks: list[tuple[str, bool, float]] = []

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.engine.modalities

    @property
    def runtime(self) -> str:
        return self.engine.runtime

    def embed(self, image: Any, modalities: Mapping[str, Any] | None = None) -> ImageEmbedding:
        return self.engine.embed(image, modalities)

    def predict(
        self, embedding: ImageEmbedding, clicks: Sequence[Click], previous: np.ndarray | None = None
    ) -> np.ndarray:
        start = time.perf_counter()
        probability = self.engine.predict(embedding, clicks, previous)
        seconds = time.perf_counter() - start
        step = embedding.zoom.last if self.engine.zoom is not None else None
        self.clicks.append(("full", False, seconds) if step is None else (step.kind, step.backbone, seconds))
        return probability


def parse_variant(name: str) -> tuple[bool, str]:
    """``[zoom+]REFINE`` (or ``zoom``) → (zoom, refine name)."""
    zoom, _, refine = name.partition("+") if name.startswith("zoom") else ("", "", name)
    refine = refine or "none"
    if refine not in ("none", "guided", "grabcut"):
        raise SystemExit(f"unknown variant {name!r}: use [zoom+](none|guided|grabcut)")
    return bool(zoom), refine


def median_ms(seconds: Sequence[float]) -> float | None:
    return round(1000 * float(np.median(seconds)), 2) if len(seconds) else None


def run_variant(
    make_engine: Callable[[bool, Refiner | None], MMMSEngine],
    variant: str,
    dataset: Any,
    limit: int | None,
    refiner: Refiner | None = None,
) -> dict[str, Any]:
    """NoC & co. of one variant on one dataset (``refiner`` overrides the variant's refinement)."""
    zoom, refine = parse_variant(variant)
    chosen = refiner if refiner is not None else make_refiner(refine)
    timed = TimedRefiner(chosen) if chosen is not None else None
    recorder = Recorder(make_engine(zoom, timed))
    start = time.perf_counter()
    result = evaluate_single_object(recorder, dataset, "regions", limit=limit, progress=False)  # type: ignore[arg-type]
    objects = result["objects"]
    record = {
        "variant": variant,
        "objects": objects,
        "NoC@85": round(result["NoC@85"], 2),
        "NoC@90": round(result["NoC@90"], 2),
        "NoF@90": result["NoF@90"],
        "mIoU@1": result["mIoU_per_click"][0],
        "mIoU@5": result["mIoU_per_click"][4],
        "mIoU_per_click": result["mIoU_per_click"],
        "click_ms_median": median_ms([s for _, _, s in recorder.clicks]),
        "refine_ms_median": median_ms(timed.seconds) if timed is not None else None,
        "refine_cpu_ms_median": median_ms(timed.cpu_seconds) if timed is not None else None,
        "refine_cpu_ms_p90": (
            round(1000 * float(np.percentile(timed.cpu_seconds, 90)), 2) if timed is not None else None
        ),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    if zoom:
        for kind in ZOOM_KINDS:
            seconds = [s for k, _, s in recorder.clicks if k == kind]
            record[f"clicks_{kind}"] = len(seconds)
            record[f"click_ms_{kind}"] = median_ms(seconds)
        ran = [s for _, backbone, s in recorder.clicks if backbone]
        record["click_ms_with_backbone_run"] = median_ms(ran)
        record["backbone_runs_per_object"] = round(len(ran) / objects, 2)
    return record


def table(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    def cell(value: Any) -> str:
        return "–" if value is None else str(value)

    lines = [
        "| dataset | variant | NoC@85 | NoC@90 | NoF@90 | mIoU@1 | mIoU@5 | ms/click (median) "
        "| refine ms: wall / CPU (p90) | zoom: kept / moved / full ms (clicks) | backbone runs / object |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, records in results.items():
        for r in records:
            zoom, refine = "–", "–"
            if r["refine_ms_median"] is not None:
                refine = f"{r['refine_ms_median']} / {r['refine_cpu_ms_median']} ({r['refine_cpu_ms_p90']})"
            if "clicks_kept" in r:
                zoom = " / ".join(f"{cell(r[f'click_ms_{k}'])} ({r[f'clicks_{k}']})" for k in ("kept", "moved", "full"))
            lines.append(
                f"| {name} | {r['variant']} | {r['NoC@85']:.2f} | {r['NoC@90']:.2f} | {r['NoF@90']} "
                f"| {r['mIoU@1']:.3f} | {r['mIoU@5']:.3f} | {cell(r['click_ms_median'])} "
                f"| {refine} | {zoom} | {cell(r.get('backbone_runs_per_object'))} |"
            )
    return "\n".join(lines)


def engine_factory(weights: str, cache_dir: Path) -> Callable[[bool, Refiner | None], MMMSEngine]:
    """Engines sharing one network, backbone and (disk) feature cache."""
    net = load_mmms(weights_file(weights))
    backbone = Dinov2Backbone()
    cache = FeatureCache(backbone, cache_dir, capacity=2)

    def make(zoom: bool, refiner: Refiner | None) -> MMMSEngine:
        return MMMSEngine(net, backbone, cache, runtime="onnx", refine=refiner, zoom=zoom)

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="vit_s14")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime threads (OpenCV: 1)")
    parser.add_argument("--limit", type=int, default=None, help="objects per dataset (spread; default all)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="backbone feature cache (default: temp)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = parser.parse_args()
    for variant in args.variants:
        parse_variant(variant)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        make = engine_factory(args.weights, args.cache_dir or Path(tmp))
        results: dict[str, list[dict[str, Any]]] = {}
        for name in args.datasets:
            dataset = build_dataset(name, "all", args.data / name)
            results[name] = []
            for variant in args.variants:
                results[name].append(run_variant(make, variant, dataset, args.limit))
                print(json.dumps({k: v for k, v in results[name][-1].items() if k != "mIoU_per_click"}), flush=True)
    record = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {args.threads} torch/ORT threads, OpenCV 1 thread, CPU",
        "command": shlex.join(["python", "benchmarks/mmms_inference_options.py", *sys.argv[1:]]),
        "weights": args.weights,
        "limit": args.limit,
        "refiners": {"guided": repr(make_refiner("guided")), "grabcut": repr(make_refiner("grabcut"))},
        "zoom": repr(ZoomIn()),
        "results": results,
    }
    print(table(results))
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
