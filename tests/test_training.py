"""The training engine on tiny synthetic data: exact resume after SIGKILL, data parallel with
torchrun (2 processes, gloo on CPU, and 2 single-process "nodes" meeting on 127.0.0.1), schedules,
deterministic data order, inference modes."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from rgbxseg.config import EvalConfig, parse_config
from rgbxseg.data import SyntheticStreets, collate, train_transforms
from rgbxseg.engine.inference import predict_logits
from rgbxseg.engine.loader import SeededView, epoch_indices, epoch_loader
from rgbxseg.engine.schedule import lr_factor
from rgbxseg.engine.trainer import train
from rgbxseg.models import create_model
from tests.conftest import REPO


def tiny_config(tmp_path: Path, iterations: int = 14, **train_overrides: object) -> dict:
    return {
        "name": "tiny",
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "deeplabv3plus", "pretrained": False, "options": {"aspp_channels": 16, "decoder_channels": 16}},
        "data": {
            "dataset": "synthetic",
            "modalities": ["depth", "thermal"],
            "options": {"size": [48, 64], "n": 16},
            "crop_size": [48, 48],
            "batch_size": 4,
            "num_workers": 0,
        },
        "train": {"iterations": iterations, "checkpoint_every": 5, "val_every": 100, "threads": 1, **train_overrides},
        "eval": {"split": "val", "batch_size": 8},
    }


def run_cli(args: list[str], **kwargs: object) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "rgbxseg.cli", *args], cwd=REPO, env=env, **kwargs)


def rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path) -> None:
    reference = train(parse_config(tiny_config(tmp_path / "a")), progress_bar=False)
    expected = torch.load(tmp_path / "a" / "runs" / "tiny" / "last.pt", weights_only=True)["model"]

    config = tmp_path / "b.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path / "b")))
    log = tmp_path / "b" / "runs" / "tiny" / "train_log.csv"
    process = run_cli(["train", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(rows(log)) < 7 and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(rows(log))
    assert 7 <= done < 14, f"the run was killed after {done} iterations, not mid-run"
    killed_at = torch.load(tmp_path / "b" / "runs" / "tiny" / "last.pt", weights_only=True)["progress"]
    assert killed_at["iteration"] in (5, 10) and killed_at["batch_in_epoch"] not in (0, 4)  # mid-epoch

    resumed = run_cli(["train", "--config", str(config), "--resume"], stdout=subprocess.DEVNULL)
    assert resumed.wait(timeout=600) == 0
    got = torch.load(tmp_path / "b" / "runs" / "tiny" / "last.pt", weights_only=True)
    assert got["progress"]["iteration"] == reference.iteration == 14
    for key, value in expected.items():
        torch.testing.assert_close(got["model"][key], value, rtol=1e-5, atol=1e-6, msg=f"{key} differs after resume")
    assert [int(r["iteration"]) for r in rows(log)] == list(range(1, 15))  # no duplicated log rows


def test_refuses_to_overwrite_a_run_without_resume(tmp_path: Path) -> None:
    cfg = parse_config(tiny_config(tmp_path, iterations=1))
    train(cfg, progress_bar=False)
    with pytest.raises(Exception, match="pass --resume"):
        train(cfg, progress_bar=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], config: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", *args, "-m", "rgbxseg.cli", "train", "--config", str(config)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def check_parallel_run(run_dir: Path) -> None:
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["world_size"] == 2 and info["steps_per_epoch"] == 2  # 16 samples / 2 processes / batch 4
    checkpoint = torch.load(run_dir / "last.pt", weights_only=True)
    assert checkpoint["progress"]["iteration"] == 4
    assert len(rows(run_dir / "train_log.csv")) == 4 and len(rows(run_dir / "val_log.csv")) == 1


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path: Path) -> None:
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, iterations=4)))
    process = torchrun(["--standalone", "--nproc_per_node=2"], config)
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out[-3000:]
    check_parallel_run(tmp_path / "runs" / "tiny")


@pytest.mark.slow
def test_torchrun_two_nodes_on_loopback(tmp_path: Path) -> None:
    config = tmp_path / "nodes.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, iterations=4)))
    port = free_port()
    common = ["--nnodes=2", "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}"]
    nodes = [torchrun([*common, f"--node_rank={rank}"], config) for rank in (0, 1)]
    for node in nodes:
        out, _ = node.communicate(timeout=600)
        assert node.returncode == 0, out[-3000:]
    check_parallel_run(tmp_path / "runs" / "tiny")


def test_schedules() -> None:
    assert lr_factor(0.0, 0, "poly") == 1.0 and lr_factor(1.0, 99, "poly") == 0.0
    assert lr_factor(0.5, 50, "poly", power=1.0) == pytest.approx(0.5)
    assert lr_factor(0.5, 50, "cosine") == pytest.approx(0.5)
    assert lr_factor(0.0, 0, "cosine", warmup_iterations=4) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0.1, 1, "step")


def test_epoch_order_is_seeded_and_split_across_ranks() -> None:
    a = epoch_indices(10, seed=3, epoch=1, batch_size=2)
    assert a == epoch_indices(10, seed=3, epoch=1, batch_size=2) and a != epoch_indices(10, seed=3, epoch=2, batch_size=2)
    assert sorted(k - 10 for k in a) == list(range(10))
    r0, r1 = (epoch_indices(10, 3, 1, 2, rank=r, world_size=2) for r in (0, 1))
    assert len(r0) == len(r1) == 4 and not set(r0) & set(r1)


def test_augmentation_does_not_depend_on_workers_or_resume_point() -> None:
    dataset = SyntheticStreets(n=8, size=(40, 48), seed=0)
    dataset.transform = train_transforms((32, 32), seed=0)
    view = SeededView(dataset, seed=5)
    serial = [b.image for b in epoch_loader(view, epoch=2, start_batch=0, batch_size=2, num_workers=0)]
    parallel = [b.image for b in epoch_loader(view, epoch=2, start_batch=0, batch_size=2, num_workers=2)]
    resumed = [b.image for b in epoch_loader(view, epoch=2, start_batch=2, batch_size=2, num_workers=0)]
    for x, y in zip(serial, parallel):
        torch.testing.assert_close(x, y)
    for x, y in zip(serial[2:], resumed):
        torch.testing.assert_close(x, y)


def test_sliding_window_and_flip() -> None:
    torch.manual_seed(0)
    model = create_model("deeplabv3plus", 3, pretrained=False, aspp_channels=16, decoder_channels=16).eval()
    image = torch.rand(1, 3, 40, 56)
    whole = predict_logits(model, image)
    assert whole.shape == (1, 3, 40, 56)
    # a window as large as the image is the whole image
    torch.testing.assert_close(predict_logits(model, image, mode="slide", window=(40, 56), stride=(20, 20)), whole)
    slide = predict_logits(model, image, mode="slide", window=(32, 32), stride=(16, 16))
    assert slide.shape == whole.shape and torch.isfinite(slide).all()
    flipped = predict_logits(model, image, flip=True)
    mirror = predict_logits(model, image.flip(-1), flip=True)
    torch.testing.assert_close(flipped, mirror.flip(-1), rtol=1e-4, atol=1e-5)  # flip TTA is flip-invariant


def test_evaluate_reports_per_class() -> None:
    from rgbxseg.engine.evaluate import evaluate

    dataset = SyntheticStreets(n=2, size=(32, 48), seed=1)
    model = create_model("deeplabv3plus", dataset.num_classes, pretrained=False, modalities=dataset.modality_channels)
    result = evaluate(model, dataset, EvalConfig(batch_size=2), torch.device("cpu"), progress=False)
    assert set(result["per_class"]) == set(dataset.classes) and 0 <= result["aAcc"] <= 100
    assert collate([dataset[0]]).image.shape == (1, 3, 32, 48)
