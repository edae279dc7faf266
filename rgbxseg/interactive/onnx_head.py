"""The per-click path (MSPatchEmbed + CSNet) on ONNX Runtime: the fast CPU runtime of the MMMS engine.

The engine's network input is always a ``side``² square (SAM's layout), so the click path has one fixed
shape and exports once per weights: :func:`onnx_click_head` exports it with ``torch.onnx`` (dynamo), caches
the file under ``cache_dir()/onnx/`` keyed by a hash of the weights and the side, checks ONNX Runtime against
PyTorch on a random input, and returns a callable with the signature of :meth:`MMMSNet.click`. On the dev CPU
it runs a click about 1.6× faster than eager PyTorch (BENCHMARKS.md).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from rgbxseg.atomic import atomic_path
from rgbxseg.errors import RgbxsegError
from rgbxseg.models.mmms.model import MMMSNet
from rgbxseg.models.mmms.parallel_fpn import pyramid_sizes
from rgbxseg.models.weights import cache_dir

LOG = logging.getLogger(__name__)
INPUTS = ("prepared0", "prepared1", "prepared2", "prepared3", "interaction")
#: largest |ONNX Runtime − PyTorch| logit difference accepted after export
TOLERANCE = 1e-3


class _ClickPath(nn.Module):
    """``MMMSNet.click`` with positional inputs (ONNX graphs take a flat list of tensors)."""

    def __init__(self, net: MMMSNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, p0: Tensor, p1: Tensor, p2: Tensor, p3: Tensor, interaction: Tensor) -> Tensor:
        return self.net.click([p0, p1, p2, p3], interaction)


def weights_digest(net: MMMSNet) -> str:
    """Hex sha256 of the network's config and state dict (identifies an exported graph)."""
    digest = hashlib.sha256(repr(net.config.to_dict()).encode())
    for key, value in net.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def example_inputs(net: MMMSNet, side: int, seed: int = 0) -> tuple[Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    sizes = pyramid_sizes(side, side)
    widths = net.config.widths
    prepared = [torch.randn(1, w, h, v, generator=generator) for w, (h, v) in zip(widths, sizes, strict=True)]
    return (*prepared, torch.rand(1, 3, side, side, generator=generator))


class OnnxClickHead:
    """An ONNX Runtime session of the click path; ``head(prepared, interaction)`` → logits (1×1×S×S)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, prepared: list[Tensor], interaction: Tensor) -> Tensor:
        feeds = {name: t.detach().cpu().numpy() for name, t in zip(INPUTS, [*prepared, interaction], strict=True)}
        (logits,) = self.session.run(["logits"], feeds)
        return torch.from_numpy(logits)


def onnx_click_head(net: MMMSNet, side: int, threads: int | None = None) -> OnnxClickHead:
    """Export (or reuse the cached export of) ``net``'s click path for ``side``² inputs, checked for parity."""
    net = copy.deepcopy(net).cpu().eval()  # the caller's network stays where it is
    path = cache_dir() / "onnx" / f"mmms-click-{weights_digest(net)[:16]}-{side}.onnx"
    if not path.is_file():
        LOG.info("exporting the MMMS click path to %s (once per weights)", path)
        with atomic_path(path) as tmp:
            torch.onnx.export(
                _ClickPath(net).eval(), example_inputs(net, side), str(tmp), input_names=list(INPUTS),
                output_names=["logits"], opset_version=18, dynamo=True, external_data=False,
            )  # fmt: skip
    head = OnnxClickHead(path, threads)
    inputs = example_inputs(net, side, seed=1)
    with torch.no_grad():
        expected = net.click(list(inputs[:4]), inputs[4]).numpy()
    difference = float(np.abs(head(list(inputs[:4]), inputs[4]).numpy() - expected).max())
    if difference > TOLERANCE:
        raise RgbxsegError(f"{path}: ONNX Runtime differs from PyTorch by {difference:.2e}; delete it to re-export")
    return head
