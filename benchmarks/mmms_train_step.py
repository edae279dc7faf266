"""Cost of one MMMS training step (issue 13, step 2), for several recipes in the same run.

Each variant is a set of ``--set``-style overrides of one training config; all variants train from scratch
on the same training views (read into memory first, so file reading is not timed), and their steps
alternate so that machine noise hits them alike. A step is what ``rgbxseg train`` does per iteration:
target choice and cropping, iterative click sampling (0–3 no-grad rounds), forward, backward, AdamW.

    .venv/bin/python benchmarks/mmms_train_step.py configs/interactive/mmms_vits14_objects.yaml \\
        --variant "448=data.train_crop=null,model.image_stem=0" --variant "336+stem=" --steps 12 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import yaml

from rgbxseg.atomic import atomic_write_text
from rgbxseg.interactive.config import load_interactive_config
from rgbxseg.interactive.trainer import train_step, training_views
from rgbxseg.interactive.views import ViewDataset
from rgbxseg.models.mmms.model import MMMSNet


def parse_variant(text: str) -> tuple[str, dict[str, object]]:
    """``NAME=key=value,key=value`` → (NAME, overrides); values are YAML (``null``, numbers, lists)."""
    name, _, rest = text.partition("=")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        overrides[key.strip()] = yaml.safe_load(value)
    return name, overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--variant", action="append", required=True, help="NAME=key=value,... (config overrides)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--views", type=int, default=96, help="training views held in memory")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = dict(parse_variant(v) for v in args.variant)
    base = load_interactive_config(args.config)
    found = training_views(base, torch.device("cpu"), progress=False)
    chosen = [found[int(i)] for i in np.linspace(0, len(found) - 1, min(args.views, len(found))).round()]
    dataset = ViewDataset([p for p, _ in chosen], (), [k for _, k in chosen])
    views = [dataset[i] for i in range(len(dataset))]
    runs = {}
    for name, overrides in variants.items():
        cfg = load_interactive_config(args.config, overrides)
        net = MMMSNet(cfg.model.mmms()).train()
        runs[name] = (cfg, net, torch.optim.AdamW(net.parameters(), lr=cfg.optim.lr), [])
    for step in range(args.steps + 1):
        for cfg, net, optimizer, times in runs.values():
            rng = np.random.default_rng([7, step])
            batch = [views[int(i)] for i in rng.integers(len(views), size=cfg.data.batch_size)]
            start = time.perf_counter()
            loss, _ = train_step(net, batch, cfg, rng, torch.device("cpu"))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
    reference = None
    results = {}
    for name, (_, _, _, times) in runs.items():
        median = float(np.median(times[1:]))
        reference = reference or median
        results[name] = {"overrides": variants[name], "median_s": round(median, 3), "speed_up": round(reference / median, 2)}
        print(f"| {name} | {median:.3f} s | {reference / median:.2f}x |")
    if args.out is not None:
        payload = {
            "date": date.today().isoformat(), "machine": platform.processor() or platform.machine(),
            "threads": args.threads, "steps": args.steps, "config": str(args.config), "variants": results,
        }  # fmt: skip
        atomic_write_text(args.out, json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
