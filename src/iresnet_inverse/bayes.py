"""Exact Bayesian estimators for Gaussian-mixture priors and linear Gaussian data.

With y = A x + eta, eta ~ N(0, delta^2 I), and prior sum_k w_k N(mu_k, Sigma_k), the posterior is
again a Gaussian mixture: component k has covariance S_k = (Sigma_k^-1 + A^T A / delta^2)^-1,
mean m_k(y) = S_k (Sigma_k^-1 mu_k + A^T y / delta^2) and weight proportional to
w_k N(y; A mu_k, A Sigma_k A^T + delta^2 I). The posterior mean is sum_k w'_k m_k (closed form);
the MAP point is found by multi-start minimization of the negative log posterior, started at
every component mean and at the posterior mean.
"""

import numpy as np
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from iresnet_inverse.data.priors import GaussianMixture


def _components(
    prior: GaussianMixture, A: np.ndarray, delta: float, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior component weights (n, K) and means (n, K, d) for data y (n, m)."""
    precision_data = A.T @ A / delta**2
    weights, means = [], []
    for w, mu, cov in zip(prior.weights, prior.means, prior.covariances, strict=True):
        inv = np.linalg.inv(cov)
        s = np.linalg.inv(inv + precision_data)
        means.append((s @ (inv @ mu[:, None] + A.T @ y.T / delta**2)).T)
        evidence = multivariate_normal(A @ mu, A @ cov @ A.T + delta**2 * np.eye(len(A)))
        weights.append(np.log(w) + evidence.logpdf(y))
    logw = np.stack(weights, axis=-1).reshape(len(y), -1)  # (n, K)
    logw -= logw.max(axis=1, keepdims=True)
    post = np.exp(logw)
    return post / post.sum(axis=1, keepdims=True), np.stack(means, axis=1)


def posterior_mean(
    prior: GaussianMixture, A: np.ndarray, delta: float, y: np.ndarray
) -> np.ndarray:
    """E[x | y] for data y of shape (n, m)."""
    weights, means = _components(prior, np.asarray(A, float), delta, np.atleast_2d(y))
    return np.einsum("nk,nkd->nd", weights, means)


def neg_log_posterior(
    x: np.ndarray, prior: GaussianMixture, A: np.ndarray, delta: float, y: np.ndarray
) -> tuple[float, np.ndarray]:
    """-log p(x | y) up to a constant, and its gradient, for one point x of shape (d,)."""
    r = A @ x - y
    diffs = x[None] - prior.means
    precisions = np.linalg.inv(prior.covariances)
    quad = np.einsum("ki,kij,kj->k", diffs, precisions, diffs)
    logdets = np.linalg.slogdet(prior.covariances)[1]
    comp = np.log(prior.weights) - 0.5 * (quad + logdets)
    top = comp.max()
    resp = np.exp(comp - top)
    log_prior = top + np.log(resp.sum())
    resp /= resp.sum()
    grad_log_prior = -np.einsum("k,kij,kj->i", resp, precisions, diffs)
    value = 0.5 * r @ r / delta**2 - log_prior
    return float(value), A.T @ r / delta**2 - grad_log_prior


def map_estimate(prior: GaussianMixture, A: np.ndarray, delta: float, y: np.ndarray) -> np.ndarray:
    """argmax_x p(x | y) for data y of shape (n, m), by multi-start L-BFGS."""
    A, y = np.asarray(A, float), np.atleast_2d(y)
    weights, means = _components(prior, A, delta, y)
    pm = np.einsum("nk,nkd->nd", weights, means)
    out = np.empty((len(y), A.shape[1]))
    for i, yi in enumerate(y):
        best = None
        for start in [*means[i], pm[i]]:
            res = minimize(
                neg_log_posterior,
                start,
                args=(prior, A, delta, yi),
                jac=True,
                method="L-BFGS-B",
                options={"gtol": 1e-10, "ftol": 1e-14},
            )
            if best is None or res.fun < best.fun:
                best = res
        out[i] = best.x
    return out


def linear_mmse(prior: GaussianMixture, A: np.ndarray, delta: float, y: np.ndarray) -> np.ndarray:
    """Tikhonov with the prior's mean and covariance (the best linear estimator): the classical
    reference, mu + (A^T A + delta^2 C^-1)^-1 A^T (y - A mu)."""
    A, y = np.asarray(A, float), np.atleast_2d(y)
    mu = prior.weights @ prior.means
    spread = np.einsum("k,ki,kj->ij", prior.weights, prior.means - mu, prior.means - mu)
    cov = np.einsum("k,kij->ij", prior.weights, prior.covariances) + spread
    gain = np.linalg.solve(A.T @ A + delta**2 * np.linalg.inv(cov), A.T)
    return mu + (y - A @ mu) @ gain.T
