"""MMMS latency (SPEC 6, 10): seconds per click against re-running backbone + fuser, in the same run.

On one 448×448 image (a GrabCut photo when ``--grabcut`` is given, else random), batch 1, median over
``--runs`` timed calls after 3 warm-ups:

- ``backbone``: the frozen DINOv2 ViT-S/14 forward (what the feature cache saves on a revisit);
- ``encode``: ParallelFPN + MMFuser (with ``--modalities``) + CSNet's per-image projections;
- ``click``: one ``MMMSEngine.predict`` — clicks → MSPatchEmbed → CSNet → probability map at the image's
  resolution — with the click path in eager PyTorch and on ONNX Runtime;
- ``speed-up``: (backbone + encode + click) / click, what caching the embedding buys per click.

    .venv/bin/python benchmarks/mmms_speed.py [--weights vit_s14|FILE] [--threads 2] [--modalities 1]
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch
from speed import median_ms  # benchmarks/speed.py: the scripts run from this folder

from rgbxseg.atomic import atomic_write_text
from rgbxseg.interactive import Click, MMMSEngine
from rgbxseg.interactive.engine import network_input, weights_file
from rgbxseg.models.mmms import Dinov2Backbone, MMMSConfig, MMMSNet
from rgbxseg.models.mmms.weights_file import load_mmms


def build_net(weights: str | None, modalities: int) -> MMMSNet:
    if weights is not None:
        return load_mmms(weights_file(weights))
    return MMMSNet(MMMSConfig(modalities={f"sensor{i}": 1 for i in range(modalities)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="MMMS weights (default: an untrained net of the default shape)")
    parser.add_argument("--modalities", type=int, default=0, help="extra 1-channel sensors (untrained net only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--side", type=int, default=448)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = build_net(args.weights, args.modalities)
    backbone = Dinov2Backbone().to(device)
    image = (np.random.default_rng(0).random((args.side, args.side, 3)) * 255).astype(np.uint8)
    modalities = {name: np.random.default_rng(1).random((args.side, args.side)) for name in net.config.modalities}
    square = network_input(torch.from_numpy(image).permute(2, 0, 1).float() / 255, args.side)[None].to(device)
    clicks = [Click(args.side // 2, args.side // 2, True), Click(20, 20, False), Click(args.side - 30, 40, True)]
    results = {"backbone_ms": median_ms(lambda: backbone(square), args.runs)}
    for runtime in ("torch", "onnx") if device.type == "cpu" else ("torch",):
        engine = MMMSEngine(net, backbone, long_side=args.side, device=device, runtime=runtime)
        tokens = [t.to(device) for t in engine.cache.features(square[0].cpu())]
        extra = {k: torch.from_numpy(v).float()[None, None].to(device) for k, v in modalities.items()}
        square_size = (args.side, args.side)
        with torch.no_grad():
            results["encode_ms"] = median_ms(lambda: engine.net.encode(tokens, square_size, extra), args.runs)
        embedding = engine.embed(image, modalities)
        previous = engine.predict(embedding, clicks[:2]) > 0.49
        results[f"click_ms_{runtime}"] = median_ms(lambda: engine.predict(embedding, clicks, previous), args.runs)
    best = min(v for k, v in results.items() if k.startswith("click_ms"))
    results["speedup_vs_rerun"] = (results["backbone_ms"] + results["encode_ms"] + best) / best
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, {device}"
    if device.type == "cuda":
        machine += f" ({torch.cuda.get_device_name()})"
    record = {"date": date.today().isoformat(), "machine": machine, "side": args.side, "weights": args.weights}
    record |= {"modalities": list(net.config.modalities), "params_click_path": sum(
        p.numel() for m in (net.embed, net.csnet) for p in m.parameters()
    )} | {k: round(v, 2) for k, v in results.items()}
    print(json.dumps(record, indent=2))
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
