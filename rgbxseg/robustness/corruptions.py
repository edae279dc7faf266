"""Image corruptions at five severities, applied to the RGB image only (SPEC section 7).

Every corruption is a function ``(sample, severity, rng) -> sample`` listed in :data:`CORRUPTIONS`
(a plain dict, in the order reports show them). It returns a new :class:`RawSample` whose ``image`` is
float32 RGB in [0, 1]; the modalities, label, instances and meta are the *same objects* as the input's
(a corrupted camera does not corrupt the depth sensor or the ground truth). The input is never modified.
:class:`Corrupt` wraps one (corruption, severity, seed) as a dataset transform.

Severity parameters are one tuple per corruption (index = severity − 1), monotone, so damage grows
with severity. Blur and noise parameters are in pixels / intensity units of the image as given, as in
ImageNet-C and Cityscapes-C; apply the corruption at the evaluation resolution so that a severity means
the same thing on every dataset. Where a parameter comes from ImageNet-C (Hendrycks & Dietterich, 2019)
the comment says so.

* ``low_light``: a dark sensor. Display values go to linear light (gamma 2, as the synthetic night
  renderer in :mod:`rgbxseg.data.synthetic`), the exposure drops by one photographic stop per severity,
  photons are counted (Poisson, :data:`FULL_WELL` photons for white at full exposure), Gaussian read
  noise (:data:`READ_NOISE` photons) is added, and the signal goes back to display values, 8-bit
  quantised. No gain is applied, so the image gets darker *and* relatively noisier.
* ``fog``: Koschmieder's law ``I = J·t + A·(1 − t)``, ``t = exp(−β·d)``, airlight ``A`` drawn per
  sample (0.72–0.9, slightly blue, as the synthetic fog). ``d`` is the sample's ``depth`` modality,
  normalised as :func:`fog_depth` describes; without a usable depth map the fog is uniform at
  ``d = UNIFORM_FOG_DEPTH``.
* ``gaussian_noise``: additive, independent per pixel and channel, clipped to [0, 1].
* ``motion_blur``: a straight line kernel of the severity's length at a random angle in [−45°, 45°].
* ``defocus_blur``: an anti-aliased disk kernel (ImageNet-C's defocus, renormalised: see :func:`defocus_kernel`).
* ``jpeg``: an OpenCV JPEG encode / decode round trip at the severity's quality.

Determinism: :class:`Corrupt` draws from a stream keyed by (seed, corruption name, sample id) — see
:mod:`rgbxseg.robustness.seeding`. The severity is deliberately *not* part of the key: the five
severities of one sample share their random numbers (same motion angle, same airlight, same noise
pattern scaled), so comparing severities measures the severity and nothing else.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import cv2
import numpy as np
from albumentations.augmentations.blur.functional import create_motion_kernel

from rgbxseg.data.sample import RawSample
from rgbxseg.robustness.seeding import sample_key, sample_rng

SEVERITIES = (1, 2, 3, 4, 5)

# low_light: exposure in linear light, one stop (×½) darker per severity; display brightness ≈ √exposure.
LOW_LIGHT_EXPOSURE = (0.2, 0.1, 0.05, 0.025, 0.0125)
GAMMA = 2.0  # display = linear ** (1 / GAMMA), the synthetic renderer's choice
FULL_WELL = 2000.0  # photons collected for a white pixel at full exposure
READ_NOISE = 3.0  # standard deviation of the read noise, in photons
# fog: extinction coefficient per unit of normalised depth (the synthetic fog, 0.04–0.09 /m × 80 m = 3.2–7.2,
# is about severities 4 to 5).
FOG_BETA = (0.5, 1.0, 2.0, 3.5, 6.0)
UNIFORM_FOG_DEPTH = 0.5  # normalised depth every pixel gets when the sample has no usable depth map
AIRLIGHT_RANGE = (0.72, 0.9)
AIRLIGHT_TINT = (0.97, 0.99, 1.02)
MIN_VALID_DEPTH = 0.5  # share of valid depth pixels below which a map counts as sparse (uniform fog)
GAUSSIAN_NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)  # ImageNet-C
# Kernel length in pixels (odd). ImageNet-C's values drive ImageMagick's Gaussian-weighted kernel, not a line.
MOTION_BLUR_LENGTH = (7, 11, 17, 25, 33)
MOTION_BLUR_ANGLE = 45.0  # the angle is uniform in [−45°, 45°], as in ImageNet-C
DEFOCUS_BLUR = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))  # (disk radius px, alias blur σ), ImageNet-C
JPEG_QUALITY = (25, 18, 15, 10, 7)  # ImageNet-C

Corruption = Callable[[RawSample, int, np.random.Generator], RawSample]
_T = TypeVar("_T")


# ----------------------------------------------------------------------------------------------------------
# Helpers


def check_severity(severity: int, what: str = "corruption") -> int:
    """``severity`` as an int, or a ValueError naming ``what`` when it is not an integer in 1..5."""
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer) or not 1 <= severity <= 5:
        raise ValueError(f"{what}: severity must be an integer from 1 to 5, got {severity!r}")
    return int(severity)


def _level(table: Sequence[_T], severity: int, what: str) -> _T:
    """The parameters of ``severity`` in a five-row table."""
    return table[check_severity(severity, what) - 1]


def _image(sample: RawSample) -> np.ndarray:
    """The sample's RGB image as float32 (no copy when it already is)."""
    return np.asarray(sample.image, dtype=np.float32)


def _with_image(sample: RawSample, image: np.ndarray) -> RawSample:
    """A new sample with ``image`` (clipped to [0, 1], float32); everything else shared with ``sample``."""
    image = np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)
    return replace(sample, image=image)


def _quantise(image: np.ndarray) -> np.ndarray:
    """Round [0, 1] values to 8 bits, as a camera stores them."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0) * np.float32(1 / 255)


# ----------------------------------------------------------------------------------------------------------
# Corruptions


def low_light(sample: RawSample, severity: int, rng: np.random.Generator) -> RawSample:
    """A dark sensor: exposure −1 stop per severity, Poisson photon noise, Gaussian read noise, 8 bits."""
    exposure = _level(LOW_LIGHT_EXPOSURE, severity, "low_light")
    expected = np.power(_image(sample), GAMMA, dtype=np.float64) * (exposure * FULL_WELL)
    signal = rng.poisson(expected).astype(np.float32)
    signal += rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(READ_NOISE)
    signal *= np.float32(1 / FULL_WELL)
    np.maximum(signal, 0, out=signal)
    return _with_image(sample, _quantise(np.power(signal, 1 / GAMMA)))


def fog_depth(sample: RawSample) -> np.ndarray | None:
    """The sample's depth as H×W float32 in [0, 1] (larger = farther) for fog, or None (use uniform fog).

    Units in this repo: :class:`~rgbxseg.data.synthetic.SyntheticStreets` stores metric depth / 80 m,
    clipped to [0, 1] (sky = 1); :class:`~rgbxseg.data.rgbx_folder.RGBXFolder` scales 8-bit maps by 255
    and 16-bit maps by 65535 (so NYUv2-style millimetre PNGs read depth / 65.5 m) and keeps float maps
    as stored. So:

    * a map within [0, 1] is used as is: 1 is the far end of the sensor's range;
    * a map with values above 1 (a float map in metres, say) is divided by its largest value, which
      gives relative depth — the fog is then as dense at the far end of every image;
    * pixels ≤ 0 or non-finite are "no return" and count as far (1); a map with fewer than
      :data:`MIN_VALID_DEPTH` valid pixels (a sparse LiDAR projection) is not used (uniform fog).

    The map must hold distance, not disparity or inverse depth. Several channels are averaged.
    """
    depth = sample.modalities.get("depth")
    if depth is None:
        return None
    depth = np.asarray(depth, dtype=np.float32)
    depth = depth.mean(axis=2) if depth.ndim == 3 else depth
    valid = np.isfinite(depth) & (depth > 0)
    if valid.mean() < MIN_VALID_DEPTH:
        return None
    far = float(depth[valid].max())
    normalised = np.where(valid, depth, np.float32(max(far, 1.0)))
    if far > 1.0:
        normalised = normalised * np.float32(1 / far)
    return np.clip(normalised, 0.0, 1.0).astype(np.float32, copy=False)


def fog(sample: RawSample, severity: int, rng: np.random.Generator) -> RawSample:
    """Koschmieder fog ``J·t + A·(1 − t)``, ``t = exp(−β·depth)``; uniform when there is no usable depth."""
    beta = _level(FOG_BETA, severity, "fog")
    airlight = np.float32(rng.uniform(*AIRLIGHT_RANGE)) * np.asarray(AIRLIGHT_TINT, np.float32)
    depth = fog_depth(sample)
    distance = np.float32(UNIFORM_FOG_DEPTH) if depth is None else depth[..., None]
    transmission = np.exp(-np.float32(beta) * distance).astype(np.float32)
    return _with_image(sample, _image(sample) * transmission + np.minimum(airlight, 1.0) * (1 - transmission))


def gaussian_noise(sample: RawSample, severity: int, rng: np.random.Generator) -> RawSample:
    """Additive Gaussian noise, independent per pixel and channel."""
    sigma = _level(GAUSSIAN_NOISE_SIGMA, severity, "gaussian_noise")
    image = _image(sample)
    return _with_image(sample, image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma))


def motion_blur(sample: RawSample, severity: int, rng: np.random.Generator) -> RawSample:
    """A straight, centred line kernel of the severity's length at a random angle."""
    length = _level(MOTION_BLUR_LENGTH, severity, "motion_blur")
    angle = rng.uniform(-MOTION_BLUR_ANGLE, MOTION_BLUR_ANGLE)
    # albumentations' own MotionBlur kernel; its Random is only used for shifted kernels, which are off.
    kernel = create_motion_kernel(length, angle, 0.0, allow_shifted=False, random_state=random.Random(0))
    kernel = kernel.astype(np.float32) / kernel.sum()
    return _with_image(sample, cv2.filter2D(_image(sample), -1, kernel, borderType=cv2.BORDER_REFLECT_101))


def defocus_kernel(radius: int, alias_blur: float) -> np.ndarray:
    """ImageNet-C's defocus kernel: a disk of ``radius`` px smoothed by a Gaussian of σ ``alias_blur``, sum 1.

    Written here rather than calling albumentations' ``defocus`` (ImageNet-C's code): that one does not
    renormalise after the smoothing, and for radii ≥ 8, where the disk touches the kernel's border, the
    reflected border makes the kernel sum to 1.01, so a "blur" would also brighten the image.
    """
    half = max(8, radius)
    x, y = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1))
    disk = (x**2 + y**2 <= radius**2).astype(np.float32)
    kernel = cv2.GaussianBlur(disk, (3, 3) if radius <= 8 else (5, 5), sigmaX=alias_blur)
    return kernel / kernel.sum()


def defocus_blur(sample: RawSample, severity: int, rng: np.random.Generator) -> RawSample:
    """An out-of-focus lens: the image convolved with :func:`defocus_kernel`."""
    kernel = defocus_kernel(*_level(DEFOCUS_BLUR, severity, "defocus_blur"))
    return _with_image(sample, cv2.filter2D(_image(sample), -1, kernel, borderType=cv2.BORDER_REFLECT_101))


def jpeg(sample: RawSample, severity: int, rng: np.random.Generator) -> RawSample:
    """An OpenCV JPEG encode / decode round trip of the 8-bit image."""
    quality = _level(JPEG_QUALITY, severity, "jpeg")
    rgb8 = np.round(np.clip(_image(sample), 0.0, 1.0) * 255.0).astype(np.uint8)
    bgr = cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"jpeg: OpenCV could not encode sample {sample.meta.get('id', '<sample>')}")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return _with_image(sample, cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB).astype(np.float32) / 255)


CORRUPTIONS: dict[str, Corruption] = {
    "low_light": low_light,
    "fog": fog,
    "gaussian_noise": gaussian_noise,
    "motion_blur": motion_blur,
    "defocus_blur": defocus_blur,
    "jpeg": jpeg,
}


# ----------------------------------------------------------------------------------------------------------
# The transform


@dataclass(frozen=True)
class Corrupt:
    """Dataset transform applying corruption ``name`` at ``severity`` (1..5), RawSample → RawSample.

    Deterministic given (``seed``, the sample's ``meta["id"]``) in every process (see
    :mod:`rgbxseg.robustness.seeding`); records ``meta["corruption"] = "name@severity"`` in a copy of meta.
    Apply it at the evaluation resolution (after resizing), before any normalisation.
    """

    name: str
    severity: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {self.name!r}: valid names are {', '.join(CORRUPTIONS)}")
        check_severity(self.severity, self.name)

    @property
    def label(self) -> str:
        """The name reports use: ``"name@severity"``."""
        return f"{self.name}@{self.severity}"

    def __call__(self, sample: RawSample) -> RawSample:
        rng = sample_rng(self.seed, f"corruption:{self.name}", sample_key(sample))
        corrupted = CORRUPTIONS[self.name](sample, self.severity, rng)
        return replace(corrupted, meta={**corrupted.meta, "corruption": self.label})
