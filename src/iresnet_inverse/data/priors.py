"""Priors of the low-dimensional toy problems (sampling, log-density, score, moments).

Our concrete choices where arXiv 2510.26704 does not state its setup (see DESIGN):
- ``bimodal``: 1/2 N((-1/2, -1), 0.3^2 I) + 1/2 N((1/2, 1), 0.3^2 I)
- ``gaussian``: N((0, 0), diag(1, 0.5^2)), log-concave, where the divergence theory is exact
- ``trimodal``: equal weights at (-1, -0.5), (1, -0.5), (0, 1), covariance 0.3^2 I
- ``bimodal3d``: 1/2 N(-(1/2, 1, 1/2), 0.3^2 I) + 1/2 N((1/2, 1, 1/2), 0.3^2 I)
- ``logcosh``: p(x) ~ exp(-sum_i log cosh(x_i / s) - lam ||x||^2 / 2) in 2D, s = 0.2, lam = 0.5
  (``LogCosh``): strongly log-concave but not Gaussian, so the divergence theory is exact there
  while MAP and posterior mean differ (a smoothed Laplace prior: the MAP shrinks towards 0,
  the posterior mean less).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from iresnet_inverse.errors import ConfigError


@dataclass(frozen=True)
class GaussianMixture:
    """sum_k w_k N(mu_k, Sigma_k)."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, d)
    covariances: np.ndarray  # (K, d, d)

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` samples, shape (n, d)."""
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        chol = np.linalg.cholesky(self.covariances)
        eps = rng.standard_normal((n, self.dim))
        return self.means[k] + np.einsum("nij,nj->ni", chol[k], eps)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for x of shape (n, d); differentiable, so the score is its gradient."""
        means = torch.as_tensor(self.means, dtype=x.dtype, device=x.device)
        precision = torch.as_tensor(np.linalg.inv(self.covariances), dtype=x.dtype, device=x.device)
        logdet = torch.as_tensor(
            np.linalg.slogdet(self.covariances)[1], dtype=x.dtype, device=x.device
        )
        logw = torch.as_tensor(np.log(self.weights), dtype=x.dtype, device=x.device)
        diff = x[:, None, :] - means[None]
        quad = torch.einsum("nki,kij,nkj->nk", diff, precision, diff)
        comp = logw - 0.5 * (quad + logdet + self.dim * math.log(2 * math.pi))
        return torch.logsumexp(comp, dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """grad log p(x)."""
        with torch.enable_grad():
            point = x.detach().requires_grad_()
            (grad,) = torch.autograd.grad(self.log_density(point).sum(), point)
        return grad

    @property
    def strongly_log_concave(self) -> bool:
        """One Gaussian is; a mixture of separated modes is not (toy_claims labels the cases)."""
        return len(self.weights) == 1

    @property
    def mean(self) -> np.ndarray:
        return self.weights @ self.means

    @property
    def covariance(self) -> np.ndarray:
        """Within-component covariance plus the spread of the component means."""
        spread = self.means - self.mean
        return np.einsum("k,kij->ij", self.weights, self.covariances) + np.einsum(
            "k,ki,kj->ij", self.weights, spread, spread
        )


QUADRATURE_POINTS = 4001
QUADRATURE_WIDTH = 12.0  # half-width of the window in units of 1/sqrt(minimal curvature)


def log_concave_moments(
    potential: Callable[[np.ndarray], np.ndarray],
    center: np.ndarray,
    curvature: np.ndarray,
    points: int = QUADRATURE_POINTS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log integral, mean and variance of exp(-potential(t)) in 1D, elementwise over the shape
    of ``center``, for a potential with potential'' >= ``curvature`` > 0 and its minimum near
    ``center``: the trapezoid rule on center +- 12 / sqrt(curvature) with ``points`` nodes.

    Why it is accurate: the mass outside the window is below exp(-72) of the total (the
    density lies under a Gaussian of variance 1 / curvature about its mode), and the trapezoid
    rule on an analytic, rapidly decaying integrand converges exponentially in 1 / spacing
    (for log cosh(t / s) with spacing well below s); the tests check 1e-9 against
    scipy.integrate.quad."""
    center = np.asarray(center, dtype=np.float64)
    half = QUADRATURE_WIDTH / np.sqrt(np.asarray(curvature, dtype=np.float64))
    half = np.broadcast_to(half, center.shape)
    u = np.linspace(-1.0, 1.0, points)
    t = center[..., None] + half[..., None] * u
    log_f = -potential(t)
    top = log_f.max(axis=-1, keepdims=True)
    f = np.exp(log_f - top)
    f[..., [0, -1]] *= 0.5  # trapezoid end weights
    step = 2 * half / (points - 1)
    mass = f.sum(axis=-1)
    mean = (f * t).sum(axis=-1) / mass
    var = (f * (t - mean[..., None]) ** 2).sum(axis=-1) / mass
    return np.log(mass * step) + top[..., 0], mean, var


@dataclass(frozen=True)
class LogCosh:
    """p(x) ~ exp(-sum_i log cosh(x_i / scale) - curvature ||x||^2 / 2) on R^dims (ours).

    Separable and strongly log-concave (Hessian of -log p >= curvature I), so the posterior
    under a diagonal operator and Gaussian noise factorizes into strictly log-concave 1D
    posteriors (``bayes``); non-Gaussian, so its MAP and posterior mean differ. Sampling is
    exact: rejection from the hyperbolic secant density sech(t / s) / (pi s) (inverse CDF
    s log tan(pi u / 2)), accepted with probability exp(-curvature t^2 / 2)."""

    scale: float
    curvature: float
    dims: int = 2

    @property
    def dim(self) -> int:
        return self.dims

    def potential(self, t: np.ndarray) -> np.ndarray:
        """-log of the unnormalized 1D density: log cosh(t / s) + curvature t^2 / 2."""
        u = np.abs(t) / self.scale
        return u + np.log1p(np.exp(-2 * u)) - math.log(2) + 0.5 * self.curvature * t**2

    def potential_derivatives(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The potential's first and second derivatives (Newton steps, the score)."""
        tanh = np.tanh(t / self.scale)
        first = tanh / self.scale + self.curvature * t
        return first, (1 - tanh**2) / self.scale**2 + self.curvature

    @cached_property
    def _moments_1d(self) -> tuple[float, float]:
        """log normalizer and variance of one coordinate (quadrature, mean 0 by symmetry)."""
        log_z, _, var = log_concave_moments(self.potential, np.zeros(()), self.curvature)
        return float(log_z), float(var)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` exact samples, shape (n, d)."""
        out = np.empty(0)
        while out.size < n * self.dims:
            u = rng.random(n * self.dims)
            t = self.scale * np.log(np.tan(0.5 * math.pi * u))
            keep = rng.random(t.size) < np.exp(-0.5 * self.curvature * t**2)
            out = np.concatenate([out, t[keep & np.isfinite(t)]])
        return out[: n * self.dims].reshape(n, self.dims)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for x of shape (n, d), normalized; differentiable."""
        u = x.abs() / self.scale
        per = u + torch.log1p(torch.exp(-2 * u)) - math.log(2) + 0.5 * self.curvature * x**2
        return -per.sum(dim=1) - self.dims * self._moments_1d[0]

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """grad log p(x) = -(tanh(x / s) / s + curvature x)."""
        return -(torch.tanh(x / self.scale) / self.scale + self.curvature * x)

    @property
    def strongly_log_concave(self) -> bool:
        return self.curvature > 0

    @property
    def mean(self) -> np.ndarray:
        return np.zeros(self.dims)

    @property
    def covariance(self) -> np.ndarray:
        return self._moments_1d[1] * np.eye(self.dims)


Prior = GaussianMixture | LogCosh


def _isotropic(weights: list[float], means: list[list[float]], std: float) -> GaussianMixture:
    m = np.array(means, dtype=np.float64)
    cov = np.stack([std**2 * np.eye(m.shape[1])] * len(m))
    return GaussianMixture(np.array(weights, dtype=np.float64), m, cov)


PRIORS: dict[str, Prior] = {
    "bimodal": _isotropic([0.5, 0.5], [[-0.5, -1.0], [0.5, 1.0]], 0.3),
    "gaussian": GaussianMixture(np.array([1.0]), np.zeros((1, 2)), np.diag([1.0, 0.25])[None]),
    "trimodal": _isotropic([1 / 3] * 3, [[-1.0, -0.5], [1.0, -0.5], [0.0, 1.0]], 0.3),
    "bimodal3d": _isotropic([0.5, 0.5], [[-0.5, -1.0, -0.5], [0.5, 1.0, 0.5]], 0.3),
    "logcosh": LogCosh(scale=0.2, curvature=0.5),
}


def get_prior(name: str) -> Prior:
    try:
        return PRIORS[name]
    except KeyError:
        raise ConfigError(f"unknown prior {name!r}; valid: {', '.join(PRIORS)}") from None
