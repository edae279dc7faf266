"""DAMCSeg's parts (SPEC 5): the staged RGB encoder, the branch gates, the local RoIAlign path (gated
sub-branches, pasting), the prior path's depth-consistent box evidence and the global branch."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from rgbxseg.errors import ConfigError
from rgbxseg.models.damcseg.branch_selection import SUB_BRANCHES, BranchGates
from rgbxseg.models.damcseg.global_branch import GlobalBranch
from rgbxseg.models.damcseg.local_branch import LocalBranch, grow_boxes, paste
from rgbxseg.models.damcseg.prior_branch import PriorBranch, box_evidence
from rgbxseg.models.damcseg.staged_encoder import StagedEncoder
from rgbxseg.models.encoders import Encoder

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

THINGS = (5, 6, 7, 8)


# ------------------------------------------------------------------------------------ staged encoder
def run_stages(staged: StagedEncoder, x: Tensor) -> list[Tensor]:
    y, outputs = staged.normalize(x), []
    for stage in staged.stages:
        y = stage(y)
        outputs.append(y)
    return outputs


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
@pytest.mark.parametrize("extra", [0, 2])
def test_stages_reproduce_the_encoder_exactly(name: str, extra: int) -> None:
    encoder = Encoder(name, pretrained=False, extra_channels=extra).eval()
    staged = StagedEncoder(encoder).eval()
    x = torch.rand(2, 3 + extra, 64, 96)
    with torch.no_grad():
        expected = encoder(x)[1:]  # smp's list starts with the input
        got = run_stages(staged, x)
    assert len(staged.stages) == 5
    assert staged.out_channels == tuple(encoder.out_channels[1:])
    assert staged.size_divisor == encoder.size_divisor
    for k, (e, g) in enumerate(zip(expected, got)):
        assert g.shape == e.shape, f"stage {k}"
        assert torch.equal(g, e), f"stage {k} differs from the encoder's output"
    strides = [64 // g.shape[-2] for g in got]
    assert strides == [2, 4, 8, 16, 16]  # OS16: last stage dilated


def test_duplicate_last_is_an_independent_copy() -> None:
    staged = StagedEncoder(Encoder("mobilenet_v2", pretrained=False)).eval()
    copy = staged.duplicate_last().eval()
    x = torch.randn(1, staged.out_channels[3], 4, 6)
    with torch.no_grad():
        assert torch.equal(copy(x), staged.stages[-1](x))  # same initial weights
    original = {id(p) for p in staged.parameters()}
    assert not any(id(p) in original for p in copy.parameters())
    before = [p.detach().clone() for p in staged.stages[-1].parameters()]
    with torch.no_grad():
        for p in copy.parameters():
            p.add_(1.0)
    assert all(torch.equal(b, p) for b, p in zip(before, staged.stages[-1].parameters()))
    with torch.no_grad():
        assert not torch.allclose(copy(x), staged.stages[-1](x))


def test_encoder_that_cannot_be_staged_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="xception65.*stage by stage"):
        StagedEncoder(Encoder("xception65", pretrained=False))


# --------------------------------------------------------------------------------------- branch gates
def test_gates_are_in_unit_interval_and_start_open() -> None:
    gates = BranchGates(channels=6, hidden=4)
    values = gates(10 * torch.randn(7, 6, 5, 5))
    assert values.shape == (7, len(SUB_BRANCHES))
    assert bool((values > 0).all() and (values < 1).all())
    with torch.no_grad():
        start = gates(torch.zeros(1, 6, 3, 3))  # ReLU(bias) path only: the last bias starts at 2
    assert bool(gates.open(start).all())


def test_open_applies_the_threshold() -> None:
    gates = BranchGates(channels=4, threshold=0.6)
    values = torch.tensor([[0.59, 0.6, 0.61], [0.0, 1.0, 0.3]])
    assert gates.open(values).tolist() == [[False, True, True], [False, True, False]]


@pytest.mark.parametrize("kwargs", [{"channels": 0}, {"channels": 4, "hidden": 0}, {"channels": 4, "threshold": 1.0}])
def test_gates_reject_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="BranchGates"):
        BranchGates(**kwargs)


# --------------------------------------------------------------------------------------- local branch
H, W = 32, 40
FEATURES, SENSORS, CLASSES = 4, 2, 3


def local_branch(**kwargs: object) -> LocalBranch:
    return LocalBranch(FEATURES, SENSORS, CLASSES, roi_size=8, width=8, **kwargs)


def local_inputs(batch: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    return torch.randn(batch, FEATURES, H // 4, W // 4), torch.rand(batch, 3, H, W), torch.rand(batch, SENSORS, H, W)


BOXES = [torch.tensor([[8.0, 8.0, 16.0, 16.0]]), torch.tensor([[0.0, 0.0, 8.0, 8.0], [20.0, 10.0, 36.0, 30.0]])]


def test_local_branch_shapes() -> None:
    branch = local_branch().train()
    features, image, sensors = local_inputs()
    out = branch(features, image, sensors, BOXES)
    assert out.logits.shape == (2, CLASSES, H, W)
    assert out.region.shape == (2, 1, H, W)
    assert out.gates.shape == (3, 3)
    assert bool(torch.isfinite(out.logits).all())


def test_local_branch_without_sensors() -> None:
    branch = LocalBranch(FEATURES, 0, CLASSES, roi_size=8, width=8).eval()
    features, image, _ = local_inputs()
    with torch.no_grad():
        out = branch(features, image, None, BOXES)
    assert out.logits.shape == (2, CLASSES, H, W)
    assert out.region.sum() > 0


def test_empty_boxes_give_zero_logits_and_no_region() -> None:
    branch = local_branch()
    features, image, sensors = local_inputs()
    out = branch(features, image, sensors, [torch.zeros(0, 4), torch.zeros(0, 4)])
    assert out.logits.shape == (2, CLASSES, H, W) and not bool(out.logits.any())
    assert out.region.shape == (2, 1, H, W) and not bool(out.region.any())
    assert out.gates.shape == (0, 3)


def test_region_is_exactly_the_grown_box_pixels() -> None:
    branch = local_branch().eval()  # context 1.25
    features, image, sensors = local_inputs()
    with torch.no_grad():
        out = branch(features, image, sensors, [torch.zeros(0, 4), torch.tensor([[8.0, 8.0, 16.0, 16.0], [0.0, 0.0, 8.0, 8.0]])])
    expected = torch.zeros(2, 1, H, W)
    expected[1, 0, 7:17, 7:17] = 1  # [8, 16] grown about 12 by 1.25 → [7, 17)
    expected[1, 0, 0:9, 0:9] = 1  # [0, 8] grown to [-1, 9], clipped to [0, 9)
    assert torch.equal(out.region, expected)
    assert not bool(out.logits[0].any())  # the image without boxes gets nothing
    assert not bool(out.logits[1][:, expected[1, 0] == 0].any())  # 0 outside every box


def test_grow_boxes_scales_about_the_centre_and_clips() -> None:
    boxes = torch.tensor([[10.0, 10.0, 20.0, 30.0], [30.0, 0.0, 40.0, 4.0]])
    grown = grow_boxes(boxes, 2.0, height=32, width=40)
    assert grown.tolist() == [[5.0, 0.0, 25.0, 32.0], [25.0, 0.0, 40.0, 6.0]]


class Recorder:
    """Forward hooks that count calls and keep each module's last output (or input)."""

    def __init__(self, modules: dict[str, nn.Module], inputs: tuple[str, ...] = ()) -> None:
        self.calls = dict.fromkeys(modules, 0)
        self.values: dict[str, Tensor] = {}
        for name, module in modules.items():
            module.register_forward_hook(self._hook(name, name in inputs))

    def _hook(self, name: str, keep_input: bool):  # noqa: ANN202 - a hook closure
        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
            self.calls[name] += 1
            self.values[name] = (args[0] if keep_input else output).detach().clone()

        return hook


def set_gate_bias(branch: LocalBranch, bias: list[float]) -> None:
    """Make every region's gates σ(bias), whatever its trunk features."""
    with torch.no_grad():
        branch.gates.mlp[-1].weight.zero_()
        branch.gates.mlp[-1].bias.copy_(torch.tensor(bias))


def recorded_branch() -> tuple[LocalBranch, Recorder]:
    branch = local_branch().eval()
    modules = {
        "trunk": branch.trunk,
        "edge": branch.edge,
        "context": branch.context_branch,
        "consistency": branch.consistency,
        "classifier": branch.classifier,
    }
    return branch, Recorder(modules, inputs=("classifier",))


def test_closed_gates_skip_every_sub_branch_at_inference() -> None:
    branch, record = recorded_branch()
    set_gate_bias(branch, [-3.0, -3.0, -3.0])  # σ(-3) ≈ 0.05 < 0.5: all closed
    features, image, sensors = local_inputs()
    with torch.no_grad():
        gated = branch(features, image, sensors, BOXES)
    assert record.calls["edge"] == record.calls["context"] == record.calls["consistency"] == 0
    assert torch.equal(record.values["classifier"], record.values["trunk"])  # trunk-only classifier input
    trunk_only = paste(branch.classifier(record.values["trunk"]), torch.cat([grow_boxes(b, 1.25, H, W) for b in BOXES]),
                       torch.tensor([0, 1, 1]), 2, (H, W))[0]  # fmt: skip
    torch.testing.assert_close(gated.logits, trunk_only)

    branch.force_open = True  # benchmark switch: every sub-branch runs again
    with torch.no_grad():
        forced = branch(features, image, sensors, BOXES)
    assert record.calls["edge"] == record.calls["context"] == record.calls["consistency"] == 1
    assert not torch.allclose(forced.logits, gated.logits)


def test_gated_inference_adds_only_the_open_sub_branches() -> None:
    branch, record = recorded_branch()
    set_gate_bias(branch, [1.0, -3.0, 2.0])  # context closed, edge and consistency open
    features, image, sensors = local_inputs()
    with torch.no_grad():
        branch(features, image, sensors, BOXES)
    assert (record.calls["edge"], record.calls["context"], record.calls["consistency"]) == (1, 0, 1)
    gated_input = record.values["classifier"]

    branch.force_open = True
    with torch.no_grad():
        branch(features, image, sensors, BOXES)
    g = torch.sigmoid(torch.tensor([1.0, -3.0, 2.0]))
    v = record.values
    torch.testing.assert_close(v["classifier"], v["trunk"] + g[0] * v["edge"] + g[1] * v["context"] + g[2] * v["consistency"])
    torch.testing.assert_close(gated_input, v["classifier"] - g[1] * v["context"])


def test_training_runs_every_sub_branch_and_gradients_reach_trunk_and_gates() -> None:
    branch = local_branch().train()
    set_gate_bias(branch, [-3.0, -3.0, -3.0])  # closed gates only matter at inference
    features, image, sensors = local_inputs()
    features.requires_grad_(True)
    out = branch(features, image, sensors, BOXES)
    (out.logits * torch.randn_like(out.logits)).sum().backward()
    modules = {"trunk": branch.trunk, "edge": branch.edge, "context": branch.context_branch,
               "consistency": branch.consistency, "gates": branch.gates, "classifier": branch.classifier}  # fmt: skip
    for name, module in modules.items():
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and any(bool(g.abs().sum() > 0) for g in grads), name
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_without_gates_every_sub_branch_has_weight_one() -> None:
    branch = local_branch(gates=False).eval()
    record = Recorder({"trunk": branch.trunk, "edge": branch.edge, "context": branch.context_branch,
                       "consistency": branch.consistency, "classifier": branch.classifier}, inputs=("classifier",))  # fmt: skip
    features, image, sensors = local_inputs()
    with torch.no_grad():
        out = branch(features, image, sensors, BOXES)
    v = record.values
    torch.testing.assert_close(v["classifier"], v["trunk"] + v["edge"] + v["context"] + v["consistency"])
    assert torch.equal(out.gates, torch.ones(3, 3))


def test_paste_averages_overlapping_boxes() -> None:
    logits = torch.stack([torch.full((2, 4, 4), 1.0), torch.full((2, 4, 4), 3.0), torch.full((2, 4, 4), 7.0)])
    rois = torch.tensor([[0.0, 0.0, 8.0, 8.0], [4.0, 4.0, 12.0, 12.0], [2.0, 1.0, 5.0, 3.0]])
    canvas, region = paste(logits, rois, torch.tensor([0, 0, 1]), batch=2, size=(10, 16))
    expected = torch.zeros(2, 2, 10, 16)
    expected[0, :, 0:8, 0:8] = 1.0
    expected[0, :, 4:10, 4:12] = 3.0  # clipped at the bottom
    expected[0, :, 4:8, 4:8] = 2.0  # the mean of both boxes
    expected[1, :, 1:3, 2:5] = 7.0
    torch.testing.assert_close(canvas, expected)
    assert torch.equal(region, (expected[:, :1] != 0).float())


def test_paste_rounds_fractional_boxes_outwards() -> None:
    canvas, region = paste(torch.ones(1, 1, 2, 2), torch.tensor([[1.5, 2.2, 3.1, 4.9]]), torch.tensor([0]), 1, (6, 6))
    expected = torch.zeros(1, 1, 6, 6)
    expected[0, 0, 2:5, 1:4] = 1
    assert torch.equal(region, expected) and torch.equal(canvas, expected)


# --------------------------------------------------------------------------------------- prior branch
def depth_scene() -> Tensor:
    """Background at depth 0.9; an object at depth 0.2 filling rows 4..11, columns 6..13 (64 pixels)."""
    depth = torch.full((1, 1, 16, 20), 0.9)
    depth[0, 0, 4:12, 6:14] = 0.2
    return depth


def test_box_evidence_follows_the_objects_depth() -> None:
    box = torch.tensor([[5.0, 3.0, 15.0, 13.0]])  # 100 pixels, 64 at the object's depth: median = 0.2
    evidence = box_evidence([box], [torch.tensor([0.8])], [torch.tensor([6])], THINGS, (16, 20), depth_scene(), None, tau=0.05)
    assert evidence.shape == (1, 4, 16, 20)
    assert not bool(evidence[0, [0, 2, 3]].any())  # only class 6's map
    m = evidence[0, 1]
    torch.testing.assert_close(m[4:12, 6:14], torch.full((8, 8), 0.8))  # at the object's depth: the score
    inside = torch.zeros(16, 20, dtype=torch.bool)
    inside[3:13, 5:15] = True
    background_in_box = inside.clone()
    background_in_box[4:12, 6:14] = False
    assert float(m[background_in_box].max()) < 1e-5  # behind the object: exp(-0.7 / 0.05) ≈ 0
    assert not bool(m[~inside].any())  # outside the box: nothing


def test_box_evidence_without_depth_is_the_score_and_takes_the_max() -> None:
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 6.0, 5.0], [1.0, 1.0, 3.0, 3.0]])
    scores, classes = torch.tensor([0.4, 0.9, 0.7]), torch.tensor([5, 5, 3])  # class 3 is no thing class
    present = torch.tensor([False])
    for depth in (None, depth_scene()[..., :8, :8]):  # absent depth (flag False) counts as no depth
        evidence = box_evidence([boxes], [scores], [classes], THINGS, (8, 8), depth, present, tau=0.05)
        expected = torch.zeros(8, 8)
        expected[0:4, 0:4] = 0.4
        expected[2:5, 2:6] = 0.9
        torch.testing.assert_close(evidence[0, 0], expected)
        assert not bool(evidence[0, 1:].any())


def test_prior_branch_without_sensors() -> None:
    branch = PriorBranch(num_classes=5, thing_classes=THINGS, width=8)
    global_logits = torch.randn(2, 5, 30, 37, requires_grad=True)
    detections = ([torch.tensor([[3.0, 4.0, 12.0, 20.0]]), torch.zeros(0, 4)], [torch.tensor([0.9]), torch.zeros(0)],
                  [torch.tensor([7]), torch.zeros(0, dtype=torch.long)])  # fmt: skip
    out = branch(global_logits, None, None, detections)
    assert out.shape == (2, 5, 30, 37) and bool(torch.isfinite(out).all())
    out.sum().backward()
    assert global_logits.grad is None  # the prior path corrects the global branch, it does not train it
    assert all(p.grad is not None for p in branch.parameters())


def test_prior_branch_uses_sensors_and_presence() -> None:
    branch = PriorBranch(num_classes=5, thing_classes=THINGS, sensor_channels=2, num_sensors=2, width=8).eval()
    global_logits = torch.randn(1, 5, 30, 37)
    sensors = torch.rand(1, 2, 30, 37)
    no_detections = ([torch.zeros(0, 4)], [torch.zeros(0)], [torch.zeros(0, dtype=torch.long)])
    with torch.no_grad():
        both = branch(global_logits, sensors, torch.tensor([[1.0, 1.0]]), no_detections, sensors[:, :1], torch.tensor([True]))
        flagged = branch(global_logits, sensors, torch.tensor([[1.0, 0.0]]), no_detections, sensors[:, :1], torch.tensor([True]))
        other = branch(global_logits, torch.rand(1, 2, 30, 37), torch.tensor([[1.0, 1.0]]), no_detections)
    assert both.shape == (1, 5, 30, 37)
    assert not torch.allclose(both, flagged)
    assert not torch.allclose(both, other)


def test_prior_branch_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="tau"):
        PriorBranch(num_classes=3, thing_classes=THINGS, tau=0.0)


# -------------------------------------------------------------------------------------- global branch
def test_global_branch_shape_and_gradients() -> None:
    branch = GlobalBranch(in_channels=24, low_level_channels=8, num_classes=5, aspp_channels=16, decoder_channels=16)
    context = torch.randn(2, 24, 4, 5, requires_grad=True)
    low_level = torch.randn(2, 8, 16, 20, requires_grad=True)
    out = branch(context, low_level, (61, 77))
    assert out.shape == (2, 5, 61, 77)
    out.square().mean().backward()
    assert context.grad.abs().sum() > 0 and low_level.grad.abs().sum() > 0
