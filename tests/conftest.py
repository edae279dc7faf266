"""Shared fixtures. Real datasets live in ../shared/data (never in the repo); tests that need them
skip with a reason when the folder is absent (a user's machine). RGBXSEG_DATA overrides the place."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RGBXSEG_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of ../shared/data/<name>, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"dataset folder {path} is absent (the shared data is only on the development machines)")
    return path


@pytest.fixture
def camvid_root() -> Path:
    return shared_dataset("camvid")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a test module of tiny convolutions: on a shared 2-core machine two
    OpenMP threads spin-wait for each other and run them tens of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def seeded() -> None:
    torch.manual_seed(0)
