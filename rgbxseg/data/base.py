"""The dataset base class: load -> validate -> transform -> tensors, the same for every dataset."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import torch

from rgbxseg.data.sample import IGNORE_INDEX, RawSample, Sample, to_sample, validate

Transform = Callable[[RawSample], RawSample]


def default_palette(num_classes: int) -> np.ndarray:
    """A fixed, well-separated K×3 uint8 palette (the PASCAL VOC bit-interleaving scheme)."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for k in range(num_classes):
        c, r, g, b = k + 1, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette[k] = (r, g, b)
    return palette


class SegDataset(torch.utils.data.Dataset, ABC):
    """Base of every rgbxseg dataset.

    Subclasses set ``classes`` (names, index = class id), optionally ``palette`` and
    ``modality_channels`` ({name: channels}), and implement ``__len__`` and :meth:`load`.
    ``dataset[i]`` loads a :class:`RawSample`, validates it (clear :class:`~rgbxseg.DataError`
    naming the file), applies the joint ``transform`` and returns a :class:`Sample`.
    """

    name: str = "dataset"
    classes: tuple[str, ...] = ()
    thing_classes: tuple[int, ...] = ()
    ignore_index: int = IGNORE_INDEX

    def __init__(self, transform: Transform | None = None) -> None:
        self.transform = transform
        self.modality_channels: dict[str, int] = {}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def palette(self) -> np.ndarray:
        return default_palette(self.num_classes)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.modality_channels)

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, index: int) -> RawSample:
        """Read sample ``index`` from disk (or generate it), untransformed."""

    def load_label(self, index: int) -> np.ndarray:
        """Only the label map of sample ``index`` (subclasses override when it is cheaper)."""
        return self.load(index).label

    def raw(self, index: int) -> RawSample:
        """Sample ``index`` loaded, validated and transformed, still in numpy layout."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        raw = self.load(index % len(self))
        validate(raw, self.num_classes, self.modality_channels, self.ignore_index)
        return self.transform(raw) if self.transform is not None else raw

    def __getitem__(self, index: int) -> Sample:
        return to_sample(self.raw(index))


def spread(total: int, count: int) -> list[int]:
    """``count`` indices evenly spaced over ``range(total)``, from the first to the last (all when
    ``count >= total``)."""
    if count >= total:
        return list(range(total))
    if count == 1:
        return [0]
    return [round(i * (total - 1) / (count - 1)) for i in range(count)]


class SegSubset(SegDataset):
    """Samples ``indices`` of ``base``, with the same classes and modalities and a transform of its own."""

    def __init__(self, base: SegDataset, indices: Sequence[int], transform: Transform | None = None) -> None:
        super().__init__(transform)
        self.base = base
        self.indices = list(indices)
        self.name, self.classes, self.thing_classes = base.name, base.classes, base.thing_classes
        self.ignore_index = base.ignore_index
        self.modality_channels = dict(base.modality_channels)

    @property
    def palette(self) -> np.ndarray:
        return self.base.palette

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> RawSample:
        return self.base.load(self.indices[index])

    def load_label(self, index: int) -> np.ndarray:
        return self.base.load_label(self.indices[index])
