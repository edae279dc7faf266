"""The set-up step and the no-network rule."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
import torchvision

from tests.conftest import REPO


def test_torchvision_ops_work_on_this_torch() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]
    x = torch.rand(1, 2, 6, 6, requires_grad=True)
    out = torchvision.ops.deform_conv2d(x, torch.zeros(1, 18, 4, 4), torch.rand(3, 2, 3, 3))
    out.sum().backward()
    assert out.shape == (1, 3, 4, 4) and x.grad is not None


def test_fix_torchvision_is_idempotent() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "fix_torchvision.py")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout


def test_import_sets_offline_mode() -> None:
    code = "import os, rgbxseg; print(os.environ['HF_HUB_OFFLINE'], os.environ['NO_ALBUMENTATIONS_UPDATE'])"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "NO_ALBUMENTATIONS_UPDATE")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stdout.split() == ["1", "1"], result.stderr
