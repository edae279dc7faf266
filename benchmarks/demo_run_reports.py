"""Time of the demo's per-model run reports (robustness suite on ``robustness_images`` test scenes +
calibration + the run report page), measured on the models a finished ``rgbxseg demo`` left in
``runs/demo`` (it rewrites their robustness outputs and report.html, as the demo does):

    .venv/bin/python benchmarks/demo_run_reports.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from rgbxseg.config import parse_config
from rgbxseg.demo import DemoSettings, _model_configs, _run_report
from rgbxseg.predictor import load_trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = DemoSettings()
    total = 0.0
    for label, mapping in _model_configs(settings).items():
        cfg = parse_config(mapping, f"demo:{label}")
        model = load_trained(cfg.run_dir / "last.pt").model
        start = time.perf_counter()
        link = _run_report(label, cfg, model, settings)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{label}: {seconds:.1f} s (ECE {link.ece_before:.2f} → {link.ece_after:.2f} %, kept {link.kept:.1f} %)")
    print(f"total: {total:.1f} s")


if __name__ == "__main__":
    main()
