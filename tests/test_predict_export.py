"""predict and export on a tiny trained checkpoint: label/overlay/uncertainty PNGs, ONNX parity with PyTorch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rgbxseg.config import parse_config
from rgbxseg.data import SyntheticStreets
from rgbxseg.engine.trainer import train
from rgbxseg.errors import ConfigError
from rgbxseg.export import export_onnx, onnx_parity
from rgbxseg.models import create_model
from rgbxseg.predictor import Predictor, load_trained
from tests.conftest import REPO
from tests.test_training import tiny_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    train(parse_config(tiny_config(root, iterations=2)), progress_bar=False)
    return root / "runs" / "tiny" / "last.pt"


def test_load_trained_and_predict(checkpoint: Path) -> None:
    trained = load_trained(checkpoint)
    assert trained.modality_channels == {"depth": 1, "thermal": 1} and len(trained.classes) == 9
    raw = SyntheticStreets(n=1, size=(48, 64), seed=7).raw(0)
    predictor = Predictor(trained.model, device="cpu")
    full = predictor.predict(raw.image, {k: v for k, v in raw.modalities.items()})
    assert full.labels.shape == (48, 64) and full.probabilities.shape == (9, 48, 64)
    np.testing.assert_allclose(full.probabilities.sum(0), 1.0, atol=1e-5)
    without_thermal = predictor.predict((raw.image * 255).astype(np.uint8), {"depth": raw.modalities["depth"]})
    assert without_thermal.labels.shape == (48, 64)


def test_predictor_uncertainty_and_temperature(checkpoint: Path) -> None:
    trained = load_trained(checkpoint)
    raw = SyntheticStreets(n=1, size=(48, 64), seed=7).raw(0)
    plain = Predictor(trained.model, device="cpu").predict(raw.image, raw.modalities)
    assert plain.uncertainty.shape == (48, 64) and plain.uncertainty.dtype == np.float32
    assert 0.0 <= plain.uncertainty.min() and plain.uncertainty.max() <= 1.0
    probs = plain.probabilities.astype(np.float64)
    expected = -(probs * np.log(np.clip(probs, 1e-30, None))).sum(0) / np.log(9)
    np.testing.assert_allclose(plain.uncertainty, expected, atol=1e-4)
    hot = Predictor(trained.model, device="cpu", temperature=4.0).predict(raw.image, raw.modalities)
    np.testing.assert_array_equal(hot.labels, plain.labels)  # the temperature never changes a label
    assert (hot.uncertainty >= plain.uncertainty - 1e-6).all() and hot.uncertainty.mean() > plain.uncertainty.mean()
    assert (hot.probabilities.max(0) <= plain.probabilities.max(0) + 1e-6).all()
    with pytest.raises(ValueError, match="temperature must be > 0"):
        Predictor(trained.model, device="cpu", temperature=0.0)


def test_onnx_export_matches_pytorch(checkpoint: Path, tmp_path: Path) -> None:
    trained = load_trained(checkpoint)
    path = export_onnx(trained.model, tmp_path / "model.onnx", (48, 64))
    assert path.stat().st_size > 100_000
    assert onnx_parity(trained.model, path, (48, 64)) < 1e-4


@pytest.mark.slow
def test_predict_and_export_cli(checkpoint: Path, tmp_path: Path) -> None:
    raw = SyntheticStreets(n=1, size=(48, 64), seed=3).raw(0)
    image, depth = tmp_path / "scene.png", tmp_path / "depth.png"
    cv2.imwrite(str(image), (raw.image[..., ::-1] * 255).astype(np.uint8))
    cv2.imwrite(str(depth), (raw.modalities["depth"][..., 0] * 65535).astype(np.uint16))
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rgbxseg.cli", *args], cwd=REPO, capture_output=True, text=True)

    out_dir = str(tmp_path / "out")
    result = run(
        "predict", str(image), "--checkpoint", str(checkpoint), "--modality", f"depth={depth}", "--out-dir", out_dir
    )
    assert result.returncode == 0, result.stderr
    label = cv2.imread(str(tmp_path / "out" / "scene_label.png"), cv2.IMREAD_UNCHANGED)
    assert label.shape == (48, 64) and label.max() < 9
    assert cv2.imread(str(tmp_path / "out" / "scene_overlay.png")).shape == (48, 64, 3)
    uncertainty = cv2.imread(str(tmp_path / "out" / "scene_uncertainty.png"), cv2.IMREAD_UNCHANGED)
    assert uncertainty.shape == (48, 64) and uncertainty.dtype == np.uint8
    assert not list((tmp_path / "out").glob(".*tmp*"))  # written atomically: no temporary file left behind
    hot_dir = str(tmp_path / "hot")
    hot = run("predict", str(image), "--checkpoint", str(checkpoint), "--out-dir", hot_dir, "--temperature", "5")
    assert hot.returncode == 0, hot.stderr
    hot_uncertainty = cv2.imread(str(tmp_path / "hot" / "scene_uncertainty.png"), cv2.IMREAD_UNCHANGED)
    assert hot_uncertainty.mean() > uncertainty.mean()  # softer probabilities: more uncertain everywhere
    bad_t = run("predict", str(image), "--checkpoint", str(checkpoint), "--temperature", "0")
    assert bad_t.returncode == 2 and "--temperature must be a finite number > 0" in bad_t.stderr
    result = run("export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--size", "48", "64")
    assert result.returncode == 0, result.stderr
    difference = float(result.stdout.rsplit(":", 1)[1])
    assert difference < 1e-4
    bad = run("predict", str(tmp_path / "missing.png"), "--checkpoint", str(checkpoint))
    assert bad.returncode == 2 and "missing.png: file not found" in bad.stderr
    assert torch.load(checkpoint, weights_only=True)["progress"]["iteration"] == 2


def test_damcseg_export_is_refused_with_a_reason(tmp_path: Path) -> None:
    model = create_model("damcseg", 3, pretrained=False, thing_classes=(1,))
    with pytest.raises(ConfigError, match="cannot be exported to ONNX: its detection-dependent branches"):
        export_onnx(model, tmp_path / "damcseg.onnx", (64, 64))
    assert not (tmp_path / "damcseg.onnx").exists()
