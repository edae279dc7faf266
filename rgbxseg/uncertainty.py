"""Per-pixel predictive uncertainty: the entropy of the softmax, normalised into [0, 1].

``entropy_map(logits)`` is ``H(p) / log K`` with ``p = softmax(logits)`` over the K classes: 0 where one class
takes all the probability, 1 where all classes are equally likely. It is the uncertainty the SPEC (section 7)
asks for in predictions; divide the logits by a fitted temperature first (:mod:`rgbxseg.temperature`, after
Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks", ICML 2017) so that the
probabilities behind it are calibrated. DAMCSeg's DSAF computes the same quantity from probabilities
(:func:`rgbxseg.models.damcseg.dsaf.normalised_entropy`) inside the model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def entropy_map(logits: Tensor) -> Tensor:
    """Normalised predictive entropy of K×H×W or B×K×H×W logits: H×W or B×H×W float32 in [0, 1].

    Computed from ``log_softmax`` (no ``log 0``, stable for logits in the thousands). One class (K = 1)
    leaves nothing to be uncertain about: all zeros.
    """
    if not isinstance(logits, Tensor) or not logits.dtype.is_floating_point or logits.ndim not in (3, 4):
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"entropy_map: expected floating-point K×H×W or B×K×H×W logits, got {got}")
    num_classes = logits.shape[-3]
    if num_classes == 0:
        raise ValueError("entropy_map: logits have no classes (K = 0)")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("entropy_map: logits must be finite, got NaN or inf")
    if num_classes == 1:
        return logits.new_zeros(logits.shape[:-3] + logits.shape[-2:], dtype=torch.float32)
    log_probs = logits.float().log_softmax(-3)
    entropy = -(log_probs.exp() * log_probs).sum(-3)
    return (entropy / math.log(num_classes)).clamp_(0.0, 1.0)
