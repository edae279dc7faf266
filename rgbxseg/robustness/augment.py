"""Corruption augmentation: train on the corruptions the robustness suite tests (SPEC section 7).

:class:`RandomCorruption` applies, with probability ``p``, one corruption of
:data:`~rgbxseg.robustness.corruptions.CORRUPTIONS` at a uniformly drawn severity to the RGB image of a
training sample — the same functions as the evaluation, so what "fog at severity 3" means is one thing in
training and test. Modalities, label and instances are untouched (see :mod:`.corruptions`).

Decisions:

* The draws are, in order: apply or not, which corruption, which severity, then the corruption's own noise;
  the decision to apply is always the first draw (as in :mod:`rgbxseg.data.augment`).
* ``names`` restricts the corruptions; leaving some out of training makes them *unseen* in the suite
  (the ImageNet-C protocol holds corruptions out; a report must say which were seen).
* Applied after the joint scale/crop/flip, so severities act at the training resolution, like the suite
  acts at the evaluation resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rgbxseg.data.sample import RawSample
from rgbxseg.robustness.corruptions import CORRUPTIONS, SEVERITIES, check_severity

CORRUPTION_STREAM = 3  # after rgbxseg.data.augment's OCCLUSION_STREAM = 1, ZOOM_STREAM = 2


class RandomCorruption:
    """With probability ``p``, one of ``names`` at one of ``severities`` (uniform) on the RGB image.

    Args:
        p: Probability of corrupting a sample, in [0, 1].
        names: Corruptions to draw from (keys of :data:`CORRUPTIONS`; default: all of them).
        severities: Severities to draw from (each in 1..5; default: all).
        seed: Seed of the generator (None: random); :meth:`reseed` replaces it.

    Raises:
        ValueError: ``p`` outside [0, 1], an unknown corruption name, an empty choice or a bad severity.
    """

    def __init__(
        self,
        p: float = 0.5,
        names: Sequence[str] | None = None,
        severities: Sequence[int] = SEVERITIES,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"corruption probability p must lie in [0, 1], got {p}")
        self.names = tuple(CORRUPTIONS if names is None else names)
        unknown = [n for n in self.names if n not in CORRUPTIONS]
        if unknown or not self.names:
            raise ValueError(f"unknown or no corruption names {unknown or '[]'}: valid names are {', '.join(CORRUPTIONS)}")
        self.severities = tuple(check_severity(s) for s in severities)
        if not self.severities:
            raise ValueError("RandomCorruption needs at least one severity")
        self.p = p
        self.rng = np.random.default_rng(None if seed is None else (seed, CORRUPTION_STREAM))

    def reseed(self, seed: int) -> None:
        """Restart the generator from ``seed``."""
        self.rng = np.random.default_rng((seed, CORRUPTION_STREAM))

    def __call__(self, raw: RawSample) -> RawSample:
        if self.rng.random() >= self.p:
            return raw
        name = self.names[int(self.rng.integers(len(self.names)))]
        severity = self.severities[int(self.rng.integers(len(self.severities)))]
        return CORRUPTIONS[name](raw, severity, self.rng)
