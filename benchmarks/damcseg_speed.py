"""DAMCSeg inference speed against DeepLabV3+ in the same run (the paper claims +25.7 % FPS over
DeepLabV3+; we report what we measure), and what the branch gates save.

Batch 1, eager, median latency over ``--runs`` timed runs after 3 warm-ups, on SyntheticStreets test
scenes (so a trained DAMCSeg sees real detections). Rows: DeepLabV3+ on RGB, DeepLabV3+ with depth and
thermal fused at the input, DAMCSeg as trained (closed gates skip their sub-branch), DAMCSeg with
every gate forced open, with every gate closed (threshold raised to 0.999: what gating can save at
most), and without the CRF. Ratios are FPS / FPS of DeepLabV3+ (RGB).

    .venv/bin/python benchmarks/damcseg_speed.py --checkpoint runs/demo/damcseg/last.pt [--size 192 256] [--runs 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
from collections.abc import Callable

import torch
from speed import median_ms  # benchmarks/speed.py: the scripts run from this folder
from torch import nn

from rgbxseg.data import SyntheticStreets, collate
from rgbxseg.models import create_model
from rgbxseg.predictor import load_trained

TEST_SEED = 2


def rows(damcseg: nn.Module, num_classes: int) -> dict[str, tuple[nn.Module, Callable[[nn.Module], None]]]:
    """Name → (model, setting applied before timing)."""

    def gates_open(model: nn.Module) -> None:
        model.local_branch.force_open = True

    def gates_closed(model: nn.Module) -> None:
        model.local_branch.force_open = False
        model.local_branch.gates.threshold = 0.999  # every region's sub-branches skipped: the most gating can save

    def no_crf(model: nn.Module) -> None:
        model.local_branch.gates.threshold = threshold
        model.use_crf = False

    threshold = damcseg.local_branch.gates.threshold
    sensors = {"depth": 1, "thermal": 1}
    return {
        "DeepLabV3+ (RGB)": (create_model("deeplabv3plus", num_classes, pretrained=False), lambda m: None),
        "DeepLabV3+ (RGB-D-T, early fusion)": (
            create_model("deeplabv3plus", num_classes, pretrained=False, modalities=sensors),
            lambda m: None,
        ),
        "DAMCSeg (learned gates)": (damcseg, lambda m: None),
        "DAMCSeg (all gates open)": (damcseg, gates_open),
        "DAMCSeg (all gates closed)": (damcseg, gates_closed),
        "DAMCSeg (learned gates, no CRF)": (damcseg, no_crf),
    }


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a trained DAMCSeg (e.g. the demo's runs/demo/damcseg/last.pt)")
    parser.add_argument("--size", type=int, nargs=2, default=(192, 256))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--scenes", type=int, default=5, help="test scenes (night) averaged over")
    args = parser.parse_args()
    trained = load_trained(args.checkpoint)
    scenes = SyntheticStreets(args.scenes, tuple(args.size), TEST_SEED, ("night",))
    batches = [collate([scenes[i]]) for i in range(args.scenes)]
    analysed = [trained.model.analyse(b.image, b.modalities, b.present) for b in batches]
    detected = [len(a.detections[0].boxes) for a in analysed]
    gates = torch.cat([a.local.gates for a in analysed])
    closed = (gates < trained.model.local_branch.gates.threshold).float().mean(0) if len(gates) else gates.new_zeros(3)
    print(f"{platform.machine()}, {torch.get_num_threads()} threads; {args.size[0]}×{args.size[1]}, batch 1, median of "
          f"{args.runs} runs per scene; detections per scene: {detected}; closed gates (edge / context / consistency): "
          + " / ".join(f"{100 * float(c):.0f} %" for c in closed))
    print("| model | latency (ms) | FPS | FPS ratio to DeepLabV3+ (RGB) | params (M) |\n|---|---|---|---|---|")
    reference = None
    for name, (model, setting) in rows(trained.model, len(trained.classes)).items():
        model.eval()
        setting(model)
        keep = tuple(getattr(model, "modality_channels", {}))
        ms = statistics.mean(
            median_ms(lambda b=b: model(b.image, {k: v for k, v in b.modalities.items() if k in keep}, b.present), args.runs)
            for b in batches
        )
        reference = reference or ms
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {name} | {ms:.1f} | {1000 / ms:.1f} | {reference / ms:.2f} | {params:.2f} |")


if __name__ == "__main__":
    main()
