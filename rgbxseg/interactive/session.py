"""InteractiveSession: annotate every surface of one image with clicks (SPEC 6, 8; SAM's predictor shape).

The image (and its modalities) is embedded once when the session opens; each click then runs only
MSPatchEmbed + CSNet. Surfaces are annotated one after the other into a joint label map J (0 = background,
surfaces 1, 2, …; the rules of :class:`JointMask`): a click on the current surface j predicts its mask from
j's clicks and its previous mask J == j, and writes it into J. ``undo``/``redo`` step through clicks,
``select_surface`` goes back to a surface to correct it.

    session = InteractiveSession(engine, image, {"depth": depth})
    session.add_click(120, 200)                    # positive click at row 120, column 200
    session.add_click(90, 260, positive=False)
    session.next_surface("road")
    ...
    labels = session.joint_mask()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from rgbxseg.interactive.click_simulator import PRED_THRESHOLD, Click
from rgbxseg.interactive.engine import MMMSEngine
from rgbxseg.interactive.joint_mask import JointMask, check_surface


@dataclass
class _State:
    """What a click changes; ``undo`` restores the state from before the click."""

    joint: JointMask
    clicks: dict[int, tuple[Click, ...]]
    names: dict[int, str]
    probabilities: dict[int, np.ndarray] = field(default_factory=dict)
    surface: int = 1


class InteractiveSession:
    """Click-based annotation of the surfaces of one image.

    Args:
        engine: a trained :class:`MMMSEngine`.
        image: RGB, numpy H×W×3 (uint8 or float in [0, 1]) or torch 3×H×W float in [0, 1].
        modalities: name → map (numpy H×W / H×W×C or torch C×H×W), any subset of the engine's modalities.
        surface_name: name of the first surface.
    """

    def __init__(
        self,
        engine: MMMSEngine,
        image: np.ndarray | Tensor,
        modalities: Mapping[str, np.ndarray | Tensor] | None = None,
        surface_name: str | None = None,
    ) -> None:
        self.engine = engine
        self.embedding = engine.embed(image, modalities)
        self._state = _State(JointMask(self.embedding.image_size), {}, {1: surface_name or "surface 1"})
        self._undo: list[_State] = []
        self._redo: list[_State] = []
        self._last_id = 1

    @property
    def names(self) -> dict[int, str]:
        """Surface id → name of the surfaces that exist now (undoing past a surface's first click, or
        deleting it, removes it)."""
        return dict(self._state.names)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def surface(self) -> int:
        """The surface the next click goes to."""
        return self._state.surface

    @property
    def clicks(self) -> tuple[Click, ...]:
        """Clicks of the current surface, oldest first."""
        return self.clicks_of(self.surface)

    def clicks_of(self, surface: int) -> tuple[Click, ...]:
        """Clicks of a surface, oldest first (empty for a surface without clicks)."""
        return self._state.clicks.get(surface, ())

    def add_click(self, y: int, x: int, positive: bool = True) -> np.ndarray:
        """Click at row ``y``, column ``x`` of the image; returns the current surface's new mask."""
        height, width = self.embedding.image_size
        if not (0 <= y < height and 0 <= x < width):
            raise ValueError(f"click ({y}, {x}) is outside the {height}×{width} image")
        surface = self.surface
        clicks = (*self.clicks, Click(int(y), int(x), bool(positive)))
        previous = self._state.joint.mask(surface) if self.clicks else None
        probability = self.engine.predict(self.embedding, clicks, previous)
        joint = self._state.joint.copy()
        joint.write(surface, probability > PRED_THRESHOLD)
        self._push(
            _State(
                joint,
                self._state.clicks | {surface: clicks},
                self._state.names,
                self._state.probabilities | {surface: probability},
                surface,
            )
        )
        return self.mask()

    def undo(self) -> bool:
        """Take back the last click, new surface or deletion; ``False`` when there is nothing to undo."""
        if not self._undo:
            return False
        self._redo.append(self._state)
        self._state = self._undo.pop()
        return True

    def redo(self) -> bool:
        """Re-apply the last undone step; ``False`` when there is nothing to redo."""
        if not self._redo:
            return False
        self._undo.append(self._state)
        self._state = self._redo.pop()
        return True

    def next_surface(self, name: str | None = None) -> int:
        """Start a new surface (numbered after every surface so far, deleted ones included) and make it
        current, undoably; returns its id."""
        self._last_id += 1
        state = self._state
        names = state.names | {self._last_id: name or f"surface {self._last_id}"}
        self._push(_State(state.joint.copy(), state.clicks, names, state.probabilities, self._last_id))
        return self._last_id

    def select_surface(self, surface: int) -> None:
        """Make an existing surface current again, to correct it with more clicks."""
        self._state.surface = self._existing(surface)

    def delete_surface(self, surface: int | None = None) -> None:
        """Delete a surface (default: the current one), undoably: its pixels go back to background and its
        clicks are dropped. The current surface becomes the last remaining one (a new one if none is left)."""
        surface = self._existing(self.surface if surface is None else surface)
        joint = self._state.joint.copy()
        joint.write(surface, np.zeros(joint.shape, dtype=bool))
        names = {k: v for k, v in self._state.names.items() if k != surface}
        if not names:  # never without a surface to click on
            self._last_id += 1
            names = {self._last_id: f"surface {self._last_id}"}
        clicks = {k: v for k, v in self._state.clicks.items() if k != surface}
        probabilities = {k: v for k, v in self._state.probabilities.items() if k != surface}
        self._push(_State(joint, clicks, names, probabilities, max(names)))

    def _existing(self, surface: int) -> int:
        if check_surface(surface) not in self._state.names:
            raise ValueError(f"no surface {surface}; surfaces: {sorted(self._state.names)}")
        return surface

    def mask(self, surface: int | None = None) -> np.ndarray:
        """Bool H×W mask of a surface (default: the current one): J == surface."""
        return self._state.joint.mask(self.surface if surface is None else surface)

    def probability(self, surface: int | None = None) -> np.ndarray | None:
        """The last probability map predicted for a surface (None before its first click)."""
        return self._state.probabilities.get(self.surface if surface is None else surface)

    def joint_mask(self) -> np.ndarray:
        """The joint label map J (int32 H×W): 0 background, otherwise the surface id."""
        return self._state.joint.array

    def _push(self, state: _State) -> None:
        self._undo.append(self._state)
        self._redo.clear()
        state.names = dict(state.names)  # a surface started later must not appear in earlier states
        self._state = state
