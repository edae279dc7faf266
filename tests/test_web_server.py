"""The annotation server's API (docs/annotation_api.md) with a stand-in engine: operations, persistence and
replay, export, and the security rules (paths, token, body limit, validation, no stack traces)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from rgbxseg.interactive.click_simulator import Click
from rgbxseg.interactive.engine import ImageEmbedding
from rgbxseg.web.annotator import Annotator, ClassSpec, load_classes
from rgbxseg.web.project import AnnotationProject
from rgbxseg.web.server import create_app

CLASSES = [ClassSpec(1, "car", "#ff0000"), ClassSpec(2, "road", "#00ff00")]


class DiskEngine:
    """Predicts the union of 8 px disks around the positive clicks, minus those around the negative ones."""

    modalities: tuple[str, ...] = ()
    runtime = "fake"

    def embed(self, image: np.ndarray, modalities: object = None) -> ImageEmbedding:
        return ImageEmbedding([], image.shape[:2], image.shape[:2], max(image.shape[:2]), ())

    def predict(self, embedding: ImageEmbedding, clicks: list[Click], previous: np.ndarray | None) -> np.ndarray:
        yy, xx = np.mgrid[: embedding.image_size[0], : embedding.image_size[1]]
        probability = np.zeros(embedding.image_size, np.float32)
        for click in clicks:
            probability[(yy - click.y) ** 2 + (xx - click.x) ** 2 <= 64] = 1.0 if click.positive else 0.0
        return probability


def write_images(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "b.jpg", "sub/c.png"):
        cv2.imwrite(str(folder / name), np.full((40, 60, 3), 90, np.uint8))


def make_client(tmp_path: Path, token: str | None = None) -> tuple[TestClient, Annotator]:
    if not (tmp_path / "data").exists():
        write_images(tmp_path / "data")
    annotator = Annotator(tmp_path / "data", DiskEngine(), AnnotationProject(tmp_path / "project"), CLASSES)  # type: ignore[arg-type]
    return TestClient(create_app(annotator, token), raise_server_exceptions=False), annotator


def decode(encoded: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(encoded), np.uint8), cv2.IMREAD_UNCHANGED)


def test_listing_info_and_images(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    assert client.get("/").status_code == 200 and "<html" in client.get("/").text.lower()
    info = client.get("/api/info").json()
    assert [c["name"] for c in info["classes"]] == ["car", "road"] and info["images"] == 3
    listing = client.get("/api/images").json()
    assert [i["id"] for i in listing] == ["a.png", "b.jpg", "sub/c.png"] and {i["status"] for i in listing} == {"new"}
    png = client.get("/api/images/sub/c.png/rgb")
    assert png.headers["content-type"] == "image/png" and cv2.imdecode(
        np.frombuffer(png.content, np.uint8), 1
    ).shape == (40, 60, 3)


def test_clicks_surfaces_undo_redo_delete(tmp_path: Path) -> None:
    client, annotator = make_client(tmp_path)
    state = client.post("/api/images/a.png/click", json={"y": 20, "x": 20, "positive": True}).json()
    mask = decode(state["mask"])
    assert mask.shape == (40, 60) and mask[20, 20] == 1 and (mask == 1).sum() == 197  # disk of radius 8
    assert state["status"] == "in_progress" and state["can_undo"] and "uncertainty" in state
    state = client.post("/api/images/a.png/surface", json={"class_id": 2}).json()
    assert state["current"] == 2 and state["surfaces"][1]["class_id"] == 2
    state = client.post("/api/images/a.png/click", json={"y": 20, "x": 26, "positive": True}).json()
    assert decode(state["mask"])[20, 26] == 2  # the later surface takes the shared pixels
    assert client.post("/api/images/a.png/undo").json()["can_redo"]
    assert decode(client.post("/api/images/a.png/redo").json()["mask"])[20, 26] == 2
    state = client.post("/api/images/a.png/delete", json={"surface": 1}).json()
    assert [s["id"] for s in state["surfaces"]] == [2] and not (decode(state["mask"]) == 1).any()
    state = client.post("/api/images/a.png/select", json={"surface": 2}).json()
    assert state["current"] == 2
    assert client.post("/api/images/b.jpg/undo").status_code == 409
    assert client.post("/api/images/a.png/select", json={"surface": 9}).status_code == 400
    assert client.post("/api/images/a.png/surface", json={"class_id": 7}).status_code == 400
    assert client.post("/api/images/a.png/status", json={"status": "done"}).json()["status"] == "done"
    assert {i["id"]: i["status"] for i in client.get("/api/images").json()}["a.png"] == "done"
    assert len(annotator.project.ops("a.png")) == 8  # every acknowledged operation is in the log


def test_a_restarted_server_replays_everything(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    client.post("/api/images/sub/c.png/click", json={"y": 10, "x": 10})
    client.post("/api/images/sub/c.png/surface", json={"class_id": 2})
    before = client.post("/api/images/sub/c.png/click", json={"y": 30, "x": 50, "positive": True}).json()
    client.post("/api/images/sub/c.png/undo")
    before = client.post("/api/images/sub/c.png/redo").json()
    restarted, _ = make_client(tmp_path)
    after = restarted.get("/api/images/sub/c.png/state").json()
    assert np.array_equal(decode(after["mask"]), decode(before["mask"]))
    assert after["surfaces"] == before["surfaces"] and after["current"] == before["current"]
    assert after["can_undo"] and not after["can_redo"]


def test_export_endpoint(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    client.post("/api/images/a.png/click", json={"y": 20, "x": 20})
    answer = client.post("/api/export", json={"formats": ["png", "coco"]}).json()
    assert "annotations.coco.json" in answer["files"] and any(f.startswith("labels") for f in answer["files"])
    coco = json.loads((Path(answer["folder"]) / "annotations.coco.json").read_text())
    assert coco["annotations"][0]["category_id"] == 1 and coco["annotations"][0]["area"] == 197


@pytest.mark.parametrize(
    "path",
    [
        "/api/images/../a.png/state",
        "/api/images/%2e%2e/%2e%2e/etc/passwd/rgb",
        "/api/images/..%2F..%2Fetc%2Fpasswd/rgb",
        "/api/images//etc/passwd/rgb",
        "/api/images/%2Fetc%2Fpasswd/rgb",
        "/api/images/outside.png/rgb",
        "/api/images/a.png/modality/..%2F..%2Fsecret",
        "/static/..%2Fserver.py",
        "/static/%2e%2e%2fserver.py",
    ],
)
def test_paths_never_escape_the_data_root(tmp_path: Path, path: str) -> None:
    (tmp_path / "outside.png").write_bytes(b"secret")
    client, annotator = make_client(tmp_path)
    (tmp_path / "data" / "link.png").symlink_to(tmp_path / "outside.png")
    response = client.get(path)
    assert response.status_code in (404, 400) and "secret" not in response.text
    assert "Traceback" not in response.text


def test_symlinks_out_of_the_root_are_not_listed(tmp_path: Path) -> None:
    write_images(tmp_path / "data")
    cv2.imwrite(str(tmp_path / "outside.png"), np.zeros((5, 5, 3), np.uint8))
    (tmp_path / "data" / "link.png").symlink_to(tmp_path / "outside.png")
    _, annotator = make_client(tmp_path)
    assert "link.png" not in annotator.images


def test_token_body_limit_validation_and_no_stack_traces(tmp_path: Path) -> None:
    client, annotator = make_client(tmp_path, token="s3cret")
    assert client.get("/api/images").status_code == 401
    assert client.get("/api/images", headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    assert client.get("/api/images", headers=auth).status_code == 200
    assert client.get("/").status_code == 200  # the page itself carries no data
    big = client.post("/api/images/a.png/click", headers=auth, content=b"{" + b" " * 70_000 + b"}")
    assert big.status_code == 413
    bad = client.post("/api/images/a.png/click", headers=auth, json={"y": "up", "x": 3})
    assert bad.status_code == 422 and "y" in bad.text
    extra = client.post("/api/images/a.png/click", headers=auth, json={"y": 1, "x": 1, "shell": "rm -rf /"})
    assert extra.status_code == 422
    outside = client.post("/api/images/a.png/click", headers=auth, json={"y": 400, "x": 1})
    assert outside.status_code == 400 and "outside" in outside.json()["detail"]

    def broken(image_id: str) -> dict:
        raise RuntimeError("internal detail that must not leak")

    annotator.state = broken  # type: ignore[method-assign]
    crashed = client.get("/api/images/a.png/state", headers=auth)
    assert crashed.status_code == 500 and crashed.json() == {"detail": "internal server error"}


def test_classes_file(tmp_path: Path) -> None:
    path = tmp_path / "classes.yaml"
    path.write_text("- car\n- {name: person, color: '#123456'}\n")
    classes = load_classes(path)
    assert [(c.id, c.name) for c in classes] == [(1, "car"), (2, "person")] and classes[1].color == "#123456"
    path.write_text("- {color: red}\n")
    with pytest.raises(Exception, match="class 1 has no name"):
        load_classes(path)
