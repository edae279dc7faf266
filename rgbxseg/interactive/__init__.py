"""Interactive segmentation (SPEC 6): the MMMS engine and session, the click simulator, the joint mask.

- :class:`MMMSEngine` (frozen backbone + feature cache + trained MMMSNet) and :class:`InteractiveSession`
  (``add_click``, ``undo``, ``next_surface``, ``mask``, ``joint_mask``), shaped like SAM's predictor;
- the RITM click simulator (:func:`next_click`, :func:`click_maps`), the multi-surface joint mask
  (:class:`JointMask`) and NoC (:func:`noc`, from :mod:`rgbxseg.metrics.interactive`).
"""

from rgbxseg.interactive.click_simulator import MAX_CLICKS, Click, click_maps, next_click
from rgbxseg.interactive.engine import ImageEmbedding, MMMSEngine
from rgbxseg.interactive.joint_mask import JointMask
from rgbxseg.interactive.session import InteractiveSession

__all__ = [
    "MAX_CLICKS",
    "Click",
    "ImageEmbedding",
    "InteractiveSession",
    "JointMask",
    "MMMSEngine",
    "click_maps",
    "next_click",
    "noc",
]


def __getattr__(name: str) -> object:
    """Re-export ``noc`` lazily: :mod:`rgbxseg.metrics.interactive` imports this package, so an eager import
    here would fail whenever that module is imported first (circular import)."""
    if name == "noc":
        from rgbxseg.metrics.interactive import noc

        return noc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
