"""The annotation server loses nothing it acknowledged: a real ``rgbxseg annotate`` process is killed with
SIGKILL between clicks and a new one serves every acknowledged click back (SPEC 9)."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from rgbxseg.models.mmms import MMMSConfig, MMMSNet
from rgbxseg.models.mmms.weights_file import save_mmms

pytestmark = pytest.mark.slow

TINY = MMMSConfig(channels=(16, 32, 64, 64), widths=(8, 16, 32, 32), depths=(0, 1, 1, 1), decoder_dim=8)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path, project: Path, weights: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "rgbxseg.cli", "annotate", str(folder), "--weights", str(weights)]
    command += ["--project", str(project), "--port", str(port), "--token", "k"]
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ | {"OMP_NUM_THREADS": "1"}
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited: {server.stdout.read().decode() if server.stdout else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/info", headers={"Authorization": "Bearer k"}).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.5)
    server.kill()
    raise AssertionError("the server did not start within 180 s")


def test_sigkill_between_clicks_loses_nothing_acknowledged(tmp_path: Path) -> None:
    folder, project, weights = tmp_path / "images", tmp_path / "project", tmp_path / "w.safetensors"
    folder.mkdir()
    cv2.imwrite(str(folder / "img.png"), (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8))
    save_mmms(MMMSNet(TINY), weights)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/images/img.png"
    auth = {"Authorization": "Bearer k"}
    server = start_server(folder, project, weights, port)
    try:
        acknowledged = []
        for y, x, positive in ((30, 40, True), (10, 10, False), (50, 70, True)):
            answer = httpx.post(f"{api}/click", json={"y": y, "x": x, "positive": positive}, headers=auth, timeout=60)
            assert answer.status_code == 200
            acknowledged.append(answer.json())
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    restarted = start_server(folder, project, weights, port)
    try:
        state = httpx.get(f"{api}/state", headers=auth, timeout=60).json()
    finally:
        restarted.kill()
        restarted.wait()
    last = acknowledged[-1]
    assert state["surfaces"] == last["surfaces"] and len(state["surfaces"][0]["clicks"]) == 3
    assert base64.b64decode(state["mask"]) == base64.b64decode(last["mask"])
