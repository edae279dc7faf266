"""Robustness evaluation (SPEC section 7): image corruptions and missing-modality protocols as transforms.

Every public object here is a dataset transform (``RawSample -> RawSample``) or builds one:

* :mod:`~rgbxseg.robustness.corruptions` — ``low_light``, ``fog`` (depth-aware), ``gaussian_noise``,
  ``motion_blur``, ``defocus_blur``, ``jpeg`` at severities 1..5 on RGB only; :data:`CORRUPTIONS`, :class:`Corrupt`.
* :mod:`~rgbxseg.robustness.missing` — :class:`DropModality`, :class:`DropAll`, :class:`RandomMissing`,
  :class:`NoisyModality`, :func:`missing_protocols`.
* :func:`robustness_suite` — all of it by name, in a stable order.
* :mod:`~rgbxseg.robustness.seeding` — per-sample random streams identical in every process.

Example::

    from rgbxseg.data import SyntheticStreets
    from rgbxseg.robustness import robustness_suite

    for name, transform in robustness_suite(("depth", "thermal")).items():
        dataset = SyntheticStreets(n=100, seed=2, transform=transform)
        ...  # evaluate, one row of the mIoU drop table per name
"""

from rgbxseg.robustness.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    Corrupt,
    Corruption,
    check_severity,
    defocus_blur,
    fog,
    fog_depth,
    gaussian_noise,
    jpeg,
    low_light,
    motion_blur,
)
from rgbxseg.robustness.missing import (
    PROTOCOLS,
    DropAll,
    DropModality,
    NoisyModality,
    RandomMissing,
    missing_protocols,
)
from rgbxseg.robustness.seeding import sample_key, sample_rng
from rgbxseg.robustness.suite import clean, robustness_suite

__all__ = [
    "CORRUPTIONS",
    "PROTOCOLS",
    "SEVERITIES",
    "Corrupt",
    "Corruption",
    "DropAll",
    "DropModality",
    "NoisyModality",
    "RandomMissing",
    "check_severity",
    "clean",
    "defocus_blur",
    "fog",
    "fog_depth",
    "gaussian_noise",
    "jpeg",
    "low_light",
    "missing_protocols",
    "motion_blur",
    "robustness_suite",
    "sample_key",
    "sample_rng",
]
