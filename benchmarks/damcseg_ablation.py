"""DAMCSeg ablation (paper Table IV) on the CPU protocol: train each config for the same wall-clock
budget, then evaluate it — on SyntheticStreets under every robustness condition (unseen test scenes,
seed 2), on CamVid on the full test split. Writes one JSON per run (``<run_dir>/benchmark.json``),
one JSON for the whole table (``--out``) and prints the Markdown table for BENCHMARKS.md.

    .venv/bin/python benchmarks/damcseg_ablation.py configs/damcseg/synthetic_{baseline,dsaf,joint,lmmf,losses,complete}.yaml \
        [--minutes 5] [--eval-samples 60] [--set data.root=PATH/TO/camvid] --out benchmarks/results/X.json
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path
from typing import Any

import torch

from rgbxseg.atomic import atomic_write_text
from rgbxseg.cli import _overrides
from rgbxseg.config import ExperimentConfig, load_config
from rgbxseg.data import SyntheticStreets, build_dataset
from rgbxseg.engine.evaluate import evaluate_robust
from rgbxseg.engine.trainer import train
from rgbxseg.predictor import load_trained

SYNTHETIC_CONDITIONS = ("day", "night", "fog", "no_depth", "no_thermal", "day+no_depth+no_thermal")
TEST_SEED = 2


def test_sets(cfg: ExperimentConfig, eval_samples: int) -> dict[str, Any]:
    """Condition name → test dataset: the synthetic conditions, or the dataset's test split."""
    data = cfg.data
    if data.dataset == "synthetic":
        size = tuple(data.options.get("size", (360, 480)))
        modalities = ("depth", "thermal") if data.modalities is None else data.modalities
        return {c: SyntheticStreets(eval_samples, size, TEST_SEED, (c,), modalities) for c in SYNTHETIC_CONDITIONS}
    options = data.options | {"with_instances": True} if data.dataset == "camvid" else data.options
    return {cfg.eval.split: build_dataset(data.dataset, cfg.eval.split, data.root, data.modalities, **options)}


def run(path: str, overrides: dict[str, Any], eval_samples: int, device: torch.device) -> dict[str, Any]:
    cfg = load_config(path, overrides)
    state = train(cfg, resume=(cfg.run_dir / "last.pt").exists())
    model = load_trained(cfg.run_dir / "last.pt", device).model
    metrics = {name: evaluate_robust(model, dataset, device) for name, dataset in test_sets(cfg, eval_samples).items()}
    summary = {
        "config": path,
        "iterations": state.iteration,
        "train_seconds": round(state.elapsed, 1),
        "params": sum(p.numel() for p in model.parameters()),
        "metrics": metrics,
    }
    atomic_write_text(cfg.run_dir / "benchmark.json", json.dumps(summary, indent=2))
    return summary


def markdown(rows: list[dict[str, Any]]) -> str:
    conditions = list(rows[0]["metrics"])
    first = conditions[0]
    header = ["row", "iterations", *[f"mIoU {c}" for c in conditions], f"small-obj mIoU ({first})"]
    header += ["boundary F", "tiny recall", "occluded recall"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        m = row["metrics"]
        values = [f"{m[c]['mIoU']:.1f}" for c in conditions]
        extra = [f"{m[first][k]:.1f}" for k in ("small-object mIoU", "boundary F", "tiny recall", "occluded recall")]
        lines.append("| " + " | ".join([Path(row["config"]).stem, str(row["iterations"]), *values, *extra]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--minutes", type=float, default=None, help="override train.time_budget_minutes")
    parser.add_argument("--eval-samples", type=int, default=60, help="synthetic test scenes per condition")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="dotted.key=value")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the whole table")
    args = parser.parse_args()
    overrides = _overrides(args.overrides)
    if args.minutes is not None:
        overrides["train.time_budget_minutes"] = args.minutes
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = [run(path, overrides, args.eval_samples, device) for path in args.configs]
    table = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {device}",
        "overrides": overrides,
        "rows": rows,
    }
    atomic_write_text(args.out, json.dumps(table, indent=2))
    print(markdown(rows))


if __name__ == "__main__":
    main()
