"""TV reconstruction for any differentiable operator (the nonlinear diffusion): monotone FISTA
with autograd gradients, and the TV prox it needs (denoising) by the fast dual projected
gradient."""

import math

import torch

from iresnet_inverse.tv.discrete import (
    GRAD_NORM_SQ,
    TVResult,
    apply_operator,
    check_alpha,
    div,
    grad,
    per_image,
    project_balls,
    relative_change,
    total_variation,
)
from iresnet_inverse.tv.norms import operator_norm


def tv_prox(
    v: torch.Tensor,
    weight: float | torch.Tensor,
    tol: float = 1e-6,
    max_iter: int = 500,
    p0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin_u 1/2 ||u - v||^2 + weight TV(u) per image (``weight``: float or one per image).

    Fast gradient projection (Beck & Teboulle 2009) on the dual min_{|p_ij| <= weight}
    1/2 ||v + div p||^2, whose gradient -grad(v + div p) is 8-Lipschitz, so step 1/8; the primal
    u = v + div p. Stops on the relative change of u (max over the batch). Returns (u, p); pass
    p back as ``p0`` to warm-start a nearby problem, which is what makes it cheap inside FISTA.
    """
    with torch.no_grad():
        if isinstance(weight, torch.Tensor):
            weight = weight.reshape(-1)
        p = torch.zeros_like(grad(v)) if p0 is None else project_balls(p0, weight)
        r, t = p, 1.0
        u = v + div(p)
        for _ in range(max_iter):
            p_new = project_balls(r + grad(v + div(r)) / GRAD_NORM_SQ, weight)
            t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            r = p_new + ((t - 1.0) / t_new) * (p_new - p)
            p, t = p_new, t_new
            u_new = v + div(p)
            change = relative_change(u_new, u)
            u = u_new
            if change < tol:
                break
    return u, p


def _data_value_and_grad(
    operator: torch.nn.Module | None, x: torch.Tensor, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image 1/2 ||F(x) - z||^2 and its gradient F'(x)^T (F(x) - z) by one vjp."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        r = apply_operator(operator, xg) - z
        value = 0.5 * per_image(r * r)
        (g,) = torch.autograd.grad(value.sum(), xg)
    return value.detach(), g


def _data_value(operator: torch.nn.Module | None, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-image 1/2 ||F(x) - z||^2, without a graph."""
    with torch.no_grad():
        r = apply_operator(operator, x) - z
        return 0.5 * per_image(r * r)


def tv_fista(
    operator: torch.nn.Module | None,
    z: torch.Tensor,
    alpha: float,
    tol: float = 1e-4,
    max_iter: int = 1000,
    x0: torch.Tensor | None = None,
    inner_tol: float | None = None,
    inner_max_iter: int = 100,
    dual0: tuple[torch.Tensor, ...] = (),
) -> TVResult:
    """Monotone FISTA (MFISTA, Beck & Teboulle 2009) for any differentiable ``operator``.

    * gradient of the data term by autograd (one vjp per iteration);
    * TV prox by :func:`tv_prox`, warm-started with the previous dual variable (initially
      ``dual0``, a previous result's ``dual``) and solved to ``inner_tol`` (default tol / 10);
    * step size per image: starts at 1 / ||F'(x0)||^2 (power iteration, 10 % margin) and is
      halved until the sufficient-decrease condition of the prox-gradient step holds (it never
      grows again, which keeps the scheme simple and the objective monotone);
    * monotone: a candidate that raises the objective is rejected (x stays) and that image's
      momentum restarts, which also keeps the nonconvex (diffusion) case stable.

    Stops when the relative change of the proximal-gradient candidate from the extrapolated
    point (per image, max over the batch) falls below ``tol``, a fixed-point residual.
    """
    check_alpha(alpha)
    if inner_tol is None:
        inner_tol = tol / 10
    z = z.detach()
    x = (z if x0 is None else x0).detach().clone()
    batch = x.shape[0]
    shape = (batch, *([1] * (x.ndim - 1)))
    lip = operator_norm(operator, z, iterations=10, at=x) ** 2
    step = torch.full(shape, 1.0 / max(1.1 * lip, 1e-12), dtype=x.dtype, device=x.device)
    momentum = torch.ones(shape, dtype=x.dtype, device=x.device)
    value = _data_value(operator, x, z) + alpha * total_variation(x)
    y, dual = x.clone(), (dual0[0].detach() if dual0 else None)
    change, it = math.inf, 0
    while it < max_iter:
        it += 1
        inner = (inner_tol, inner_max_iter)
        cand, d, f_cand, dual, step = _prox_gradient(operator, z, y, alpha, step, dual, inner)
        cand_value = f_cand + alpha * total_variation(cand)
        better = (cand_value <= value).reshape(shape)
        x_new = torch.where(better, cand, x)
        value = torch.where(better.reshape(-1), cand_value, value)
        y, momentum = _extrapolate(x, x_new, cand, momentum, better)
        change = relative_change(cand, cand - d)
        x = x_new
        if change < tol:
            break
    return TVResult(x, it, change < tol, change, (dual,))


def _prox_gradient(
    operator: torch.nn.Module | None,
    z: torch.Tensor,
    y: torch.Tensor,
    alpha: float,
    step: torch.Tensor,
    dual: torch.Tensor | None,
    inner: tuple[float, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The prox-gradient candidate from y with backtracking: each image's step is halved until
    the sufficient-decrease condition holds. Returns the candidate, its offset d from y, its
    data term, the prox's dual and the (possibly smaller) steps."""
    f_y, g_y = _data_value_and_grad(operator, y, z)
    for _ in range(60):  # halvings; 2^-60 means a broken operator, not a step size
        cand, dual_new = tv_prox(y - step * g_y, alpha * step, *inner, dual)
        d = cand - y
        f_cand = _data_value(operator, cand, z)
        model = f_y + per_image(g_y * d) + per_image(d * d) / (2.0 * step.reshape(-1))
        ok = f_cand <= model + 1e-12 * f_y.abs().clamp_min(1.0)
        if bool(ok.all()):
            break
        step = torch.where(ok.reshape(step.shape), step, 0.5 * step)
    return cand, d, f_cand, dual_new, step


def _extrapolate(
    x: torch.Tensor,
    x_new: torch.Tensor,
    cand: torch.Tensor,
    momentum: torch.Tensor,
    better: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MFISTA's next extrapolated point and momentum; the momentum restarts (at 1) for the
    images whose candidate was rejected."""
    momentum_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * momentum * momentum))
    y = (
        x_new
        + (momentum / momentum_new) * (cand - x_new)
        + ((momentum - 1.0) / momentum_new) * (x_new - x)
    )
    return y, torch.where(better, momentum_new, torch.ones_like(momentum))
