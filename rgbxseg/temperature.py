"""Post-hoc temperature scaling of a trained segmenter (Guo, Pleiss, Sun and Weinberger, "On Calibration
of Modern Neural Networks", ICML 2017, section 4.2).

One scalar ``T > 0`` divides every logit: ``p = softmax(z / T)``. ``T`` is fitted on held-out pixels by
minimising the negative log-likelihood, with the model frozen. Dividing all K logits of a pixel by the same
positive number keeps their order, so the argmax — every decision, hence mIoU and every other label metric —
is unchanged; only the confidences move (``T > 1`` softens over-confident predictions). In floating point,
division is correctly rounded and therefore monotone: no order is ever reversed, at most two logits less than
an ulp apart can round to a tie, which is why :class:`rgbxseg.predictor.Predictor` takes its labels from the
unscaled logits.

* :func:`collect_logits` gathers (logits, labels) over the labelled pixels of a split through the repo's own
  inference path (:func:`rgbxseg.engine.inference.predict_logits`, so DeepLabV3+, FMSI-DeepLab and DAMCSeg
  alike), keeping a seeded uniform sample of at most ``max_pixels`` pixels.
* :func:`fit_temperature` returns the NLL-optimal ``T`` (LBFGS over ``log T``, so ``T > 0`` by construction).
* :class:`TemperatureScaled` wraps a model so that its forward returns ``logits / T``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from rgbxseg.data import SegDataset, collate
from rgbxseg.data.sample import Batch
from rgbxseg.engine.inference import predict_logits

# The fitted T is kept in [1/100, 100]: with perfectly separable pixels the NLL keeps falling as T -> 0
# and an unbounded optimiser would return 0 (infinite logits). Any real model lies well inside.
T_MIN, T_MAX = 1e-2, 1e2
LOG_T_MIN, LOG_T_MAX = math.log(T_MIN), math.log(T_MAX)


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float; ValueError unless it is a finite number > 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite positive number, got {temperature!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (a positive scalar keeps every argmax), got {temperature}")
    return float(temperature)


class PixelSample:
    """A seeded uniform sample without replacement of at most ``capacity`` pixels from a stream of images.

    Bottom-k (reservoir) sampling: every pixel draws an independent uniform key and the ``capacity`` pixels
    with the smallest keys are kept, which is a uniform sample of everything offered so far. Memory stays at
    ``capacity`` plus one batch, whatever the size of the split, and no first pass is needed to count pixels.
    Keys are drawn image by image for every pixel, labelled or not, so the sample depends on the seed and the
    data only, not on the batch size. Kept pixels stay in the order they arrived.
    """

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.generator = torch.Generator().manual_seed(seed)
        self.logits: Tensor | None = None  # M×K float32, CPU
        self.labels = torch.zeros(0, dtype=torch.int64)
        self.keys = torch.zeros(0, dtype=torch.float64)

    def draw_keys(self, images: int, pixels_per_image: int) -> Tensor:
        """One uniform key per pixel of ``images`` images, drawn one image at a time (CPU float64)."""
        draws = [torch.rand(pixels_per_image, generator=self.generator, dtype=torch.float64) for _ in range(images)]
        return torch.cat(draws) if draws else torch.zeros(0, dtype=torch.float64)

    def add(self, logits: Tensor, labels: Tensor, keys: Tensor) -> None:
        """Offer N×K logits, N labels and their N keys (CPU)."""
        if self.keys.numel() == self.capacity:  # full: only keys below the current largest can enter
            enter = keys < self.keys.max()
            logits, labels, keys = logits[enter], labels[enter], keys[enter]
        self.logits = logits if self.logits is None else torch.cat([self.logits, logits])
        self.labels, self.keys = torch.cat([self.labels, labels]), torch.cat([self.keys, keys])
        if self.keys.numel() > self.capacity:
            keep = self.keys.topk(self.capacity, largest=False).indices.sort().values
            self.logits, self.labels, self.keys = self.logits[keep], self.labels[keep], self.keys[keep]

    def result(self) -> tuple[Tensor, Tensor]:
        """K×N float32 logits and N int64 labels of the kept pixels."""
        if self.logits is None or self.labels.numel() == 0:
            raise ValueError("no labelled pixels to sample")
        return self.logits.t().contiguous(), self.labels.clone()


def labelled_pixels(logits: Tensor, label: Tensor, ignore_index: int) -> tuple[Tensor, Tensor, Tensor]:
    """B×K×H×W logits and B×H×W labels → N×K logits, N labels of the non-ignored pixels and the B·H·W bool
    mask that picked them, all on the CPU."""
    keep = (label != ignore_index).flatten()
    flat = logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    return flat[keep].float().cpu(), label.flatten()[keep].cpu(), keep.cpu()


def _check_finite_batch(logits: Tensor, batch: Batch) -> None:
    finite = torch.isfinite(logits).flatten(1).all(1).tolist()
    if not all(finite):
        ids = [str(meta.get("id", "?")) for meta, ok in zip(batch.meta, finite, strict=True) if not ok]
        raise ValueError(f"collect_logits: the model gave NaN or inf logits on sample(s) {', '.join(ids)}")


def collect_logits(
    model: nn.Module,
    dataset: SegDataset,
    device: str | torch.device,
    batch_size: int = 4,
    max_pixels: int = 2_000_000,
    seed: int = 0,
    *,
    mode: str = "whole",
    window: tuple[int, int] = (512, 512),
    stride: tuple[int, int] = (341, 341),
    flip: bool = False,
) -> tuple[Tensor, Tensor]:
    """Logits K×N float32 and labels N int64 (CPU) of the labelled pixels of ``dataset``.

    Pixels whose label is ``dataset.ignore_index`` are dropped; of the rest a uniform sample (seeded by
    ``seed``) of at most ``max_pixels`` is kept (all of them when there are fewer). ``mode``, ``window``,
    ``stride`` and ``flip`` select the inference of :func:`~rgbxseg.engine.inference.predict_logits`: fit the
    temperature with the inference you will predict with. Slide mode runs one image at a time. The model is
    put in eval mode and restored afterwards.
    """
    for name, value in (("batch_size", batch_size), ("max_pixels", max_pixels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"collect_logits: {name} must be an int >= 1, got {value!r}")
    device = torch.device(device)
    loader = DataLoader(
        dataset, batch_size=batch_size if mode == "whole" else 1, shuffle=False, num_workers=0, collate_fn=collate
    )
    sample = PixelSample(max_pixels, seed)
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            batch = batch.to(device)
            logits = predict_logits(model, batch.image, batch.modalities, mode, window, stride, flip, batch.present)
            _check_finite_batch(logits, batch)
            keys = sample.draw_keys(batch.label.shape[0], batch.label[0].numel())
            pixels, labels, keep = labelled_pixels(logits, batch.label, dataset.ignore_index)
            sample.add(pixels, labels, keys[keep])
    finally:
        model.train(was_training)
    try:
        return sample.result()
    except ValueError:
        raise ValueError(
            f"collect_logits: {dataset.name} ({len(dataset)} samples) has no labelled pixels "
            f"(every label is the ignore id {dataset.ignore_index})"
        ) from None


def _check_fit_inputs(logits: Tensor, labels: Tensor, max_iter: int) -> None:
    if not isinstance(logits, Tensor) or not logits.dtype.is_floating_point or logits.ndim != 2:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"fit_temperature: logits must be a floating-point K×N tensor, got {got}")
    if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.ndim != 1:
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"fit_temperature: labels must be an integer tensor of N class ids, got {got}")
    num_classes, n = logits.shape
    if labels.numel() != n:
        raise ValueError(f"fit_temperature: {n} pixels of logits but {labels.numel()} labels")
    if n == 0:
        raise ValueError("fit_temperature: no pixels (empty logits and labels)")
    if num_classes < 2:
        raise ValueError(f"fit_temperature: need at least 2 classes, got K = {num_classes}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"fit_temperature: max_iter must be an int >= 1, got {max_iter!r}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("fit_temperature: logits must be finite, got NaN or inf")
    low, high = labels.aminmax()
    if int(low) < 0 or int(high) >= num_classes:
        raise ValueError(
            f"fit_temperature: labels must be class ids in [0, {num_classes}), got values in [{int(low)}, {int(high)}]"
            " (drop ignored pixels first, as collect_logits does)"
        )


def fit_temperature(logits: Tensor, labels: Tensor, max_iter: int = 100) -> float:
    """The temperature ``T > 0`` minimising the mean NLL of ``softmax(logits / T)`` against ``labels``.

    Args:
        logits: K×N logits of N pixels (e.g. from :func:`collect_logits`), any device.
        labels: N class ids in [0, K).
        max_iter: LBFGS iterations (strong-Wolfe line search).

    The optimised variable is ``log T`` (so T is positive by construction), started at T = 1 and kept in
    [1/100, 100]; a T on a bound says the logits are perfectly separating (1/100) or no better than
    uniform (100, e.g. an untrained model). A single positive scalar divides every logit of a pixel
    equally, so no argmax changes.
    """
    _check_fit_inputs(logits, labels, max_iter)
    with torch.enable_grad():
        scores = logits.detach().float().clone().unsqueeze(0)  # 1×K×N, an ordinary (non-inference) tensor
        target = labels.detach().to(device=logits.device, dtype=torch.int64).clone().unsqueeze(0)
        log_t = torch.zeros((), dtype=torch.float64, device=logits.device, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            temperature = log_t.clamp(LOG_T_MIN, LOG_T_MAX).exp().float()
            loss = F.cross_entropy(scores / temperature, target)
            loss.backward()
            return loss

        optimizer.step(closure)
    return min(max(math.exp(float(log_t.detach())), T_MIN), T_MAX)


class TemperatureScaled(nn.Module):
    """``model`` whose logits are divided by a fixed temperature: ``forward(...) = model(...) / T``.

    Same call as the segmenters' inference forward, ``(image, modalities=None, present=None)`` → B×K×H×W
    logits, so it drops into :func:`~rgbxseg.engine.inference.predict_logits`, evaluation and
    :class:`~rgbxseg.predictor.Predictor`. Every argmax is that of ``model`` (see the module docstring).
    ``T`` is the buffer ``temperature`` (it follows ``.to()`` and is saved in the state dict, next to the
    wrapped model's parameters under ``model.``).
    """

    temperature: Tensor

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("temperature", torch.tensor(check_temperature(temperature), dtype=torch.float32))

    def forward(
        self, image: Tensor, modalities: Mapping[str, Tensor] | None = None, present: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        logits = self.model(image, modalities, present)
        if not isinstance(logits, Tensor):
            raise TypeError(
                f"TemperatureScaled: the wrapped model returned {type(logits).__name__}, not logits; "
                "temperature scaling is for inference (call .eval())"
            )
        return logits / self.temperature.to(device=logits.device, dtype=logits.dtype)

    def extra_repr(self) -> str:
        return f"temperature={float(self.temperature):.4g}"
