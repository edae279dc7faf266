"""CamVid benchmark protocol: train a config (time- or iteration-bounded), then evaluate the full test
split at 360×480 and print one Markdown row for BENCHMARKS.md (JSON of everything next to the run).

    .venv/bin/python benchmarks/camvid_protocol.py configs/camvid/deeplabv3plus_mobilenetv2_cpu.yaml \
        [--set data.root=PATH/TO/camvid] [--resume]

The CPU protocol is the one SPEC section 10 fixes for the smp peer: 20 minutes of training on the
machine's 2 cores (validation excluded), random scale 0.5–2 + crop 352×480, batch 8, AdamW
(1e-3 head / 1e-4 encoder), poly decay over the budget.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date

import torch

from rgbxseg.atomic import atomic_write_text
from rgbxseg.cli import _overrides
from rgbxseg.config import load_config
from rgbxseg.data import build_dataset
from rgbxseg.engine.evaluate import evaluate
from rgbxseg.engine.trainer import train
from rgbxseg.predictor import load_trained

SMALL = ("Pole", "SignSymbol", "Pedestrian", "Bicyclist")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="dotted.key=value")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    cfg = load_config(args.config, _overrides(args.overrides))
    state = train(cfg, resume=args.resume)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trained = load_trained(cfg.run_dir / "last.pt", device)
    test = build_dataset(cfg.data.dataset, cfg.eval.split, cfg.data.root, cfg.data.modalities, **cfg.data.options)
    result = evaluate(trained.model, test, cfg.eval, device)
    info = json.loads((cfg.run_dir / "run_info.json").read_text())
    images = state.iteration * cfg.data.batch_size * info["world_size"]
    summary = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {device}",
        "config": args.config,
        "iterations": state.iteration,
        "epochs": round(images / info["train_samples"], 2),
        "train_seconds": round(state.elapsed, 1),
        "images_per_second": round(images / state.elapsed, 2),
        "val_mIoU": round(state.best_miou, 2),
        "test": result,
    }
    atomic_write_text(cfg.run_dir / "benchmark.json", json.dumps(summary, indent=2))
    per_class = result["per_class"]
    small = " / ".join(f"{per_class[c]['IoU']:.1f}" for c in SMALL)
    print(
        f"| {cfg.model.name} ({cfg.model.encoder}) | {state.iteration} it ({summary['epochs']} ep, "
        f"{summary['images_per_second']} img/s) | {result['mIoU']:.1f} | {result['mAcc']:.1f} | {result['mF1']:.1f} "
        f"| {summary['val_mIoU']:.1f} | {small} |"
    )


if __name__ == "__main__":
    main()
