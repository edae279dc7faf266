"""The MMMS weights shipped in the package work right after install (issue 5's done-when): a session on a
GrabCut image reaches a good mask in a few simulated clicks, and the README's Python example runs."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rgbxseg.data.io import read_mask, read_rgb
from rgbxseg.interactive import InteractiveSession, MMMSEngine, next_click
from rgbxseg.interactive.engine import SHIPPED_WEIGHTS, WEIGHTS_DIR
from rgbxseg.metrics.interactive import iou
from rgbxseg.models.mmms.weights_file import read_metadata
from tests.conftest import REPO, shared_dataset

pytestmark = pytest.mark.slow


def test_the_shipped_weights_are_small_and_documented() -> None:
    path = WEIGHTS_DIR / SHIPPED_WEIGHTS["vit_s14"]
    assert path.stat().st_size <= 30 * 2**20
    meta = read_metadata(path)
    assert meta["trained"]["iterations"] > 0 and meta["config"]["modalities"] == {}


def test_a_grabcut_object_in_a_few_clicks() -> None:
    root = shared_dataset("grabcut")
    engine = MMMSEngine.from_weights("vit_s14")
    ious = []
    for name in ("llama", "sheep", "flower", "banana1"):
        image = read_rgb(next((root / "images").glob(f"{name}.*")))
        mask = read_mask(root / "masks" / f"{name}.bmp")
        gt, ignore = mask > 200, mask == 128
        session = InteractiveSession(engine, image)
        prediction, curve = np.zeros_like(gt), []
        for _ in range(5):
            click = next_click(prediction, gt, ignore, session.clicks)
            prediction = session.add_click(click.y, click.x, click.positive)
            curve.append(iou(prediction, gt, ignore))
        assert curve[-1] > curve[0], (name, curve)  # the clicks correct the mask
        ious.append(curve[-1])
    assert np.mean(ious) > 0.75, ious  # measured with the shipped weights: 0.83, 0.85, 0.87, 0.85


def test_the_readme_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    shared_dataset("grabcut")
    monkeypatch.chdir(REPO)
    readme = (REPO / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme[readme.index("## Interactive segmentation") :], re.S)
    assert example is not None
    namespace: dict = {}
    exec(compile(example.group(1), "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    labels = namespace["labels"]
    assert labels.shape == (371, 513) and {1, 2} <= set(np.unique(labels).tolist())
