"""Exact posterior mean and MAP for Gaussian-mixture priors against brute force on a grid."""

import numpy as np
import pytest
import torch

from iresnet_inverse.bayes import linear_mmse, map_estimate, neg_log_posterior, posterior_mean
from iresnet_inverse.data.priors import PRIORS, get_prior

GRID = np.linspace(-3, 3, 1201)  # spacing 0.005
STEP = GRID[1] - GRID[0]


def _log_posterior_on_grid(prior, A: np.ndarray, delta: float, y: np.ndarray) -> np.ndarray:
    xx, yy = np.meshgrid(GRID, GRID, indexing="ij")
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    log_prior = prior.log_density(torch.tensor(points)).numpy()
    residual = points @ A.T - y
    return (log_prior - 0.5 * (residual**2).sum(axis=1) / delta**2).reshape(xx.shape)


@pytest.mark.parametrize(
    ("name", "eps", "delta"),
    [("bimodal", 1.0, 0.2), ("bimodal", 0.1, 0.1), ("trimodal", 0.1, 0.4), ("gaussian", 0.1, 0.1)],
)
def test_posterior_mean_equals_quadrature_and_map_equals_grid_search(
    name: str, eps: float, delta: float
) -> None:
    prior = get_prior(name)
    A = np.diag([1.0, eps])
    rng = np.random.default_rng(0)
    for x in prior.sample(3, rng):
        y = A @ x + delta * rng.standard_normal(2)
        logp = _log_posterior_on_grid(prior, A, delta, y)
        weights = np.exp(logp - logp.max())
        weights /= weights.sum()
        xx, yy = np.meshgrid(GRID, GRID, indexing="ij")
        quadrature = np.array([(weights * xx).sum(), (weights * yy).sum()])
        np.testing.assert_allclose(
            posterior_mean(prior, A, delta, y[None])[0], quadrature, atol=1e-4
        )
        best = np.unravel_index(np.argmax(logp), logp.shape)
        grid_map = np.array([GRID[best[0]], GRID[best[1]]])
        np.testing.assert_allclose(map_estimate(prior, A, delta, y[None])[0], grid_map, atol=STEP)


def test_gaussian_prior_map_equals_posterior_mean_and_linear_mmse() -> None:
    prior, A, delta = get_prior("gaussian"), np.diag([1.0, 0.1]), 0.1
    y = np.random.default_rng(1).standard_normal((5, 2))
    pm = posterior_mean(prior, A, delta, y)
    np.testing.assert_allclose(map_estimate(prior, A, delta, y), pm, atol=1e-6)
    np.testing.assert_allclose(linear_mmse(prior, A, delta, y), pm, atol=1e-10)


def test_gradient_and_score() -> None:
    prior = get_prior("bimodal3d")
    A, delta, y = np.eye(3), 0.2, np.array([0.1, 0.3, -0.2])
    x = np.array([0.2, -0.1, 0.4])
    value, grad = neg_log_posterior(x, prior, A, delta, y)
    h = 1e-6
    numeric = [
        (
            neg_log_posterior(x + h * e, prior, A, delta, y)[0]
            - neg_log_posterior(x - h * e, prior, A, delta, y)[0]
        )
        / (2 * h)
        for e in np.eye(3)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    point = torch.tensor(x[None])
    score = prior.score(point)[0].numpy()
    np.testing.assert_allclose(score, -(grad - A.T @ (A @ x - y) / delta**2), atol=1e-10)
    samples = prior.sample(20000, np.random.default_rng(0))
    assert samples.shape == (20000, 3)
    np.testing.assert_allclose(samples.mean(axis=0), [0, 0, 0], atol=0.03)
    assert set(PRIORS) == {"bimodal", "gaussian", "trimodal", "bimodal3d"}
    with pytest.raises(ValueError, match="unknown prior"):
        get_prior("cauchy")
