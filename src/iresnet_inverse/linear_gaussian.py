"""Closed-form estimators and training targets for a Gaussian prior and a linear operator.

With x ~ N(mu, C), z = A x + delta eta (eta standard normal) and dhat = noise_factor * delta:

- Wiener (= posterior mean = MAP): x^ = mu + C A^T (A C A^T + delta^2 I)^-1 (z - A mu).
- Divergence target (Heilenkoetter 2025, Theorem 2): the minimizer of
  E[1/2 ||phi(x) - A^T z||^2 - dhat^2 div phi(x)] is phi(x) = A^T A x - dhat^2 grad log p(x)
  = A^T A x + dhat^2 C^-1 (x - mu); phi^-1(A^T z) is the Wiener formula with dhat in place of
  delta (push-through identity), so at dhat = delta it is the MAP.
- Log-det target among affine maps phi(x) = G x + b: the minimizer of
  E[1/2 ||G x + b - z||^2] - dhat^2 log|det G|. With C = L L^T, H = G L, B = A L: b = -(G - A) mu
  and 1/2 ||H - B||_F^2 - dhat^2 log|det H| is left; its stationarity H - dhat^2 H^-T = B is
  solved by H = U D V^T for B = U S V^T, d_i = (s_i + sqrt(s_i^2 + 4 dhat^2)) / 2 (the positive
  root; the von Neumann trace inequality makes the aligned singular vectors optimal), so
  G = H L^-1, and phi^-1(z) = mu + L V D^-1 U^T (z - A mu). That G has the orientation of A
  (sign det G = sign det A). An iResNet preserves orientation (det(I + J) > 0 for ||J|| < 1), so
  where det A < 0 the target is the minimizer among det G > 0: the weakest direction takes the
  negative root (s_n - sqrt(s_n^2 + 4 dhat^2)) / 2, the cheapest sign change (as in Kabsch's
  rotation). The tests check both cases against a numerical minimization.

Every estimator is returned as an affine map x^ = offset + gain @ z, so that its expected MSE
is a trace (``expected_mse``) and its test MSE one matrix product.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from iresnet_inverse.nets import operator_norms


@dataclass(frozen=True)
class Affine:
    """x^ = offset + gain @ z."""

    gain: np.ndarray  # (d, m)
    offset: np.ndarray  # (d,)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Apply to data z of shape (n, m)."""
        return self.offset + np.asarray(z, dtype=np.float64) @ self.gain.T


def dense_matrix(
    operator: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, int]
) -> np.ndarray:
    """The matrix (d, d), d = h w, of a linear image map (a forward operator or its adjoint)
    on (h, w) images, row-major pixels: the map applied to every basis image, in float64."""
    return operator_norms.dense_matrix(operator, (1, *shape)).numpy()


def _sqrt_factor(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L with C = L L^T and its inverse (symmetric eigendecomposition; C positive definite)."""
    values, vectors = np.linalg.eigh(cov)
    if values[0] <= 0:
        raise ValueError(f"prior covariance is not positive definite (eigenvalue {values[0]:.3g})")
    root = np.sqrt(values)
    return vectors * root, (vectors / root).T


def wiener(mean: np.ndarray, cov: np.ndarray, A: np.ndarray, delta: float) -> Affine:
    """Posterior mean (= MAP) for x ~ N(mean, cov), z = A x + delta eta."""
    gain = cov @ A.T @ np.linalg.inv(A @ cov @ A.T + delta**2 * np.eye(len(A)))
    return Affine(gain, mean - gain @ A @ mean)


def divergence_target(
    mean: np.ndarray, cov: np.ndarray, A: np.ndarray, dhat: float
) -> tuple[np.ndarray, np.ndarray]:
    """Theorem 2's minimizer phi(x) = M x + c, M = A^T A + dhat^2 C^-1, c = -dhat^2 C^-1 mu."""
    precision = np.linalg.inv(cov)
    return A.T @ A + dhat**2 * precision, -(dhat**2) * precision @ mean


def divergence_reconstruction(
    mean: np.ndarray, cov: np.ndarray, A: np.ndarray, dhat: float
) -> Affine:
    """x^ = phi^-1(A^T z) for the divergence target phi, as an affine map of z."""
    M, c = divergence_target(mean, cov, A, dhat)
    gain = np.linalg.solve(M, A.T)
    return Affine(gain, -np.linalg.solve(M, c))


def _logdet_factors(
    cov: np.ndarray, A: np.ndarray, dhat: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """L, L^-1 and the SVD factors U, d, V^T of H = G L = U diag(d) V^T (module docstring)."""
    L, L_inv = _sqrt_factor(cov)
    U, s, Vt = np.linalg.svd(A @ L)
    d = (s + np.sqrt(s**2 + 4 * dhat**2)) / 2
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:  # det G would be < 0: flip the weakest direction
        d[-1] = (s[-1] - np.sqrt(s[-1] ** 2 + 4 * dhat**2)) / 2
    return L, L_inv, U, d, Vt


def logdet_target(
    mean: np.ndarray, cov: np.ndarray, A: np.ndarray, dhat: float
) -> tuple[np.ndarray, np.ndarray]:
    """The affine minimizer phi(x) = G x + b of the log-det loss (module docstring)."""
    _, L_inv, U, d, Vt = _logdet_factors(cov, A, dhat)
    G = (U * d) @ Vt @ L_inv
    return G, -(G - A) @ mean


def logdet_reconstruction(mean: np.ndarray, cov: np.ndarray, A: np.ndarray, dhat: float) -> Affine:
    """x^ = phi^-1(z) = G^-1 (z - b) = mu + L V D^-1 U^T (z - A mu) for the affine log-det
    target, as an affine map of z."""
    L, _, U, d, Vt = _logdet_factors(cov, A, dhat)
    gain = L @ (Vt.T / d) @ U.T
    return Affine(gain, mean - gain @ A @ mean)


def logdet_loss(
    G: np.ndarray,
    b: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    A: np.ndarray,
    delta: float,
    dhat: float,
) -> float:
    """E[1/2 ||G x + b - A x - delta eta||^2] - dhat^2 log|det G| in closed form."""
    R = G - A
    bias = R @ mean + b
    quadratic = 0.5 * (np.trace(R @ cov @ R.T) + bias @ bias + delta**2 * len(A))
    return float(quadratic - dhat**2 * np.linalg.slogdet(G)[1])


def expected_mse(
    estimator: Affine, mean: np.ndarray, cov: np.ndarray, A: np.ndarray, delta: float
) -> float:
    """E ||x^ - x||^2 / d (per pixel) over x ~ N(mean, cov) and the noise."""
    E = estimator.gain @ A - np.eye(len(mean))
    bias = estimator.offset + E @ mean
    total = np.trace(E @ cov @ E.T) + delta**2 * np.sum(estimator.gain**2) + bias @ bias
    return float(total / len(mean))
