"""Zoom-in of the MMMS engine (rgbxseg.interactive.zoom): crop boxes, crop embeddings, mapping and pasting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rgbxseg.interactive import Click, InteractiveSession, MMMSEngine
from rgbxseg.interactive.engine import ImageEmbedding
from rgbxseg.interactive.zoom import CropBox, ZoomIn, bounding_box, expand_box, paste
from rgbxseg.models.mmms import MMMSConfig, MMMSNet
from tests.mmms_fakes import CountingBackbone

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

SMALL = MMMSConfig(channels=(16, 32, 64, 64), widths=(8, 16, 32, 32), depths=(0, 1, 1, 1), decoder_dim=8)
SIZE = (200, 300)


def box_mask(top: int, left: int, bottom: int, right: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    mask = np.zeros(size, bool)
    mask[top:bottom, left:right] = True
    return mask


def zoom_engine(zoom: ZoomIn | bool = True, net: MMMSNet | None = None) -> MMMSEngine:
    return MMMSEngine(net or MMMSNet(SMALL), CountingBackbone(), long_side=112, zoom=zoom)


def image(seed: int = 0, size: tuple[int, int] = SIZE) -> np.ndarray:
    return (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)


def test_crop_box_of_the_prediction_and_the_positive_clicks() -> None:
    zoom = ZoomIn()  # expand 1.4, min side 0.2 · long side (60 px here)
    assert bounding_box(box_mask(40, 50, 60, 70)) == CropBox(40, 50, 60, 70)
    assert bounding_box(None, [(3, 4), (10, 2)]) == CropBox(3, 2, 11, 5)
    clicks = [Click(50, 60, True), Click(45, 55, True)]
    # a 20×20 object: 1.4 × 20 = 28 < 60, so a 60×60 box around its centre (50, 60)
    assert zoom.wanted_box(box_mask(40, 50, 60, 70), clicks, SIZE) == CropBox(20, 30, 80, 90)
    # 100×100 → 140×140 around (90, 100); a negative click far away does not count, a positive one does
    big = box_mask(40, 50, 140, 150)
    assert zoom.wanted_box(big, [*clicks, Click(190, 290, False)], SIZE) == CropBox(20, 30, 160, 170)
    # rows 40..150 and columns 50..160 (111 px) → 155 px around (95.5, 105.5)
    assert zoom.wanted_box(big, [*clicks, Click(150, 160, True)], SIZE) == CropBox(18, 28, 173, 183)
    # near a border the box is shifted back inside, keeping its size
    assert expand_box(CropBox(0, 280, 20, 300), SIZE, 1.4, 60) == CropBox(0, 240, 60, 300)
    # the first click, an empty prediction, or a crop nearly as large as the image: the full image
    assert zoom.wanted_box(big, clicks[:1], SIZE) is None
    assert zoom.wanted_box(np.zeros(SIZE, bool), clicks, SIZE) is None
    assert zoom.wanted_box(box_mask(10, 10, 190, 260), clicks, SIZE) is None
    assert CropBox(0, 0, 10, 10).iou(CropBox(5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_crop_is_kept_while_the_object_stays_inside_and_moves_when_it_leaves() -> None:
    zoom = ZoomIn()
    crop = CropBox(20, 30, 160, 170)
    inside = box_mask(40, 50, 140, 150)
    clicks = [Click(90, 100, True), Click(100, 100, True)]
    assert zoom.keeps(crop, inside, clicks, SIZE)
    assert zoom.keeps(crop, inside, [*clicks, Click(190, 290, False)], SIZE)  # negatives outside: fine
    assert not zoom.keeps(crop, inside, [*clicks, Click(180, 100, True)], SIZE)  # positive click outside
    assert not zoom.keeps(crop, box_mask(40, 50, 160, 150), clicks, SIZE)  # touches the crop's bottom edge
    assert not zoom.keeps(crop, box_mask(80, 90, 100, 110), clicks, SIZE)  # shrank a lot: IoU < 0.5
    at_border = CropBox(0, 30, 140, 170)
    assert zoom.keeps(at_border, box_mask(0, 50, 100, 150), clicks, SIZE)  # the image border is no crop edge


def test_zoom_embeds_the_crop_once_maps_clicks_exactly_and_pastes_at_image_size() -> None:
    engine = zoom_engine()
    backbone = engine.backbone
    embedding = engine.embed(image())
    assert backbone.calls == 1 and embedding.source is not None
    first = engine.predict(embedding, [Click(90, 100, True)])
    assert first.shape == SIZE and embedding.zoom.last.kind == "full" and backbone.calls == 1

    seen: list[tuple[ImageEmbedding, list[Click], np.ndarray | None]] = []
    predict = engine._predict

    def spy(emb: ImageEmbedding, clicks: list[Click], previous: np.ndarray | None) -> np.ndarray:
        seen.append((emb, list(clicks), previous))
        return predict(emb, clicks, previous)

    engine._predict = spy  # type: ignore[method-assign]
    previous = box_mask(40, 50, 140, 150)
    clicks = [Click(90, 100, True), Click(30, 60, False)]
    second = engine.predict(embedding, clicks, previous)
    step, crop = embedding.zoom.last, CropBox(20, 30, 160, 170)
    assert step.kind == "moved" and step.box == crop and step.backbone and backbone.calls == 2
    emb, given, crop_previous = seen[-1]
    assert emb.image_size == (140, 140)
    assert given == [Click(70, 70, True), Click(10, 30, False)]  # shifted by the crop's (top, left) = (20, 30)
    assert np.array_equal(crop_previous, previous[20:160, 30:170])
    assert second.shape == SIZE and second.dtype == np.float32
    outside = np.ones(SIZE, bool)
    outside[crop.slices] = False
    assert not second[outside].any()  # outside the crop: 0
    assert np.array_equal(second[crop.slices], predict(emb, given, crop_previous))  # inside: the crop's map

    # the object stays inside: the crop and its embedding are reused, only the head runs
    engine.predict(embedding, [*clicks, Click(100, 100, True)], previous)
    assert embedding.zoom.last.kind == "kept" and not embedding.zoom.last.backbone and backbone.calls == 2
    assert seen[-1][0] is emb

    # a positive click outside the crop moves it, to a box that holds the click
    far = [*clicks, Click(100, 100, True), Click(170, 200, True)]
    engine.predict(embedding, far, previous)
    step = embedding.zoom.last
    assert step.kind == "moved" and step.box.holds(far[-1]) and backbone.calls == 3

    # a new object (no previous mask) starts again from the full image
    engine.predict(embedding, [Click(10, 10, True)])
    assert embedding.zoom.last.kind == "full" and embedding.zoom.box is None and backbone.calls == 3
    # moving back to a crop box still in the image's LRU costs no backbone run
    engine.predict(embedding, clicks, previous)
    assert embedding.zoom.last.kind == "moved" and not embedding.zoom.last.backbone and backbone.calls == 3


def test_crop_embedding_is_the_embedding_of_the_cropped_image() -> None:
    net = MMMSNet(SMALL)
    engine, plain = zoom_engine(net=net), MMMSEngine(net, CountingBackbone(), long_side=112)
    picture = image(3)
    crop = CropBox(20, 30, 160, 170)
    zoomed = engine.embed_crop(engine.embed(picture), crop)
    direct = plain.embed(np.ascontiguousarray(picture[crop.slices]))
    assert zoomed.image_size == direct.image_size == (140, 140) and zoomed.valid_size == direct.valid_size
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(zoomed.prepared, direct.prepared, strict=True))
    with pytest.raises(ValueError, match="zoom on"):
        engine.embed_crop(plain.embed(picture), crop)


def test_zoom_off_or_an_embedding_without_the_image_predicts_on_the_full_image() -> None:
    net = MMMSNet(SMALL)
    plain = MMMSEngine(net, CountingBackbone(), long_side=112)
    zoomed = zoom_engine(net=net)
    picture = image(1)
    clicks, previous = [Click(90, 100, True), Click(100, 110, True)], box_mask(40, 50, 140, 150)
    embedding = plain.embed(picture)
    assert embedding.source is None  # zoom off keeps no copy of the image
    expected = plain.predict(embedding, clicks, previous)
    assert np.array_equal(zoomed.predict(embedding, clicks, previous), expected)
    assert embedding.zoom.last is None and zoomed.backbone.calls == 0
    with pytest.raises(ValueError, match="invalid zoom"):
        ZoomIn(expand=0.5)


def test_zoom_engine_in_a_session_and_with_refinement() -> None:
    engine = MMMSEngine(MMMSNet(SMALL), CountingBackbone(), long_side=112, zoom=True, refine="guided")
    session = InteractiveSession(engine, image(2))
    for y, x, positive in ((100, 150, True), (90, 140, True), (20, 20, False), (110, 160, True)):
        mask = session.add_click(y, x, positive)
        assert mask.shape == SIZE and mask.dtype == bool
        probability = session.probability()
        assert probability.dtype == np.float32 and 0 <= probability.min() and probability.max() <= 1
    assert session.embedding.zoom.last is not None
    full = paste(np.ones((10, 20), np.float32), CropBox(5, 6, 15, 26), (30, 40))
    assert full.shape == (30, 40) and full.sum() == 200 and full[5:15, 6:26].all()
