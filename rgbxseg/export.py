"""ONNX export of a trained segmenter, checked against PyTorch with ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from rgbxseg.atomic import atomic_path
from rgbxseg.errors import ConfigError
from rgbxseg.models import SegmentationModel


class _Positional(nn.Module):
    """ONNX graphs take positional tensors: image first, then one input per modality in order."""

    def __init__(self, model: SegmentationModel) -> None:
        super().__init__()
        self.model = model
        self.names = list(model.modality_channels)

    def forward(self, image: Tensor, *modalities: Tensor) -> Tensor:
        return self.model(image, dict(zip(self.names, modalities)))


def example_inputs(model: SegmentationModel, size: tuple[int, int], seed: int = 0) -> tuple[Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    h, w = size
    image = torch.rand(1, 3, h, w, generator=generator)
    mods = [torch.rand(1, c, h, w, generator=generator) for c in model.modality_channels.values()]
    return (image, *mods)


def export_onnx(model: SegmentationModel, path: str | Path, size: tuple[int, int], opset: int = 18) -> Path:
    """Export ``model`` (eval mode, fixed H×W, batch 1) to ``path`` atomically.

    Inputs are named ``image`` and the modality names; the output is ``logits`` (1×K×H×W). The
    single-path segmenters export; DAMCSeg does not (a :class:`ConfigError` says why).
    """
    if not isinstance(model, SegmentationModel):
        raise ConfigError(
            f"{type(model).__name__} cannot be exported to ONNX: its detection-dependent branches (NMS, a crop per "
            "detected box, OpenCV's Canny for the scene complexity) have data-dependent control flow; export "
            "deeplabv3plus or fmsi_deeplab"
        )
    path = Path(path)
    wrapper = _Positional(model).eval()
    inputs = example_inputs(model, size)
    with atomic_path(path) as tmp:
        torch.onnx.export(
            wrapper, inputs, str(tmp), input_names=["image", *wrapper.names], output_names=["logits"],
            opset_version=opset, dynamo=True, external_data=False,
        )  # fmt: skip
    return path


def onnx_parity(model: SegmentationModel, path: str | Path, size: tuple[int, int], seed: int = 1) -> float:
    """Max absolute difference between PyTorch and ONNX Runtime logits on a random input."""
    inputs = example_inputs(model, size, seed)
    with torch.inference_mode():
        expected = model.eval()(inputs[0], dict(zip(model.modality_channels, inputs[1:]))).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    (got,) = session.run(["logits"], feeds)
    return float(np.abs(got - expected).max())
