"""Throughput of the embedded synthetic dataset on one thread (SPEC section 2 asks for ≥ 50 samples/s at 360×480).

Times ``dataset.load(k)`` (the generator: a RawSample of numpy arrays) and ``dataset[k]`` (validated and
converted to torch tensors) over ``--n`` consecutive items, best and median of ``--repeat`` passes, and the
generator per condition. Usage::

    .venv/bin/python benchmarks/synthetic_speed.py [--n 200] [--size 360 480] [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from rgbxseg.data.synthetic import SyntheticStreets

TARGET = 50.0  # samples/s


def throughput(step: Callable[[int], object], n: int, repeat: int) -> list[float]:
    """Samples/s of ``step(k)`` for k in range(n), once per pass (one warm-up item first)."""
    step(0)
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        for k in range(n):
            step(k)
        rates.append(n / (time.perf_counter() - start))
    return rates


def report(name: str, rates: Sequence[float]) -> None:
    best, median = max(rates), statistics.median(rates)
    print(f"{name:34s} {median:7.1f} samples/s median, {best:7.1f} best ({1000 / median:5.1f} ms per sample)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="items per pass")
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--repeat", type=int, default=3, help="passes (best and median are reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditions", nargs="+", default=["day", "night", "fog", "sensor_failure"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    size = tuple(args.size)
    print(f"SyntheticStreets {size[0]}×{size[1]}, {args.n} items × {args.repeat} passes, one thread")
    print(f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}, {platform.machine()}")
    dataset = SyntheticStreets(n=args.n, size=size, seed=args.seed, conditions=args.conditions)
    generator = throughput(dataset.load, args.n, args.repeat)
    report(f"load (conditions {'/'.join(args.conditions)})", generator)
    report("dataset[k] (validated, torch)", throughput(dataset.__getitem__, args.n, args.repeat))
    for condition in args.conditions:
        single = SyntheticStreets(n=args.n, size=size, seed=args.seed, conditions=(condition,))
        report(f"load ({condition})", throughput(single.load, max(args.n // 4, 1), args.repeat))
    verdict = "met" if statistics.median(generator) >= TARGET else "NOT met"
    print(f"target ≥ {TARGET:.0f} samples/s for the generator: {verdict}")


if __name__ == "__main__":
    main()
