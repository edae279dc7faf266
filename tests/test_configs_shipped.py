"""Every shipped config validates and builds its model (random init, no data needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rgbxseg.config import load_config
from rgbxseg.models import create_model
from tests.conftest import REPO

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def test_configs_exist() -> None:
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_builds(path: Path) -> None:
    cfg = load_config(path)
    model = create_model(cfg.model.name, 11, encoder=cfg.model.encoder, pretrained=False, **cfg.model.options)
    assert model.num_classes == 11
