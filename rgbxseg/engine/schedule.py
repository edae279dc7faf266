"""Learning-rate schedules as a function of training progress in [0, 1], and the mixed-precision switch.

Progress is iterations done / total iterations, or elapsed / budgeted wall-clock time for the
fixed-time CPU protocol — the same poly or cosine curve either way, with an optional linear warm-up
(counted in iterations).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext

import torch


def lr_factor(progress: float, iteration: int, schedule: str, warmup_iterations: int = 0, power: float = 0.9) -> float:
    """Multiplier of the base learning rate.

    ``poly``: ``(1 - progress) ** power`` (DeepLab's schedule); ``cosine``: ``0.5 (1 + cos(π progress))``;
    during the first ``warmup_iterations`` both are scaled linearly from 1/warmup up to 1.
    """
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "poly":
        factor = (1.0 - progress) ** power
    elif schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown schedule '{schedule}' (poly or cosine)")
    if iteration < warmup_iterations:
        factor *= (iteration + 1) / warmup_iterations
    return factor


def autocast(amp: str, device: torch.device) -> AbstractContextManager:
    """bf16 autocast for ``amp`` = ``bf16``, or ``auto`` on a GPU; a no-op otherwise (float32 on CPU)."""
    use_bf16 = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()
