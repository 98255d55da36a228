"""TV reconstruction for linear operators: Chambolle-Pock PDHG on K = [A; grad], with the
step-size ratio tuned per image by residual balancing."""

import math
from typing import NamedTuple

import torch

from iresnet_inverse.errors import ConfigError
from iresnet_inverse.operators.linear import is_linear
from iresnet_inverse.tv import discrete
from iresnet_inverse.tv.norms import operator_norm


class _Iterate(NamedTuple):
    """A PDHG iterate (x, y, p) with the products the next step reuses: K x = (A x, grad x)
    and K^T (y, p) = A^T y - div p."""

    x: torch.Tensor
    y: torch.Tensor
    p: torch.Tensor
    ax: torch.Tensor
    gx: torch.Tensor
    kty: torch.Tensor


def tv_pdhg(
    operator: torch.nn.Module | None,
    z: torch.Tensor,
    alpha: float,
    tol: float = 1e-4,
    max_iter: int = 2000,
    x0: torch.Tensor | None = None,
    op_norm: float | None = None,
    adaptive: bool = True,
    dual0: tuple[torch.Tensor, ...] = (),
) -> discrete.TVResult:
    """Chambolle-Pock PDHG (2011, Algorithm 1, theta = 1) for a linear ``operator`` A
    (``None``: identity), with K = [A; grad], G = 0 and F*(y, p) = F1*(y) + F2*(p):

    * data dual y: prox of the conjugate of 1/2 ||. - z||^2, i.e. (v - sigma z) / (1 + sigma);
    * TV dual p: pixelwise projection onto the alpha-ball (isotropic TV).

    Step sizes start at tau = sigma = 0.99 / L with L^2 = ||A||^2 + 8 >= ||K||^2, so
    tau sigma ||K||^2 < 1. ||A|| is estimated by power iteration (2 % margin) unless ``op_norm``
    is given. With ``adaptive`` the ratio sigma / tau is tuned per image by residual balancing
    (``_balance_steps``). ``x0`` and ``dual0`` (a previous result's ``dual``, for a nearby
    alpha) warm-start the iteration; without ``dual0`` the duals start at zero. Stops when the
    relative change of x (per image, max over the batch) is below ``tol``.
    """
    if operator is not None and not is_linear(operator):
        raise ConfigError("tv_pdhg needs a linear operator with an adjoint; use tv_fista")
    discrete.check_alpha(alpha)
    if op_norm is None:
        op_norm = 1.02 * operator_norm(operator, z)
    with torch.no_grad():
        z = z.detach()
        x = (z if x0 is None else x0).detach().clone()
        shape = (x.shape[0], *([1] * (x.ndim - 1)))
        step = 0.99 / math.sqrt(op_norm**2 + discrete.GRAD_NORM_SQ)
        tau = torch.full(shape, step, dtype=x.dtype, device=x.device)
        sigma = tau.clone()
        rate = torch.full(shape, 0.5, dtype=x.dtype, device=x.device)  # adaptation strength
        now = _first_iterate(operator, x, z, alpha, dual0)
        change, it = math.inf, 0
        while it < max_iter:
            it += 1
            new = _pdhg_step(operator, now, z, alpha, tau, sigma)
            change = discrete.relative_change(new.x, now.x)
            if adaptive:
                tau, sigma, rate = _balance_steps(now, new, tau, sigma, rate)
            now = new
            if change < tol and (it > 1 or dual0):  # from zero duals the first step is zero
                break
    return discrete.TVResult(now.x, it, change < tol, change, (now.y, now.p))


def _adjoint(operator: torch.nn.Module | None, y: torch.Tensor) -> torch.Tensor:
    """A^T y, with ``None`` for the identity."""
    return y if operator is None else operator.adjoint(y)


def _first_iterate(
    operator: torch.nn.Module | None,
    x: torch.Tensor,
    z: torch.Tensor,
    alpha: float,
    dual0: tuple[torch.Tensor, ...],
) -> _Iterate:
    """x with zero duals, or with the duals ``dual0`` of a previous result (p projected onto
    this alpha's balls)."""
    if dual0:
        y, p = dual0[0].detach().clone(), discrete.project_balls(dual0[1].detach(), alpha)
        kty = _adjoint(operator, y) - discrete.div(p)  # K^T (y, p) = A^T y - div p
    else:
        y, p = torch.zeros_like(z), torch.zeros_like(discrete.grad(x))
        kty = torch.zeros_like(x)
    return _Iterate(x, y, p, discrete.apply_operator(operator, x), discrete.grad(x), kty)


def _pdhg_step(
    operator: torch.nn.Module | None,
    now: _Iterate,
    z: torch.Tensor,
    alpha: float,
    tau: torch.Tensor,
    sigma: torch.Tensor,
) -> _Iterate:
    """One step of Algorithm 1: the primal step, then both dual proxes at x_bar = 2 x_new - x."""
    x_new = now.x - tau * now.kty
    ax_new, gx_new = discrete.apply_operator(operator, x_new), discrete.grad(x_new)
    # K x_bar with x_bar = 2 x_new - x, by linearity from the stored K x.
    y_new = (now.y + sigma * (2.0 * ax_new - now.ax - z)) / (1.0 + sigma)
    p_new = discrete.project_balls(now.p + sigma[..., None] * (2.0 * gx_new - now.gx), alpha)
    kty_new = _adjoint(operator, y_new) - discrete.div(p_new)
    return _Iterate(x_new, y_new, p_new, ax_new, gx_new, kty_new)


def _balance_steps(
    now: _Iterate, new: _Iterate, tau: torch.Tensor, sigma: torch.Tensor, rate: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Residual balancing (Goldstein, Li & Yuan 2015): per image, a larger tau where the primal
    residual lags, a larger sigma where the dual one does; tau sigma stays fixed and the changes
    decay geometrically, so convergence is kept. The best fixed ratio differs between
    denoising and deblurring and with alpha; in our checks balancing reached a given objective
    accuracy in up to about half the iterations (never markedly more)."""
    # Primal and dual residuals of the PDHG fixed-point equations (l1, per image).
    primal = discrete.per_image(((now.x - new.x) / tau - (now.kty - new.kty)).abs())
    dual = discrete.per_image(
        ((now.y - new.y) / sigma - (now.ax - new.ax)).abs()
    ) + discrete.per_image(((now.p - new.p) / sigma[..., None] - (now.gx - new.gx)).abs())
    shape = tau.shape
    up = (primal > 1.5 * dual).reshape(shape)  # primal lags: larger tau
    down = (primal < dual / 1.5).reshape(shape)  # dual lags: larger sigma
    factor = torch.where(up, 1.0 / (1.0 - rate), torch.where(down, 1.0 - rate, 1.0))
    return tau * factor, sigma / factor, torch.where(up | down, 0.95 * rate, rate)
