"""Robustness and calibration of trained checkpoints (issue 7): for each run folder, the whole robustness
suite (clean, 6 corruptions × 5 severities on RGB, every missing-modality protocol) over the first
``--limit`` images of the config's eval split — written to ``RUN_DIR/robustness/`` exactly as
``rgbxseg eval --robustness`` writes it — then the run report (``RUN_DIR/report.html``) whose calibration
section gives ECE (15 bins) before and after temperature scaling fitted on the val split.

One JSON for all runs (``--out``) and the Markdown tables for BENCHMARKS.md on stdout:

    .venv/bin/python benchmarks/robustness_calibration.py runs/ablation450/deeplabv3plus_rgb_synthetic \
        runs/ablation450/damcseg_synthetic_complete --checkpoint last.pt [--limit 100] \
        --out benchmarks/results/X.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rgbxseg.atomic import atomic_write_text
from rgbxseg.config import parse_config
from rgbxseg.engine.checkpoint import load_checkpoint
from rgbxseg.predictor import trained_from_checkpoint
from rgbxseg.robustness.corruptions import CORRUPTIONS
from rgbxseg.robustness.evaluate import evaluate_robustness, summary, table
from rgbxseg.run_report import (
    ROBUSTNESS_DIR,
    evaluation_split,
    find_checkpoint,
    write_run_report,
)


def measure(run_dir: Path, checkpoint: str | None, limit: int | None, device: torch.device) -> dict[str, Any]:
    """Robustness rows + summary and ECE before / after temperature scaling of one run folder."""
    path = find_checkpoint(run_dir, checkpoint)
    state = load_checkpoint(path)
    cfg = parse_config(state["config"], path)
    model = trained_from_checkpoint(state, path, device).model
    dataset, total = evaluation_split(cfg, cfg.eval.split, limit)
    start = time.perf_counter()
    results, _ = evaluate_robustness(model, dataset, cfg.eval, device, run_dir / ROBUSTNESS_DIR, cfg.name)
    suite_seconds = time.perf_counter() - start
    rows = table(results)
    _, report = write_run_report(run_dir, checkpoint=path, limit=limit, device=device)
    c = report.calibration
    per_corruption = {
        name: round(float(np.mean([r["mIoU"] for r in rows if r["corruption"] == name])), 2)
        for name in CORRUPTIONS
        if any(r["corruption"] == name for r in rows)
    }
    return {
        "run": str(run_dir),
        "checkpoint": path.name,
        "name": cfg.name,
        "model": cfg.model.name,
        "dataset": f"{cfg.data.dataset}/{cfg.eval.split}",
        "modalities": list(dataset.modalities),
        "images": len(dataset),
        "split_images": total,
        "iterations": int(state.get("progress", {}).get("iteration", 0)),
        "suite_seconds": round(suite_seconds, 1),
        "summary": summary(rows),
        "per_corruption_mIoU": per_corruption,
        "missing": {r["name"]: r["mIoU"] for r in rows if r["kind"] == "missing"},
        "rows": rows,
        "calibration": {
            "temperature": c.temperature,
            "fit_split": c.fit_split,
            "fit_images": c.fit_images,
            "ECE_before": c.before["ECE"],
            "ECE_after": c.after["ECE"],
            "MCE_before": c.before["MCE"],
            "MCE_after": c.after["MCE"],
        },
    }


def markdown(runs: list[dict[str, Any]]) -> str:
    corruptions = [c for c in CORRUPTIONS if any(c in r["per_corruption_mIoU"] for r in runs)]
    head = ["run", "images", "clean", *corruptions, "mean corrupted", "kept %", "missing protocols (mIoU)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        s = r["summary"]
        missing = ", ".join(f"{k} {v:.1f}" for k, v in r["missing"].items()) or "— (RGB only)"
        cells = [r["name"], str(r["images"]), f"{s['clean mIoU']:.1f}"]
        cells += [f"{r['per_corruption_mIoU'][c]:.1f}" for c in corruptions]
        cells += [f"{s['mean corrupted mIoU']:.1f}", f"{s['kept %']:.1f}", missing]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| run | T (fitted on) | ECE before | ECE after | MCE before | MCE after |", "|---|---|---|---|---|---|"]
    for r in runs:
        c = r["calibration"]
        lines.append(
            f"| {r['name']} | {c['temperature']:.3f} ({c['fit_split']}, {c['fit_images']} images) | "
            f"{c['ECE_before']:.2f} | {c['ECE_after']:.2f} | {c['MCE_before']:.1f} | {c['MCE_after']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders written by 'rgbxseg train'")
    parser.add_argument("--checkpoint", default=None, help="best.pt / last.pt (default: best.pt, else last.pt)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each split")
    parser.add_argument("--out", type=Path, required=True, help="JSON with every run's tables")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    runs = [measure(run, args.checkpoint, args.limit, device) for run in args.runs]
    payload = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {device.type}",
        "limit": args.limit,
        "runs": runs,
    }
    atomic_write_text(args.out, json.dumps(payload, indent=2))
    print(markdown(runs))


if __name__ == "__main__":
    main()
