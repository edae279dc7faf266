"""The whole DAMCSeg network (SPEC 5) on tiny inputs: training output and DSJL gradients into every part,
inference at odd sizes, per-sample missing sensors, the ablation switches, parameter parts, and the
trainer's three-stage schedule (warm-up with the backbone frozen, joint, fine-tune)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from rgbxseg.config import parse_config
from rgbxseg.data import Batch, SyntheticStreets, collate
from rgbxseg.engine.trainer import Trainer, param_groups, stage_index
from rgbxseg.errors import ConfigError
from rgbxseg.models import DAMCSeg, create_model
from rgbxseg.models.damcseg import DAMCSegOutput
from rgbxseg.models.damcseg.detection import Detections

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

THINGS = (5, 6, 7, 8)
SENSORS = {"depth": 1, "thermal": 1}
CLASSES = 9
SMALL = {
    "modality_widths": (8, 8, 16, 16),
    "aspp_channels": 16,
    "decoder_channels": 16,
    "bifpn_channels": 16,
    "bifpn_repeats": 1,
    "roi_size": 8,
    "local_width": 8,
    "prior_width": 8,
    "max_train_rois": 4,
}


def damcseg(modalities: dict[str, int] | None = None, **options: object) -> DAMCSeg:
    sensors = SENSORS if modalities is None else modalities
    return create_model("damcseg", CLASSES, pretrained=False, modalities=sensors, thing_classes=THINGS, **(SMALL | options))


@pytest.fixture(scope="module")
def batch() -> Batch:
    data = SyntheticStreets(2, (64, 96))
    return collate([data[0], data[1]])


def sensors_like(image: Tensor) -> dict[str, Tensor]:
    b, _, h, w = image.shape
    return {name: torch.rand(b, c, h, w) for name, c in SENSORS.items()}


def has_grad(module: nn.Module) -> bool:
    return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters())


# ------------------------------------------------------------------------------------------ training
def test_training_forward_and_dsjl_reach_every_part(batch: Batch) -> None:
    model = damcseg(modality_dropout=0.0).train()
    output = model(batch.image, batch.modalities, **model.training_inputs(batch))
    assert isinstance(output, DAMCSegOutput)
    assert output.logits.shape == output.global_logits.shape == output.prior_logits.shape == (2, CLASSES, 64, 96)
    assert output.local.region.sum() > 0  # the ground-truth boxes went through the local path
    assert output.complexity.shape == (2,) and output.dsaf is not None
    loss, parts = model.loss(output, batch)
    assert loss.ndim == 0 and bool(torch.isfinite(loss))
    assert {"ce", "focal", "giou", "align", "aux", "reconstruction"} <= set(parts)
    assert parts["focal"] > 0 and parts["reconstruction"] > 0
    loss.backward()
    reached = ("encoder", "det_last_stage", "bifpn", "det_head", "global_branch", "local_branch", "prior_branch", "lmmf", "dsaf")
    for name in reached:
        assert has_grad(getattr(model, name)), f"no gradient reaches {name}"
    for k, stage in enumerate(model.encoder.stages):
        assert has_grad(stage), f"no gradient reaches encoder stage {k}"
    for modality in SENSORS:
        assert has_grad(model.lmmf.encoders[modality]), f"no gradient reaches the {modality} encoder"
    assert all(p.grad is not None for p in (model.dsaf.a, model.dsaf.b, model.dsaf.c))


def test_training_without_instances_still_gives_a_finite_loss(batch: Batch) -> None:
    model = damcseg().train()
    empty = Batch(batch.image, batch.label, batch.modalities, batch.present, [None, None], batch.meta)
    output = model(empty.image, empty.modalities, **model.training_inputs(empty))
    assert not bool(output.local.region.any())
    loss, _ = model.loss(output, empty)
    assert bool(torch.isfinite(loss))
    loss.backward()
    assert has_grad(model.det_head)  # the focal loss still pushes every location towards background


# ----------------------------------------------------------------------------------------- inference
def test_eval_returns_logits_at_odd_sizes() -> None:
    model = damcseg().eval()
    image = torch.rand(2, 3, 70, 90)
    with torch.no_grad():
        logits = model(image, sensors_like(image))
    assert isinstance(logits, Tensor) and logits.shape == (2, CLASSES, 70, 90)
    assert bool(torch.isfinite(logits).all())




def test_per_sample_missing_sensor_is_never_read() -> None:
    # a low score threshold makes the detector return boxes, so the local path's sensor crops run too
    model = damcseg(score_threshold=0.005, max_detections=3).eval()
    image = torch.rand(2, 3, 70, 90)
    sensors = sensors_like(image)
    present = {"depth": torch.tensor([True, True]), "thermal": torch.tensor([True, False])}
    with torch.no_grad():
        base = model(image, sensors, present)
        analysed = model.analyse(image, sensors, present)
        changed_1 = {**sensors, "thermal": sensors["thermal"].clone()}
        changed_1["thermal"][1] = torch.rand(1, 70, 90)
        after_1 = model(image, changed_1, present)
        changed_0 = {**sensors, "thermal": sensors["thermal"].clone()}
        changed_0["thermal"][0] = torch.rand(1, 70, 90)
        after_0 = model(image, changed_0, present)
    assert all(len(d.boxes) > 0 for d in analysed.detections)
    assert torch.equal(after_1, base)  # sample 1's thermal is absent: its values are never used
    assert not torch.allclose(after_0[0], base[0])  # sample 0's thermal is real
    assert torch.equal(after_0[1], base[1])  # and changes nothing in the other sample


def test_missing_modality_key_equals_all_absent() -> None:
    model = damcseg().eval()
    image = torch.rand(2, 3, 64, 64)
    sensors = sensors_like(image)
    with torch.no_grad():
        without = model(image, {"depth": sensors["depth"]})
        flagged = model(image, sensors, {"thermal": torch.tensor([False, False])})
    assert torch.equal(without, flagged)


def test_rgb_only_damcseg() -> None:
    model = damcseg(modalities={})
    assert model.fusion == "none" and not hasattr(model, "lmmf")
    model.train()
    data = SyntheticStreets(2, (64, 64), modalities=())
    batch = collate([data[0], data[1]])
    assert batch.modalities == {}
    output = model(batch.image, batch.modalities, **model.training_inputs(batch))
    loss, _ = model.loss(output, batch)
    loss.backward()
    assert bool(torch.isfinite(loss)) and has_grad(model.prior_branch) and has_grad(model.local_branch)
    assert float(output.reconstruction) == 0.0
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 50, 70)).shape == (1, CLASSES, 50, 70)
    with pytest.raises(ValueError, match="unknown modalities.*RGB only"):
        model(torch.rand(1, 3, 64, 64), {"depth": torch.rand(1, 1, 64, 64)})


def test_early_fusion(batch: Batch) -> None:
    model = damcseg(fusion="early")
    assert model.fusion == "early" and not hasattr(model, "lmmf")
    first_conv = next(m for m in model.encoder.stages[0].modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 3 + sum(SENSORS.values())
    model.train()
    output = model(batch.image, batch.modalities, **model.training_inputs(batch))
    loss, _ = model.loss(output, batch)
    loss.backward()
    assert bool(torch.isfinite(loss)) and first_conv.weight.grad[:, 3:].abs().sum() > 0  # sensors reach the encoder
    model.eval()
    with torch.no_grad():
        image = torch.rand(1, 3, 45, 61)
        assert model(image, sensors_like(image)).shape == (1, CLASSES, 45, 61)


def test_global_branch_only(batch: Batch) -> None:
    model = damcseg(branches=False, crf=False)
    for name in ("det_head", "bifpn", "det_last_stage", "local_branch", "prior_branch", "dsaf"):
        assert not hasattr(model, name), name
    assert model.parameter_parts()["det_head"] == []
    model.train()
    output = model(batch.image, batch.modalities, **model.training_inputs(batch))
    assert output.detection is None and output.local is None and torch.equal(output.logits, output.global_logits)
    loss, parts = model.loss(output, batch)
    assert bool(torch.isfinite(loss)) and "focal" not in parts


def test_branches_need_thing_classes() -> None:
    with pytest.raises(ConfigError, match="thing classes"):
        create_model("damcseg", CLASSES, pretrained=False, modalities=SENSORS, thing_classes=(), **SMALL)


def test_dsaf_off_sums_the_branches() -> None:
    model = damcseg(dsaf=False, crf=False, score_threshold=0.005, max_detections=2)
    assert not hasattr(model, "dsaf")
    image = torch.rand(1, 3, 64, 64)
    out = model.analyse(image, sensors_like(image))
    torch.testing.assert_close(out.logits, out.global_logits + out.local.logits + out.prior_logits)


@pytest.mark.parametrize("options", [{}, {"branches": False}, {"gates": False}, {"fusion": "early"}])
def test_parameter_parts_are_disjoint_and_cover_everything(options: dict) -> None:
    model = damcseg(**options)
    parts = model.parameter_parts()
    assert set(parts) == {"backbone", "det_head", "seg_head", "fusion"}
    ids = [id(p) for params in parts.values() for p in params]
    assert len(ids) == len(set(ids)), "a parameter is in two parts"
    assert set(ids) == {id(p) for p in model.parameters()}
    assert {id(p) for p in parts["backbone"]} >= {id(p) for p in model.encoder.parameters()}
    if options.get("branches", True):
        assert {id(p) for p in parts["backbone"]} >= {id(p) for p in model.det_last_stage.parameters()}
        assert {id(p) for p in parts["det_head"]} == {id(p) for p in [*model.bifpn.parameters(), *model.det_head.parameters()]}
        gates = model.local_branch.gates
        assert gates is None or {id(p) for p in gates.parameters()} <= {id(p) for p in parts["fusion"]}
    if hasattr(model, "lmmf"):
        assert {id(p) for p in model.lmmf.parameters()} <= {id(p) for p in parts["fusion"]}


def test_unknown_modality_and_bad_shapes_raise() -> None:
    model = damcseg().eval()
    image = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="unknown modalities.*lidar"):
        model(image, {"lidar": torch.rand(1, 1, 64, 64)})
    with pytest.raises(ValueError, match="modality 'depth' must be"):
        model(image, {"depth": torch.rand(1, 1, 32, 32)})
    with pytest.raises(ValueError, match="B×3×H×W"):
        model(torch.rand(1, 4, 64, 64))


def test_analyse_returns_detections_and_complexity() -> None:
    model = damcseg(score_threshold=0.005, max_detections=3).train()
    image = torch.rand(2, 3, 64, 96)
    out = model.analyse(image, sensors_like(image))
    assert model.training  # analyse restores the mode
    assert len(out.detections) == 2 and all(isinstance(d, Detections) for d in out.detections)
    for d in out.detections:
        assert 0 < len(d.boxes) <= 3 and d.boxes.shape[1] == 4
        assert set(d.classes.tolist()) <= set(THINGS) and bool((d.scores >= 0.005).all())
    assert out.complexity.shape == (2,) and bool(((out.complexity >= 0) & (out.complexity <= 1)).all())
    assert len(out.dsaf.scene) == 2 and set(out.dsaf.scene) <= {"simple", "moderate", "complex"}
    assert out.dsaf.alpha.shape == (2, 1, 64, 96)
    assert out.logits.shape == (2, CLASSES, 64, 96)


def test_detections_lie_inside_an_odd_sized_image() -> None:
    model = damcseg(score_threshold=0.005, max_detections=100)
    image = torch.rand(2, 3, 70, 90)  # padded to 96×96 inside the model
    out = model.analyse(image, sensors_like(image))
    for d in out.detections:
        assert len(d.boxes) > 0
        assert bool((d.boxes[:, 2] <= 90).all() and (d.boxes[:, 3] <= 70).all())


def test_blank_odd_sized_image_has_no_edge_complexity() -> None:
    model = damcseg(score_threshold=0.99)  # no detections: S = 0.3 · E
    grey = torch.full((1, 3, 70, 90), 0.5)
    out = model.analyse(grey, sensors_like(grey))
    assert all(len(d.boxes) == 0 for d in out.detections)
    assert float(out.complexity[0]) == 0.0


# ------------------------------------------------------------------------------- three-stage schedule
STAGES = [
    {"name": "warm-up", "fraction": 0.5, "lr": {"det_head": 0.01, "seg_head": 0.01, "fusion": 0.01}},
    {"name": "joint", "fraction": 0.25, "lr": {"backbone": 0.01, "det_head": 0.01, "seg_head": 0.01, "fusion": 0.01}},
    {"name": "fine-tune", "fraction": 0.25, "lr": {"fusion": 0.01}},
]


def staged_config(tmp_path: Path, stages: list[dict] = STAGES, iterations: int = 4) -> dict:
    return {
        "name": "damcseg_stages",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "damcseg", "pretrained": False, "options": {**SMALL, "modality_widths": [8, 8, 16, 16]}},
        "data": {
            "dataset": "synthetic",
            "modalities": ["depth", "thermal"],
            "options": {"size": [64, 64], "n": 4},
            "crop_size": [64, 64],
            "scale": [1.0, 1.0],
            "batch_size": 2,
            "num_workers": 0,
            "val_split": None,
        },
        "optim": {"stages": stages},
        "train": {"iterations": iterations, "checkpoint_every": 100, "val_every": 100, "threads": 1},
    }


def snapshot(params: list[nn.Parameter]) -> list[Tensor]:
    return [p.detach().clone() for p in params]


def same(a: list[Tensor], b: list[Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_three_stage_schedule_freezes_and_releases_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = Trainer(parse_config(staged_config(tmp_path)), progress_bar=False)
    parts = trainer.model.parameter_parts()
    history: list[tuple[int, set[str], dict[str, list[Tensor]]]] = []
    moments: list[int] = []  # backbone parameters with AdamW state before each step
    step = Trainer._step

    def recording_step(self: Trainer, batch: Batch) -> tuple[float, dict[str, float]]:
        history.append((self.state.iteration, set(self.frozen), {k: snapshot(v) for k, v in parts.items()}))
        moments.append(sum(p in self.optimizer.state for p in parts["backbone"]))
        return step(self, batch)

    monkeypatch.setattr(Trainer, "_step", recording_step)
    state = trainer.run()
    assert state.iteration == 4
    final = {k: snapshot(v) for k, v in parts.items()}
    snaps = [h[2] for h in history] + [final]
    assert [h[1] for h in history] == [{"backbone"}, {"backbone"}, set(), {"backbone", "det_head", "seg_head"}]

    # warm-up (iterations 0 and 1): the backbone does not move, the heads do
    assert same(snaps[0]["backbone"], snaps[2]["backbone"])
    for part in ("seg_head", "det_head", "fusion"):
        assert not same(snaps[0][part], snaps[2][part]), f"{part} did not train in warm-up"
    assert moments[:3] == [0, 0, 0]  # frozen gradients are dropped: no AdamW moments for the backbone yet
    # joint (iteration 2): the backbone trains too
    assert not same(snaps[2]["backbone"], snaps[3]["backbone"])
    # fine-tune (iteration 3): only the fusion part moves
    for part in ("backbone", "det_head", "seg_head"):
        assert same(snaps[3][part], snaps[4][part]), f"{part} moved in fine-tune"
    assert not same(snaps[3]["fusion"], snaps[4]["fusion"])
    lrs = {g["part"]: g["base_lr"] for g in trainer.optimizer.param_groups}
    assert lrs == {"backbone": 0.0, "det_head": 0.0, "seg_head": 0.0, "fusion": 0.01}


def test_stage_index_boundaries(tmp_path: Path) -> None:
    stages = [{"name": n, "fraction": f, "lr": {"fusion": 1e-3}} for n, f in (("a", 0.11), ("b", 0.78), ("c", 0.11))]
    cfg = parse_config(staged_config(tmp_path, stages))
    expected = {0.0: 0, 0.1099: 0, 0.11: 1, 0.5: 1, 0.8899: 1, 0.89: 2, 0.999: 2, 1.0: 2, 1.5: 2}
    assert {f: stage_index(cfg, f) for f in expected} == expected


def test_stage_naming_an_unknown_part_is_a_config_error(tmp_path: Path) -> None:
    stages = [{"name": "warm-up", "fraction": 1.0, "lr": {"decoder": 1e-3, "fusion": 1e-3}}]
    cfg = parse_config(staged_config(tmp_path, stages))
    with pytest.raises(ConfigError, match="warm-up.*decoder"):
        param_groups(damcseg(), cfg)


def test_param_groups_without_stages_use_encoder_lr_for_the_backbone(tmp_path: Path) -> None:
    data = staged_config(tmp_path, [])
    data["optim"] = {"lr": 0.01, "encoder_lr": 0.001}
    groups = param_groups(damcseg(), parse_config(data))
    assert {g["part"]: g["lr"] for g in groups} == {"backbone": 0.001, "det_head": 0.01, "seg_head": 0.01, "fusion": 0.01}
