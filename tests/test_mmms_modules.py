"""MMMS building blocks (SPEC 6): pyramid shapes, EffCA, CrossBlock/MMFuser, MSPatchEmbed, CSNet, MMMSNet."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rgbxseg.models.layers.effca import EffCA
from rgbxseg.models.mmms import CSNet, MMFuser, MMMSConfig, MMMSNet, MSPatchEmbed, ParallelFPN, pyramid_sizes

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

SMALL = MMMSConfig(channels=(16, 32, 64, 64), widths=(8, 16, 32, 32), depths=(1, 1, 1, 1), decoder_dim=8)


def tokens_for(height: int, width: int, dim: int = 384, batch: int = 1) -> list[torch.Tensor]:
    return [torch.randn(batch, dim, height // 14, width // 14) for _ in range(4)]


def randomise(module: nn.Module) -> None:
    """Give every parameter non-trivial values (the zero-initialised residual branches included)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.2)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((448, 448), [(112, 112), (56, 56), (28, 28), (14, 14)]), ((336, 462), [(84, 116), (42, 58), (21, 29), (11, 15)])],
)
def test_pyramid_sizes_follow_the_segformer_strides(size: tuple[int, int], expected: list[tuple[int, int]]) -> None:
    assert pyramid_sizes(*size) == expected


def test_parallel_fpn_turns_stride_14_tokens_into_the_pyramid() -> None:
    fpn = ParallelFPN(384, (16, 32, 64, 128))
    maps = fpn(tokens_for(336, 462, batch=2), (336, 462))
    assert [tuple(m.shape) for m in maps] == [
        (2, c, h, w) for c, (h, w) in zip((16, 32, 64, 128), pyramid_sizes(336, 462))
    ]
    with pytest.raises(ValueError, match="4 ViT blocks"):
        fpn(tokens_for(336, 462)[:3], (336, 462))


def test_effca_with_one_head_is_softmax_attention_over_reduced_context() -> None:
    attention = EffCA(8, context_dim=4, heads=1, reduction=2).eval()
    x, context = torch.randn(1, 8, 4, 6), torch.randn(1, 4, 4, 6)
    q = attention.q(x.flatten(2).transpose(1, 2))
    reduced = attention.norm(attention.reduce(context).flatten(2).transpose(1, 2))
    k, v = attention.kv(reduced).chunk(2, dim=-1)
    expected = attention.proj(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), dim=-1) @ v)
    assert reduced.shape == (1, 6, 4)  # 4×6 context reduced by 2 → 2×3 keys
    assert torch.allclose(attention(x, context), expected.transpose(1, 2).reshape(1, 8, 4, 6), atol=1e-5)


def test_effca_output_follows_the_context() -> None:
    attention = EffCA(8, heads=2, reduction=1).eval()
    x = torch.randn(1, 8, 3, 3)
    assert not torch.allclose(attention(x, torch.randn(1, 8, 3, 3)), attention(x, torch.randn(1, 8, 3, 3)))
    with pytest.raises(ValueError, match="divisible"):
        EffCA(10, heads=3)
    with pytest.raises(ValueError, match="does not match"):
        attention(x, torch.randn(1, 8, 2, 3))


def pyramid(batch: int = 2) -> list[torch.Tensor]:
    return [torch.randn(batch, c, h, w) for c, (h, w) in zip(SMALL.channels, pyramid_sizes(64, 96))]


def test_a_fresh_fuser_leaves_the_rgb_pyramid_unchanged() -> None:
    fuser = MMFuser({"depth": 1}, SMALL.channels).eval()
    rgb = pyramid()
    fused = fuser(rgb, {"depth": torch.randn(2, 1, 64, 96)})
    assert all(torch.equal(a, b) for a, b in zip(fused, rgb))


def test_fuser_changes_only_the_samples_that_have_the_modality() -> None:
    fuser = MMFuser({"depth": 1, "thermal": 1}, SMALL.channels).eval()
    randomise(fuser)
    rgb = pyramid()
    depth = {"depth": torch.randn(2, 1, 64, 96)}
    fused = fuser(rgb, depth, present={"depth": torch.tensor([True, False])})
    assert not torch.allclose(fused[0][0], rgb[0][0])
    assert all(torch.equal(f[1], r[1]) for f, r in zip(fused, rgb))
    both = fuser(rgb, depth | {"thermal": torch.randn(2, 1, 64, 96)})
    assert not torch.allclose(both[3], fuser(rgb, depth)[3])  # each modality adds its own cross-attention
    assert all(torch.equal(a, b) for a, b in zip(fuser(rgb, {}), rgb))  # every sensor absent: RGB pyramid
    with pytest.raises(ValueError, match="unknown modalities"):
        fuser(rgb, {"lidar": torch.randn(2, 1, 64, 96)})


def test_ms_patch_embed_shapes_and_locality() -> None:
    embed = MSPatchEmbed(SMALL.widths).eval()
    empty = torch.zeros(1, 3, 70, 98)
    levels = embed(empty)
    assert [tuple(m.shape[-2:]) for m in levels] == pyramid_sizes(70, 98)
    assert [m.shape[1] for m in levels] == list(SMALL.widths)
    clicked = empty.clone()
    clicked[0, 0, 60:66, 88:94] = 1.0  # a click disk near the bottom-right corner
    changed = (embed(clicked)[0] - levels[0]).abs().sum(1)[0] > 1e-6
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert rows.min() >= 13 and cols.min() >= 19  # stride-4 map: nothing changes far from the click
    with pytest.raises(ValueError, match="interaction"):
        embed(torch.zeros(1, 2, 70, 98))


def test_csnet_prepares_once_and_broadcasts_over_clicks() -> None:
    net = CSNet(SMALL.channels, SMALL.widths, SMALL.depths, SMALL.decoder_dim).eval()
    prepared = net.prepare(pyramid(batch=1))
    interaction = MSPatchEmbed(SMALL.widths)(torch.rand(3, 3, 64, 96))
    logits = net(prepared, interaction)
    assert logits.shape == (3, 1, 16, 24)
    assert not torch.allclose(logits[0], logits[1])
    with pytest.raises(ValueError, match="4 stages"):
        CSNet(SMALL.channels, SMALL.widths[:3], SMALL.depths)


def test_mmms_net_trains_everything_but_the_tokens() -> None:
    net = MMMSNet(MMMSConfig(**(SMALL.to_dict() | {"modalities": {"depth": 1}})))
    randomise(net.fuser)
    tokens = [t.requires_grad_(False) for t in tokens_for(56, 84, batch=2)]
    logits = net(tokens, torch.rand(2, 3, 56, 84), {"depth": torch.randn(2, 1, 56, 84)})
    assert logits.shape == (2, 1, 56, 84)
    logits.mean().backward()
    for part in (net.fpn, net.fuser, net.embed, net.csnet):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), type(part).__name__
    rgb_only = MMMSNet(SMALL)
    assert rgb_only.fuser is None
    with pytest.raises(ValueError, match="RGB-only"):
        rgb_only.encode(tokens, (56, 84), {"depth": torch.randn(2, 1, 56, 84)})


def test_mmms_config_round_trips_and_rejects_unknown_keys() -> None:
    config = MMMSConfig(modalities={"t1": 1, "t2": 1}, depths=(0, 1, 1, 1))
    assert MMMSConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown keys"):
        MMMSConfig.from_dict({"width": 3})
