"""CalibrationError: cross-checked against torchmetrics, and hand cases with known ECE/MCE."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from rgbxseg.metrics import CalibrationError

IGNORE = 255


def _two_class_probs(confidences: list[float]) -> torch.Tensor:
    """1×2×1×P probabilities whose top class is 0 with the given confidences (all >= 0.5)."""
    top = torch.tensor(confidences)
    return torch.stack([top, 1 - top]).view(1, 2, 1, -1)


def _random_batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    logits = 2.0 * torch.randn(2, 5, 16, 12, generator=generator)
    target = torch.randint(0, 5, (2, 16, 12), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.1] = IGNORE
    return logits, target


def _flat_pixels(probs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The non-ignored pixels as a P×K matrix and a P vector, torchmetrics' multiclass layout."""
    flat_probs = probs.permute(0, 2, 3, 1).reshape(-1, probs.shape[1])
    flat_target = target.reshape(-1)
    keep = flat_target != IGNORE
    return flat_probs[keep], flat_target[keep]


def test_matches_torchmetrics_ece_and_mce() -> None:
    generator = torch.Generator().manual_seed(0)
    ours = CalibrationError(n_bins=15)
    ece = MulticlassCalibrationError(num_classes=5, n_bins=15, norm="l1")
    mce = MulticlassCalibrationError(num_classes=5, n_bins=15, norm="max")
    pixels = 0
    for _ in range(2):
        logits, target = _random_batch(generator)
        pixels += int((target != IGNORE).sum())
        probs = logits.softmax(1)
        ours.update(probs, target)
        for reference in (ece, mce):
            reference.update(*_flat_pixels(probs, target))
    result = ours.compute()
    assert result["ECE"] / 100 == pytest.approx(float(ece.compute()), abs=1e-6)
    assert result["MCE"] / 100 == pytest.approx(float(mce.compute()), abs=1e-6)
    assert sum(result["bins"]["count"]) == pixels


def test_pixel_count_and_from_logits() -> None:
    generator = torch.Generator().manual_seed(1)
    logits, target = _random_batch(generator)
    from_probs, from_logits = CalibrationError(), CalibrationError()
    from_probs.update(logits.softmax(1), target)
    from_logits.update(logits, target, from_logits=True)
    assert sum(from_probs.compute()["bins"]["count"]) == int((target != IGNORE).sum())
    assert torch.equal(from_probs.count, from_logits.count)
    assert from_logits.compute()["ECE"] == pytest.approx(from_probs.compute()["ECE"], abs=1e-6)


def test_perfectly_calibrated_hand_case() -> None:
    # Four pixels at confidence 0.75 with three right, two at 0.5 with one right: acc_b = conf_b in each bin.
    probs = _two_class_probs([0.75, 0.75, 0.75, 0.75, 0.5, 0.5])
    target = torch.tensor([[[0, 0, 0, 1, 0, 1]]])
    metric = CalibrationError(n_bins=10)
    metric.update(probs, target)
    result = metric.compute()
    assert result["ECE"] == pytest.approx(0.0, abs=1e-12)
    assert result["MCE"] == pytest.approx(0.0, abs=1e-12)
    assert result["bins"]["count"] == [0, 0, 0, 0, 0, 2, 0, 4, 0, 0]
    assert result["bins"]["accuracy"][7] == pytest.approx(0.75)
    assert math.isnan(result["bins"]["accuracy"][0]) and math.isnan(result["bins"]["confidence"][0])


def test_overconfident_hand_case() -> None:
    # Bin 13 (0.867..0.933): four pixels at 0.9, two right -> gap 0.4.
    # Bin 10 (0.667..0.733): four pixels at 0.7, three right -> gap 0.05.
    # ECE = 4/8 · 0.4 + 4/8 · 0.05 = 0.225; MCE = 0.4.
    probs = _two_class_probs([0.9] * 4 + [0.7] * 4)
    target = torch.tensor([[[0, 0, 1, 1, 0, 0, 0, 1]]])
    metric = CalibrationError(n_bins=15)
    metric.update(probs, target)
    result = metric.compute()
    assert result["ECE"] == pytest.approx(22.5, abs=1e-5)
    assert result["MCE"] == pytest.approx(40.0, abs=1e-5)
    assert result["bins"]["count"][13] == 4 and result["bins"]["count"][10] == 4
    assert result["bins"]["lower"][13] == pytest.approx(13 / 15) and result["bins"]["upper"][14] == 1.0


def test_ignored_pixels_and_the_top_bin() -> None:
    probs = _two_class_probs([1.0, 1.0, 0.6])
    target = torch.tensor([[[0, IGNORE, 1]]])
    metric = CalibrationError(n_bins=15)
    metric.update(probs, target)
    result = metric.compute()
    assert result["bins"]["count"][14] == 1  # confidence 1.0 belongs to the top bin [14/15, 1]
    assert sum(result["bins"]["count"]) == 2  # the ignored pixel is not counted
    # Bin 14: conf 1, acc 1; the 0.6 pixel: conf 0.6, acc 0 -> ECE = 1/2 · 0.6.
    assert result["ECE"] == pytest.approx(30.0, abs=1e-5)


def test_unbatched_input_and_reset() -> None:
    probs = _two_class_probs([0.9, 0.7])
    target = torch.tensor([[[0, 1]]])
    batched, unbatched = CalibrationError(), CalibrationError()
    batched.update(probs, target)
    unbatched.update(probs[0], target[0])
    assert torch.equal(batched.count, unbatched.count) and torch.equal(batched.correct, unbatched.correct)
    unbatched.reset()
    result = unbatched.compute()
    assert math.isnan(result["ECE"]) and math.isnan(result["MCE"]) and sum(result["bins"]["count"]) == 0


@pytest.mark.parametrize(
    ("probs", "target", "kwargs", "message"),
    [
        (torch.randn(1, 3, 4, 4) * 5, torch.zeros(1, 4, 4, dtype=torch.long), {}, "from_logits=True"),
        (torch.full((1, 3, 4, 4), math.nan), torch.zeros(1, 4, 4, dtype=torch.long), {"from_logits": True}, "finite"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long), {}, "floating-point"),
        (torch.rand(1, 3, 4, 4), torch.zeros(1, 4, 4), {}, "integer tensor"),
        (torch.rand(1, 3, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long), {}, r"N×K×H×W with target N×H×W"),
        (torch.rand(2, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), {}, r"N×K×H×W with target N×H×W"),
        (torch.rand(1, 3, 4, 4), torch.full((1, 4, 4), 3), {}, r"target class ids must be in \[0, 3\)"),
    ],
)
def test_rejects_bad_inputs(probs: torch.Tensor, target: torch.Tensor, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CalibrationError().update(probs, target, **kwargs)


@pytest.mark.parametrize("n_bins", [0, 2.5, True])
def test_rejects_bad_n_bins(n_bins: object) -> None:
    with pytest.raises(ValueError, match="n_bins"):
        CalibrationError(n_bins=n_bins)  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu() -> None:
    logits, target = _random_batch(torch.Generator().manual_seed(2))
    on_cpu, on_gpu = CalibrationError(), CalibrationError()
    on_cpu.update(logits, target, from_logits=True)
    on_gpu.update(logits.cuda(), target.cuda(), from_logits=True)
    assert on_gpu.count.is_cuda and torch.equal(on_gpu.count.cpu(), on_cpu.count)
    assert on_gpu.compute()["ECE"] == pytest.approx(on_cpu.compute()["ECE"], abs=1e-4)
