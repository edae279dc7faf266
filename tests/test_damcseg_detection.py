"""DAMCSeg detection: BiFPN shapes on odd sizes and gradient flow, eq. 2's fusion, the FCOS-style target
assignment on hand-made boxes, the focal + GIoU loss, NMS decoding, and a tiny detector that learns to
find two boxes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from rgbxseg.data.sample import Instances
from rgbxseg.models.damcseg.detection import (
    BiFPN,
    DetectionHead,
    DetectionOutput,
    _FusionNode,
    detection_loss,
    positive_predictions,
    postprocess,
)

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

THINGS = (5, 6, 7, 8)


def instances(boxes: list[list[float]], classes: list[int]) -> Instances:
    """Instances with inclusive boxes; the masks are not used by the detection code."""
    n = len(classes)
    return Instances(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        classes=torch.tensor(classes, dtype=torch.long),
        masks=torch.zeros(n, 1, 1, dtype=torch.bool),
        occluded=torch.zeros(n, 1, 1, dtype=torch.bool),
    )


def constant_output(
    sizes: list[tuple[int, int]], strides: tuple[int, ...], batch: int = 1, logit: float = -10.0
) -> DetectionOutput:
    """Constant logits and ltrb = level index + 1, so a decoded box's width (2·(level + 1)) names its level
    and its centre is the location's centre."""
    return DetectionOutput(
        cls_logits=[torch.full((batch, len(THINGS), h, w), logit) for h, w in sizes],
        box_ltrb=[torch.full((batch, 4, h, w), float(level + 1), requires_grad=True) for level, (h, w) in enumerate(sizes)],
        strides=strides,
    )


def centres_and_levels(matched_boxes: Tensor) -> tuple[Tensor, Tensor]:
    return (matched_boxes[:, :2] + matched_boxes[:, 2:]) / 2, ((matched_boxes[:, 2] - matched_boxes[:, 0]) / 2 - 1).long()


# ---------------------------------------------------------------------------------------------- BiFPN


@pytest.mark.parametrize(
    "sizes",
    [
        [(17, 23), (9, 12), (5, 6)],  # odd sizes, rounded up
        [(17, 23), (8, 11), (4, 5)],  # odd sizes, rounded down
        [(16, 16), (8, 8), (8, 8)],  # a dilated last stage: equal sizes
        [(12, 10), (6, 5)],  # two levels
    ],
)
def test_bifpn_keeps_sizes_and_sets_channels(sizes: list[tuple[int, int]]) -> None:
    in_channels = [8 * (i + 1) for i in range(len(sizes))]
    neck = BiFPN(in_channels, channels=16, repeats=2)
    out = neck([torch.randn(2, c, h, w) for c, (h, w) in zip(in_channels, sizes, strict=True)])
    assert [tuple(o.shape) for o in out] == [(2, 16, h, w) for h, w in sizes]
    assert all(torch.isfinite(o).all() for o in out)


def test_bifpn_gradients_reach_every_input_and_parameter() -> None:
    neck = BiFPN((8, 16, 32), channels=16, repeats=2)
    features = [torch.randn(2, c, h, w, requires_grad=True) for c, (h, w) in zip((8, 16, 32), [(17, 23), (9, 12), (5, 6)])]
    out = neck(features)
    sum((o * torch.randn_like(o)).sum() for o in out).backward()
    for level, x in enumerate(features):
        assert x.grad is not None and x.grad.abs().sum() > 0, f"no gradient reaches input level {level}"
    missing = [name for name, p in neck.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient for {missing}"


def test_fast_normalised_fusion_follows_eq2() -> None:
    node = _FusionNode(channels=3, inputs=3)
    node.conv = nn.Identity()  # isolate the fusion
    with torch.no_grad():
        node.weights.copy_(torch.tensor([3.0, 1.0, -2.0]))  # the negative weight is clipped to 0 by the ReLU
    a, b, c = torch.randn(3, 1, 3, 4, 4)
    torch.testing.assert_close(node([a, b, c]), (3 * a + b) / (4 + 1e-4))


def test_bifpn_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="at least two levels"):
        BiFPN((16,))
    neck = BiFPN((8, 16), channels=8, repeats=1)
    with pytest.raises(ValueError, match="expects 2 feature maps"):
        neck([torch.randn(1, 8, 8, 8)])
    with pytest.raises(ValueError, match=r"level 1: expected B×16×h×w"):
        neck([torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4)])
    with pytest.raises(ValueError, match="high to low resolution"):
        neck([torch.randn(1, 8, 4, 4), torch.randn(1, 16, 8, 8)])


# ---------------------------------------------------------------------------------------------- head


def test_head_outputs_per_level_with_prior_and_positive_distances() -> None:
    head = DetectionHead(16, num_classes=4, strides=(4, 8, 16), convs=2, prior_prob=0.01)
    sizes = [(17, 23), (9, 12), (5, 6)]
    output = head([torch.randn(2, 16, h, w) for h, w in sizes])
    assert output.strides == (4, 8, 16)
    assert [tuple(x.shape) for x in output.cls_logits] == [(2, 4, h, w) for h, w in sizes]
    assert [tuple(x.shape) for x in output.box_ltrb] == [(2, 4, h, w) for h, w in sizes]
    for ltrb, stride in zip(output.box_ltrb, output.strides, strict=True):
        assert ((ltrb / (stride * math.log(2))).log().abs() < 1).all()  # softplus(≈0)·stride
    scores = torch.cat([x.flatten() for x in output.cls_logits]).sigmoid()
    torch.testing.assert_close(scores.mean(), torch.tensor(0.01), atol=2e-3, rtol=0)


def test_head_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        DetectionHead(16, 4, strides=(8, 4))
    with pytest.raises(ValueError, match="prior_prob"):
        DetectionHead(16, 4, strides=(4,), prior_prob=1.0)
    head = DetectionHead(16, 4, strides=(4, 8))
    with pytest.raises(ValueError, match="expects 2 levels"):
        head([torch.randn(1, 16, 8, 8)])
    with pytest.raises(ValueError, match="level 0: expected B×16×h×w"):
        head([torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4)])


def test_detection_output_checks_consistency() -> None:
    with pytest.raises(ValueError, match="as many"):
        DetectionOutput(cls_logits=[torch.zeros(1, 4, 8, 8)], box_ltrb=[], strides=(4,))
    with pytest.raises(ValueError, match="disagree"):
        DetectionOutput(cls_logits=[torch.zeros(1, 4, 8, 8)], box_ltrb=[torch.zeros(1, 4, 8, 7)], strides=(4,))


# ---------------------------------------------------------------------------------------------- assignment


def test_box_gets_the_locations_near_its_centre_on_the_finest_level() -> None:
    output = constant_output([(16, 16), (8, 8), (4, 4)], (4, 8, 16))
    matched = positive_predictions(output, [instances([[16, 16, 35, 35]], [7])], THINGS)  # 20×20 px, centre 26
    centres, levels = centres_and_levels(matched.boxes)
    assert (levels == 0).all()  # max side 20 <= 8·4
    assert sorted(set(centres[:, 0].tolist())) == [22.0, 26.0, 30.0]  # |x − 26| < 1.5·4, strictly inside the box
    assert len(matched.boxes) == 9
    assert (matched.classes == 7).all() and (matched.batch_index == 0).all()
    torch.testing.assert_close(matched.target_boxes, torch.tensor([[16.0, 16.0, 36.0, 36.0]]).expand(9, 4))  # exclusive


def test_level_rule_sends_large_boxes_to_coarse_levels() -> None:
    output = constant_output([(32, 32), (16, 16), (8, 8)], (4, 8, 16))
    boxes = [[10, 10, 39, 39], [60, 10, 99, 49], [0, 50, 127, 127]]  # max sides 30, 40, 128
    matched = positive_predictions(output, [instances(boxes, [5, 6, 8])], THINGS)
    _, levels = centres_and_levels(matched.boxes)
    level_of_class = {int(c): set(levels[matched.classes == c].tolist()) for c in matched.classes.unique()}
    assert level_of_class == {5: {0}, 6: {1}, 8: {2}}


def test_tiny_box_gets_the_cell_holding_its_centre() -> None:
    output = constant_output([(16, 16), (8, 8)], (4, 8))
    matched = positive_predictions(output, [instances([[9, 13, 10, 13]], [6])], THINGS)  # 2×1 px, no location centre inside
    assert len(matched.boxes) == 1
    centres, levels = centres_and_levels(matched.boxes)
    assert levels.tolist() == [0]
    assert centres.tolist() == [[10.0, 14.0]]  # centre (10, 13.5) lies in cell (row 3, column 2)
    torch.testing.assert_close(matched.target_boxes, torch.tensor([[9.0, 13.0, 11.0, 14.0]]))


def test_shared_location_goes_to_the_smaller_box_and_non_things_are_ignored() -> None:
    output = constant_output([(16, 16)], (4,))
    boxes = [[0, 0, 39, 39], [20, 20, 31, 31], [0, 0, 63, 63]]  # big (5), small overlapping it (8), non-thing (2)
    matched = positive_predictions(output, [instances(boxes, [5, 8, 2])], THINGS)
    assert set(matched.classes.tolist()) == {5, 8}
    centres, _ = centres_and_levels(matched.boxes)
    owner = {tuple(c): int(k) for c, k in zip(centres.tolist(), matched.classes, strict=True)}
    assert len(owner) == len(matched.classes)  # one box per location
    assert owner[(22.0, 22.0)] == 8  # inside both boxes, within the radius of both centres
    assert sorted(c for c, k in owner.items() if k == 5) == [(18.0, 18.0), (18.0, 22.0), (22.0, 18.0)]


def test_assignment_spans_the_batch() -> None:
    output = constant_output([(16, 16)], (4,), batch=3)
    targets = [None, instances([[16, 16, 35, 35]], [7]), instances([], [])]
    matched = positive_predictions(output, targets, THINGS)
    assert set(matched.batch_index.tolist()) == {1}


# ---------------------------------------------------------------------------------------------- loss


def perfect_output(targets: list[Instances | None], size: int = 16, stride: int = 4) -> DetectionOutput:
    """A single-level output that predicts exactly the assigned boxes and classes at the positives."""
    probe = constant_output([(size, size)], (stride,), batch=len(targets))
    for ltrb in probe.box_ltrb:
        ltrb.data.zero_()
    matched = positive_predictions(probe, targets, THINGS)
    logits = torch.full((len(targets), len(THINGS), size, size), -12.0)
    ltrb = torch.ones(len(targets), 4, size, size)
    centres = matched.boxes[:, :2].detach()
    cols, rows = (centres / stride).floor().long().unbind(1)
    channel = torch.tensor([THINGS.index(int(c)) for c in matched.classes])
    logits[matched.batch_index, channel, rows, cols] = 12.0
    distances = torch.cat([centres - matched.target_boxes[:, :2], matched.target_boxes[:, 2:] - centres], dim=1)
    ltrb[matched.batch_index, :, rows, cols] = distances
    return DetectionOutput(cls_logits=[logits], box_ltrb=[ltrb], strides=(stride,))


def test_loss_is_lower_for_outputs_that_match_the_targets() -> None:
    targets = [instances([[16, 16, 35, 35], [40, 8, 55, 31]], [7, 5]), None]
    perfect = detection_loss(perfect_output(targets), targets, THINGS)
    assert perfect["giou"] < 1e-5
    assert perfect["focal"] < 1e-3
    random = DetectionOutput(
        cls_logits=[torch.randn(2, len(THINGS), 16, 16)], box_ltrb=[torch.rand(2, 4, 16, 16) * 20], strides=(4,)
    )
    worse = detection_loss(random, targets, THINGS)
    assert worse["focal"] > 100 * perfect["focal"]
    assert worse["giou"] > 0.1


def test_loss_gradient_reaches_the_head() -> None:
    head = DetectionHead(8, len(THINGS), strides=(4, 8), convs=1)
    output = head([torch.randn(1, 8, 16, 16), torch.randn(1, 8, 8, 8)])
    losses = detection_loss(output, [instances([[16, 16, 35, 35]], [7])], THINGS)
    (losses["focal"] + losses["giou"]).backward()
    missing = [name for name, p in head.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient for {missing}"
    assert head.scales.grad[0] != 0 and head.scales.grad[1] == 0  # the 20-px box has positives on level 0 only


@pytest.mark.parametrize("target", [None, instances([], []), instances([[4, 4, 20, 20]], [2])])
def test_no_objects_give_a_finite_loss_with_zero_giou(target: Instances | None) -> None:
    output = constant_output([(16, 16)], (4,), logit=0.0)
    losses = detection_loss(output, [target], THINGS)
    assert torch.isfinite(losses["focal"]) and losses["focal"] > 0  # every location is a negative
    assert losses["giou"] == 0
    (losses["focal"] + losses["giou"]).backward()


def test_loss_rejects_mismatched_arguments() -> None:
    output = constant_output([(16, 16)], (4,), batch=2)
    with pytest.raises(ValueError, match="2 images"):
        detection_loss(output, [None], THINGS)
    with pytest.raises(ValueError, match="thing_classes has 2"):
        detection_loss(output, [None, None], (5, 6))


# ---------------------------------------------------------------------------------------------- decoding


def test_postprocess_thresholds_clips_and_removes_duplicates_per_class() -> None:
    logits = torch.full((1, len(THINGS), 8, 8), -10.0)
    ltrb = torch.full((1, 4, 8, 8), 6.0)
    logits[0, 0, 2, 2] = 3.0  # class 5 at (20, 20): box 14..26
    logits[0, 0, 2, 3] = 2.0  # class 5 at (28, 20): box 22..34, IoU 1/3 with the first, kept
    logits[0, 0, 3, 2] = 1.5  # class 5 at (20, 28): box 14..26 × 16..28, IoU 0.71 with the first, suppressed
    ltrb[0, :, 3, 2] = torch.tensor([6.0, 12.0, 6.0, 0.0])
    logits[0, 2, 3, 2] = 1.0  # class 7, same box: another class survives the class-wise NMS
    logits[0, 1, 5, 5] = -1.0  # sigmoid 0.27 < 0.3
    logits[0, 3, 7, 7] = 4.0  # class 8 at (60, 60): clipped to the 62×64 image
    output = DetectionOutput(cls_logits=[logits], box_ltrb=[ltrb], strides=(8,))
    (dets,) = postprocess(output, (62, 64), THINGS)
    assert dets.classes.tolist() == [8, 5, 5, 7]
    assert (dets.scores[:-1] >= dets.scores[1:]).all()
    torch.testing.assert_close(dets.scores, torch.tensor([4.0, 3.0, 2.0, 1.0]).sigmoid())
    expected = torch.tensor([[54, 54, 64, 62], [14, 14, 26, 26], [22, 14, 34, 26], [14, 16, 26, 28]], dtype=torch.float32)
    torch.testing.assert_close(dets.boxes, expected)


def test_postprocess_keeps_at_most_max_detections_and_handles_empty_images() -> None:
    logits = torch.full((2, len(THINGS), 8, 8), -10.0)
    logits[0, 0] = torch.linspace(0, 5, 64).reshape(8, 8)  # 64 disjoint boxes (ltrb 1 < stride / 2)
    output = DetectionOutput(cls_logits=[logits], box_ltrb=[torch.ones(2, 4, 8, 8)], strides=(8,))
    first, second = postprocess(output, (64, 64), THINGS, max_detections=10)
    assert len(first.boxes) == 10
    torch.testing.assert_close(first.scores, torch.linspace(0, 5, 64)[-10:].flip(0).sigmoid())
    assert second.boxes.shape == (0, 4) and second.classes.dtype == torch.long
    with pytest.raises(ValueError, match="score_threshold"):
        postprocess(output, (64, 64), THINGS, score_threshold=1.5)


# ---------------------------------------------------------------------------------------------- learning


class TinyDetector(nn.Module):
    """Three strided convs (strides 4, 8, 16), a BiFPN and the head: the smallest detector that learns."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, 2, 1), nn.ReLU(), nn.Conv2d(channels, channels, 3, 2, 1), nn.ReLU()
        )
        self.down = nn.ModuleList(nn.Sequential(nn.Conv2d(channels, channels, 3, 2, 1), nn.ReLU()) for _ in range(2))
        self.neck = BiFPN((channels,) * 3, channels=channels, repeats=1)
        self.head = DetectionHead(channels, len(THINGS), strides=(4, 8, 16), convs=1)

    def forward(self, image: Tensor) -> DetectionOutput:
        features = [self.stem(image)]
        for down in self.down:
            features.append(down(features[-1]))
        return self.head(self.neck(features))


def test_a_few_steps_on_one_image_find_both_boxes() -> None:
    image = torch.zeros(1, 3, 64, 64)
    image[0, 0, 10:30, 8:28] = 1.0  # red 20×20 box, class 5
    image[0, 1, 30:58, 36:56] = 1.0  # green 20×28 box, class 7
    target = instances([[8, 10, 27, 29], [36, 30, 55, 57]], [5, 7])
    model = TinyDetector()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(80):
        losses = detection_loss(model(image), [target], THINGS)
        optimiser.zero_grad()
        (losses["focal"] + losses["giou"]).backward()
        optimiser.step()
    model.eval()
    (dets,) = postprocess(model(image), (64, 64), THINGS)
    truth = target.boxes + torch.tensor([0.0, 0.0, 1.0, 1.0])
    for box, cls in zip(truth, (5, 7), strict=True):
        same_class = dets.boxes[dets.classes == cls]
        assert len(same_class) > 0, f"class {cls} not detected (losses {losses})"
        assert box_iou(box[None], same_class).max() > 0.5
