"""The whole robustness suite of a dataset: clean, every corruption at every severity, every missing protocol."""

from __future__ import annotations

from collections.abc import Sequence

from rgbxseg.data.base import Transform
from rgbxseg.data.sample import RawSample
from rgbxseg.robustness.corruptions import CORRUPTIONS, SEVERITIES, Corrupt
from rgbxseg.robustness.missing import missing_protocols


def clean(sample: RawSample) -> RawSample:
    """The identity transform: the reference row of a robustness table."""
    return sample


def robustness_suite(modalities: Sequence[str], seed: int = 0) -> dict[str, Transform]:
    """Name → transform: ``"clean"``, then ``"<corruption>@<severity>"`` for every corruption of
    :data:`CORRUPTIONS` (in its order) and severity 1..5, then :func:`missing_protocols` of ``modalities``.

    The order is stable (the same for the same arguments), so reports and tables line up across runs.
    Every transform is a picklable object, safe to hand to DataLoader workers.
    """
    suite: dict[str, Transform] = {"clean": clean}
    for name in CORRUPTIONS:
        for severity in SEVERITIES:
            suite[f"{name}@{severity}"] = Corrupt(name, severity, seed)
    return suite | missing_protocols(modalities, seed)
