"""Missing-modality protocols as dataset transforms (SPEC section 7), RawSample → RawSample.

A missing sensor is *absent* from ``RawSample.modalities`` (never zeros, SPEC section 2); a dropped
name is appended to ``meta["missing"]``, as :class:`~rgbxseg.data.synthetic.SyntheticStreets` does. The
RGB image, the label, the instances and every other modality are the input's own objects, and the
input sample is never modified (new ``modalities`` and ``meta`` dicts are made).

* :class:`DropModality` — one modality entirely missing; :class:`DropAll` — every modality (RGB only).
* :class:`RandomMissing` — each modality of each sample absent with probability ``rate``. The decision
  for (sample, modality) is a uniform draw keyed by (seed, modality, sample id), compared with the
  rate; so it is the same in every process, and with one seed the drops at p = 0.25 are a subset of
  those at p = 0.5 (the protocols are nested).
* :class:`NoisyModality` — Gaussian noise of ``sigma`` × the modality's value range, clipped to that
  range. The range is ``value_range`` when given; else [0, 1] when the map lies in [0, 1] (the repo's
  convention: synthetic maps, 8- and 16-bit rasters scaled to [0, 1]), else the map's own [min, max]
  (a float map kept in sensor units).

:func:`missing_protocols` lists the standard protocols of a dataset, by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from rgbxseg.data.base import Transform
from rgbxseg.data.sample import RawSample
from rgbxseg.robustness.seeding import sample_key, sample_rng

RANDOM_MISSING_RATES = (0.25, 0.5)
NOISY_SIGMA = 0.1  # noise standard deviation as a share of the modality's value range


def _without(sample: RawSample, names: Iterable[str]) -> RawSample:
    """``sample`` without the modalities ``names`` (those it has), recorded in ``meta["missing"]``."""
    gone = [name for name in names if name in sample.modalities]
    if not gone:
        return sample
    missing = list(sample.meta.get("missing", []))
    missing += [name for name in gone if name not in missing]
    modalities = {name: array for name, array in sample.modalities.items() if name not in gone}
    return replace(sample, modalities=modalities, meta={**sample.meta, "missing": missing})


@dataclass(frozen=True)
class DropModality:
    """Modality ``name`` entirely missing (absent from the sample); a sample without it is returned as is."""

    name: str

    def __call__(self, sample: RawSample) -> RawSample:
        return _without(sample, [self.name])


@dataclass(frozen=True)
class DropAll:
    """Every modality missing: the sample keeps its RGB image only."""

    def __call__(self, sample: RawSample) -> RawSample:
        return _without(sample, list(sample.modalities))


@dataclass(frozen=True)
class RandomMissing:
    """Each modality of each sample absent with probability ``rate``, deterministic per (seed, sample id)."""

    rate: float
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"RandomMissing: rate must be a probability in [0, 1], got {self.rate!r}")

    def drops(self, sample: RawSample, name: str) -> bool:
        """Whether modality ``name`` of ``sample`` is dropped (whether or not the sample has it)."""
        draw = sample_rng(self.seed, f"random_missing:{name}", sample_key(sample)).random()
        return bool(draw < self.rate)

    def __call__(self, sample: RawSample) -> RawSample:
        return _without(sample, [name for name in sample.modalities if self.drops(sample, name)])


def value_range(array: np.ndarray) -> tuple[float, float]:
    """[0, 1] for a map inside it (the repo's convention), else the map's own [min, max]."""
    low, high = float(np.min(array)), float(np.max(array))
    return (0.0, 1.0) if low >= 0.0 and high <= 1.0 else (low, high)


@dataclass(frozen=True)
class NoisyModality:
    """Gaussian noise of ``sigma`` × value range on modality ``name``, clipped to the range.

    ``value_range`` fixes the range; None infers it per sample with :func:`value_range`. A sample
    without the modality is returned as is.
    """

    name: str
    sigma: float = NOISY_SIGMA
    seed: int = 0
    value_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.sigma >= 0.0:
            raise ValueError(f"NoisyModality: sigma must be >= 0 (a share of the value range), got {self.sigma!r}")
        if self.value_range is not None and not self.value_range[0] < self.value_range[1]:
            raise ValueError(f"NoisyModality: value_range must be (low, high) with low < high, got {self.value_range}")

    def __call__(self, sample: RawSample) -> RawSample:
        array = sample.modalities.get(self.name)
        if array is None:
            return sample
        array = np.asarray(array, dtype=np.float32)
        low, high = self.value_range or value_range(array)
        rng = sample_rng(self.seed, f"noisy:{self.name}", sample_key(sample))
        noise = rng.standard_normal(array.shape, dtype=np.float32) * np.float32(self.sigma * (high - low))
        noisy = np.clip(array + noise, low, high).astype(np.float32, copy=False)
        return replace(sample, modalities={**sample.modalities, self.name: noisy})


def missing_protocols(modalities: Sequence[str], seed: int = 0) -> dict[str, Transform]:
    """The missing-modality protocols of a dataset with ``modalities``, name → transform, in a stable order.

    ``missing:<m>`` for each modality, ``missing:all`` (only with two or more modalities: with one it
    would repeat ``missing:<m>``), ``random_missing@0.25`` and ``random_missing@0.5``, ``noisy:<m>`` for
    each modality (σ = 0.1 of its range). No modality: no protocol.
    """
    names = list(modalities)
    if isinstance(modalities, str) or len(set(names)) < len(names):
        raise ValueError(f"missing_protocols: modalities must be a list of distinct names, got {modalities!r}")
    protocols: dict[str, Transform] = {f"missing:{name}": DropModality(name) for name in names}
    if len(names) >= 2:
        protocols["missing:all"] = DropAll()
    if names:
        protocols |= {f"random_missing@{rate}": RandomMissing(rate, seed) for rate in RANDOM_MISSING_RATES}
    protocols |= {f"noisy:{name}": NoisyModality(name, NOISY_SIGMA, seed) for name in names}
    return protocols


PROTOCOLS = missing_protocols  # the name the robustness issue uses
