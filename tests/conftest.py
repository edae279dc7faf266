"""Shared fixtures. Real datasets live in ../shared/data (never in the repo); tests that need them
skip with a reason when the folder is absent (a user's machine). RGBXSEG_DATA overrides the place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
