"""Temperature scaling (Guo et al. 2017) and entropy uncertainty: T recovered on synthetic over-confident
logits, ECE repaired, argmax untouched, the wrapper on a real model, pixel collection over a real split."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rgbxseg.data import SyntheticStreets, collate
from rgbxseg.data.sample import IGNORE_INDEX, RawSample
from rgbxseg.engine.inference import predict_logits
from rgbxseg.metrics import CalibrationError
from rgbxseg.models import create_model
from rgbxseg.temperature import TemperatureScaled, collect_logits, fit_temperature
from rgbxseg.uncertainty import entropy_map

pytestmark = pytest.mark.usefixtures("one_thread")


def calibrated_pixels(n: int = 100_000, num_classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """K×N logits of a known model and N labels drawn from its own softmax: calibrated by construction."""
    generator = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(num_classes, n, generator=generator)
    labels = torch.multinomial(logits.t().softmax(1), 1, generator=generator).squeeze(1)
    return logits, labels


def ece(logits: torch.Tensor, labels: torch.Tensor) -> float:
    metric = CalibrationError(n_bins=15)
    metric.update(logits.view(1, logits.shape[0], 1, -1), labels.view(1, 1, -1), from_logits=True)
    return float(metric.compute()["ECE"])


# ------------------------------------------------------------------------------------ fit_temperature


def test_recovers_the_over_confidence_factor_and_repairs_ece() -> None:
    logits, labels = calibrated_pixels()
    over_confident = 5.0 * logits
    temperature = fit_temperature(over_confident, labels)
    assert temperature == pytest.approx(5.0, rel=0.10)
    before, after = ece(over_confident, labels), ece(over_confident / temperature, labels)
    assert before > 10.0  # the test data really is badly calibrated
    assert after < 2.0
    assert torch.equal((over_confident / temperature).argmax(0), over_confident.argmax(0))


def test_under_confident_logits_get_a_temperature_below_one() -> None:
    logits, labels = calibrated_pixels(seed=1)
    assert fit_temperature(logits / 2.0, labels) == pytest.approx(0.5, rel=0.10)


def test_calibrated_logits_keep_a_temperature_near_one() -> None:
    logits, labels = calibrated_pixels(seed=2)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.05)


def test_separable_pixels_give_a_bounded_positive_temperature() -> None:
    logits = torch.tensor([[3.0, -1.0, 0.5], [0.0, 2.0, -4.0]])
    temperature = fit_temperature(logits, logits.argmax(0))  # NLL keeps falling as T -> 0
    assert 0.01 <= temperature < 0.5 and math.isfinite(temperature)


def test_inference_mode_logits_are_accepted() -> None:
    logits, labels = calibrated_pixels(n=2_000, seed=3)
    with torch.inference_mode():
        frozen = 3.0 * logits.clone()
    assert fit_temperature(frozen, labels) == pytest.approx(3.0, rel=0.25)


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (torch.zeros(3, 0), torch.zeros(0, dtype=torch.int64), "no pixels"),
        (torch.tensor([[0.0, math.nan], [1.0, 0.0]]), torch.tensor([0, 1]), "finite"),
        (torch.tensor([[0.0, math.inf], [1.0, 0.0]]), torch.tensor([0, 1]), "finite"),
        (torch.zeros(3, 4), torch.zeros(5, dtype=torch.int64), "4 pixels of logits but 5 labels"),
        (torch.zeros(3, 2), torch.tensor([0, IGNORE_INDEX]), r"class ids in \[0, 3\)"),
        (torch.zeros(1, 2), torch.tensor([0, 0]), "at least 2 classes"),
        (torch.zeros(3, 4, 5), torch.zeros(4, dtype=torch.int64), "K×N"),
        (torch.zeros(3, 2), torch.zeros(2), "integer"),
    ],
)
def test_bad_inputs_are_refused(logits: torch.Tensor, labels: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_temperature(logits, labels)


# ------------------------------------------------------------------------------------- argmax unchanged


def test_argmax_is_identical_on_random_logits() -> None:
    generator = torch.Generator().manual_seed(4)
    logits = 3.0 * torch.randn(2, 7, 40, 30, generator=generator)
    for temperature in (0.01, 0.3, 1.0, 2.7, 100.0):
        assert torch.equal((logits / temperature).argmax(1), logits.argmax(1))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(-1e4, 1e4, width=32), min_size=2, max_size=12),
    temperature=st.floats(1e-2, 1e2),
)
def test_scaling_never_reverses_an_order(values: list[float], temperature: float) -> None:
    """Correctly rounded division is monotone: the original argmax stays a maximum after scaling, and is
    the argmax whenever the scaled maximum is unique (only logits within an ulp can round to a tie)."""
    logits = torch.tensor(values, dtype=torch.float32)
    scaled = logits / torch.tensor(temperature, dtype=torch.float32)
    top = int(logits.argmax())
    assert scaled[top] == scaled.max()
    if int((scaled == scaled.max()).sum()) == 1:
        assert int(scaled.argmax()) == top


# ------------------------------------------------------------------------------------------ entropy_map


def test_entropy_is_zero_for_one_hot_and_one_for_uniform_logits() -> None:
    one_hot = torch.full((4, 6, 5), -1000.0)
    one_hot[2] = 1000.0
    assert torch.equal(entropy_map(one_hot), torch.zeros(6, 5))
    uniform = torch.full((2, 4, 6, 5), 3.25)
    torch.testing.assert_close(entropy_map(uniform), torch.ones(2, 6, 5))


def test_entropy_matches_the_definition_and_stays_in_range() -> None:
    logits = 4.0 * torch.randn(2, 6, 8, 9, generator=torch.Generator().manual_seed(5))
    probs = logits.double().softmax(1)
    expected = (-(probs * probs.log()).sum(1) / math.log(6)).float()
    entropy = entropy_map(logits)
    torch.testing.assert_close(entropy, expected, atol=1e-5, rtol=0)
    assert entropy.shape == (2, 8, 9) and entropy.dtype == torch.float32
    assert float(entropy.min()) >= 0 and float(entropy.max()) <= 1
    assert bool((entropy_map(logits / 5.0) >= entropy - 1e-6).all())  # a higher temperature is less sure


def test_entropy_refuses_bad_logits() -> None:
    with pytest.raises(ValueError, match="finite"):
        entropy_map(torch.tensor([[[math.nan]], [[0.0]]]))
    with pytest.raises(ValueError, match="K×H×W"):
        entropy_map(torch.zeros(3, 4))
    assert torch.equal(entropy_map(torch.randn(1, 3, 4)), torch.zeros(3, 4))  # one class: nothing to doubt


# ------------------------------------------------------------------------------------ TemperatureScaled


def test_temperature_scaled_divides_a_real_model_logits() -> None:
    torch.manual_seed(0)
    model = create_model("deeplabv3plus", 3, pretrained=False, modalities={"depth": 1}).eval()
    wrapped = TemperatureScaled(model, 2.5).eval()
    image, depth = torch.rand(2, 3, 40, 56), torch.rand(2, 1, 40, 56)
    present = {"depth": torch.tensor([True, False])}
    with torch.inference_mode():
        expected = model(image, {"depth": depth}, present)
        scaled = wrapped(image, {"depth": depth}, present)
        through_inference = predict_logits(wrapped, image, {"depth": depth}, present=present)
    torch.testing.assert_close(scaled, expected / 2.5)
    torch.testing.assert_close(through_inference, expected / 2.5)
    assert torch.equal(scaled.argmax(1), expected.argmax(1))
    assert float(wrapped.state_dict()["temperature"]) == 2.5 and "temperature=2.5" in repr(wrapped)


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, math.inf, True, "2"])
def test_temperature_scaled_refuses_a_non_positive_temperature(temperature: object) -> None:
    with pytest.raises(ValueError, match="temperature"):
        TemperatureScaled(torch.nn.Identity(), temperature)  # type: ignore[arg-type]


class TrainingOutput(torch.nn.Module):
    """Stands in for DAMCSeg in training mode, whose forward returns a structure, not logits."""

    def forward(self, image: torch.Tensor, modalities: object = None, present: object = None) -> dict:
        return {"logits": image}


def test_temperature_scaled_refuses_training_outputs() -> None:
    wrapped = TemperatureScaled(TrainingOutput(), 2.0)
    with pytest.raises(TypeError, match="call .eval"):
        wrapped(torch.zeros(1, 3, 4, 4))


# --------------------------------------------------------------------------------------- collect_logits


def ignore_left_columns(raw: RawSample) -> RawSample:
    """Mark the 10 leftmost columns and every 7th row as ignored."""
    label = raw.label.copy()
    label[:, :10] = IGNORE_INDEX
    label[::7] = IGNORE_INDEX
    return dataclasses.replace(raw, label=label)


@pytest.fixture(scope="module")
def split() -> SyntheticStreets:
    return SyntheticStreets(4, (64, 96), seed=5, transform=ignore_left_columns)


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("deeplabv3plus", 9, pretrained=False, modalities={"depth": 1, "thermal": 1})


def reference_pixels(model: torch.nn.Module, split: SyntheticStreets) -> tuple[torch.Tensor, torch.Tensor]:
    """Every labelled pixel's logits (K×N) and label, in data order, computed directly."""
    batch = collate([split[i] for i in range(len(split))])
    with torch.inference_mode():
        logits = predict_logits(model.eval(), batch.image, batch.modalities, present=batch.present)
    keep = batch.label != IGNORE_INDEX
    return logits.permute(1, 0, 2, 3)[:, keep], batch.label[keep]


def test_collect_logits_keeps_every_labelled_pixel(split: SyntheticStreets, tiny_model: torch.nn.Module) -> None:
    tiny_model.train()
    logits, labels = collect_logits(tiny_model, split, "cpu", batch_size=4)
    assert tiny_model.training  # mode restored
    expected_logits, expected_labels = reference_pixels(tiny_model, split)
    labelled = sum(int((split.raw(i).label != IGNORE_INDEX).sum()) for i in range(len(split)))
    assert logits.shape == (9, labelled) and labels.shape == (labelled,)
    assert logits.dtype == torch.float32 and labels.dtype == torch.int64
    assert torch.equal(labels, expected_labels) and bool((labels != IGNORE_INDEX).all())
    torch.testing.assert_close(logits, expected_logits)
    assert fit_temperature(logits, labels) == 100.0  # an untrained model: uniform beats it, T at its bound


class PositionModel(torch.nn.Module):
    """Logits that name their pixel: channel 0 = how many images came before, 1 = row, 2 = column."""

    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def forward(self, image: torch.Tensor, modalities: object = None, present: object = None) -> torch.Tensor:
        b, _, h, w = image.shape
        logits = torch.zeros(b, 9, h, w)
        logits[:, 0] = (self.images + torch.arange(b, dtype=torch.float32)).view(b, 1, 1)
        logits[:, 1] = torch.arange(h, dtype=torch.float32).view(h, 1)
        logits[:, 2] = torch.arange(w, dtype=torch.float32)
        self.images += b
        return logits


def test_collect_logits_subsamples_uniformly_and_reproducibly(split: SyntheticStreets) -> None:
    logits, labels = collect_logits(PositionModel(), split, "cpu", batch_size=3, max_pixels=2_000, seed=3)
    assert logits.shape == (9, 2_000) and labels.shape == (2_000,)
    image, row, column = logits[:3].long()
    truth = torch.stack([torch.from_numpy(split.raw(i).label) for i in range(len(split))])
    assert torch.equal(labels, truth[image, row, column])  # every kept pixel is a real labelled pixel
    assert bool((column >= 10).all()) and bool((row % 7 != 0).all()) and bool((labels != IGNORE_INDEX).all())
    flat = (image * 64 + row) * 96 + column
    assert bool((flat.diff() > 0).all())  # distinct pixels, kept in data order
    per_image = torch.bincount(image, minlength=len(split))
    assert bool((per_image > 400).all()), per_image  # ~500 from each image, not the first 2000 pixels
    rows = torch.bincount(row, minlength=64)[1:].float()  # labelled rows, spread over the whole height
    assert float(rows[:32].sum()) == pytest.approx(float(rows[32:].sum()), rel=0.25)
    again = collect_logits(PositionModel(), split, "cpu", batch_size=1, max_pixels=2_000, seed=3)[0]
    other = collect_logits(PositionModel(), split, "cpu", batch_size=3, max_pixels=2_000, seed=4)[0]
    assert torch.equal(again, logits) and not torch.equal(other, logits)
    everything = collect_logits(PositionModel(), split, "cpu", max_pixels=10**9)[1]
    assert everything.numel() == int((truth != IGNORE_INDEX).sum())


def test_collect_logits_runs_damcseg(split: SyntheticStreets) -> None:
    torch.manual_seed(0)
    model = create_model(
        "damcseg", 9, pretrained=False, modalities={"depth": 1, "thermal": 1}, thing_classes=split.thing_classes
    )
    subset = SyntheticStreets(2, (64, 96), seed=5, transform=ignore_left_columns, modalities=("depth",))
    logits, labels = collect_logits(model, subset, "cpu", batch_size=2, max_pixels=500)
    assert logits.shape == (9, 500) and bool(torch.isfinite(logits).all()) and int(labels.max()) < 9


def test_collect_logits_refuses_a_split_without_labels(tiny_model: torch.nn.Module) -> None:
    def ignore_all(raw: RawSample) -> RawSample:
        return dataclasses.replace(raw, label=np.full_like(raw.label, IGNORE_INDEX))

    empty = SyntheticStreets(2, (32, 32), transform=ignore_all)
    with pytest.raises(ValueError, match="no labelled pixels"):
        collect_logits(tiny_model, empty, "cpu")
    with pytest.raises(ValueError, match="max_pixels"):
        collect_logits(tiny_model, empty, "cpu", max_pixels=0)


def test_collect_logits_names_the_sample_with_non_finite_logits(split: SyntheticStreets) -> None:
    class Broken(torch.nn.Module):
        def forward(self, image: torch.Tensor, modalities: object = None, present: object = None) -> torch.Tensor:
            logits = torch.zeros(image.shape[0], 9, *image.shape[2:])
            logits[-1, 0, 0, 0] = math.nan
            return logits

    with pytest.raises(ValueError, match=r"NaN or inf logits on sample\(s\) "):
        collect_logits(Broken(), split, "cpu", batch_size=2)
