"""Exact Bayesian estimators for the toy priors and linear Gaussian data.

With y = A x + eta, eta ~ N(0, delta^2 I), and prior sum_k w_k N(mu_k, Sigma_k), the posterior is
again a Gaussian mixture: component k has covariance S_k = (Sigma_k^-1 + A^T A / delta^2)^-1,
mean m_k(y) = S_k (Sigma_k^-1 mu_k + A^T y / delta^2) and weight proportional to
w_k N(y; A mu_k, A Sigma_k A^T + delta^2 I). The posterior mean is sum_k w'_k m_k (closed form);
the MAP point is found by multi-start minimization of the negative log posterior, started at
every component mean and at the posterior mean.

For the separable ``LogCosh`` prior and a diagonal A = diag(a), the posterior factorizes into
1D posteriors with the strictly convex potential U_i(t) = log cosh(t / s) + lam t^2 / 2 +
(a_i t - y_i)^2 / (2 delta^2), whose curvature is at least c_i = lam + a_i^2 / delta^2: the MAP
is the root of U_i' (monotone), bracketed in [(b_i - 1/s) / c_i, (b_i + 1/s) / c_i] with
b_i = a_i y_i / delta^2 (as |tanh| <= 1), found by bisection and polished by Newton steps; the
posterior mean is 1D quadrature about the MAP (``priors.log_concave_moments``, 1e-9 against
scipy.integrate.quad in the tests).

``posterior_mean`` and ``map_estimate`` dispatch on the prior's type; ``linear_mmse`` needs
only the prior's mean and covariance.
"""

from functools import singledispatch

import numpy as np

# scipy.optimize and scipy.stats are imported where they are used: only the toy references
# compute estimators, while every toy training job imports this module (through toy2d).
from iresnet_inverse.data.priors import GaussianMixture, LogCosh, Prior, log_concave_moments


def _components(
    prior: GaussianMixture, A: np.ndarray, delta: float, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior component weights (n, K) and means (n, K, d) for data y (n, m)."""
    from scipy.stats import multivariate_normal

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


@singledispatch
def posterior_mean(prior: Prior, A: np.ndarray, delta: float, y: np.ndarray) -> np.ndarray:
    """E[x | y] for data y of shape (n, m)."""
    raise TypeError(f"no posterior mean for {type(prior).__name__}")


@singledispatch
def map_estimate(prior: Prior, A: np.ndarray, delta: float, y: np.ndarray) -> np.ndarray:
    """argmax_x p(x | y) for data y of shape (n, m)."""
    raise TypeError(f"no MAP estimate for {type(prior).__name__}")


@posterior_mean.register
def _(prior: GaussianMixture, A: np.ndarray, delta: float, y: np.ndarray) -> np.ndarray:
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


@map_estimate.register
def _(prior: GaussianMixture, A: np.ndarray, delta: float, y: np.ndarray) -> np.ndarray:
    """Multi-start L-BFGS."""
    from scipy.optimize import minimize

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


def _diagonal(A: np.ndarray) -> np.ndarray:
    A = np.asarray(A, float)
    if A.shape[0] != A.shape[1] or np.any(A != np.diag(np.diag(A))):
        raise ValueError("the separable prior's exact estimators need a diagonal operator")
    return np.diag(A)


def _logcosh_posterior(
    prior: LogCosh, A: np.ndarray, delta: float, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per coordinate (shape (n, d)): the data gain a, b = a y / delta^2 and c = lam + a^2/delta^2,
    so that U'(t) = tanh(t / s) / s + c t - b."""
    a = _diagonal(A)
    b = a * np.atleast_2d(y) / delta**2
    return a, b, np.broadcast_to(prior.curvature + a**2 / delta**2, b.shape)


@map_estimate.register
def _(prior: LogCosh, A: np.ndarray, delta: float, y: np.ndarray) -> np.ndarray:
    """Bisection on the monotone U' from its bracket, then Newton steps (module docstring)."""
    _, b, c = _logcosh_posterior(prior, A, delta, y)
    lo, hi = (b - 1 / prior.scale) / c, (b + 1 / prior.scale) / c
    for _ in range(60):  # the bracket, 2 / (s c) wide, shrinks below 1e-17 of it
        mid = 0.5 * (lo + hi)
        above = prior.potential_derivatives(mid)[0] + (c - prior.curvature) * mid - b > 0
        lo, hi = np.where(above, lo, mid), np.where(above, mid, hi)
    t = 0.5 * (lo + hi)
    for _ in range(3):
        first, second = prior.potential_derivatives(t)
        t = t - (first + (c - prior.curvature) * t - b) / (second + c - prior.curvature)
    return t


@posterior_mean.register
def _(prior: LogCosh, A: np.ndarray, delta: float, y: np.ndarray) -> np.ndarray:
    """1D quadrature per coordinate, centred at the MAP (the posterior's mode)."""
    a, _, c = _logcosh_posterior(prior, A, delta, y)
    y = np.atleast_2d(y)

    def potential(t: np.ndarray) -> np.ndarray:
        return prior.potential(t) + (a[:, None] * t - y[..., None]) ** 2 / (2 * delta**2)

    return log_concave_moments(potential, map_estimate(prior, A, delta, y), c)[1]


def linear_mmse(prior: Prior, A: np.ndarray, delta: float, y: np.ndarray) -> np.ndarray:
    """Tikhonov with the prior's mean and covariance (the best linear estimator): the classical
    reference, mu + (A^T A + delta^2 C^-1)^-1 A^T (y - A mu)."""
    A, y = np.asarray(A, float), np.atleast_2d(y)
    mu, cov = prior.mean, prior.covariance
    gain = np.linalg.solve(A.T @ A + delta**2 * np.linalg.inv(cov), A.T)
    return mu + (y - A @ mu) @ gain.T
