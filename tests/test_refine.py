"""Edge-aware refinement of the MMMS probability map (rgbxseg.interactive.refine) and its engine option."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rgbxseg.interactive import Click, MMMSEngine
from rgbxseg.interactive.refine import GrabCutRefine, GuidedRefine, guided_filter, make_refiner
from rgbxseg.models.mmms import MMMSConfig, MMMSNet
from tests.mmms_fakes import CountingBackbone

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

SMALL = MMMSConfig(channels=(16, 32, 64, 64), widths=(8, 16, 32, 32), depths=(0, 1, 1, 1), decoder_dim=8)


def step_image(height: int = 40, width: int = 80, edge: int = 40) -> np.ndarray:
    """Dark left of column ``edge``, bright from it on."""
    image = np.full((height, width, 3), 40, np.uint8)
    image[:, edge:] = 200
    return image


def blurred_step(height: int, width: int, edge: int, sigma: float) -> np.ndarray:
    p = np.zeros((height, width), np.float32)
    p[:, edge:] = 1
    return cv2.GaussianBlur(p, (0, 0), sigma)


def disk_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A red disk (radius 30 at (60, 80)) on a noisy green 120×160 background: (image, truth)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:120, :160]
    truth = (yy - 60) ** 2 + (xx - 80) ** 2 <= 30**2
    image = rng.normal(0, 12, (120, 160, 3)) + [60, 140, 70]
    image[truth] = rng.normal(0, 12, (int(truth.sum()), 3)) + [200, 40, 40]
    return image.clip(0, 255).astype(np.uint8), truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_guided_filter_keeps_a_constant_map_on_any_guide() -> None:
    guide = np.random.default_rng(0).random((30, 50)).astype(np.float32)
    out = guided_filter(guide, np.full((30, 50), 0.3, np.float32), radius=4, eps=1e-3)
    assert np.allclose(out, 0.3, atol=1e-5)
    image = (np.random.default_rng(1).random((30, 50, 3)) * 255).astype(np.uint8)
    for constant in (0.0, 0.7):
        refined = GuidedRefine()(np.full((30, 50), constant, np.float32), image, [])
        assert refined.dtype == np.float32 and np.allclose(refined, constant, atol=1e-5)


@pytest.mark.parametrize("logit", [False, True])
def test_guided_filter_snaps_a_blurred_shifted_step_to_the_image_edge(logit: bool) -> None:
    image = step_image()
    p = blurred_step(40, 80, edge=38, sigma=3)  # the head's edge: 2 px off and blurred over ~±6 px
    truth = np.zeros((40, 80), bool)
    truth[:, 40:] = True
    assert ((p > 0.5) != truth).sum() == 2 * 40  # two columns wrong before
    q = GuidedRefine(radius=4, eps=1e-3, logit=logit)(p, image, [])
    assert q.shape == p.shape and q.dtype == np.float32 and 0 <= q.min() and q.max() <= 1
    assert ((q > 0.5) != truth).sum() == 0  # the 0.5 crossing moved onto the image edge
    jump_before, jump_after = p[:, 40] - p[:, 39], q[:, 40] - q[:, 39]
    assert np.all(jump_after > 0.3) and np.all(jump_after > 2 * jump_before)  # and the edge got sharp


def test_grabcut_recovers_a_sharp_coloured_object_from_a_blurred_shifted_probability() -> None:
    image, truth = disk_scene()
    yy, xx = np.mgrid[:120, :160]
    shifted = ((yy - 66) ** 2 + (xx - 88) ** 2 <= 30**2).astype(np.float32)  # 6 and 8 px off
    p = cv2.GaussianBlur(shifted, (0, 0), 5)
    before = iou(p > 0.5, truth)
    for refiner in (GrabCutRefine(), GrabCutRefine(hard_prior=False, keep_confident=False)):
        q = refiner(p, image, [Click(60, 80, True)])
        assert q.shape == p.shape and q.dtype == np.float32 and 0 <= q.min() and q.max() <= 1
        assert iou(q > 0.5, truth) > max(0.85, before + 0.2), refiner
    plain = GrabCutRefine(hard_prior=False, keep_confident=False)(p, image, [Click(60, 80, True)])
    assert iou(plain > 0.5, truth) > 0.93  # free to move every pixel of the crop, it finds the disk


def test_grabcut_keeps_the_head_outside_its_crop_and_obeys_the_clicks() -> None:
    image, truth = disk_scene()
    p = truth.astype(np.float32) * 0.8 + 0.1  # uncertain everywhere (0.1 / 0.9 are not "confident" > 0.9)
    p[5:10, 150:155] = 0.3  # far from the object: outside the crop
    refiner = GrabCutRefine(hard_prior=False, keep_confident=False)
    q = refiner(p, image, [Click(60, 80, True), Click(60, 20, False)])
    assert np.array_equal(q[5:10, 150:155], p[5:10, 150:155])
    assert q[60, 80] == 1.0 and q[60, 20] == 0.0  # sure foreground / background disks


def test_grabcut_keeps_the_confident_head_but_not_against_a_click() -> None:
    image, truth = disk_scene()
    p = np.where(truth, 0.99, 0.01).astype(np.float32)  # confident everywhere
    q = GrabCutRefine()(p, image, [Click(60, 80, True), Click(110, 150, True), Click(50, 70, False)])
    assert q[110, 150] == 1.0 and q[50, 70] == 0.0  # the click disks: grabCut's sure labels
    yy, xx = np.mgrid[:120, :160]
    disks = np.zeros_like(truth)
    for y, x in ((60, 80), (110, 150), (50, 70)):
        disks |= (yy - y) ** 2 + (xx - x) ** 2 <= 25
    assert np.array_equal(q[~disks], p[~disks])  # elsewhere the head's confident values, untouched


def test_refiners_pass_an_empty_prediction_through() -> None:
    image, _ = disk_scene()
    empty = np.zeros((120, 160), np.float32)
    for refiner in (GrabCutRefine(), GuidedRefine()):
        out = refiner(empty, image, [Click(60, 80, True)])
        assert out.dtype == np.float32 and out.shape == (120, 160) and not out.any()
    faint = np.full((120, 160), 0.2, np.float32)  # nothing above 0.5: GrabCut has no object to refine
    assert np.array_equal(GrabCutRefine()(faint, image, []), faint)


def test_grabcut_without_background_samples_returns_the_head() -> None:
    image, _ = disk_scene()
    p = np.full((120, 160), 0.95, np.float32)  # everything sure foreground: no background model to fit
    assert np.array_equal(GrabCutRefine()(p, image, [Click(60, 80, True)]), p)


def test_engine_refine_option_keeps_the_contract() -> None:
    with pytest.raises(ValueError, match="refine must be one of"):
        make_refiner("crf")
    assert make_refiner("none") is None and isinstance(make_refiner("guided"), GuidedRefine)
    image, _ = disk_scene()
    net = MMMSNet(SMALL)
    plain = MMMSEngine(net, CountingBackbone(), long_side=112)
    calls: list[tuple[np.ndarray, np.ndarray, list[Click]]] = []

    def spy(probability: np.ndarray, rgb: np.ndarray, clicks: list[Click]) -> np.ndarray:
        calls.append((probability, rgb, clicks))
        return 1.0 - probability

    engine = MMMSEngine(net, CountingBackbone(), long_side=112, refine=spy)
    clicks = [Click(60, 80, True)]
    raw = plain.predict(plain.embed(image), clicks)
    refined = engine.predict(engine.embed(image), clicks)
    assert np.allclose(refined, 1.0 - raw, atol=1e-6) and refined.dtype == np.float32
    (probability, rgb, given), = calls
    assert np.array_equal(rgb, image) and given == clicks  # the refiner sees the image as uint8 RGB
    for name in ("guided", "grabcut"):
        engine = MMMSEngine(net, CountingBackbone(), long_side=112, refine=name)
        out = engine.predict(engine.embed(image), clicks)
        assert out.shape == (120, 160) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    # an embedding made before the refinement was switched on carries no image: no refinement, no error
    assert np.allclose(engine.predict(plain.embed(image), clicks), raw, atol=1e-6)
