"""Every shipped config validates and builds its model (random init, no data needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rgbxseg.config import load_config
from rgbxseg.interactive.config import config_task, load_interactive_config
from rgbxseg.models import create_model
from rgbxseg.models.mmms import MMMSNet
from tests.conftest import REPO

ALL_CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
CONFIGS = [p for p in ALL_CONFIGS if config_task(p) != "interactive"]
INTERACTIVE = [p for p in ALL_CONFIGS if config_task(p) == "interactive"]


def test_configs_exist() -> None:
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_builds(path: Path) -> None:
    cfg = load_config(path)
    modalities = dict.fromkeys(cfg.data.modalities or (), 1)
    model = create_model(
        cfg.model.name, 11, encoder=cfg.model.encoder, pretrained=False, modalities=modalities, thing_classes=(5, 6, 7, 8),
        **cfg.model.options,
    )  # fmt: skip
    assert model.num_classes == 11
    assert tuple(model.modality_channels) == (cfg.data.modalities or ())
    if cfg.optim.stages:  # every stage names parts the model has
        assert all(set(stage.lr) <= set(model.parameter_parts()) for stage in cfg.optim.stages)


@pytest.mark.parametrize("path", INTERACTIVE, ids=lambda p: str(p.relative_to(REPO)))
def test_interactive_config_builds(path: Path) -> None:
    cfg = load_interactive_config(path)
    net = MMMSNet(cfg.model.mmms())
    assert (net.fuser is None) == (not cfg.model.modalities)
    assert all(source.source().key().startswith(source.dataset) for source in cfg.data.sources)
