"""The annotation project store (crash-safe operation logs, masks, summaries) and its export to PNG and COCO."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from rgbxseg.errors import DataError
from rgbxseg.web.export import export_annotations
from rgbxseg.web.project import AnnotationProject, image_key
from tests.conftest import REPO

CLICK = {"op": "click", "y": 1, "x": 2, "positive": True}
CLASSES = [(2, "car"), (5, "road / asphalt")]


def _log(project: AnnotationProject, image_id: str) -> Path:
    return project.folder / "log" / f"{image_key(image_id)}.jsonl"


def _joint() -> np.ndarray:
    """6×8 joint mask of image "a.png": surfaces 1 and 3 are cars (class 2), 2 is road (class 5), 4 owns nothing."""
    joint = np.zeros((6, 8), np.int64)
    joint[0:2, 1:4] = 1
    joint[3:6, 0:8] = 2
    joint[1:3, 6:8] = 3
    return joint


SURFACES = [
    {"id": 1, "class_id": 2, "name": "car"},
    {"id": 2, "class_id": 5, "name": "road / asphalt"},
    {"id": 3, "class_id": 2, "name": "car"},
    {"id": 4, "class_id": 5, "name": "road / asphalt"},
]


@pytest.fixture
def project(tmp_path: Path) -> AnnotationProject:
    return AnnotationProject(tmp_path / "project")


@pytest.fixture
def annotated(project: AnnotationProject) -> AnnotationProject:
    """a.png (4 surfaces, one empty), sub/b.jpg (one surface) and c.png (operations only, no mask)."""
    project.save_mask("a.png", _joint(), SURFACES, "done")
    b = np.zeros((3, 5), np.uint8)
    b[1, 1:4] = 1
    project.save_mask("sub/b.jpg", b, [{"id": 1, "class_id": 5, "name": "road / asphalt"}], "in_progress")
    project.append("c.png", CLICK)
    return project


def test_append_and_ops_round_trip(project: AnnotationProject) -> None:
    ops = [CLICK, {"op": "surface", "class_id": 3}, {"op": "undo"}, {"op": "status", "status": "done"}]
    for op in ops:
        project.append("sub/a.png", op)
    assert project.ops("sub/a.png") == ops
    assert project.ops("other.png") == []
    first = _log(project, "sub/a.png").read_text().splitlines()[0]
    assert first == '{"op":"click","positive":true,"x":2,"y":1}'  # compact, keys sorted


def test_torn_last_line_is_ignored_and_cut_by_the_next_append(project: AnnotationProject) -> None:
    project.append("a.png", CLICK)
    with open(_log(project, "a.png"), "ab") as handle:
        handle.write(b'{"op":"cli')  # a write cut by a crash: never acknowledged
    assert project.ops("a.png") == [CLICK]
    project.append("a.png", {"op": "undo"})
    assert project.ops("a.png") == [CLICK, {"op": "undo"}]
    assert _log(project, "a.png").read_bytes().count(b"\n") == 2


@pytest.mark.parametrize("bad", [b'{"op":"cli', b'{"x": 1}', b"\xff\xfe"])
def test_corrupt_middle_line_names_the_file_and_line(project: AnnotationProject, bad: bytes) -> None:
    project.append("a.png", CLICK)
    log = _log(project, "a.png")
    with open(log, "ab") as handle:
        handle.write(bad + b"\n" + b'{"op":"undo"}\n')
    with pytest.raises(DataError, match=rf"{log.name}, line 2"):
        project.ops("a.png")


def test_append_fsyncs_the_written_line(project: AnnotationProject, monkeypatch: pytest.MonkeyPatch) -> None:
    project.append("a.png", CLICK)  # the first append also writes project.json
    log = _log(project, "a.png")
    real_fsync = os.fsync
    seen: list[bytes] = []

    def fsync(fd: int) -> None:
        seen.append(log.read_bytes())  # what another reader (the disk cache) holds when fsync is called
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    project.append("a.png", {"op": "redo"})
    assert len(seen) == 1
    assert seen[0].endswith(b'{"op":"redo"}\n')  # flushed before the fsync


def test_acknowledged_operation_survives_kill_9(project: AnnotationProject) -> None:
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from rgbxseg.web.project import AnnotationProject\n"
        "project = AnnotationProject(Path(sys.argv[1]))\n"
        "project.append('a.png', {'op': 'click', 'y': 1, 'x': 2, 'positive': True})\n"
        "print('ack', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(project.folder)], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == -9 and result.stdout == "ack\n", result.stderr
    assert AnnotationProject(project.folder).ops("a.png") == [CLICK]


@pytest.mark.parametrize(
    "op",
    [
        {"op": "paint"},
        {"x": 1},
        "click",
        {"op": ["click"]},  # not an operation
        {"op": "click", "y": float("nan")},
        {"op": "undo", "f": {1}},  # not strict JSON
    ],  # fmt: skip
)
def test_bad_operation_is_rejected(project: AnnotationProject, op: object) -> None:
    with pytest.raises(ValueError):
        project.append("a.png", op)  # type: ignore[arg-type]
    assert project.ops("a.png") == []


def test_bad_image_id_is_rejected(project: AnnotationProject) -> None:
    with pytest.raises(ValueError, match="image id"):
        project.append("", CLICK)


def test_save_mask_summary_mask_statuses_round_trip(project: AnnotationProject) -> None:
    surfaces = [{**surface, "color": "#e6194b", "clicks": []} for surface in SURFACES]  # extra keys are not stored
    project.save_mask("sub/a.png", _joint(), surfaces, "in_progress")
    summary = project.summary("sub/a.png")
    assert summary is not None
    assert {key: summary[key] for key in ("id", "width", "height", "status", "surfaces")} == {
        "id": "sub/a.png", "width": 8, "height": 6, "status": "in_progress", "surfaces": SURFACES,
    }  # fmt: skip
    mask = project.mask("sub/a.png")
    assert mask is not None and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, _joint())
    on_disk = cv2.imread(str(project.folder / "masks" / f"{image_key('sub/a.png')}.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(on_disk, _joint())
    assert project.statuses() == {"sub/a.png": "in_progress"}
    project.save_mask("sub/a.png", np.zeros((6, 8), np.uint8), SURFACES[:1], "done")  # a later save replaces it
    assert project.statuses() == {"sub/a.png": "done"}
    assert project.summary("missing.png") is None and project.mask("missing.png") is None


@pytest.mark.parametrize(
    ("joint", "surfaces", "status", "problem"),
    [
        (np.zeros((2, 2), np.float32), SURFACES, "done", "integers"),
        (np.zeros((2, 2, 1), np.uint8), SURFACES, "done", "2-D"),
        (np.full((2, 2), 256), SURFACES, "done", "0..255"),
        (np.full((2, 2), -1), SURFACES, "done", "0..255"),
        (np.full((2, 2), 7), SURFACES, "done", r"\[7\]"),
        (np.zeros((2, 2), np.uint8), [*SURFACES, SURFACES[0]], "done", "repeat"),
        (np.zeros((2, 2), np.uint8), [{"id": 1, "class_id": 0, "name": "bg"}], "done", "class_id"),
        (np.zeros((2, 2), np.uint8), SURFACES, "finished", "status"),
    ],
)
def test_save_mask_rejects_inconsistent_input(
    project: AnnotationProject, joint: np.ndarray, surfaces: list[dict], status: str, problem: str
) -> None:
    with pytest.raises(DataError, match=problem):
        project.save_mask("a.png", joint, surfaces, status)
    assert project.summary("a.png") is None


def test_reopened_project_sees_everything(annotated: AnnotationProject) -> None:
    reopened = AnnotationProject(annotated.folder)
    assert reopened.images() == ["a.png", "c.png", "sub/b.jpg"]
    assert reopened.ops("c.png") == [CLICK]
    assert reopened.statuses() == {"a.png": "done", "sub/b.jpg": "in_progress"}
    assert reopened.summary("a.png") == annotated.summary("a.png")
    np.testing.assert_array_equal(reopened.mask("a.png"), _joint())
    index = json.loads((annotated.folder / "project.json").read_text())
    assert index == {"format": 1, "images": {image_key(i): i for i in ["a.png", "c.png", "sub/b.jpg"]}}
    assert len(image_key("a.png")) == 20


def test_other_format_version_or_corrupt_index_is_refused(project: AnnotationProject) -> None:
    index = project.folder / "project.json"
    index.write_text(json.dumps({"format": 2, "images": {}}))
    with pytest.raises(DataError, match=r"project\.json: project format version 2"):
        AnnotationProject(project.folder)
    index.write_text('{"format": 1, "images": {"0123": "a.png"}}')  # a key that is not the id's
    with pytest.raises(DataError, match="key"):
        AnnotationProject(project.folder)
    index.write_text("{")
    with pytest.raises(DataError, match=r"project\.json"):
        AnnotationProject(project.folder)


def test_mask_that_does_not_match_its_summary_is_reported(project: AnnotationProject) -> None:
    project.save_mask("a.png", _joint(), SURFACES, "done")
    png = project.folder / "masks" / f"{image_key('a.png')}.png"
    png.write_bytes(cv2.imencode(".png", np.zeros((6, 8), np.uint8))[1].tobytes())  # crash between the two writes
    with pytest.raises(DataError, match="does not match its summary"):
        project.mask("a.png")


@pytest.mark.parametrize("image_id", ["../evil.png", "/tmp/evil.png", "a/../../evil.png"])
def test_unsafe_image_id_is_stored_by_key_and_never_exported(tmp_path: Path, image_id: str) -> None:
    project = AnnotationProject(tmp_path / "work" / "project")
    project.append(image_id, CLICK)
    project.save_mask(image_id, _joint(), SURFACES, "done")
    project.save_mask("fine.png", _joint(), SURFACES, "done")
    key = image_key(image_id)
    assert {p.name for p in (project.folder / "log").iterdir()} == {f"{key}.jsonl"}
    assert {p.name for p in (project.folder / "masks").iterdir()} >= {f"{key}.png", f"{key}.json"}
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["project"]
    assert AnnotationProject(project.folder).ops(image_id) == [CLICK]
    out = tmp_path / "work" / "out"
    with pytest.raises(DataError, match="outside the export folder"):
        export_annotations(project, CLASSES, out)
    assert not out.exists()  # checked before anything is written, "fine.png" included
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "work" / "evil.png").exists()


def test_export_refuses_a_symbolic_link_out_of_the_folder(annotated: AnnotationProject, tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "labels").symlink_to(elsewhere)
    with pytest.raises(DataError, match="resolves outside the export folder"):
        export_annotations(annotated, CLASSES, out)
    assert list(elsewhere.iterdir()) == []


def test_export_label_maps(annotated: AnnotationProject, tmp_path: Path) -> None:
    written = export_annotations(annotated, CLASSES, tmp_path / "out", formats=["png"])
    assert written == [tmp_path / "out" / "labels" / "a.png", tmp_path / "out" / "labels" / "sub" / "b.png"]
    labels = cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED)
    joint = _joint()
    expected = np.where((joint == 1) | (joint == 3), 2, np.where(joint == 2, 5, 0))
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, expected)
    assert set(np.unique(cv2.imread(str(written[1]), cv2.IMREAD_UNCHANGED)).tolist()) == {0, 5}


def test_export_surface_masks(annotated: AnnotationProject, tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = export_annotations(annotated, CLASSES, out, formats=("surfaces",))
    names = ["surface_1_car.png", "surface_2_road_asphalt.png", "surface_3_car.png"]  # surface 4 owns no pixel
    assert written == [out / "surfaces" / "a" / name for name in names] + [
        out / "surfaces" / "sub" / "b" / "surface_1_road_asphalt.png"
    ]
    for surface_id, path in enumerate(written[:3], start=1):
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) == {0, 255}
        np.testing.assert_array_equal(mask == 255, _joint() == surface_id)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside pycocotools
def test_export_coco_decodes_back_to_the_surfaces(annotated: AnnotationProject, tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = export_annotations(annotated, CLASSES, out)
    assert written[-1] == out / "annotations.coco.json"
    assert sorted(written) == sorted(p for p in out.rglob("*") if p.is_file())
    coco = json.loads(written[-1].read_text())
    assert coco["categories"] == [{"id": 2, "name": "car"}, {"id": 5, "name": "road / asphalt"}]
    assert coco["images"] == [
        {"id": 1, "file_name": "a.png", "height": 6, "width": 8},
        {"id": 2, "file_name": "sub/b.jpg", "height": 3, "width": 5},
    ]
    annotations = coco["annotations"]
    assert [a["id"] for a in annotations] == [1, 2, 3, 4]
    assert [(a["image_id"], a["category_id"], a["iscrowd"]) for a in annotations] == [
        (1, 2, 0), (1, 5, 0), (1, 2, 0), (2, 5, 0),
    ]  # fmt: skip
    joint = _joint()
    for surface_id, annotation in enumerate(annotations[:3], start=1):
        expected = joint == surface_id
        segmentation = annotation["segmentation"]
        assert segmentation["size"] == [6, 8] and isinstance(segmentation["counts"], str)
        np.testing.assert_array_equal(coco_mask.decode(segmentation), expected.astype(np.uint8))
        ys, xs = np.nonzero(expected)
        assert annotation["area"] == int(expected.sum())
        bbox = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert annotation["bbox"] == [float(v) for v in bbox]
    assert annotations[3]["bbox"] == [1.0, 1.0, 3.0, 1.0] and annotations[3]["area"] == 3


def test_export_rejects_unknown_format_and_unknown_class(annotated: AnnotationProject, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="known: png, surfaces, coco"):
        export_annotations(annotated, CLASSES, tmp_path / "out", formats=["png", "yolo"])
    with pytest.raises(DataError, match="class 5"):
        export_annotations(annotated, CLASSES[:1], tmp_path / "out")
    with pytest.raises(DataError, match="0 is the background"):
        export_annotations(annotated, [(0, "background"), *CLASSES], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_refuses_two_images_sharing_an_output(project: AnnotationProject, tmp_path: Path) -> None:
    for image_id in ("a.png", "a.jpg"):
        project.save_mask(image_id, _joint(), SURFACES, "done")
    with pytest.raises(DataError, match="same files"):
        export_annotations(project, CLASSES, tmp_path / "out")
