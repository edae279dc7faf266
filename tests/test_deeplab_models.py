"""DeepLabV3+ and FMSI-DeepLab end to end on a random-init MobileNetV2: logits at the input size for a
non-multiple-of-32 input, modalities, a training step, deterministic eval, every ablation of the paper's
Tables 2-3, and the all-off FMSI-DeepLab being exactly the DeepLabV3+ baseline."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from rgbxseg.models.base import SegmentationModel
from rgbxseg.models.deeplabv3plus import DeepLabV3Plus
from rgbxseg.models.encoders import Encoder
from rgbxseg.models.fmsi_deeplab import DEEPLAB_RATES, SWITCHES, TABLE3_GROUPS, FMSIDeepLab, ablation_kwargs
from rgbxseg.models.layers import ASPP, GGCA, MSEA, DeformableASPP, InterestFlow

CLASSES, H, W = 5, 70, 90  # 70×90 is not a multiple of the encoder's 32
SMALL = {"aspp_channels": 32, "decoder_channels": 32}  # keeps the ablation sweep fast on a busy CPU
ABLATIONS: dict[str, dict[str, Any]] = {
    **{f"{name}_only": ablation_kwargs(name) for name in SWITCHES},  # one module at a time
    **TABLE3_GROUPS,  # the paper's cumulative groups and the dilation comparison
}


def encoder(extra_channels: int = 0) -> Encoder:
    return Encoder("mobilenet_v2", pretrained=False, extra_channels=extra_channels)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


pytestmark = pytest.mark.usefixtures("one_thread", "seeded")


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_fmsi_ablation_builds_and_predicts_at_input_size(name: str) -> None:
    switches = ABLATIONS[name]
    model = FMSIDeepLab(encoder(), CLASSES, **switches, **SMALL).eval()
    assert isinstance(model.aspp, DeformableASPP) == switches["deformable_aspp"]
    assert model.aspp.rates == tuple(switches["dilations"])
    assert isinstance(model.aspp.attention, GGCA) == switches["ggca"]
    assert isinstance(model.interest_flow, InterestFlow) == switches["interest_flow"]
    assert isinstance(model.msea, MSEA) == switches["msea"]
    with torch.no_grad():
        assert model(torch.rand(1, 3, H, W)).shape == (1, CLASSES, H, W)


def test_dilation_ablation_changes_only_the_branch_count() -> None:
    dense = FMSIDeepLab(encoder(), CLASSES, **TABLE3_GROUPS["defconv"], **SMALL)
    sparse = FMSIDeepLab(encoder(), CLASSES, **TABLE3_GROUPS["defconv_rates_6_12_18"], **SMALL)
    assert [b.dilation for b in dense.aspp.branches] == [6, 8, 12, 18, 24]
    assert [b.dilation for b in sparse.aspp.branches] == [6, 12, 18]


def test_all_off_fmsi_is_the_deeplabv3plus_baseline() -> None:
    baseline = DeepLabV3Plus(encoder(), CLASSES).eval()
    fmsi = FMSIDeepLab(encoder(), CLASSES, **TABLE3_GROUPS["baseline"]).eval()
    assert n_params(fmsi) == n_params(baseline)
    fmsi.load_state_dict(baseline.state_dict())  # strict: the same modules under the same names
    x = torch.rand(1, 3, H, W)
    with torch.no_grad():
        torch.testing.assert_close(fmsi(x), baseline(x))


def test_deeplabv3plus_structure() -> None:
    model = DeepLabV3Plus(encoder(), CLASSES)
    assert isinstance(model.aspp, ASPP) and model.aspp.rates == DEEPLAB_RATES
    assert model.decoder.reduce[0].out_channels == 48
    assert model.decoder.classifier.in_channels == 256


def models_with_depth() -> list[SegmentationModel]:
    depth = {"depth": 1}
    return [
        DeepLabV3Plus(encoder(extra_channels=1), CLASSES, modality_channels=depth, **SMALL),
        FMSIDeepLab(encoder(extra_channels=1), CLASSES, modality_channels=depth, **SMALL),
    ]


def test_training_step_with_a_modality_reaches_every_parameter() -> None:
    image, depth = torch.rand(2, 3, H, W), torch.rand(2, 1, H, W)
    label = torch.randint(0, CLASSES, (2, H, W))
    for model in models_with_depth():
        model.train()
        logits = model(image, {"depth": depth})
        assert logits.shape == (2, CLASSES, H, W)
        F.cross_entropy(logits, label).backward()
        missing = [name for name, p in model.named_parameters() if p.grad is None]
        assert not missing, f"{type(model).__name__}: no gradient for {missing}"
        if isinstance(model.aspp, DeformableASPP):
            assert all(branch.offset.weight.grad.abs().sum() > 0 for branch in model.aspp.branches)


def test_eval_is_deterministic_and_an_absent_modality_reads_as_zeros() -> None:
    image, depth = torch.rand(1, 3, H, W), torch.rand(1, 1, H, W)
    for model in models_with_depth():
        model.eval()
        with torch.no_grad():
            first = model(image, {"depth": depth})
            assert torch.equal(model(image, {"depth": depth}), first)
            torch.testing.assert_close(model(image), model(image, {"depth": torch.zeros_like(depth)}))
        assert first.shape == (1, CLASSES, H, W)


def test_unknown_ablation_switch_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown FMSI-DeepLab switches"):
        ablation_kwargs("deformable_conv")


def test_ggca_groups_must_divide_the_concatenation() -> None:
    with pytest.raises(ValueError, match="divisible by groups"):
        FMSIDeepLab(encoder(), CLASSES, aspp_channels=10, ggca_groups=8)  # 6 × 10 = 60 channels
