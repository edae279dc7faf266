"""The joint mask of multi-surface interactive segmentation (SPEC section 6, "Metrics", NoCMS/FRMS).

Several surfaces (classes, regions or lesions, numbered from 1) of one image are annotated one after the
other into a single label map J, 0 meaning background:

- J starts at 0;
- writing surface j's binary mask sets J = j where the mask is 1 (taking those pixels from any other
  surface), and J = 0 where J was j and the mask is now 0 (a revisit returns those pixels to background);
- surface j's mask is J == j.
"""

from __future__ import annotations

import numpy as np

from rgbxseg.interactive.click_simulator import as_binary_mask


def check_surface(surface: int) -> int:
    """``surface`` as an int; it must be an integer >= 1 (0 is the background of the joint mask)."""
    if isinstance(surface, (bool, np.bool_)) or not isinstance(surface, (int, np.integer)) or surface < 1:
        raise ValueError(f"a surface must be an integer >= 1 (0 is the background), got {surface!r}")
    return int(surface)


class JointMask:
    """Label map J (int32, H×W) into which the surfaces' binary masks are written."""

    def __init__(self, shape: tuple[int, int]) -> None:
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be (H, W) with H, W >= 1, got {shape}")
        self._labels = np.zeros(tuple(int(side) for side in shape), dtype=np.int32)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the joint mask."""
        return self._labels.shape

    @property
    def array(self) -> np.ndarray:
        """A copy of J (int32): changing it does not change the joint mask."""
        return self._labels.copy()

    def write(self, surface: int, mask: np.ndarray) -> None:
        """Write ``surface``'s binary mask (H×W bool or 0/1): J = surface on the mask, J = 0 where it left."""
        surface = check_surface(surface)
        mask = as_binary_mask(mask, "mask", self.shape)
        self._labels[(self._labels == surface) & ~mask] = 0
        self._labels[mask] = surface

    def mask(self, surface: int) -> np.ndarray:
        """Bool H×W mask of ``surface``: J == surface."""
        return self._labels == check_surface(surface)

    def copy(self) -> JointMask:
        """An independent joint mask with the same labels (to keep a state an undo can return to)."""
        duplicate = JointMask(self.shape)
        duplicate._labels[...] = self._labels
        return duplicate
