"""What every metric shares: device-following state and the input checks."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch


class DeviceState(ABC):
    """Base of the metrics: state tensors that follow the device of the first :meth:`update` after a reset.

    Subclasses list their state attribute names in ``state_names`` and create them (on the CPU) in
    ``_zero_state``. Every state tensor is a sum over images, so in distributed evaluation a caller can
    ``torch.distributed.all_reduce`` each of them (``ReduceOp.SUM``) before :meth:`compute`. A process that
    has seen no update still holds its zeros on the CPU: move them to the collective's device first.
    """

    state_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.device: torch.device | None = None
        self.reset()

    @abstractmethod
    def _zero_state(self) -> dict[str, torch.Tensor]:
        """The state tensors, zero-filled on the CPU, keyed by the attribute names listed in ``state_names``."""

    def reset(self) -> None:
        """Clear the accumulated state; the next update chooses the device again."""
        for name, value in self._zero_state().items():
            setattr(self, name, value)
        self.device = None

    def _bind(self, device: torch.device) -> None:
        """Move the state to ``device`` on the first update; refuse a later update on another device."""
        if self.device is None:
            self.device = device
            for name in self.state_names:
                setattr(self, name, getattr(self, name).to(device))
        elif device != self.device:
            raise ValueError(
                f"{type(self).__name__}: state lives on {self.device} (device of the first update), "
                f"got inputs on {device}; call reset() to change device"
            )


def check_num_classes(num_classes: int) -> None:
    """Raise ValueError unless ``num_classes`` is an int >= 1."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")


def is_integer_dtype(tensor: torch.Tensor) -> bool:
    """True for integer tensors (bool, float and complex are not labels)."""
    dtype = tensor.dtype
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def check_label_maps(
    pred: torch.Tensor, target: torch.Tensor, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a prediction/target pair of label maps and return both as N×H×W.

    Both must be integer tensors of the same shape, H×W or N×H×W, on the same device.
    """
    for role, tensor in (("pred", pred), ("target", target)):
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name}: {role} must be a torch.Tensor, got {type(tensor).__name__}")
        if not is_integer_dtype(tensor):
            raise ValueError(f"{name}: {role} must be an integer tensor of class ids, got dtype {tensor.dtype}")
        if tensor.ndim not in (2, 3):
            raise ValueError(f"{name}: {role} must be H×W or N×H×W, got shape {tuple(tensor.shape)}")
    if pred.shape != target.shape:
        raise ValueError(
            f"{name}: pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.device != target.device:
        raise ValueError(f"{name}: pred is on {pred.device} but target is on {target.device}")
    if pred.ndim == 2:
        return pred.unsqueeze(0), target.unsqueeze(0)
    return pred, target


def check_class_range(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int, name: str
) -> None:
    """Raise ValueError if a prediction is outside [0, num_classes) or a target is neither in it nor ignore.

    One host synchronisation (a two-element read) per call; the offending values are gathered only on error.
    """
    bad_pred = (pred < 0) | (pred >= num_classes)
    bad_target = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
    any_pred, any_target = torch.stack([bad_pred.any(), bad_target.any()]).tolist()
    if any_pred:
        values = torch.unique(pred[bad_pred])[:5].tolist()
        raise ValueError(f"{name}: predicted class ids must be in [0, {num_classes}), got {values}")
    if any_target:
        values = torch.unique(target[bad_target])[:5].tolist()
        raise ValueError(
            f"{name}: target class ids must be in [0, {num_classes}) or the ignore id {ignore_index}, got {values}"
        )


def percent(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``100 * numerator / denominator`` in float64, NaN where the denominator is 0."""
    numerator, denominator = numerator.double(), denominator.double()
    ratio = 100.0 * numerator / denominator.clamp_min(1)
    return torch.where(denominator > 0, ratio, torch.full_like(ratio, math.nan))


def nanmean(values: torch.Tensor) -> float:
    """Mean of the defined (non-NaN) entries; NaN when there are none."""
    defined = values[~values.isnan()]
    return float(defined.mean()) if defined.numel() else math.nan
