"""Deterministic, resumable data order: the epoch's permutation and every sample's augmentation are
functions of (seed, epoch, index) only — not of worker count, process, or where a run was resumed.

The sampler yields ``epoch * n + i``; :class:`SeededView` decodes it, reseeds the joint transform
from ``(seed, epoch, i)`` and loads sample ``i``. The DataLoader gets its own generator so that it
never draws from the global torch RNG (which the checkpoint restores for dropout).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rgbxseg.data import Sample, SegDataset, collate


class SeededView(Dataset):
    """``view[epoch * n + i]`` is ``dataset[i]`` augmented with a seed derived from (seed, epoch, i)."""

    def __init__(self, dataset: SegDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> Sample:
        epoch, index = divmod(key, len(self.dataset))
        if hasattr(self.dataset.transform, "reseed"):
            seed = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
            self.dataset.transform.reseed(seed)
        return self.dataset[index]


def epoch_indices(n: int, seed: int, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """This rank's keys for ``epoch``: a seeded permutation, split round-robin across ranks, cut to
    whole batches (every rank runs the same number of steps)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    per_rank = (n // world_size) // batch_size * batch_size
    if per_rank == 0:
        raise ValueError(f"{n} training samples cannot fill one batch of {batch_size} on each of {world_size} process(es)")
    return [epoch * n + i for i in order[rank::world_size][:per_rank]]


def epoch_loader(
    view: SeededView, epoch: int, start_batch: int, batch_size: int, num_workers: int, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """Batches of ``epoch`` from batch ``start_batch`` on (a resumed run skips the batches it has done)."""
    keys = epoch_indices(len(view), view.seed, epoch, batch_size, rank, world_size)[start_batch * batch_size :]
    return DataLoader(
        view,
        batch_size=batch_size,
        sampler=keys,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=True,
        generator=torch.Generator().manual_seed(view.seed),
        persistent_workers=False,
    )


def steps_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
    return (n // world_size) // batch_size
