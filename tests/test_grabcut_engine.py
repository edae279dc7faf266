"""The GrabCut engine (the classical peer of SPEC 10) and ``rgbxseg interactive-eval --engine grabcut``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rgbxseg.cli import app
from rgbxseg.data import build_dataset
from rgbxseg.errors import DataError
from rgbxseg.interactive.click_simulator import CLICK_RADIUS, Click
from rgbxseg.interactive.evaluate import ClickEngine, evaluate_single_object
from rgbxseg.interactive.grabcut_engine import LONG_SIDE, GrabCutEngine, init_mask, scale_click
from rgbxseg.interactive.surfaces import surface_kind
from tests.conftest import shared_dataset

H, W = 120, 160
CENTRE = (60, 70)  # (y, x) of the object disk
RADIUS = 28


def _textured(colour: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.array(colour, np.float32) + rng.normal(0, 20, (H, W, 3)), 0, 255)


def _disk(centre: tuple[int, int], radius: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (centre[1], centre[0]), radius, 1, thickness=-1)
    return mask.astype(bool)


def scene(distractor: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured red disk on a textured blue background, float RGB in [0, 1]; with ``distractor`` a white
    disk touching it on the right (GrabCut takes it in with the object after one click).
    Returns (image, object mask, distractor mask)."""
    rng = np.random.default_rng(0)
    image = _textured((40, 110, 170), rng)
    target = _disk(CENTRE, RADIUS)
    image[target] = _textured((200, 50, 40), rng)[target]
    other = _disk((60, 106), 16) & ~target if distractor else np.zeros((H, W), bool)
    image[other] = _textured((240, 240, 240), rng)[other]
    return (image / 255).astype(np.float32), target, other


def iou(probability: np.ndarray, mask: np.ndarray) -> float:
    predicted = probability > 0.49
    return float((predicted & mask).sum() / (predicted | mask).sum())


def test_one_positive_click_segments_the_object() -> None:
    image, target, _ = scene()
    engine = GrabCutEngine()
    embedding = engine.embed(image)
    assert embedding.small.dtype == np.uint8 and embedding.small_size == (240, LONG_SIDE)
    assert embedding.image_size == (H, W)
    probability = engine.predict(embedding, [Click(*CENTRE, True)])
    assert probability.shape == (H, W) and probability.dtype == np.float32
    assert set(np.unique(probability)) <= {0.0, 1.0}
    assert iou(probability, target) > 0.8
    # the same image as a 3×H×W tensor and as uint8 gives the same embedding; predict ignores `previous`
    tensor = engine.embed(torch.from_numpy(image).permute(2, 0, 1))
    assert np.array_equal(tensor.small, embedding.small)
    uint8 = engine.embed((image * 255).round().astype(np.uint8))
    assert np.array_equal(uint8.small, embedding.small)
    again = engine.predict(embedding, [Click(*CENTRE, True)], previous=np.ones((H, W), np.float32))
    assert np.array_equal(again, probability)  # and deterministic


def test_a_negative_click_removes_a_wrongly_included_region() -> None:
    image, target, distractor = scene(distractor=True)
    engine = GrabCutEngine()
    embedding = engine.embed(image)
    first = engine.predict(embedding, [Click(*CENTRE, True)])
    assert first[distractor].mean() > 0.9  # the white disk touching the object is taken in
    second = engine.predict(embedding, [Click(*CENTRE, True), Click(60, 114, False)])
    assert second[distractor].mean() < 0.1
    assert iou(second, target) > 0.9 > iou(first, target)


def test_no_positive_click_gives_zeros() -> None:
    image, _, _ = scene()
    engine = GrabCutEngine()
    embedding = engine.embed(image)
    for clicks in ([], [Click(5, 5, False)]):
        probability = engine.predict(embedding, clicks)
        assert probability.shape == (H, W) and probability.dtype == np.float32 and not probability.any()


def test_grabcut_failure_falls_back_to_the_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise cv2.error("no background samples")

    image, _, _ = scene()
    engine = GrabCutEngine()
    embedding = engine.embed(image)
    monkeypatch.setattr(cv2, "grabCut", fail)
    probability = engine.predict(embedding, [Click(*CENTRE, True)])
    prior = _disk(CENTRE, round(0.25 * LONG_SIDE / 2))  # the probable-foreground disk, at the image's scale
    assert probability[prior].mean() > 0.95 and probability[~_disk(CENTRE, 44)].max() == 0


def test_modalities_are_rejected_and_bad_images_too() -> None:
    image, _, _ = scene()
    engine = GrabCutEngine()
    with pytest.raises(DataError, match="RGB-only.*depth"):
        engine.embed(image, {"depth": np.zeros((H, W), np.float32)})
    assert engine.embed(image, {}).image_size == (H, W)  # an empty mapping is no modality
    with pytest.raises(DataError, match="H×W×3"):
        engine.embed(np.zeros((H, W), np.float32))
    with pytest.raises(DataError, match="NaN"):
        engine.embed(np.full((H, W, 3), np.nan, np.float32))


def test_engine_satisfies_the_click_engine_protocol() -> None:
    engine = GrabCutEngine()
    assert isinstance(engine, ClickEngine)
    assert engine.modalities == () and engine.runtime == "opencv"


def test_init_mask_follows_the_recipe() -> None:
    size = (100, 200)  # border: 3 px top/bottom, 6 px left/right; prior radius 0.25 · 200 = 50
    clicks = [Click(50, 100, True), Click(50, 160, True), Click(50, 120, False), Click(50, 124, True)]
    mask = init_mask(size, clicks)
    assert mask.dtype == np.uint8 and mask.shape == size
    yy, xx = np.mgrid[: size[0], : size[1]]

    def disk(y: int, x: int, r: float) -> np.ndarray:
        return (yy - y) ** 2 + (xx - x) ** 2 <= r**2

    border = np.zeros(size, bool)
    border[:3], border[-3:], border[:, :6], border[:, -6:] = True, True, True, True
    assert (mask[border & ~disk(50, 100, 51) & (mask != cv2.GC_FGD)] == cv2.GC_BGD).all()
    assert mask[2, 150] == mask[97, 150] == mask[50, 194] == cv2.GC_BGD and mask[3, 150] == cv2.GC_PR_BGD
    assert mask[0, 100] == mask[99, 100] == cv2.GC_PR_FGD  # the prior disk takes in the border it covers
    assert mask[50, 193] == cv2.GC_PR_BGD  # just inside the right border, far from the prior disk
    sure = np.zeros(size, bool)
    for click in clicks:
        sure |= disk(click.y, click.x, CLICK_RADIUS)
    # the probable-foreground disk of radius 0.25 · long side around the FIRST positive click only
    assert (mask[disk(50, 100, 49) & ~sure] == cv2.GC_PR_FGD).all()
    assert (mask[~disk(50, 100, 51) & ~sure & ~border] == cv2.GC_PR_BGD).all()
    # sure disks of CLICK_RADIUS: positive = GC_FGD (also outside the prior), negative = GC_BGD ...
    assert (mask[disk(50, 160, CLICK_RADIUS)] == cv2.GC_FGD).all()
    assert mask[50, 160 + CLICK_RADIUS + 1] == cv2.GC_PR_BGD
    assert mask[50, 115] == mask[50, 118] == cv2.GC_BGD
    # ... drawn in click order: the latest click wins where disks overlap
    assert mask[50, 119] == mask[50, 122] == mask[50, 125] == cv2.GC_FGD
    reordered = init_mask(size, [clicks[0], clicks[1], clicks[3], clicks[2]])
    assert reordered[50, 122] == reordered[50, 125] == cv2.GC_BGD and reordered[50, 127] == cv2.GC_FGD
    # no positive click: no prior disk
    negative_only = init_mask(size, [Click(50, 100, False)])
    assert not (negative_only == cv2.GC_PR_FGD).any() and negative_only[50, 100] == cv2.GC_BGD


def test_clicks_scale_pixel_centres_and_clamp() -> None:
    assert scale_click(Click(0, 0, True), (120, 160), (240, 320)) == Click(0, 0, True)
    assert scale_click(Click(119, 159, False), (120, 160), (240, 320)) == Click(238, 318, False)  # round half even
    assert scale_click(Click(639, 479, False), (640, 480), (320, 240)) == Click(319, 239, False)
    assert scale_click(Click(60, 80, True), (120, 160), (240, 320)) == Click(120, 160, True)
    assert scale_click(Click(999, 999, True), (640, 480), (320, 240)) == Click(319, 239, True)


def write_object_folder(folder: Path) -> None:
    """Two images of one textured object each, DAVIS-style layout (images/<stem>.png, masks/<stem>.png 0/255)."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    image, target, _ = scene()
    for index, flip in enumerate((False, True)):
        rgb, mask = (image[:, ::-1], target[:, ::-1]) if flip else (image, target)
        bgr = np.ascontiguousarray((rgb[..., ::-1] * 255).round().astype(np.uint8))
        cv2.imwrite(str(folder / "images" / f"{index}.png"), bgr)
        cv2.imwrite(str(folder / "masks" / f"{index}.png"), mask.astype(np.uint8) * 255)


def test_interactive_eval_command_with_grabcut(tmp_path: Path) -> None:
    write_object_folder(tmp_path / "objects")
    out, plot = tmp_path / "x.json", tmp_path / "curve.png"
    args = ["interactive-eval", "--dataset", "davis", "--root", str(tmp_path / "objects"), "--engine", "grabcut"]
    result = CliRunner().invoke(app, [*args, "--max-clicks", "4", "--out", str(out), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "GrabCut" in result.output
    payload = json.loads(out.read_text())
    assert payload["engine"] == "grabcut" and payload["runtime"] == "opencv" and payload["weights"] is None
    run = payload["results"]["NoC, RGB only"]
    assert run["objects"] == 2 and len(run["mIoU_per_click"]) == 4
    assert run["NoC@90"] == 1.0 and run["mIoU_per_click"][0] > 0.9
    assert run["click_ms_median"] > 0
    assert plot.stat().st_size > 1000
    bad = CliRunner().invoke(app, [*args[:-1], "sam", "--out", str(out)])
    assert bad.exit_code == 2 and "sam" in bad.output


@pytest.mark.slow
def test_grabcut_noc_on_the_first_grabcut_images() -> None:
    """The classical peer on 10 GrabCut images (SPEC 10 measured NoC@90 4.7 on all 50)."""
    root = shared_dataset("grabcut")
    data = build_dataset("grabcut", "all", root)
    result = evaluate_single_object(GrabCutEngine(), data, surface_kind("grabcut"), limit=10, progress=False)
    assert result["objects"] == 10
    assert result["NoC@90"] < 10


def test_interactive_eval_rejects_an_unknown_refinement(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["interactive-eval", "--dataset", "davis", "--root", str(tmp_path), "--refine", "crf"]
    )
    assert result.exit_code != 0 and "--refine must be one of none, grabcut, guided" in str(result.exception or result.output)
