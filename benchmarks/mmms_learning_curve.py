"""MMMS learning curve (issue 13, step 1): NoC of the weight snapshots of a training run against its CPU time.

Every ``RUN_DIR/snapshots/iter_*.safetensors`` (``train.snapshot_every``) is evaluated with RITM's protocol
(:func:`rgbxseg.interactive.evaluate.evaluate_single_object`) on each ``--dataset NAME=ROOT``; the backbone
features go to a disk cache (``--cache``), so the ViT runs once per image for the whole curve and each
snapshot costs only its clicks. Snapshots already in ``--out`` are not evaluated again (the curve grows
with the training, sitting after sitting). The training IoU is the mean over the 100 logged iterations
before each snapshot.

    .venv/bin/python benchmarks/mmms_learning_curve.py runs/mmms_vits14_objects \\
        --dataset grabcut=path/to/grabcut --dataset berkeley=path/to/berkeley --limit 25 \\
        --out benchmarks/results/DATE_mmms_learning_curve.json --plot benchmarks/results/DATE_mmms_learning_curve.png
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch

from rgbxseg.atomic import atomic_path, atomic_write_text
from rgbxseg.data import build_dataset
from rgbxseg.interactive import MMMSEngine
from rgbxseg.interactive.evaluate import evaluate_single_object
from rgbxseg.interactive.surfaces import surface_kind
from rgbxseg.models.mmms.weights_file import read_metadata


def training_iou(run_dir: Path, iteration: int, window: int = 100) -> float:
    """Mean logged training IoU over the ``window`` iterations up to ``iteration``."""
    with (run_dir / "train_log.csv").open(newline="") as handle:
        ious = [float(r["iou"]) for r in csv.DictReader(handle) if iteration - window < int(r["iteration"]) <= iteration]
    return float(np.mean(ious)) if ious else float("nan")


def evaluate_snapshot(path: Path, datasets: dict[str, Path], cache: Path, limit: int | None) -> dict[str, dict]:
    engine = MMMSEngine.from_weights(path, cache, runtime="torch")
    results = {}
    for name, root in datasets.items():
        run = evaluate_single_object(
            engine, build_dataset(name, "all", root), surface_kind(name), limit=limit, progress=False
        )
        results[name] = {k: run[k] for k in ("objects", "NoC@85", "NoC@90", "NoF@90")} | {
            "mIoU@1": run["mIoU_per_click"][0],
            "mIoU@5": run["mIoU_per_click"][4],
        }
    return results


def plot(points: list[dict], datasets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    minutes = [p["cpu_minutes"] for p in points]
    for name in datasets:
        ax.plot(minutes, [p["results"][name]["NoC@90"] for p in points], marker="o", label=f"{name} NoC@90")
    ax.set(xlabel="training CPU minutes (process time, all threads)", ylabel="NoC@90 (lower is better)", ylim=(0, 20))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--dataset", action="append", required=True, help="NAME=ROOT (grabcut, berkeley, davis)")
    parser.add_argument("--limit", type=int, default=None, help="objects evenly spaced per dataset")
    parser.add_argument("--cache", type=Path, default=Path("runs/features"), help="backbone feature cache")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    datasets = {n: Path(r) for n, r in (d.split("=", 1) for d in args.dataset)}
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    done = {p["snapshot"]: p for p in previous.get("points", [])}
    points = []
    for path in sorted((args.run_dir / "snapshots").glob("iter_*.safetensors")):
        if path.name not in done:
            trained = read_metadata(path)["trained"]
            done[path.name] = {
                "snapshot": path.name,
                "iterations": trained["iterations"],
                "cpu_minutes": round(trained["cpu_seconds"] / 60, 1),
                "train_iou": round(training_iou(args.run_dir, trained["iterations"]), 4),
                "results": evaluate_snapshot(path, datasets, args.cache, args.limit),
            }
            print(json.dumps(done[path.name]))
        points.append(done[path.name])
    payload = {
        "date": date.today().isoformat(), "machine": platform.processor() or platform.machine(),
        "threads": args.threads, "limit": args.limit, "run": str(args.run_dir), "points": points,
    }  # fmt: skip
    atomic_write_text(args.out, json.dumps(payload, indent=2))
    if args.plot is not None and points:
        plot(points, list(datasets), args.plot)
    names = list(datasets)
    print("| iterations | CPU min | train IoU | " + " | ".join(f"{n} NoC@90 | {n} mIoU@1" for n in names) + " |")
    for p in points:
        cells = " | ".join(f"{p['results'][n]['NoC@90']:.2f} | {p['results'][n]['mIoU@1']:.2f}" for n in names)
        print(f"| {p['iterations']} | {p['cpu_minutes']} | {p['train_iou']:.2f} | {cells} |")


if __name__ == "__main__":
    main()
