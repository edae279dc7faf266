"""DSAF: scene complexity terms and classes on hand-made values, Canny edge density, occlusion share from
boxes, the α/β/γ rules (eqs. 7-9) on hand-made boxes, and gradient flow to the learnable a, b, c."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from rgbxseg.models.damcseg.dsaf import (
    DSAF,
    WEIGHT_TABLE,
    box_pixel_ranges,
    edge_density,
    occlusion_share,
    scene_class,
    scene_complexity,
)

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

K, H, W = 3, 16, 16


def branches(batch: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    return torch.randn(batch, K, H, W), torch.randn(batch, K, H, W), torch.randn(batch, K, H, W)


def test_scene_class_boundaries() -> None:
    scores = torch.tensor([0.0, 0.29, 0.3, 0.5, 0.7, 0.71, 1.0], dtype=torch.float64)
    assert scene_class(scores) == ["simple", "simple", "moderate", "moderate", "moderate", "complex", "complex"]


def test_scene_complexity_terms_and_clamps() -> None:
    targets = torch.tensor([16, 40, 0, 0])
    occluded = torch.tensor([0.5, 0.0, 1.0, 0.0])
    edges = torch.tensor([0.125, 0.0, 0.0, 0.5])
    scores = scene_complexity(targets, occluded, edges)
    # 0.4·0.5 + 0.3·0.5 + 0.3·0.5; 40 targets → D = 1; O = 1; edge density 0.5 → E = 1
    torch.testing.assert_close(scores, torch.tensor([0.5, 0.4, 0.3, 0.3]))
    assert scene_class(scene_complexity(torch.tensor([99]), torch.ones(1), torch.ones(1))) == ["complex"]


def test_scene_complexity_rejects_bad_terms() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scene_complexity(torch.tensor([1]), torch.tensor([1.5]), torch.tensor([0.1]))
    with pytest.raises(ValueError, match="one length B"):
        scene_complexity(torch.tensor([1, 2]), torch.tensor([0.5]), torch.tensor([0.1]))
    with pytest.raises(ValueError, match=">= 0"):
        scene_complexity(torch.tensor([-1]), torch.tensor([0.5]), torch.tensor([0.1]))


def test_edge_density_blank_and_checkerboard() -> None:
    blank = torch.full((1, 3, 32, 32), 0.4)
    rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    checker = (((rows // 4) + (cols // 4)) % 2).float().expand(1, 3, 32, 32)
    density = edge_density(torch.cat([blank, checker]))
    assert density.shape == (2,) and density.dtype == torch.float32
    assert density[0] == 0
    assert 0.1 < density[1] < 1


def test_edge_density_rejects_normalised_images() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        edge_density(torch.randn(1, 3, 8, 8) * 3)
    with pytest.raises(ValueError, match="B×3×H×W"):
        edge_density(torch.rand(1, 2, 8, 8))


def test_occlusion_share_of_overlapping_boxes() -> None:
    two = torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 6.0, 6.0]])  # 16 + 16 − 4 = 28 px, 4 covered twice
    apart = torch.tensor([[0.0, 0.0, 4.0, 4.0], [8.0, 8.0, 10.0, 10.0]])
    shares = occlusion_share([two, apart, torch.zeros(0, 4)], (H, W))
    torch.testing.assert_close(shares, torch.tensor([4 / 28, 0.0, 0.0]))


def test_box_pixel_ranges_rules() -> None:
    boxes = torch.tensor(
        [
            [2.0, 3.0, 5.0, 7.0],  # integer box: columns 2..4, rows 3..6
            [3.6, 3.6, 3.9, 3.9],  # tiny: no pixel centre inside → the pixel holding its centre
            [-5.0, -5.0, 100.0, 2.0],  # clipped to the grid
            [4.0, 4.0, 4.0, 9.0],  # zero area: skipped
            [20.0, 20.0, 30.0, 30.0],  # outside: skipped
        ]
    )
    assert box_pixel_ranges(boxes, (H, W)) == [(2, 3, 5, 7), (3, 3, 4, 4), (0, 0, 16, 2)]
    with pytest.raises(ValueError, match="x2 >= x1"):
        box_pixel_ranges(torch.tensor([[5.0, 0.0, 2.0, 3.0]]), (H, W))


def test_weights_outside_and_inside_boxes() -> None:
    dsaf = DSAF()
    global_logits, local_logits, prior_logits = branches(2)
    boxes = [torch.tensor([[2.0, 2.0, 6.0, 6.0]]), torch.zeros(0, 4)]
    out = dsaf(global_logits, local_logits, prior_logits, torch.tensor([0.1, 0.9]), boxes)
    assert out.scene == ["simple", "complex"]
    inside = torch.zeros(2, 1, H, W, dtype=torch.bool)
    inside[0, :, 2:6, 2:6] = True
    for i, name in enumerate(out.scene):
        alpha0, beta0, gamma0 = WEIGHT_TABLE[name]
        outside = ~inside[i]
        assert (out.alpha[i][outside] == alpha0).all()
        assert (out.beta[i][outside] == beta0).all()
        assert (out.gamma[i][outside] == gamma0).all()
        assert (out.delta_beta[i][outside] == 0).all()
    delta = out.delta_beta[inside]
    assert (delta > 0).all()
    assert (out.alpha[inside] < 0.6).all() and (out.beta[inside] > 0.2).all()
    torch.testing.assert_close(out.alpha[inside], 0.6 * (1 - delta))
    torch.testing.assert_close(out.beta[inside], 0.2 * (1 + delta))
    torch.testing.assert_close(out.gamma[inside], 0.1 * (1 + 0.5 * delta))
    expected = out.alpha * global_logits + out.beta * local_logits + out.gamma * prior_logits
    torch.testing.assert_close(out.logits, expected)


def test_delta_beta_is_eq6_with_entropy_ambiguity() -> None:
    dsaf = DSAF(size_weight=-4.0, ambiguity_weight=3.0, bias=-1.0)
    global_logits = torch.zeros(1, K, H, W)  # uniform → normalised entropy 1
    global_logits[0, 0, 8:12, :] = 50.0  # confident rows → entropy 0
    boxes = [torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 8.0, 8.0, 12.0]])]
    out = dsaf(global_logits, *branches()[1:], torch.tensor([0.5]), boxes)
    uncertain = torch.sigmoid(torch.tensor(-4.0 * 16 / 256 + 3.0 * 1.0 - 1.0))
    confident = torch.sigmoid(torch.tensor(-4.0 * 32 / 256 + 3.0 * 0.0 - 1.0))
    torch.testing.assert_close(out.delta_beta[0, 0, 0, 0], uncertain)
    torch.testing.assert_close(out.delta_beta[0, 0, 9, 5], confident)


def test_global_probs_replace_the_softmax_for_ambiguity() -> None:
    dsaf = DSAF()
    global_logits, local_logits, prior_logits = branches()
    boxes = [torch.tensor([[0.0, 0.0, 4.0, 4.0]])]
    confident = torch.zeros(1, K, H, W)
    confident[:, 0] = 1
    out = dsaf(global_logits, local_logits, prior_logits, torch.tensor([0.5]), boxes, global_probs=confident)
    expected = torch.sigmoid(dsaf.a * 16 / 256 + dsaf.c)  # A = 0
    torch.testing.assert_close(out.delta_beta[0, 0, 0, 0], expected.detach())


def test_overlapping_boxes_take_the_largest_delta() -> None:
    dsaf = DSAF()  # a < 0: the small box gets the larger Δβ
    large, small = [0.0, 0.0, 12.0, 12.0], [4.0, 4.0, 6.0, 6.0]
    global_logits, local_logits, prior_logits = branches()
    complexity = torch.tensor([0.5])
    both = dsaf(global_logits, local_logits, prior_logits, complexity, [torch.tensor([large, small])])
    alone = dsaf(global_logits, local_logits, prior_logits, complexity, [torch.tensor([small])])
    only_large = dsaf(global_logits, local_logits, prior_logits, complexity, [torch.tensor([large])])
    assert alone.delta_beta[0, 0, 4, 4] > only_large.delta_beta[0, 0, 4, 4]
    torch.testing.assert_close(both.delta_beta[0, 0, 4:6, 4:6], alone.delta_beta[0, 0, 4:6, 4:6])
    torch.testing.assert_close(both.delta_beta[0, 0, 0, 0], only_large.delta_beta[0, 0, 0, 0])


def test_gradient_reaches_a_b_c() -> None:
    dsaf = DSAF()
    global_logits, local_logits, prior_logits = branches()
    boxes = [torch.tensor([[1.0, 1.0, 5.0, 7.0], [6.0, 6.0, 14.0, 10.0]])]
    out = dsaf(global_logits, local_logits, prior_logits, torch.tensor([0.5]), boxes)
    (out.logits * torch.randn_like(out.logits)).sum().backward()
    for name in ("a", "b", "c"):
        grad = getattr(dsaf, name).grad
        assert grad is not None and grad.abs() > 0 and math.isfinite(grad.item()), name


def test_dsaf_rejects_mismatched_inputs() -> None:
    dsaf = DSAF()
    global_logits, local_logits, prior_logits = branches()
    boxes = [torch.zeros(0, 4)]
    with pytest.raises(ValueError, match="local shape"):
        dsaf(global_logits, local_logits[:, :2], prior_logits, torch.tensor([0.5]), boxes)
    with pytest.raises(ValueError, match="one box tensor per image"):
        dsaf(global_logits, local_logits, prior_logits, torch.tensor([0.5]), boxes * 2)
    with pytest.raises(ValueError, match="complexity scores"):
        dsaf(global_logits, local_logits, prior_logits, torch.tensor([0.5, 0.5]), boxes)
    with pytest.raises(ValueError, match="N×4"):
        dsaf(global_logits, local_logits, prior_logits, torch.tensor([0.5]), [torch.zeros(2, 5)])
