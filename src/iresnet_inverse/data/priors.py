"""Gaussian-mixture priors of the low-dimensional toy problems (sampling, log-density, score).

Our concrete choices where arXiv 2510.26704 does not state its setup (see DESIGN):
- ``bimodal``: 1/2 N((-1/2, -1), 0.3^2 I) + 1/2 N((1/2, 1), 0.3^2 I)
- ``gaussian``: N((0, 0), diag(1, 0.5^2)), log-concave, where the divergence theory is exact
- ``trimodal``: equal weights at (-1, -0.5), (1, -0.5), (0, 1), covariance 0.3^2 I
- ``bimodal3d``: 1/2 N(-(1/2, 1, 1/2), 0.3^2 I) + 1/2 N((1/2, 1, 1/2), 0.3^2 I)
"""

import math
from dataclasses import dataclass

import numpy as np
import torch


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


def _isotropic(weights: list[float], means: list[list[float]], std: float) -> GaussianMixture:
    m = np.array(means, dtype=np.float64)
    cov = np.stack([std**2 * np.eye(m.shape[1])] * len(m))
    return GaussianMixture(np.array(weights, dtype=np.float64), m, cov)


PRIORS: dict[str, GaussianMixture] = {
    "bimodal": _isotropic([0.5, 0.5], [[-0.5, -1.0], [0.5, 1.0]], 0.3),
    "gaussian": GaussianMixture(np.array([1.0]), np.zeros((1, 2)), np.diag([1.0, 0.25])[None]),
    "trimodal": _isotropic([1 / 3] * 3, [[-1.0, -0.5], [1.0, -0.5], [0.0, 1.0]], 0.3),
    "bimodal3d": _isotropic([0.5, 0.5], [[-0.5, -1.0, -0.5], [0.5, 1.0, 0.5]], 0.3),
}


def get_prior(name: str) -> GaussianMixture:
    try:
        return PRIORS[name]
    except KeyError:
        raise ValueError(f"unknown prior {name!r}; valid: {', '.join(PRIORS)}") from None
