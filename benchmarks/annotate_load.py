"""Load on the annotation server (issue 6): concurrent browser-less clients clicking against one real
``rgbxseg annotate`` process, then a check that every acknowledged click is in the project's log.

Each client annotates its own images (the server serialises the engine: what a team sharing one server
sees): a click at a random pixel, positive or negative at random. Reports click latency p50 / p95 / p99 as
seen by the clients (HTTP round trip, queueing included), the throughput, and whether every click that
got a 200 is in the operation log on disk.

    .venv/bin/python benchmarks/annotate_load.py --images ../shared/data/grabcut/images [--clients 4 --clicks 1000]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np

from rgbxseg.atomic import atomic_write_text
from rgbxseg.web.project import AnnotationProject


def wait_ready(base: str, server: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server exited before it was ready")
        try:
            if httpx.get(f"{base}/api/info").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    raise SystemExit("the server did not become ready")


def client(base: str, images: list[dict], clicks: int, seed: int, latencies: list[float], done: list[tuple]) -> None:
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=base, timeout=120) as http:
        sizes: dict[str, tuple[int, int]] = {}
        for index in range(clicks):
            image = images[index * len(images) // clicks]
            if image["id"] not in sizes:  # opening an image embeds it: not a click, not timed
                state = http.get(f"/api/images/{image['id']}/state").json()
                sizes[image["id"]] = (state["height"], state["width"])
            height, width = sizes[image["id"]]
            y, x = int(rng.integers(height)), int(rng.integers(width))
            start = time.perf_counter()
            body = {"y": y, "x": x, "positive": bool(rng.random() < 0.7)}
            answer = http.post(f"/api/images/{image['id']}/click", json=body)
            latencies.append(1000 * (time.perf_counter() - start))
            if answer.status_code == 200:
                done.append((image["id"], y, x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of images to annotate")
    parser.add_argument("--weights", default="vit_s14")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--clicks", type=int, default=1000, help="clicks in total")
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    project = Path(tempfile.mkdtemp(prefix="rgbxseg-load-"))
    base = f"http://127.0.0.1:{args.port}"
    command = [sys.executable, "-m", "rgbxseg.cli", "annotate", str(args.images), "--weights", args.weights]
    server = subprocess.Popen([*command, "--project", str(project), "--port", str(args.port)])
    try:
        wait_ready(base, server)
        listing = httpx.get(f"{base}/api/images").json()
        per_client = args.clicks // args.clients
        latencies: list[float] = []
        done: list[tuple] = []
        threads = [
            threading.Thread(target=client, args=(base, listing[i :: args.clients][:3], per_client, i, latencies, done))
            for i in range(args.clients)
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait()
    store = AnnotationProject(project)
    logged = sum(len([op for op in store.ops(i) if op["op"] == "click"]) for i in store.images())
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    record = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {args.clients} clients, one server",
        "clicks_sent": len(latencies),
        "clicks_acknowledged": len(done),
        "clicks_in_log": logged,
        "all_persisted": logged == len(done),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "p99_ms": round(float(p99), 1),
        "clicks_per_s": round(len(latencies) / seconds, 2),
    }
    print(json.dumps(record, indent=2))
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(record, indent=2))
    shutil.rmtree(project)


if __name__ == "__main__":
    main()
