"""Inference latency at batch 1 for every rgbxseg segmenter and two peers, measured in one run so the
ratios hold: torchvision ``deeplabv3_mobilenet_v3_large`` and smp ``DeepLabV3Plus(mobilenet_v2)``.

For each model and input size: median latency (ms) over ``--runs`` timed runs after warm-up, in eager
mode, eager with channels_last, ``torch.compile`` and ONNX Runtime; parameters; peak resident memory
growth during one eager forward (Linux VmHWM, reset before the call). Ratios are to
torchvision's model in the same mode. Prints a Markdown table.

    .venv/bin/python benchmarks/speed.py [--sizes 360x480 512x512] [--runs 20] [--modes eager channels_last compile onnx]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import segmentation_models_pytorch as smp
import torch
from torch import Tensor, nn
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

from rgbxseg.models import create_model

MODES = ("eager", "channels_last", "compile", "onnx")


class LogitsOnly(nn.Module):
    """torchvision's segmentation models return a dict; keep the tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)["out"]


class Padded(nn.Module):
    """smp refuses sizes that are not multiples of its output stride: pad bottom/right and crop back,
    as rgbxseg's models do internally."""

    def __init__(self, model: nn.Module, multiple: int = 32) -> None:
        super().__init__()
        self.model, self.multiple = model, multiple

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        padded = nn.functional.pad(x, (0, (-w) % self.multiple, 0, (-h) % self.multiple))
        return self.model(padded)[..., :h, :w]


def models(num_classes: int) -> dict[str, nn.Module]:
    return {
        "torchvision deeplabv3_mobilenet_v3_large": LogitsOnly(
            deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
        ),
        "smp DeepLabV3Plus(mobilenet_v2)": Padded(smp.DeepLabV3Plus("mobilenet_v2", encoder_weights=None, classes=num_classes)),
        "rgbxseg deeplabv3plus (mobilenet_v2)": create_model("deeplabv3plus", num_classes, pretrained=False),
        "rgbxseg fmsi_deeplab (mobilenet_v2, full)": create_model("fmsi_deeplab", num_classes, pretrained=False),
        "rgbxseg fmsi_deeplab (mobilenet_v2, CPU config)": create_model(
            "fmsi_deeplab", num_classes, pretrained=False, aspp_reduce=128, fpn_channels=64
        ),
    }


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def torch_runner(model: nn.Module, x: Tensor, mode: str) -> Callable[[], object]:
    if mode == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if mode == "compile":
        torch._dynamo.reset()  # a fresh compile per model and size (re-compiling a module for a new size failed)
        model = torch.compile(model)

    def run() -> Tensor:
        with torch.inference_mode():
            return model(x)

    return run


def onnx_runner(model: nn.Module, x: Tensor, folder: Path) -> Callable[[], object]:
    path = folder / f"m{id(model)}.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=True, external_data=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return lambda: session.run(None, feed)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_mb(fn: Callable[[], object]) -> float:
    """Peak resident-memory growth (MB) of one call: Linux's VmHWM reset via /proc/self/clear_refs."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["360x480", "512x512"])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--classes", type=int, default=11)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"# {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    table = models(args.classes)
    header = "| model | size | params (M) | " + " | ".join(f"{m} ms (× tv)" for m in args.modes) + " | peak memory (MB) |"
    print(header)
    print("|" + "---|" * (4 + len(args.modes)))
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            h, w = (int(v) for v in size.split("x"))
            x = torch.rand(1, 3, h, w)
            reference: dict[str, float] = {}
            for name, model in table.items():
                model.eval()
                cells = []
                for mode in args.modes:
                    fn = onnx_runner(model, x, Path(tmp)) if mode == "onnx" else torch_runner(model, x, mode)
                    ms = median_ms(fn, args.runs)
                    reference.setdefault(mode, ms)
                    cells.append(f"{ms:.0f} ({ms / reference[mode]:.2f})")
                    model.to(memory_format=torch.contiguous_format)
                params = sum(p.numel() for p in model.parameters()) / 1e6
                memory = peak_memory_mb(torch_runner(model, x, "eager"))
                print(f"| {name} | {h}×{w} | {params:.2f} | " + " | ".join(cells) + f" | {memory:.0f} |", flush=True)


if __name__ == "__main__":
    main()
