"""Light CRF: identity at 0 iterations, edge-aware refinement of blurred logits, denoising on a flat image,
per-image window sizes, the complexity → window rule, and input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from rgbxseg.models.layers.crf import LightCRF, crf_window

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

H, W = 48, 48
RED = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1)
BLUE = torch.tensor([0.1, 0.3, 0.8]).view(3, 1, 1)


def squares() -> Tensor:
    """H×W two-class map: a few squares (class 1) whose corners a blur rounds off."""
    truth = torch.zeros(H, W, dtype=torch.long)
    for y, x, size in [(6, 6, 10), (6, 28, 6), (26, 10, 8), (28, 30, 12), (40, 4, 5)]:
        truth[y : y + size, x : x + size] = 1
    return truth


def blurred_logits(truth: Tensor, kernel: int = 5) -> Tensor:
    """1×2×H×W logits: a box blur of the one-hot truth, scaled to ±4."""
    onehot = F.one_hot(truth, 2).permute(2, 0, 1).float()[None]
    return 4 * (2 * F.avg_pool2d(onehot, kernel, 1, kernel // 2, count_include_pad=False) - 1)


def accuracy(logits: Tensor, truth: Tensor) -> float:
    return (logits.argmax(1)[0] == truth).float().mean().item()


def test_shape_finite_and_gradient() -> None:
    logits = torch.randn(2, 4, 17, 23, requires_grad=True)
    out = LightCRF()(logits, torch.rand(2, 3, 17, 23))
    assert out.shape == (2, 4, 17, 23)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.exp().sum(1), torch.ones(2, 17, 23))  # log Q: a distribution per pixel
    out[:, 0].sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_zero_iterations_is_log_softmax() -> None:
    logits = torch.randn(2, 3, 9, 11)
    out = LightCRF(iterations=0)(logits, torch.rand(2, 3, 9, 11))
    torch.testing.assert_close(out, F.log_softmax(logits, 1))


def test_colour_edges_sharpen_blurred_logits() -> None:
    truth = squares()
    image = torch.where(truth.bool(), RED, BLUE)[None]
    logits = blurred_logits(truth)
    before = accuracy(logits, truth)
    after = accuracy(LightCRF()(logits, image, 5), truth)
    colourless = accuracy(LightCRF()(logits, torch.full_like(image, 0.5), 5), truth)
    assert before < 0.98  # the blur rounds the corners off
    assert 1 - after < 0.5 * (1 - before)  # the CRF recovers more than half of the wrong pixels
    assert after > colourless  # and it is the appearance kernel that does it


def test_flat_image_removes_label_noise() -> None:
    truth = torch.zeros(H, W, dtype=torch.long)
    truth[:, W // 2 :] = 1
    sign = 2 * truth.float() - 1
    logits = 0.5 * torch.stack([-sign, sign])[None] + torch.randn(1, 2, H, W)
    before = accuracy(logits, truth)
    after = accuracy(LightCRF()(logits, torch.full((1, 3, H, W), 0.5), 5), truth)
    assert before < 0.85
    assert after > before + 0.1


def test_window_per_image() -> None:
    crf = LightCRF()
    logits, image = torch.randn(3, 3, 12, 14), torch.rand(3, 3, 12, 14)
    out = crf(logits, image, [1, 5, 3])
    torch.testing.assert_close(out[0], F.log_softmax(logits[0], 0))  # a 1×1 window has no neighbours
    torch.testing.assert_close(out[1:2], crf(logits[1:2], image[1:2], 5))
    torch.testing.assert_close(out[2:3], crf(logits[2:3], image[2:3], 3))
    assert not torch.allclose(out[1], crf(logits[1:2], image[1:2], 3)[0])  # the window size matters


def test_crf_window_follows_scene_class() -> None:
    assert crf_window(torch.tensor([0.1, 0.3, 0.5, 0.7, 0.71])) == [7, 5, 5, 5, 3]


@pytest.mark.parametrize(
    ("window", "message"), [(4, "odd positive"), (0, "odd positive"), ([3], "one per image"), ([3, 2], "odd")]
)
def test_rejects_bad_windows(window: int | list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LightCRF()(torch.randn(2, 2, 8, 8), torch.rand(2, 3, 8, 8), window)


def test_rejects_mismatched_image_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="must match the logits"):
        LightCRF()(torch.randn(1, 2, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="iterations"):
        LightCRF(iterations=-1)
    with pytest.raises(ValueError, match="thetas"):
        LightCRF(theta_beta=0.0)
