"""MMMS training pieces (SPEC 6): surfaces, training views, click sampling, loss, weights files, the trainer
end to end (with resume) and ``rgbxseg interactive-eval`` on a folder the test writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rgbxseg.cli import app
from rgbxseg.data.sample import IGNORE_INDEX, RawSample
from rgbxseg.errors import DataError
from rgbxseg.interactive.config import ClickSamplingConfig, load_interactive_config
from rgbxseg.interactive.surfaces import surface_ids, surface_map
from rgbxseg.interactive.trainer import Targets, first_clicks, interaction_batch, segmentation_loss, train_interactive
from rgbxseg.interactive.views import ViewAugment, ViewSource, extract_views, random_view, read_view
from rgbxseg.models.mmms import MMMSConfig, MMMSNet
from rgbxseg.models.mmms.weights_file import load_matching, load_mmms, read_metadata, save_mmms
from tests.mmms_fakes import CountingBackbone

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

TINY = {"channels": [16, 32, 64, 64], "widths": [8, 16, 32, 32], "depths": [0, 1, 1, 1], "decoder_dim": 8}


def test_surface_maps_of_the_three_kinds() -> None:
    label = np.array([[0, 1, 2], [255, 1, 0]])
    masks = np.array([[[1, 0, 0], [0, 0, 0]], [[0, 0, 1], [0, 0, 0]]], dtype=bool)
    raw = RawSample(image=np.zeros((2, 3, 3), np.float32), label=label, instance_masks=masks)
    assert surface_map(raw, "regions").tolist() == [[0, 1, 2], [255, 1, 0]]
    assert surface_map(raw, "classes").tolist() == [[1, 2, 3], [255, 2, 1]]
    assert surface_map(raw, "instances").tolist() == [[1, 0, 2], [255, 0, 0]]
    assert surface_ids(surface_map(raw, "classes"), min_area=2) == [1, 2]
    with pytest.raises(ValueError, match="surface kind"):
        surface_map(raw, "pixels")


def test_a_view_keeps_image_labels_and_modalities_aligned() -> None:
    rng = np.random.default_rng(0)
    surfaces = rng.integers(1, 5, (10, 15)).repeat(12, 0).repeat(12, 1)  # 120×180: 12 px blocks of surfaces 1..4
    image = np.repeat((surfaces / 10.0)[..., None], 3, axis=2).astype(np.float32)
    raw = RawSample(image=image, label=surfaces, modalities={"depth": image[..., :1] * 2})
    for seed in range(5):
        view_image, view_surfaces, view_modalities = random_view(
            raw, surfaces, ViewAugment(size=84), np.random.default_rng(seed)
        )
        assert view_image.shape == (84, 84, 3) and view_surfaces.shape == (84, 84)
        inside = view_surfaces != IGNORE_INDEX
        # away from block edges (where bilinear and nearest resampling differ), colour and label agree
        kernel = np.ones((5, 5), np.uint8)
        uniform = cv2.dilate(view_surfaces.astype(np.uint8), kernel) == cv2.erode(
            view_surfaces.astype(np.uint8), kernel
        )
        uniform[[0, -1]] = uniform[:, [0, -1]] = False  # the crop's edge: its neighbours beyond are unseen
        assert uniform.sum() > 500
        assert np.allclose(view_image[..., 0][uniform & inside], view_surfaces[uniform & inside] / 10.0, atol=1e-5)
        assert np.allclose(view_modalities["depth"][..., 0], 2 * view_image[..., 0], atol=1e-5)
        assert np.all(view_image[~inside] == 0)  # padding beyond the image is black and ignored


def test_extract_views_is_resumable_and_readable(tmp_path: Path) -> None:
    source = ViewSource("synthetic", "train", None, views=2, modalities=("depth",), options={"size": (64, 96)}, limit=2)
    backbone = CountingBackbone()
    paths = extract_views(source, backbone, tmp_path, ViewAugment(size=56), progress=False)
    assert len(paths) == 4 and backbone.calls == 4
    assert extract_views(source, backbone, tmp_path, ViewAugment(size=56), progress=False) == paths
    assert backbone.calls == 4  # nothing extracted twice
    view = read_view(paths[0])
    assert [tuple(t.shape) for t in view.tokens] == [(384, 4, 4)] * 4
    assert view.surfaces.shape == (56, 56) and set(view.modalities) == {"depth"} and view.image.dtype == torch.uint8
    paths[1].write_bytes(b"garbage")
    with pytest.raises(DataError, match=paths[1].name):
        read_view(paths[1])


def test_click_sampling_and_loss() -> None:
    gt = np.zeros((2, 32, 32), bool)
    gt[:, 8:24, 8:24] = True
    valid = np.ones_like(gt)
    targets = Targets(gt, valid)
    always_simulated = ClickSamplingConfig(simulated_first=1.0, random_negative=1.0)
    clicks = first_clicks(targets, always_simulated, np.random.default_rng(0))
    assert clicks[0][0].positive and gt[0, clicks[0][0].y, clicks[0][0].x]
    assert not clicks[0][1].positive and not gt[0, clicks[0][1].y, clicks[0][1].x]
    interaction = interaction_batch(clicks, gt)
    assert interaction.shape == (2, 3, 32, 32) and torch.equal(interaction[:, 2].bool(), torch.from_numpy(gt))
    good = torch.from_numpy(np.where(gt, 8.0, -8.0)).float()[:, None]
    truth, mask = torch.from_numpy(gt), torch.from_numpy(valid)
    assert segmentation_loss(good, truth, mask) < 0.01 < segmentation_loss(-good, truth, mask)
    ignored = mask.clone()
    ignored[:, 8:24, 8:24] = False  # the object ignored: what is predicted there does not count
    scrambled = good.clone()
    scrambled[:, :, 8:24, 8:24] = torch.randn(2, 1, 16, 16) * 10
    assert torch.isclose(segmentation_loss(scrambled, truth, ignored), segmentation_loss(good, truth, ignored))


def test_weights_file_round_trip_and_errors(tmp_path: Path) -> None:
    net = MMMSNet(MMMSConfig(**(TINY | {"modalities": {"depth": 1}}))).eval()
    path = tmp_path / "w.safetensors"
    save_mmms(net, path, trained={"iterations": 3})
    assert read_metadata(path)["trained"] == {"iterations": 3}
    loaded = load_mmms(path)
    assert loaded.config == net.config
    tokens = [torch.randn(1, 384, 4, 4) for _ in range(4)]
    interaction = torch.rand(1, 3, 56, 56)
    with torch.no_grad():
        assert torch.allclose(loaded(tokens, interaction), net(tokens, interaction), atol=0.05)
    (tmp_path / "x.safetensors").write_bytes(b"nope")
    with pytest.raises(DataError, match="x.safetensors"):
        load_mmms(tmp_path / "x.safetensors")
    with pytest.raises(DataError, match="not found"):
        load_mmms(tmp_path / "missing.safetensors")


def test_start_a_multi_modal_net_from_rgb_weights(tmp_path: Path) -> None:
    """model.init: the RGB weights load into a net with a depth fuser; only the fuser starts fresh, and its
    zero-initialised CrossBlocks leave the RGB prediction unchanged."""
    rgb = MMMSNet(MMMSConfig(**TINY)).eval()
    with torch.no_grad():
        for parameter in rgb.parameters():
            parameter.add_(0.01)  # not the default initialisation: loading must be visible
    path = tmp_path / "rgb.safetensors"
    save_mmms(rgb, path, dtype=torch.float32)
    net = MMMSNet(MMMSConfig(**(TINY | {"modalities": {"depth": 1}}))).eval()
    fresh = load_matching(net, path)
    assert fresh and all(name.startswith("fuser.") for name in fresh)
    tokens = [torch.randn(1, 384, 4, 4) for _ in range(4)]
    interaction = torch.rand(1, 3, 56, 56)
    depth = {"depth": torch.rand(1, 1, 56, 56)}
    with torch.no_grad():
        assert torch.allclose(net(tokens, interaction, depth), rgb(tokens, interaction), atol=1e-5)
    with pytest.raises(DataError, match="another shape"):
        load_matching(MMMSNet(MMMSConfig(**(TINY | {"decoder_dim": 6}))), path)


def tiny_config(tmp_path: Path, iterations: int) -> Path:
    config = {
        "task": "interactive",
        "name": "tiny",
        "output_dir": str(tmp_path / "runs"),
        "model": TINY,
        "data": {
            "views_dir": str(tmp_path / "views"),
            "crop_size": 56,
            "batch_size": 2,
            "sources": [
                {"dataset": "synthetic", "split": "train", "limit": 3, "views": 1, "options": {"size": [64, 96]}}
            ],
        },
        "train": {"iterations": iterations, "checkpoint_every": 1},
    }
    path = tmp_path / f"tiny{iterations}.yaml"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.slow
def test_train_resume_and_weights(tmp_path: Path) -> None:
    train_interactive(load_interactive_config(tiny_config(tmp_path, 2)), progress=False)
    result = train_interactive(load_interactive_config(tiny_config(tmp_path, 4)), resume=True, progress=False)
    assert result["iterations"] == 4
    with (tmp_path / "runs" / "tiny" / "train_log.csv").open() as handle:
        assert [int(r["iteration"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4]
    net = load_mmms(tmp_path / "runs" / "tiny" / "mmms.safetensors")
    assert net.config.widths == tuple(TINY["widths"])
    assert read_metadata(tmp_path / "runs" / "tiny" / "mmms.safetensors")["trained"]["iterations"] == 4


def write_object_folder(folder: Path) -> None:
    """Two images with one bright square object each (DAVIS-style layout)."""
    for index in range(2):
        image = np.full((60, 80, 3), 40, np.uint8)
        mask = np.zeros((60, 80), np.uint8)
        mask[15 + index * 5 : 45, 20:60] = 255
        image[mask > 0] = 220
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(folder / "images" / f"{index}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"{index}.png"), mask)


@pytest.mark.slow
def test_interactive_eval_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RGBXSEG_CACHE", str(tmp_path / "cache"))  # the ONNX export of the click path goes here
    weights = tmp_path / "w.safetensors"
    save_mmms(MMMSNet(MMMSConfig(**TINY)), weights)
    write_object_folder(tmp_path / "objects")
    out, plot = tmp_path / "r.json", tmp_path / "curve.png"
    args = ["interactive-eval", "--dataset", "davis", "--root", str(tmp_path / "objects"), "--weights", str(weights)]
    result = CliRunner().invoke(app, [*args, "--max-clicks", "3", "--out", str(out), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["runtime"] == "onnx" and list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    run = payload["results"]["NoC, RGB only"]
    assert run["objects"] == 2 and len(run["mIoU_per_click"]) == 3 and 1 <= run["NoC@90"] <= 3
    assert run["click_ms_median"] > 0 and run["click_ms_with_backbone"] > run["click_ms_median"]
    assert plot.stat().st_size > 1000
    result = CliRunner().invoke(app, [*args, "--max-clicks", "3", "--protocol", "nocms", "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = json.loads(out.read_text())["results"]["NoCMS, RGB only"]
    assert run["surfaces"] == 2 and 1 <= run["NoCMS@(80,70)"] <= 3 and 0.0 <= run["final mIoU"] <= 1.0
