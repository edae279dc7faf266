"""LMMF (DAMCSeg III.B): modality encoder pyramid and normalisation, modal adaptive attention (eqs. 1-2)
against a hand computation, missing-modality complementation (eq. 3) and its loss, and LMMF's
per-sample absence, modality dropout and odd-size handling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from rgbxseg.models.damcseg.lmmf import (
    LMMF,
    EncodedModalities,
    MissingModalityComplementation,
    ModalAdaptiveAttention,
    ModalityEncoder,
)

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

H, W = 37, 45  # odd input size
WIDTHS = (8, 8, 16, 16)
RGB_CHANNELS = (8, 16, 16, 24)


def pyramid_sizes(strides: tuple[int, ...], h: int = H, w: int = W) -> list[tuple[int, int]]:
    """Sizes produced by 3×3 'same' convs: each stride-2 step rounds up."""
    sizes, previous = [], 1
    for stride in strides:
        for _ in range(int(math.log2(stride // previous))):
            h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
        previous = stride
    return sizes


def rgb_pyramid(batch: int, strides: tuple[int, ...] = (4, 8, 16, 32)) -> list[Tensor]:
    return [torch.randn(batch, c, h, w) for c, (h, w) in zip(RGB_CHANNELS, pyramid_sizes(strides))]




def run_lmmf(lmmf: LMMF, rgb: list[Tensor], encoded: EncodedModalities) -> tuple[list[Tensor], Tensor]:
    """Fuse every level the way the DAMCSeg model does; total reconstruction loss = mean over levels."""
    fused, losses = [], []
    for level, x in enumerate(rgb):
        out, rec = lmmf.fuse(level, x, encoded)
        fused.append(out)
        losses.append(rec)
    return fused, torch.stack(losses).mean()


# --- ModalityEncoder --------------------------------------------------------------------------------


@pytest.mark.parametrize("strides", [(4, 8, 16, 32), (4, 8, 16, 16)])
def test_modality_encoder_pyramid_at_odd_size(strides: tuple[int, ...]) -> None:
    encoder = ModalityEncoder(1, WIDTHS, strides)
    maps = encoder(torch.rand(2, 1, H, W))
    assert [m.shape[1] for m in maps] == list(WIDTHS)
    assert [tuple(m.shape[-2:]) for m in maps] == pyramid_sizes(strides)


def test_modality_encoder_dilates_instead_of_striding() -> None:
    last = ModalityEncoder(1, WIDTHS, (4, 8, 16, 16)).blocks[-1]
    assert (last[0][0].stride, last[0][0].dilation, last[1][0].dilation) == ((1, 1), (2, 2), (4, 4))
    strided = ModalityEncoder(1, WIDTHS).blocks[-1]
    assert (strided[0][0].stride, strided[0][0].dilation, strided[1][0].dilation) == ((2, 2), (1, 1), (2, 2))


def test_modality_encoder_normalises_sensor_maps() -> None:
    encoder = ModalityEncoder(2, WIDTHS).eval()
    x = torch.rand(1, 2, 16, 16)
    expected = (x - 0.5) / 0.25
    for block in encoder.blocks:
        expected = block(expected)
    torch.testing.assert_close(encoder(x)[-1], expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strides": (2, 4, 8, 16)}, "start at 4"),
        ({"strides": (4, 16, 32, 64)}, "stay or double"),
        ({"widths": (8, 8, 16)}, "one positive width per stride"),
    ],
)
def test_modality_encoder_rejects_bad_configuration(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModalityEncoder(1, **{"widths": WIDTHS, **kwargs})


def test_modality_encoder_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match="B×1×H×W"):
        ModalityEncoder(1, WIDTHS)(torch.rand(1, 3, 16, 16))


# --- ModalAdaptiveAttention -------------------------------------------------------------------------


def test_attention_matches_equations_1_and_2() -> None:
    attention = ModalAdaptiveAttention(8, {"depth": 4, "thermal": 6}, heads=4)
    rgb = torch.randn(2, 8, 5, 7)
    modalities = {"depth": torch.randn(2, 4, 5, 7), "thermal": torch.randn(2, 6, 5, 7)}
    weights = attention.weights(rgb, modalities)
    assert set(weights) == {"rgb", "depth", "thermal"}
    for name, feature in (("rgb", rgb), *modalities.items()):
        projected = feature if name == "rgb" else attention.projections[name](feature)
        torch.testing.assert_close(weights[name], torch.sigmoid(attention.gates[name](projected)))  # eq. 1
    expected = rgb * weights["rgb"].repeat_interleave(2, dim=1)  # 8 channels / 4 heads
    for name, feature in modalities.items():
        expected = expected + attention.projections[name](feature) * weights[name].repeat_interleave(2, dim=1)
    torch.testing.assert_close(attention(rgb, modalities), expected)  # eq. 2


def test_attention_weights_in_open_unit_interval_and_grads() -> None:
    attention = ModalAdaptiveAttention(16, {"depth": 8})
    rgb, depth = torch.randn(2, 16, 9, 11), torch.randn(2, 8, 9, 11)
    for weight in attention.weights(rgb, {"depth": depth}).values():
        assert weight.shape == (2, 8, 9, 11)
        assert bool(((weight > 0) & (weight < 1)).all())
    depth.requires_grad_(True)
    out = attention(rgb, {"depth": depth})
    (out * torch.randn_like(out)).sum().backward()
    assert all(p.grad is not None for p in attention.parameters())
    assert float(attention.projections["depth"][1].weight.grad.abs().sum()) > 0


def test_attention_starts_keeping_rgb_and_counting_sensors() -> None:
    attention = ModalAdaptiveAttention(8, {"depth": 4}, heads=8)
    rgb = 0.01 * torch.randn(2, 8, 6, 6)  # W·F ≈ 0: the weights are the sigmoid of the biases
    depth = torch.randn(2, 4, 6, 6)
    weights = attention.weights(rgb, {"depth": depth})
    expected = torch.full_like(weights["rgb"], torch.sigmoid(torch.tensor(2.0)).item())
    torch.testing.assert_close(weights["rgb"], expected, atol=0.02, rtol=0)
    without_depth = rgb * attention.weights(rgb, {"depth": torch.zeros(2, 4, 6, 6)})["rgb"]
    assert float((attention(rgb, {"depth": depth}) - without_depth).abs().mean()) > 0.1  # the sensor counts at once


def test_attention_heads_must_divide_channels() -> None:
    with pytest.raises(ValueError, match=r"heads \(8\) must divide rgb_channels \(12\)"):
        ModalAdaptiveAttention(12, {"depth": 4}, heads=8)


def test_attention_needs_every_modality() -> None:
    attention = ModalAdaptiveAttention(8, {"depth": 4, "thermal": 4})
    with pytest.raises(ValueError, match="missing \\['thermal'\\]"):
        attention(torch.randn(1, 8, 4, 4), {"depth": torch.randn(1, 4, 4, 4)})
    with pytest.raises(ValueError, match="features must be 1×4×4×4"):
        attention(torch.randn(1, 8, 4, 4), {"depth": torch.randn(1, 4, 3, 4), "thermal": torch.randn(1, 4, 4, 4)})


# --- MissingModalityComplementation -----------------------------------------------------------------


def test_complementation_replaces_only_absent_samples() -> None:
    mcn = MissingModalityComplementation(8, {"depth": 4, "thermal": 6})
    rgb = torch.randn(2, 8, 5, 5)
    features = {"depth": torch.randn(2, 4, 5, 5), "thermal": torch.randn(2, 6, 5, 5)}
    present = {"depth": torch.tensor([True, True]), "thermal": torch.tensor([True, False])}
    complete, loss = mcn(rgb, features, present)
    torch.testing.assert_close(complete["depth"], features["depth"])
    torch.testing.assert_close(complete["thermal"][0], features["thermal"][0])
    assert not torch.allclose(complete["thermal"][1], features["thermal"][1])
    # absent sample's real features change nothing: neither the prediction nor the loss
    perturbed = {**features, "thermal": features["thermal"].clone()}
    perturbed["thermal"][1] += 100.0
    complete2, loss2 = mcn(rgb, perturbed, present)
    torch.testing.assert_close(complete2["thermal"], complete["thermal"])
    torch.testing.assert_close(loss2, loss)


def test_complementation_loss_is_mse_over_present_samples() -> None:
    mcn = MissingModalityComplementation(8, {"depth": 4})
    rgb, depth = torch.randn(3, 8, 4, 4), torch.randn(3, 4, 4, 4)
    present = {"depth": torch.tensor([True, False, True])}
    _, loss = mcn(rgb, {"depth": depth}, present)
    prediction = mcn.predictors["depth"](rgb)
    torch.testing.assert_close(loss, ((prediction - depth)[[0, 2]] ** 2).mean())
    _, none = mcn(rgb, {"depth": depth}, {"depth": torch.zeros(3, dtype=torch.bool)})
    assert float(none) == 0.0


def test_complementation_learns_to_reconstruct() -> None:
    mcn = MissingModalityComplementation(8, {"depth": 4, "thermal": 4})
    rgb = torch.randn(4, 8, 6, 6)
    with torch.no_grad():
        features = {"depth": torch.relu(nn.Conv2d(8, 4, 1)(rgb)), "thermal": torch.relu(-rgb[:, :4])}
    present = {"depth": torch.tensor([True, True, False, True]), "thermal": torch.tensor([True, False, True, True])}
    optimiser = torch.optim.Adam(mcn.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        _, loss = mcn(rgb, features, present)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_complementation_rejects_bad_present_mask() -> None:
    mcn = MissingModalityComplementation(8, {"depth": 4})
    with pytest.raises(ValueError, match="bool of shape \\(2,\\)"):
        mcn(torch.randn(2, 8, 4, 4), {"depth": torch.randn(2, 4, 4, 4)}, {"depth": torch.ones(2)})


# --- LMMF -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [("depth",), ("depth", "thermal")])
def test_lmmf_shapes_at_odd_sizes(names: tuple[str, ...]) -> None:
    lmmf = LMMF(RGB_CHANNELS, dict.fromkeys(names, 1), WIDTHS, heads=8, dropout=0.0)
    encoded = lmmf.encode({name: torch.rand(2, 1, H, W) for name in names})
    # the RGB encoder of a padded input rounds differently: stride-16/32 maps one pixel larger
    rgb = rgb_pyramid(2)
    rgb[2] = torch.randn(2, RGB_CHANNELS[2], 4, 4)
    rgb[3] = torch.randn(2, RGB_CHANNELS[3], 2, 3)
    fused, rec = run_lmmf(lmmf, rgb, encoded)
    assert [f.shape for f in fused] == [x.shape for x in rgb]
    assert rec.ndim == 0 and torch.isfinite(rec) and rec.item() > 0


def test_lmmf_output_stride_16() -> None:
    strides = (4, 8, 16, 16)
    lmmf = LMMF(RGB_CHANNELS, {"depth": 1}, WIDTHS, strides, heads=4, dropout=0.0)
    encoded = lmmf.encode({"depth": torch.rand(1, 1, H, W)})
    assert [tuple(encoded.features[k]["depth"].shape[-2:]) for k in range(4)] == pyramid_sizes(strides)
    fused, _ = run_lmmf(lmmf, rgb_pyramid(1, strides), encoded)
    assert fused[3].shape == (1, RGB_CHANNELS[3], *pyramid_sizes(strides)[3])


@pytest.mark.parametrize("train", [False, True])
def test_lmmf_absent_sample_uses_prediction_only(train: bool) -> None:
    lmmf = LMMF(RGB_CHANNELS, {"depth": 1, "thermal": 1}, WIDTHS, heads=8, dropout=0.0).train(train)
    rgb = rgb_pyramid(2)
    depth, thermal = torch.rand(2, 1, H, W), torch.rand(2, 1, H, W)
    present = {"thermal": torch.tensor([True, False])}
    fused, rec = run_lmmf(lmmf, rgb, lmmf.encode({"depth": depth, "thermal": thermal}, present))
    perturbed = thermal.clone()
    perturbed[1] = torch.rand(1, H, W)
    fused2, rec2 = run_lmmf(lmmf, rgb, lmmf.encode({"depth": depth, "thermal": perturbed}, present))
    for a, b in zip(fused, fused2):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(rec, rec2)
    if not train:  # in eval mode samples are independent: sample 0 is as with thermal present for both
        full, _ = run_lmmf(lmmf, rgb, lmmf.encode({"depth": depth, "thermal": thermal}))
        for a, b in zip(fused, full):
            torch.testing.assert_close(a[0], b[0])
            assert not torch.allclose(a[1], b[1])  # sample 1 got the prediction, not its real thermal


def test_lmmf_failed_sensors_fall_back_to_predictions() -> None:
    lmmf = LMMF(RGB_CHANNELS, {"depth": 1, "thermal": 1}, WIDTHS).eval()
    rgb = rgb_pyramid(2)
    depth = torch.rand(2, 1, H, W)
    left_out = lmmf.encode({"depth": depth})
    absent = {"thermal": torch.zeros(2, dtype=torch.bool)}
    marked = lmmf.encode({"depth": depth, "thermal": torch.rand(2, 1, H, W)}, absent)
    assert "thermal" not in left_out.features[0] and "thermal" not in marked.features[0]
    for a, b in zip(run_lmmf(lmmf, rgb, left_out)[0], run_lmmf(lmmf, rgb, marked)[0]):
        torch.testing.assert_close(a, b)
    fused, rec = run_lmmf(lmmf, rgb, lmmf.encode({}))  # every sensor failed: RGB plus predictions
    assert [f.shape for f in fused] == [x.shape for x in rgb] and float(rec) == 0.0


def test_lmmf_dropout_only_in_training() -> None:
    lmmf = LMMF(RGB_CHANNELS, {"depth": 1, "thermal": 1}, WIDTHS, dropout=0.5)
    inputs = {"depth": torch.rand(64, 1, 8, 8), "thermal": torch.rand(64, 1, 8, 8)}
    kept = torch.stack(list(lmmf.train().encode(inputs).present.values()))
    assert 0.3 < kept.float().mean() < 0.7
    assert bool(torch.stack(list(lmmf.eval().encode(inputs).present.values())).all())
    always = LMMF(RGB_CHANNELS, {"depth": 1}, WIDTHS, dropout=1.0).train()
    encoded = always.encode({"depth": torch.rand(2, 1, 8, 8)})
    assert not bool(encoded.present["depth"].any()) and not encoded.features[0]


def test_lmmf_gradients_reach_every_part() -> None:
    lmmf = LMMF(RGB_CHANNELS, {"depth": 1, "thermal": 1}, WIDTHS, dropout=0.0).train()
    present = {"depth": torch.tensor([True, False, True]), "thermal": torch.tensor([False, True, True])}
    encoded = lmmf.encode({"depth": torch.rand(3, 1, H, W), "thermal": torch.rand(3, 1, H, W)}, present)
    fused, rec = run_lmmf(lmmf, rgb_pyramid(3), encoded)
    (sum((f * torch.randn_like(f)).sum() for f in fused) + rec).backward()
    missing = [name for name, p in lmmf.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"


def test_lmmf_input_errors() -> None:
    with pytest.raises(ValueError, match="at least one modality"):
        LMMF(RGB_CHANNELS, {}, WIDTHS)
    lmmf = LMMF(RGB_CHANNELS, {"depth": 1}, WIDTHS).eval()
    with pytest.raises(ValueError, match="unknown modalities \\['lidar'\\]"):
        lmmf.encode({"lidar": torch.rand(1, 1, 8, 8)})
    with pytest.raises(ValueError, match="B×1×H×W"):
        lmmf.encode({"depth": torch.rand(1, 2, 8, 8)})
    with pytest.raises(ValueError, match="no 'depth' input"):
        lmmf.encode({}, {"depth": torch.tensor([True])})
    encoded = lmmf.encode({"depth": torch.rand(2, 1, 16, 16)})
    with pytest.raises(ValueError, match="level must be in \\[0, 4\\)"):
        lmmf.fuse(4, torch.randn(2, 24, 1, 1), encoded)
    with pytest.raises(ValueError, match="batch size 2, RGB features have 3"):
        lmmf.fuse(0, torch.randn(3, 8, 4, 4), encoded)
