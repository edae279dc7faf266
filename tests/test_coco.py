"""COCOInstances on COCO files the tests write (polygons, crowd RLE, compressed RLE, overlaps, an image
without annotations, bad input) and on ../shared/data/coco_mini."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from rgbxseg.data import DATASETS, COCOInstances, build_dataset
from rgbxseg.errors import DataError
from rgbxseg.interactive.surfaces import surface_ids, surface_kind, surface_map
from tests.conftest import shared_dataset
from tests.test_cli import rgbxseg

H, W = 20, 30


def rect(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    """A rectangle polygon; pycocotools fills exactly rows y0..y1-1 and columns x0..x1-1 of it."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def box_mask(y0: int, y1: int, x0: int, x1: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE: column-major run lengths, starting with a (possibly empty) background run."""
    flat = mask.T.ravel().astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"size": list(mask.shape), "counts": runs}


def compressed_rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


# Hand-drawn masks of image "a" (20×30).
BIG = box_mask(2, 10, 2, 12)  # annotation 10, cat, 80 px
DOG = box_mask(6, 14, 8, 16)  # annotation 11, dog, 64 px: smaller, so it owns its overlap with BIG
TWO_PARTS = box_mask(2, 5, 20, 24) | box_mask(8, 10, 20, 24)  # annotation 12, dog, 20 px
CROWD = box_mask(12, 20, 0, 10)  # annotation 13, crowd (overlaps DOG at rows 12-13, columns 8-9)
TINY = box_mask(16, 18, 26, 28)  # annotation 14, cat, 4 px


def coco_document() -> dict[str, Any]:
    return {
        "info": {"description": "test"},
        "images": [
            {"id": 1, "file_name": "a.png", "height": H, "width": W},
            {"id": 2, "file_name": "b.png", "height": 10, "width": 10},
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],  # sorted by id: dog=1, cat=2
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "iscrowd": 0, "segmentation": [rect(2, 2, 12, 10)]},
            {"id": 11, "image_id": 1, "category_id": 3, "iscrowd": 0, "segmentation": compressed_rle(DOG)},
            {
                "id": 12, "image_id": 1, "category_id": 3, "iscrowd": 0,
                # the 4-number "polygon" has no area (pycocotools would read it as a box): skipped
                "segmentation": [rect(20, 2, 24, 5), rect(20, 8, 24, 10), [0, 0, 1, 1]],
            },  # fmt: skip
            {"id": 13, "image_id": 1, "category_id": 3, "iscrowd": 1, "segmentation": uncompressed_rle(CROWD)},
            {"id": 14, "image_id": 1, "category_id": 7, "iscrowd": 0, "segmentation": [rect(26, 16, 28, 18)]},
        ],
    }


def write_coco(root: Path, document: dict[str, Any] | None = None, name: str = "annotations.json") -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(root / "images" / "a.png"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "images" / "b.png"), np.full((10, 10, 3), 80, np.uint8))
    (root / name).write_text(json.dumps(coco_document() if document is None else document))
    return root / name


def expected_instances(min_area: int = 0) -> np.ndarray:
    """The instance label drawn by hand: smaller instances over larger ones, crowd = ignore elsewhere."""
    kept = [m for m in (BIG, DOG, TWO_PARTS, TINY) if m.sum() >= min_area]
    label = np.zeros((H, W), np.int64)
    for k in sorted(range(len(kept)), key=lambda k: -kept[k].sum()):
        label[kept[k]] = k + 1
    label[CROWD & (label == 0)] = 255
    return label


def test_instances_pixel_exact(tmp_path: Path) -> None:
    write_coco(tmp_path)
    ds = COCOInstances(tmp_path)
    assert len(ds) == 2 and ds.num_classes == 255 and ds.categories == ("dog", "cat")
    raw = ds.raw(0)
    expected = expected_instances()
    np.testing.assert_array_equal(raw.label, expected)
    np.testing.assert_array_equal(ds.load_label(0), expected)
    assert (raw.label == 2).sum() == 64 and (raw.label == 1).sum() == 80 - 16  # DOG owns the overlap
    assert (raw.label == 255).sum() == CROWD.sum() - 4  # DOG keeps its 2×2 pixels inside the crowd
    assert raw.meta["surfaces"] == [1, 2, 3, 4]
    assert raw.meta["categories"] == {1: "cat", 2: "dog", 3: "dog", 4: "cat"}
    assert raw.meta["annotation_ids"] == {1: 10, 2: 11, 3: 12, 4: 14}
    assert raw.meta["image_id"] == 1 and raw.meta["files"]["image"].endswith("images/a.png")
    # instances: visible masks in surface order, category indices in the classes-mode numbering
    assert raw.instance_masks.shape == (4, H, W)
    for k in range(4):
        np.testing.assert_array_equal(raw.instance_masks[k], expected == k + 1)
    assert raw.instance_classes.tolist() == [2, 1, 1, 2]
    sample = ds[0]
    assert sample.instances is not None and sample.instances.boxes[1].tolist() == [8, 6, 15, 13]
    rgb = cv2.imread(str(tmp_path / "images" / "a.png"))[..., ::-1] / 255
    np.testing.assert_allclose(sample.image.numpy().transpose(1, 2, 0), rgb, atol=1e-6)


def test_image_without_annotations_is_background_unless_skipped(tmp_path: Path) -> None:
    write_coco(tmp_path)
    raw = COCOInstances(tmp_path).raw(1)
    assert raw.label.shape == (10, 10) and not raw.label.any()
    assert raw.meta["surfaces"] == [] and raw.instance_masks.shape == (0, 10, 10)
    assert len(COCOInstances(tmp_path)[1].instances) == 0
    skipped = COCOInstances(tmp_path, skip_empty=True)
    assert len(skipped) == 1 and skipped.raw(0).meta["id"] == "a"


def test_classes_mode(tmp_path: Path) -> None:
    write_coco(tmp_path)
    ds = COCOInstances(tmp_path, surfaces="classes")
    assert ds.classes == ("background", "dog", "cat") and ds.thing_classes == (1, 2)
    raw = ds.raw(0)
    expected = np.zeros((H, W), np.int64)
    expected[BIG] = 2
    expected[DOG | TWO_PARTS] = 1
    expected[TINY] = 2
    expected[CROWD & (expected == 0)] = 255
    np.testing.assert_array_equal(raw.label, expected)
    assert raw.meta["surfaces"] == [1, 2] and raw.meta["categories"] == {1: "dog", 2: "cat"}
    assert raw.instance_classes.tolist() == [2, 1, 1, 2] and len(raw.instance_masks) == 4
    assert surface_map(raw, surface_kind("coco")).tolist() == expected.tolist()


def test_min_area_measured_on_the_own_mask(tmp_path: Path) -> None:
    write_coco(tmp_path)
    raw = COCOInstances(tmp_path, min_area=10).raw(0)
    np.testing.assert_array_equal(raw.label, expected_instances(10))
    assert raw.meta["surfaces"] == [1, 2, 3] and raw.meta["annotation_ids"] == {1: 10, 2: 11, 3: 12}
    # BIG shows 64 px here, but its own mask has 80: kept at min_area=70, everything else dropped
    raw = COCOInstances(tmp_path, min_area=70).raw(0)
    np.testing.assert_array_equal(raw.label, expected_instances(70))
    assert raw.meta["surfaces"] == [1] and (raw.label == 1).sum() == 80
    assert len(COCOInstances(tmp_path, min_area=100, skip_empty=False)) == 2
    with pytest.raises(DataError, match="no image with an instance left"):
        COCOInstances(tmp_path, min_area=100, skip_empty=True)


def test_equal_areas_later_wins_and_hidden_instances_renumbered(tmp_path: Path) -> None:
    document = coco_document()
    document["annotations"] = [
        {"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0, "segmentation": [rect(0, 0, 4, 4)]},
        {"id": 2, "image_id": 1, "category_id": 7, "iscrowd": 0, "segmentation": [rect(0, 0, 4, 4)]},  # same mask
        {"id": 3, "image_id": 1, "category_id": 3, "iscrowd": 0, "segmentation": [rect(10, 0, 14, 4)]},
        {"id": 4, "image_id": 1, "category_id": 7, "iscrowd": 0, "segmentation": [rect(12, 0, 16, 4)]},  # equal area
    ]
    write_coco(tmp_path, document)
    raw = COCOInstances(tmp_path).raw(0)
    assert raw.meta["annotation_ids"] == {1: 2, 2: 3, 3: 4}  # annotation 1 is hidden by 2: ids stay contiguous
    expected = np.zeros((H, W), np.int64)
    expected[0:4, 0:4] = 1
    expected[0:4, 10:12] = 2
    expected[0:4, 12:16] = 3
    np.testing.assert_array_equal(raw.label, expected)


def test_registry_and_views_source(tmp_path: Path) -> None:
    write_coco(tmp_path)
    assert DATASETS["coco"].splits == ("all",) and surface_kind("coco") == "regions"
    ds = build_dataset("coco", "all", tmp_path, surfaces="classes", min_area=5)
    assert isinstance(ds, COCOInstances) and ds.surfaces == "classes"
    with pytest.raises(DataError, match="needs --root"):
        build_dataset("coco", "all")
    with pytest.raises(DataError, match="unknown surfaces 'objects'"):
        build_dataset("coco", "all", tmp_path, surfaces="objects")
    # what rgbxseg.interactive.views.extract_views does with a source, minus the ViT
    ds = build_dataset("coco", "all", tmp_path)
    raw = ds.raw(0)
    surfaces = surface_map(raw, surface_kind("coco"))
    assert surfaces.dtype == np.int32 and surface_ids(surfaces) == [1, 2, 3, 4]
    assert set(np.unique(surfaces).tolist()) == {0, 1, 2, 3, 4, 255}


def test_extract_views_with_a_stub_backbone(tmp_path: Path) -> None:
    from rgbxseg.interactive.views import ViewAugment, ViewSource, extract_views, read_view

    write_coco(tmp_path / "coco")

    def backbone(image: torch.Tensor) -> list[torch.Tensor]:
        return [torch.zeros(1, 4, image.shape[2] // 8, image.shape[3] // 8)] * 4

    source = ViewSource("coco", "all", tmp_path / "coco", views=2)
    augment = ViewAugment(size=32)
    paths = extract_views(source, backbone, tmp_path / "views", augment, min_area=4, progress=False)  # type: ignore[arg-type]
    assert paths and all("coco-all-" in str(p) for p in paths)
    values = set(read_view(paths[0]).surfaces.unique().tolist())
    assert values <= {0, 1, 2, 3, 4, 255} and values & {1, 2, 3, 4}


# ------------------------------------------------------------------------------------------- bad input


def _mutated(change: Any) -> dict[str, Any]:
    document = coco_document()
    change(document)
    return document


@pytest.mark.parametrize(
    "document,fragment",
    [
        ("", "the file is empty"),
        ("  \n", "the file is empty"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a COCO instance file (the top level is a list"),
        ('{"images": [], "categories": []}', "not a COCO instance file (missing key(s) 'annotations')"),
        ('{"images": [], "annotations": [], "categories": []}', "the file lists no images"),
        (_mutated(lambda d: d.update(annotations={})), "'annotations' is a dict, not a list"),
        (_mutated(lambda d: d["images"][0].pop("height")), "image #0 needs an integer 'id'"),
        (_mutated(lambda d: d["images"].append(dict(d["images"][0]))), "image id 1 appears twice"),
        (_mutated(lambda d: d["categories"].append({"id": 3, "name": "x"})), "category id 3 appears twice"),
        (_mutated(lambda d: d["annotations"][0].update(image_id=12345)), "annotation 10: unknown image id 12345"),
        (_mutated(lambda d: d["annotations"][0].update(image_id=[1])), "annotation 10: unknown image id [1]"),
        (
            _mutated(lambda d: d["annotations"][1].update(category_id=99)),
            "annotation 11 (image a.png): unknown category id 99",
        ),
        (
            _mutated(lambda d: d["annotations"][0].pop("segmentation")),
            "annotation 10 (#0): missing key(s) 'segmentation'",
        ),
        (
            _mutated(lambda d: d["annotations"][0].update(segmentation="polygon")),
            "annotation 10 (image a.png): segmentation is neither polygons nor an RLE",
        ),
        (
            _mutated(lambda d: d["annotations"][0].update(segmentation={"bbox": [1, 2, 3, 4]})),
            "annotation 10 (image a.png): segmentation is neither polygons nor an RLE",
        ),
        (
            _mutated(lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4, 5]])),
            "annotation 10 (image a.png): a polygon segmentation must be lists of an even number",
        ),
        (
            _mutated(lambda d: d["annotations"][3]["segmentation"].update(size=[10, 10])),
            "annotation 13 (image a.png): RLE size [10, 10] is not the image's [height, width] [20, 30]",
        ),
        (
            _mutated(lambda d: d["annotations"][3]["segmentation"].update(counts=[3, -1])),
            "annotation 13 (image a.png): RLE counts must be a string",
        ),
    ],
)  # fmt: skip
def test_bad_annotation_files_name_the_file(tmp_path: Path, document: Any, fragment: str) -> None:
    path = write_coco(tmp_path, {})
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(DataError, match=re.escape(f"{path}: ") + r".*" + re.escape(fragment)):
        COCOInstances(tmp_path)


def test_missing_files_and_other_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'annotations.json'}: file not found")):
        COCOInstances(tmp_path)
    write_coco(tmp_path, name="instances_val.json")
    (tmp_path / "images").rename(tmp_path / "val2017")
    ds = COCOInstances(tmp_path, annotations="instances_val.json", images="val2017")
    assert len(ds) == 2 and ds.raw(0).meta["surfaces"] == [1, 2, 3, 4]
    absolute = COCOInstances("/nonexistent", annotations=tmp_path / "instances_val.json", images=tmp_path / "val2017")
    assert len(absolute) == 2
    (tmp_path / "val2017" / "b.png").unlink()
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'val2017' / 'b.png'}: file not found (image 2 of ")):
        COCOInstances(tmp_path, annotations="instances_val.json", images="val2017")


def test_errors_found_when_loading_name_the_file(tmp_path: Path) -> None:
    path = write_coco(tmp_path)
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((H + 1, W, 3), np.uint8))
    message = f"{tmp_path / 'images' / 'a.png'}: image is 21×30 but {path} says 20×30"
    with pytest.raises(DataError, match=re.escape(message)):
        COCOInstances(tmp_path)[0]
    # RLEs whose runs do not cover the image: pycocotools would leave the rest of the mask uninitialised
    bad = {
        "zzzz": "the compressed RLE counts are malformed",
        compressed_rle(np.ones((5, 5), bool))["counts"]: "the compressed RLE counts add up to 25, not 20×30",
        "3T3": "the compressed RLE counts add up to 103, not 20×30",
    }
    for counts, problem in bad.items():
        document = coco_document()
        document["annotations"][1]["segmentation"]["counts"] = counts
        write_coco(tmp_path, document)
        message = re.escape(f"{path}: annotation 11 (image a.png): invalid segmentation ({problem})")
        with pytest.raises(DataError, match=message):
            COCOInstances(tmp_path).load_label(0)
        with pytest.raises(DataError, match=message):
            COCOInstances(tmp_path, min_area=5)  # the area is measured when the dataset is built
    document = coco_document()
    document["annotations"][3]["segmentation"]["counts"] = [5, 3]  # adds up to 8, not 20×30
    write_coco(tmp_path, document)
    message = f"{path}: annotation 13 (image a.png): invalid segmentation (the counts add up to 8, not 20×30)"
    with pytest.raises(DataError, match=re.escape(message)):
        COCOInstances(tmp_path)[0]


def test_more_than_254_instances(tmp_path: Path) -> None:
    document = coco_document()
    document["images"] = [{"id": 5, "file_name": "a.png", "height": H, "width": W}]
    cells = [(x, y) for y in range(H) for x in range(W)][:255]
    document["annotations"] = [
        {"id": i, "image_id": 5, "category_id": 3, "iscrowd": 0, "segmentation": [rect(x, y, x + 1, y + 1)]}
        for i, (x, y) in enumerate(cells)
    ]
    write_coco(tmp_path, document)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'images' / 'a.png'}: image 5 has 255 instances")):
        COCOInstances(tmp_path).load_label(0)
    assert COCOInstances(tmp_path, surfaces="classes").load_label(0).sum() == 255  # one class: fine
    document["annotations"].pop()
    write_coco(tmp_path, document)
    assert COCOInstances(tmp_path).load_label(0).max() == 254


def test_cli_data_info(tmp_path: Path) -> None:
    write_coco(tmp_path)
    result = rgbxseg("data", "info", "coco", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert any("all" in line and " 2 " in line for line in result.stdout.splitlines()), result.stdout
    assert "instance 4" in result.stdout
    (tmp_path / "annotations.json").write_text("")
    result = rgbxseg("data", "info", "coco", "--root", str(tmp_path))
    assert result.returncode == 2 and "annotations.json: the file is empty" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # COCO.annToMask under numpy 2
def test_coco_mini() -> None:
    root = shared_dataset("coco_mini")
    document = json.loads((root / "annotations.json").read_text())
    ds = COCOInstances(root)
    assert len(ds) == 294 == len(document["images"])
    counts = [len(surface_ids(ds.load_label(i).astype(np.int32))) for i in range(len(ds))]
    non_crowd = sum(1 for a in document["annotations"] if not a["iscrowd"])
    assert sum(counts) == non_crowd == 2589  # no instance is hidden by a smaller one
    # a few samples against pycocotools' own COCO.annToMask
    from pycocotools.coco import COCO

    coco = COCO(str(root / "annotations.json"))
    for index in (0, 100, 293):
        raw = ds.raw(index)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=raw.meta["image_id"]))
        union = np.zeros(raw.label.shape, bool)
        for surface, annotation_id in raw.meta["annotation_ids"].items():
            own = coco.annToMask(coco.anns[annotation_id]).astype(bool)
            assert ((raw.label == surface) <= own).all()
            union |= own
        assert ((raw.label > 0) & (raw.label < 255)).sum() == union.sum()
        crowd = [coco.annToMask(a).astype(bool) for a in anns if a["iscrowd"]]
        if crowd:
            assert (raw.label == 255).sum() == (np.logical_or.reduce(crowd) & ~union).sum()
