"""Multi-sequence brain MRI as 2-D axial slices: FLAIR is the "RGB" image, other sequences are modalities."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np

from rgbxseg.data.base import SegDataset, Transform
from rgbxseg.data.instances import components_to_instances
from rgbxseg.data.sample import RawSample
from rgbxseg.errors import DataError

SEQUENCES = ("T1", "T1POST", "T2")


def normalise_volume(volume: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Per-volume intensity normalisation: clip brain voxels (> 0) to their [low, high] percentiles
    and scale to [0, 1]; background stays 0. Returns float16 to halve the memory of the cache."""
    brain = volume > 0
    if not brain.any():
        return np.zeros_like(volume, dtype=np.float16)
    lo, hi = np.percentile(volume[brain], [low, high])
    scaled = np.clip((volume - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return np.where(brain, scaled, 0.0).astype(np.float16)


def load_volume(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        volume = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
    except Exception as err:  # nibabel raises several unrelated types for a corrupt file
        raise DataError(f"{path}: cannot read the NIfTI volume ({err})") from err
    if volume.ndim != 3:
        raise DataError(f"{path}: expected a 3-D volume, got shape {volume.shape}")
    if not np.isfinite(volume).all():
        raise DataError(f"{path}: volume has NaN/inf values")
    return volume


def axial(volume: np.ndarray, z: int) -> np.ndarray:
    """Axial slice ``z`` of an (x, y, z) volume in LAS/RAS order, displayed with anterior up."""
    return np.ascontiguousarray(np.flipud(volume[:, :, z].T))


class MRISlices(SegDataset):
    """Axial slices of multi-sequence MS lesion MRI (Lesjak et al. 2017, MNI space).

    On-disk layout::

        root/<patient>/FLAIR.nii.gz  T1.nii.gz  T1POST.nii.gz  T2.nii.gz  GOLD.nii.gz (lesion label)

    FLAIR, repeated to 3 channels, is the image; ``sequences`` (default T1, T1POST, T2) are
    1-channel modalities. Each volume is normalised on its own (:func:`normalise_volume`). Classes:
    background, lesion; every 8-connected lesion in a slice is an instance (a surface for the
    interactive engine, ``instances``). Slices with less than ``min_brain`` of their pixels inside the brain are
    skipped; ``lesion_only`` keeps only slices that show a lesion.
    """

    name = "mri"
    classes = ("background", "lesion")
    thing_classes = (1,)

    def __init__(
        self,
        root: str | Path,
        patients: Sequence[str] | None = None,
        sequences: Sequence[str] = SEQUENCES,
        min_brain: float = 0.05,
        lesion_only: bool = False,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: MRI folder not found")
        self.patients = list(patients) if patients else sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not self.patients:
            raise DataError(f"{self.root}: no patient folders found")
        unknown = set(sequences) - set(SEQUENCES)
        if unknown:
            raise DataError(f"MRISlices: unknown sequence(s) {sorted(unknown)} (choose from {', '.join(SEQUENCES)})")
        self.sequences = tuple(sequences)
        self.modality_channels = {s: 1 for s in self.sequences}
        self._volume = lru_cache(maxsize=None)(self._read)
        self.index = [(p, z) for p in self.patients for z in self._slices(p, min_brain, lesion_only)]
        if not self.index:
            raise DataError(f"{self.root}: no slices left after filtering (min_brain={min_brain}, lesion_only={lesion_only})")

    def _read(self, patient: str, sequence: str) -> np.ndarray:
        volume = load_volume(self.root / patient / f"{sequence}.nii.gz")
        if sequence == "GOLD":
            return (volume > 0.5).astype(np.uint8)
        return normalise_volume(volume)

    def _slices(self, patient: str, min_brain: float, lesion_only: bool) -> list[int]:
        flair = self._volume(patient, "FLAIR")
        shape = flair.shape
        for sequence in (*self.sequences, "GOLD"):
            other = self._volume(patient, sequence).shape
            if other != shape:
                raise DataError(f"{self.root / patient / sequence}.nii.gz: volume is {other} but FLAIR is {shape}")
        brain = (flair > 0).mean(axis=(0, 1)) >= min_brain
        if lesion_only:
            brain &= self._volume(patient, "GOLD").any(axis=(0, 1))
        return [int(z) for z in np.flatnonzero(brain)]

    def __len__(self) -> int:
        return len(self.index)

    def load_label(self, index: int) -> np.ndarray:
        patient, z = self.index[index]
        return axial(self._volume(patient, "GOLD"), z).astype(np.int64)

    def load(self, index: int) -> RawSample:
        patient, z = self.index[index]
        flair = axial(self._volume(patient, "FLAIR"), z).astype(np.float32)
        label = self.load_label(index)
        masks, classes = components_to_instances(label, self.thing_classes)
        files = {name: str(self.root / patient / f"{name}.nii.gz") for name in ("FLAIR", *self.sequences)}
        return RawSample(
            image=np.repeat(flair[..., None], 3, axis=2),
            label=label,
            modalities={s: axial(self._volume(patient, s), z).astype(np.float32)[..., None] for s in self.sequences},
            instance_masks=masks,
            instance_classes=classes,
            meta={
                "id": f"{patient}-z{z:03d}",
                "dataset": self.name,
                "condition": "mri",
                "patient": patient,
                "slice": z,
                "files": {"image": files["FLAIR"], "label": str(self.root / patient / "GOLD.nii.gz"), **files},
            },
        )
