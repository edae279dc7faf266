"""MMMS engine, feature cache and InteractiveSession (SPEC 6, 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rgbxseg.errors import DataError
from rgbxseg.interactive import Click, InteractiveSession, MMMSEngine
from rgbxseg.interactive.engine import ImageEmbedding, network_input, resized_size
from rgbxseg.models.mmms import Dinov2Backbone, FeatureCache, MMMSConfig, MMMSNet
from tests.mmms_fakes import CountingBackbone

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

SMALL = MMMSConfig(channels=(16, 32, 64, 64), widths=(8, 16, 32, 32), depths=(0, 1, 1, 1), decoder_dim=8)


def test_network_input_is_the_resized_image_padded_to_a_square() -> None:
    assert resized_size(480, 640) == (336, 448)
    assert resized_size(10, 1000) == (4, 448)
    image = torch.rand(3, 60, 30)
    square = network_input(image, 112)
    assert square.shape == (3, 112, 112)
    assert torch.all(square[:, :, 56:] == 0) and square[:, :, :56].abs().sum() > 0


def test_feature_cache_memory_lru_and_disk(tmp_path: Path) -> None:
    backbone = CountingBackbone()
    cache = FeatureCache(backbone, tmp_path, capacity=1)
    a, b = torch.rand(3, 28, 42), torch.rand(3, 28, 42)
    first = cache.features(a)
    assert cache.features(a) is first and backbone.calls == 1  # memory hit
    cache.features(b)  # evicts a from memory (capacity 1)
    again = cache.features(a)  # read back from disk
    assert backbone.calls == 2 and cache.hits == {"memory": 1, "disk": 1, "computed": 2}
    assert all(torch.equal(x, y) for x, y in zip(first, again))  # a hit returns exactly what a miss did
    fresh = FeatureCache(CountingBackbone(), tmp_path)
    assert fresh.contains(a) and fresh.features(a)[3].shape == (1, 384, 2, 3) and fresh.backbone.calls == 0
    assert len(list((tmp_path / "counting-v1").glob("*.safetensors"))) == 2
    other = CountingBackbone()
    other.backbone_id = "counting-v2"
    assert not FeatureCache(other, tmp_path).contains(a)  # the backbone id is part of the key


def test_corrupted_cache_file_is_named(tmp_path: Path) -> None:
    cache = FeatureCache(CountingBackbone(), tmp_path)
    image = torch.rand(3, 28, 28)
    cache.features(image)
    (path,) = (tmp_path / "counting-v1").glob("*.safetensors")
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match=str(path.name)):
        FeatureCache(CountingBackbone(), tmp_path).features(image)


def small_engine(modalities: dict[str, int] | None = None) -> MMMSEngine:
    config = MMMSConfig(**(SMALL.to_dict() | {"modalities": modalities or {}}))
    return MMMSEngine(MMMSNet(config), CountingBackbone(), long_side=112)


def test_engine_draws_clicks_at_network_resolution() -> None:
    engine = small_engine()
    embedding = engine.embed(np.zeros((50, 100, 3), np.uint8))
    assert embedding.valid_size == (56, 112) and embedding.image_size == (50, 100) and embedding.side == 112
    interaction = engine.interaction(embedding, [Click(25, 50, True), Click(0, 99, False)], np.ones((50, 100)))
    positive, negative, previous = interaction[0]
    assert positive[28, 56] == 1 and positive.sum() == 81  # (25.5·56/50 − 0.5, 50.5·112/100 − 0.5) → (28, 56)
    assert negative[0, 111] == 1 and positive[0, 111] == 0
    assert torch.all(previous[:56] == 1) and torch.all(previous[56:] == 0)  # the padding is never the surface
    probability = engine.predict(embedding, [Click(25, 50, True)])
    assert probability.shape == (50, 100) and probability.dtype == np.float32
    assert 0.0 <= probability.min() and probability.max() <= 1.0


def test_engine_rejects_bad_inputs() -> None:
    engine = small_engine({"depth": 1})
    image = np.zeros((28, 28, 3), np.uint8)
    with pytest.raises(DataError, match="does not match the image size"):
        engine.embed(image, {"depth": np.zeros((20, 28))})
    with pytest.raises(DataError, match="unknown modalities"):
        engine.embed(image, {"thermal": np.zeros((28, 28))})
    with pytest.raises(DataError, match="NaN"):
        engine.embed(image, {"depth": np.full((28, 28), np.nan)})
    with pytest.raises(DataError, match="H×W×3"):
        engine.embed(np.zeros((28, 28)))
    assert engine.embed(image, {"depth": np.ones((28, 28))}).modalities == ("depth",)
    assert engine.embed(image).modalities == ()  # the sensor may be absent


class DiskEngine:
    """An engine whose 'network' returns the union of disks (radius 6) around the positive clicks minus
    those around the negative ones; it records the previous masks it was given."""

    def __init__(self) -> None:
        self.previous: list[np.ndarray | None] = []

    def embed(self, image: np.ndarray, modalities: object = None) -> ImageEmbedding:
        return ImageEmbedding([], image.shape[:2], image.shape[:2], max(image.shape[:2]), ())

    def predict(self, embedding: ImageEmbedding, clicks: list[Click], previous: np.ndarray | None) -> np.ndarray:
        self.previous.append(previous)
        yy, xx = np.mgrid[: embedding.image_size[0], : embedding.image_size[1]]
        probability = np.zeros(embedding.image_size, np.float32)
        for click in clicks:
            probability[(yy - click.y) ** 2 + (xx - click.x) ** 2 <= 36] = 1.0 if click.positive else 0.0
        return probability


def test_session_writes_surfaces_into_the_joint_mask_with_undo_and_redo() -> None:
    engine = DiskEngine()
    session = InteractiveSession(engine, np.zeros((40, 60, 3), np.uint8), surface_name="car")  # type: ignore[arg-type]
    first = session.add_click(20, 20)
    assert first.sum() == 113 and session.surface == 1 and engine.previous == [None]
    assert session.next_surface("road") == 2 and session.names == {1: "car", 2: "road"}
    session.add_click(20, 26)  # overlaps the car disk: those pixels now belong to the road
    joint = session.joint_mask()
    assert joint[20, 26] == 2 and joint[20, 14] == 1 and session.mask(1).sum() < 113
    session.select_surface(1)
    session.add_click(20, 30, positive=False)  # car's revisit: its pixels near (20, 30) go back to background
    assert np.array_equal(engine.previous[-1], joint == 1)  # the previous mask of a revisit is J == j
    assert session.joint_mask()[20, 26] == 2 and len(session.clicks) == 2
    assert session.undo() and session.surface == 1 and len(session.clicks) == 1
    assert np.array_equal(session.joint_mask(), joint)
    assert session.redo() and len(session.clicks) == 2
    assert session.undo() and session.undo() and session.names == {1: "car", 2: "road"}
    assert session.undo() and session.names == {1: "car"} and session.surface == 1  # the new surface undone
    assert session.undo() and not session.undo()
    assert not session.joint_mask().any()
    with pytest.raises(ValueError, match="outside"):
        session.add_click(40, 0)
    with pytest.raises(ValueError, match="no surface 7"):
        session.select_surface(7)


def test_session_on_the_real_backbone_embeds_once(tmp_path: Path) -> None:
    backbone = Dinov2Backbone()
    assert not any(p.requires_grad for p in backbone.parameters()) and not backbone.train().training
    with pytest.raises(ValueError, match="multiples of 14"):
        backbone(torch.rand(1, 3, 30, 28))
    engine = MMMSEngine(MMMSNet(SMALL), backbone, FeatureCache(backbone, tmp_path), long_side=84)
    image = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    session = InteractiveSession(engine, image)
    assert [tuple(t.shape) for t in engine.cache.features(torch.rand(3, 28, 28))][0] == (1, 384, 2, 2)
    mask = session.add_click(30, 40)
    assert mask.shape == (60, 80) and mask.dtype == bool
    InteractiveSession(engine, image)
    assert engine.cache.hits["memory"] == 1  # the second session reused the first one's features


def test_onnx_runtime_click_path_matches_pytorch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RGBXSEG_CACHE", str(tmp_path))
    net = MMMSNet(SMALL)
    eager = MMMSEngine(net, CountingBackbone(), long_side=56, runtime="torch")
    onnx = MMMSEngine(net, CountingBackbone(), long_side=56, runtime="onnx")
    assert onnx.runtime == "onnx" and len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    image = (np.random.default_rng(1).random((40, 30, 3)) * 255).astype(np.uint8)
    clicks = [Click(20, 15, True), Click(2, 2, False)]
    expected = eager.predict(eager.embed(image), clicks)
    assert np.abs(onnx.predict(onnx.embed(image), clicks) - expected).max() < 1e-4
    with pytest.raises(ValueError, match="runtime"):
        MMMSEngine(net, CountingBackbone(), runtime="tensorrt")


def test_delete_surface_is_undoable_and_ids_are_never_reused() -> None:
    session = InteractiveSession(DiskEngine(), np.zeros((40, 60, 3), np.uint8))  # type: ignore[arg-type]
    session.add_click(10, 10)
    assert session.next_surface("b") == 2
    session.add_click(30, 40)
    session.delete_surface(1)
    assert session.names == {2: "b"} and not session.mask(1).any() and session.mask(2).any()
    assert session.surface == 2
    assert session.undo() and session.names == {1: "surface 1", 2: "b"} and session.mask(1).any()
    assert session.redo() and 1 not in session.names
    session.delete_surface()  # the last one: a fresh surface takes its place
    assert session.names == {3: "surface 3"} and session.surface == 3 and not session.joint_mask().any()
    assert session.undo() and session.names == {2: "b"}  # one step undoes the deletion and the fresh surface
    assert session.next_surface() == 4 and not session.can_redo  # a new surface clears the redo history
    with pytest.raises(ValueError, match="no surface 1"):
        session.delete_surface(1)
