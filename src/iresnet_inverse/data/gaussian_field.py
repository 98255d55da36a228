"""Stationary Gaussian random fields: the one image prior whose Bayes estimators are closed form.

Each image is the crop of an independent periodic field on a ``period`` x ``period`` grid with
power spectrum S(k) proportional to (|k|^2 + k0^2)^(-alpha/2) (k in cycles per pixel), scaled so
that every pixel has standard deviation ``std`` around ``mean``. The field is drawn exactly: white
noise filtered by sqrt(S) in Fourier space, f = mean + IFFT(sqrt(S) FFT(w)), whose covariance is the
circulant with eigenvalues S. A crop of it therefore has the exact covariance

    C[(i, j), (k, l)] = r((i - k) mod period, (j - l) mod period),   r = IFFT(S),

for any period at least the crop's side (``crop_covariance``, which the reference estimators use).
With period >= 2 side - 1 no lag wraps around, so C is the stationary covariance of the periodic
field restricted to the crop. Values are not clipped: clipping would break Gaussianity (at the
defaults, 0.5 +- 0.12, a pixel leaves [0, 1] with probability 3e-5).
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from iresnet_inverse.data.patches import SPLITS, assemble_dataset
from iresnet_inverse.errors import ConfigError

CHUNK = 256  # fields drawn per FFT batch (memory: CHUNK * period^2 complex numbers)


def spectrum(period: int, alpha: float, k0: float, std: float) -> np.ndarray:
    """The eigenvalues S of the field's circulant covariance on the period x period grid (FFT
    order), normalized so that the pixel variance mean(S) is std^2."""
    k = np.fft.fftfreq(period)
    power = (k[:, None] ** 2 + k[None, :] ** 2 + k0**2) ** (-alpha / 2)
    return std**2 * power / power.mean()


def autocovariance(period: int, alpha: float, k0: float, std: float) -> np.ndarray:
    """r(di, dj) = Cov(f[i, j], f[i + di, j + dj]) on the periodic grid (period x period)."""
    return np.fft.ifft2(spectrum(period, alpha, k0, std)).real


def sample_fields(
    count: int, period: int, alpha: float, k0: float, std: float, rng: np.random.Generator
) -> np.ndarray:
    """``count`` independent zero-mean periodic fields (count, period, period), float64."""
    amplitude = np.sqrt(spectrum(period, alpha, k0, std))
    out = np.empty((count, period, period))
    for start in range(0, count, CHUNK):
        white = rng.standard_normal((min(CHUNK, count - start), period, period))
        out[start : start + len(white)] = np.fft.ifft2(amplitude * np.fft.fft2(white)).real
    return out


def crop_covariance(side: int, period: int, alpha: float, k0: float, std: float) -> np.ndarray:
    """The exact covariance (side^2, side^2) of a side x side crop, pixels in row-major order."""
    if side > period:
        raise ConfigError(f"data.gaussian.period {period} is smaller than the crop side {side}")
    r = autocovariance(period, alpha, k0, std)
    rows, cols = np.divmod(np.arange(side * side), side)
    return r[(rows[:, None] - rows[None, :]) % period, (cols[:, None] - cols[None, :]) % period]


def field_parameters(data: Mapping[str, Any]) -> dict[str, float]:
    """alpha, k0, std and period of ``data.gaussian`` (what the covariance depends on)."""
    field = data["gaussian"]
    return {k: field[k] for k in ("period", "alpha", "k0", "std")}


def check_period(data: Mapping[str, Any]) -> None:
    """Every crop (patches and named images) must fit in one period of its field."""
    period = data["gaussian"]["period"]
    for field in ("patch_size", "named_size"):
        if data[field] > period:
            raise ConfigError(
                f"data.{field} {data[field]} is larger than data.gaussian.period {period}"
            )


def prior_moments(data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector and covariance of one flattened patch of ``data.patch_size``: the prior that
    the data of ``gaussian_dataset`` are drawn from."""
    size = data["patch_size"]
    cov = crop_covariance(size, **field_parameters(data))
    return np.full(size * size, float(data["gaussian"]["mean"])), cov


def gaussian_dataset(data: Mapping[str, Any]) -> xr.Dataset:
    """Patches of every split and the named test images, each the top-left crop of its own
    field, in the format of ``patches.build_image_dataset``. Each split (and the named images)
    has its own generator, so the test patches do not change with the number of training ones."""
    check_period(data)
    params, mean = field_parameters(data), float(data["gaussian"]["mean"])
    size, seed = data["patch_size"], data["seed"]
    named = list(data.get("named_images") or ["field_0", "field_1", "field_2"])
    blocks, splits, sources = [], [], []
    for index, split in enumerate(SPLITS):
        count = data["patches"][split]
        fields = sample_fields(count, rng=np.random.default_rng([seed, index]), **params)
        blocks.append(mean + fields[:, :size, :size])
        splits += [split] * count
        sources += [f"gaussian_{split}_{i:06d}" for i in range(count)]
    rng = np.random.default_rng([seed, len(SPLITS)])
    fields = sample_fields(len(named), rng=rng, **params)
    side = data["named_size"]
    return assemble_dataset(
        np.concatenate(blocks),
        splits,
        sources,
        np.zeros((len(splits), 2), dtype=np.int64),
        dict(zip(named, mean + fields[:, :side, :side], strict=True)),
    )
