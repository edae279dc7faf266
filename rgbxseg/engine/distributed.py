"""Data-parallel set-up from torchrun's environment (single process when it is absent).

``torchrun --nproc_per_node=N rgbxseg train ...`` (or several nodes with ``--nnodes``) sets RANK,
WORLD_SIZE and LOCAL_RANK; we join the process group with NCCL on GPUs and gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup() -> Dist:
    """Join the process group when launched by torchrun; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank() if world_size > 1 else 0
    return Dist(rank=rank, world_size=world_size, device=device)


def barrier(env: Dist) -> None:
    if env.enabled:
        dist.barrier()


def mean_across(value: float, env: Dist) -> float:
    """The mean of a scalar over all processes (for logging the loss)."""
    if not env.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=env.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / env.world_size


def teardown(env: Dist) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()
