"""DeepLab building blocks: shapes on odd sizes, gradient flow, and each module's equation checked
against a reference computation (zero-offset deformable conv = atrous conv, GGCA eq. 6, MSEA eq. 10)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgbxseg.models.layers import (
    ASPP,
    GGCA,
    MSEA,
    DeepLabDecoder,
    DeformableASPP,
    DeformableAtrousConv,
    InterestFlow,
)

H, W = 17, 23  # odd feature-map size


pytestmark = pytest.mark.usefixtures("one_thread", "seeded")


def assert_all_grads(module: nn.Module, out: Tensor) -> None:
    """Backward a random projection of ``out``; every parameter of ``module`` must receive a gradient."""
    (out * torch.randn_like(out)).sum().backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"


def test_aspp_shape_and_grads() -> None:
    aspp = ASPP(16, 8, rates=(2, 3, 5))
    x = torch.randn(2, 16, H, W)
    out = aspp(x)
    assert out.shape == (2, 8, H, W)
    assert len(aspp.branches) == 4  # 1×1 + three atrous
    assert_all_grads(aspp, out)


def test_aspp_with_ggca_shape() -> None:
    aspp = ASPP(16, 8, rates=(6, 12, 18), ggca=True, ggca_groups=8)  # concat = 5 × 8 = 40 channels
    assert isinstance(aspp.attention, GGCA)
    assert aspp(torch.randn(2, 16, H, W)).shape == (2, 8, H, W)


@pytest.mark.parametrize("rates", [(), (6, 0), (6, 1.5)])
def test_aspp_rejects_bad_rates(rates: tuple) -> None:
    with pytest.raises(ValueError, match="atrous rates"):
        ASPP(16, 8, rates=rates)


def test_deformable_aspp_shape_and_grads_reach_offset_convs() -> None:
    aspp = DeformableASPP(8, 8, ggca=True)
    assert aspp.rates == (6, 8, 12, 18, 24)
    x = torch.randn(2, 8, H, W)
    out = aspp(x)
    assert out.shape == (2, 8, H, W)
    assert_all_grads(aspp, out)
    for branch in aspp.branches:
        assert branch.offset.out_channels == 18  # 2·K·K for K = 3
        assert branch.offset.weight.grad.abs().sum() > 0  # zero-initialised, yet it learns


@pytest.mark.parametrize("dilation", (6, 8, 12, 18, 24))
def test_zero_offset_deformable_branch_equals_atrous_conv(dilation: int) -> None:
    aspp = DeformableASPP(4, 6).eval()
    branch = next(b for b in aspp.branches if b.dilation == dilation)
    x = torch.randn(2, 4, H, W)
    offsets = branch.offset(x)
    assert torch.equal(offsets, torch.zeros_like(offsets))
    atrous = F.conv2d(x, branch.conv.weight, padding=dilation, dilation=dilation)
    torch.testing.assert_close(branch.conv(x, offsets), atrous, atol=1e-5, rtol=0)
    torch.testing.assert_close(branch(x), F.relu(branch.bn(atrous)), atol=1e-5, rtol=0)


def test_nonzero_offsets_move_the_samples() -> None:
    branch = DeformableAtrousConv(4, 6, dilation=2).eval()
    x = torch.randn(1, 4, H, W)
    atrous = branch(x)
    with torch.no_grad():
        branch.offset.bias.fill_(0.5)
    assert not torch.allclose(branch(x), atrous)


def ggca_reference(module: GGCA, x: Tensor) -> Tensor:
    """Eqs. 2-6 written out group by group, sample by sample (eval mode: BN is a fixed affine map)."""
    b, c, h, w = x.shape
    cg = c // module.groups
    out = torch.empty_like(x)
    for i in range(b):
        for g in range(module.groups):
            xg = x[i, g * cg : (g + 1) * cg]  # cg×H×W
            along_h = [xg.mean(dim=2), xg.max(dim=2).values]  # cg×H (pooled over W)
            along_w = [xg.mean(dim=1), xg.max(dim=1).values]  # cg×W (pooled over H)
            a_h = torch.sigmoid(sum(module.shared(d[None, :, :, None])[0, :, :, 0] for d in along_h))
            a_w = torch.sigmoid(sum(module.shared(d[None, :, None, :])[0, :, 0, :] for d in along_w))
            out[i, g * cg : (g + 1) * cg] = xg * a_h[:, :, None] * a_w[:, None, :]
    return out


def test_ggca_matches_reference() -> None:
    ggca = GGCA(16, groups=8, reduction=1)
    bn = ggca.shared[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    ggca.eval()
    x = torch.randn(2, 16, 5, 7)
    torch.testing.assert_close(ggca(x), ggca_reference(ggca, x), atol=1e-5, rtol=1e-5)


def test_ggca_shape_and_grads_on_odd_size() -> None:
    ggca = GGCA(32)
    x = torch.randn(2, 32, H, W)
    out = ggca(x)
    assert out.shape == x.shape
    assert_all_grads(ggca, out)


def test_ggca_rejects_indivisible_channels() -> None:
    with pytest.raises(ValueError, match="divisible by groups"):
        GGCA(12, groups=8)
    with pytest.raises(ValueError, match="B×16×H×W"):
        GGCA(16)(torch.randn(1, 8, 4, 4))


def test_msea_with_neutral_attention_returns_multiscale_features() -> None:
    """σ(0) = 0.5 for both maps, so eq. 10 gives M·0.5 + M·0.5 = M."""
    msea = MSEA(8).eval()
    with torch.no_grad():
        msea.mlp[-1].weight.zero_()
        msea.spatial.weight.zero_()
    x = torch.randn(2, 8, H, W)
    torch.testing.assert_close(msea(x), msea.multi_scale(x))


def test_msea_matches_reference_formula() -> None:
    msea = MSEA(16, reduction=4).eval()
    x = torch.randn(2, 16, H, W)
    m = msea.multi_scale(x)
    w1, w2 = msea.mlp[0].weight, msea.mlp[2].weight

    def mlp(v: Tensor) -> Tensor:
        return F.conv2d(F.relu(F.conv2d(v, w1)), w2)

    c_a = torch.sigmoid(mlp(m.mean((2, 3), keepdim=True)) + mlp(m.amax((2, 3), keepdim=True)))
    pooled = torch.cat([m.mean(1, keepdim=True), m.amax(1, keepdim=True)], dim=1)
    s_a = torch.sigmoid(F.conv2d(pooled, msea.spatial.weight, padding=3))
    assert c_a.shape == (2, 16, 1, 1) and s_a.shape == (2, 1, H, W)
    torch.testing.assert_close(msea(x), m * s_a + m * c_a)


def test_msea_shape_grads_and_bad_kernels() -> None:
    msea = MSEA(8)
    assert [s[0].kernel_size for s in msea.scales] == [(3, 3), (5, 5), (7, 7)]
    x = torch.randn(2, 8, H, W)
    out = msea(x)
    assert out.shape == x.shape
    assert_all_grads(msea, out)
    with pytest.raises(ValueError, match="odd"):
        MSEA(8, kernel_sizes=(3, 4))


def test_interest_flow_output_stride_and_channels() -> None:
    flow = InterestFlow((6, 10, 20), out_channels=12)
    entry, middle, exit_features = torch.randn(2, 6, H, W), torch.randn(2, 10, 9, 12), torch.randn(2, 20, 5, 6)
    out = flow(entry, middle, exit_features)
    assert out.shape == (2, 12, H, W)  # stride 4, the common width
    assert_all_grads(flow, out)
    with pytest.raises(ValueError, match="three positive input widths"):
        InterestFlow((6, 10), 12)


def test_deeplab_decoder_logits_at_low_level_resolution() -> None:
    decoder = DeepLabDecoder(16, 6, num_classes=5, low_level_channels=4, decoder_channels=8)
    context, low = torch.randn(2, 16, 5, 6), torch.randn(2, 6, H, W)
    out = decoder(context, low)
    assert out.shape == (2, 5, H, W)
    assert decoder.reduce[0].out_channels == 4
    assert_all_grads(decoder, out)


def test_separable_and_reduced_aspp_variants() -> None:
    from rgbxseg.models.layers import ASPP

    x = torch.rand(2, 64, 9, 11)
    plain, separable = ASPP(64, 32), ASPP(64, 32, separable=True)
    reduced = ASPP(64, 32, separable=True, reduce_to=16)
    assert plain(x).shape == separable(x).shape == reduced(x).shape == (2, 32, 9, 11)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(reduced) < count(separable) < count(plain)
    dilated = separable.branches[1][0]
    assert dilated.groups == 64 and dilated.dilation == (6, 6) and dilated.padding == (6, 6)
