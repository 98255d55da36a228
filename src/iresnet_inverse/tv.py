"""Total-variation (TV) reconstruction, the classical baseline for the inverse problems.

Solves, for every image of a batch at once,

    min_x  1/2 ||F(x) - z||^2 + alpha * TV(x),    TV(x) = sum_ij |(grad x)_ij|_2,

with isotropic TV, forward differences and Neumann boundary (the difference across the last
row/column is zero). Images are tensors (batch, 1, H, W); alpha is one float for the batch.
The objective sums over pixels (it is not a mean), so ``alpha`` matches scikit-image's
``denoise_tv_chambolle(weight=alpha)`` for F = identity.

Linear operators (with ``adjoint``) use Chambolle-Pock PDHG on K = [A; grad]; nonlinear ones
(diffusion) use monotone FISTA with autograd gradients and an inner dual solver for the TV prox.
"""

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from iresnet_inverse.errors import ConfigError
from iresnet_inverse.metrics import psnr
from iresnet_inverse.nets.model import Model
from iresnet_inverse.operators import is_linear

#: ||grad||^2 <= 8 for forward differences in 2D (4 per axis), the bound used for step sizes.
GRAD_NORM_SQ = 8.0


@dataclass
class TVResult:
    """A batch of TV reconstructions and how the solver ended."""

    x: torch.Tensor
    iterations: int
    converged: bool
    change: float  # the last max-over-batch relative change of x
    # Solver state for warm starts (pass back as ``dual0``): (y, p) of PDHG, (p,) of FISTA.
    dual: tuple[torch.Tensor, ...] = ()


@dataclass
class AlphaSearch:
    """Outcome of the random search: the best alpha and every (alpha, mean PSNR) tried."""

    alpha: float
    psnr: float
    table: list[tuple[float, float]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Discrete gradient, divergence and TV


def grad(x: torch.Tensor) -> torch.Tensor:
    """Forward differences of (..., H, W) images, stacked as (..., 2, H, W) = (d/drow, d/dcol).

    The difference across the last row/column is zero (Neumann boundary)."""
    dr = torch.zeros_like(x)
    dc = torch.zeros_like(x)
    dr[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    dc[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return torch.stack((dr, dc), dim=-3)


def div(p: torch.Tensor) -> torch.Tensor:
    """Discrete divergence of (..., 2, H, W) fields; exactly div = -grad^T, which keeps the
    primal-dual pairs consistent."""
    pr, pc = p[..., 0, :, :], p[..., 1, :, :]
    out = torch.zeros_like(pr)
    # grad^T sends each difference x[i+1] - x[i]'s p to pixel i+1 and -p to pixel i; negate.
    out[..., :-1, :] += pr[..., :-1, :]
    out[..., 1:, :] -= pr[..., :-1, :]
    out[..., :, :-1] += pc[..., :, :-1]
    out[..., :, 1:] -= pc[..., :, :-1]
    return out


def _pixel_norm(p: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """Euclidean norm of each pixel's 2-vector (torch's vector_norm is slow over dim -3)."""
    return (p * p).sum(dim=-3, keepdim=keepdim).sqrt()


def _per_image(t: torch.Tensor) -> torch.Tensor:
    """Sum over everything but the batch dimension."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV per image of a batch (batch, ...): sum of pixelwise gradient norms."""
    return _per_image(_pixel_norm(grad(x)))


def _apply(operator: torch.nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if operator is None else operator(x)


def tv_objective(
    operator: torch.nn.Module | None, x: torch.Tensor, z: torch.Tensor, alpha: float
) -> torch.Tensor:
    """1/2 ||F(x) - z||^2 + alpha TV(x) per image (``operator=None``: identity)."""
    with torch.no_grad():
        r = _apply(operator, x) - z
        return 0.5 * _per_image(r * r) + alpha * total_variation(x)


def _relative_change(new: torch.Tensor, old: torch.Tensor) -> float:
    """max over the batch of ||new - old|| / ||new|| (the stopping quantity of all solvers)."""
    num = torch.linalg.vector_norm((new - old).reshape(new.shape[0], -1), dim=1)
    den = torch.linalg.vector_norm(new.reshape(new.shape[0], -1), dim=1)
    return float((num / den.clamp_min(torch.finfo(new.dtype).tiny)).max())


def _check_alpha(alpha: float) -> None:
    # alpha = 0 would be plain (unregularized) inversion and makes the dual ball degenerate.
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")


def _project_balls(p: torch.Tensor, radius: torch.Tensor | float) -> torch.Tensor:
    """Project each pixel's 2-vector of p (..., 2, H, W) onto the ball of ``radius`` (the dual
    set of alpha * isotropic TV); ``radius`` is a float or one value per image."""
    norm = _pixel_norm(p, keepdim=True)
    if isinstance(radius, torch.Tensor):
        radius = radius.reshape(-1, *([1] * (p.ndim - 1)))
    return p / torch.clamp(norm / radius, min=1.0)


# ---------------------------------------------------------------------------------------------
# Operator norms


def operator_norm(
    operator: torch.nn.Module | None,
    like: torch.Tensor,
    iterations: int = 30,
    at: torch.Tensor | None = None,
    seed: int = 0,
) -> float:
    """Power-iteration estimate of ||A|| (linear) or ||F'(at)|| (nonlinear, at ``at``) on images
    shaped like ``like[:1]``; a few random starts, the largest Rayleigh quotient wins.

    Power iteration approaches the norm from below, so callers add a safety margin."""
    if operator is None:
        return 1.0
    gen = torch.Generator(device="cpu").manual_seed(seed)
    shape = (4, *like.shape[1:])
    v = torch.randn(shape, generator=gen, dtype=like.dtype).to(like.device)
    if is_linear(operator):

        def normal(u: torch.Tensor) -> torch.Tensor:
            return operator.adjoint(operator(u))
    else:
        # J^T J u by reverse mode only: J u is the derivative of the pullback J^T w (linear in
        # w) with respect to w ("double vjp"); one recorded forward pass serves all calls.
        with torch.enable_grad():
            point = (like[:1] if at is None else at[:1]).detach().expand(shape).clone()
            point.requires_grad_(True)
            image = operator(point)
            probe = torch.zeros_like(image, requires_grad=True)
            (pullback,) = torch.autograd.grad(image, point, probe, create_graph=True)

        def normal(u: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                (ju,) = torch.autograd.grad(pullback, probe, u, retain_graph=True)
                (jtju,) = torch.autograd.grad(image, point, ju, retain_graph=True)
            return jtju

    with torch.no_grad():
        quotient = torch.zeros(shape[0], dtype=like.dtype, device=like.device)
        for _ in range(iterations):
            v = v / torch.linalg.vector_norm(v.reshape(shape[0], -1), dim=1).reshape(
                -1, *([1] * (v.ndim - 1))
            )
            w = normal(v)
            quotient = _per_image(v * w)
            v = w
    return math.sqrt(max(float(quotient.max()), 0.0))


# ---------------------------------------------------------------------------------------------
# Linear operators: Chambolle-Pock PDHG


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
) -> TVResult:
    """Chambolle-Pock PDHG (2011, Algorithm 1, theta = 1) for a linear ``operator`` A
    (``None``: identity), with K = [A; grad], G = 0 and F*(y, p) = F1*(y) + F2*(p):

    * data dual y: prox of the conjugate of 1/2 ||. - z||^2, i.e. (v - sigma z) / (1 + sigma);
    * TV dual p: pixelwise projection onto the alpha-ball (isotropic TV).

    Step sizes start at tau = sigma = 0.99 / L with L^2 = ||A||^2 + 8 >= ||K||^2, so
    tau sigma ||K||^2 < 1. ||A|| is estimated by power iteration (2 % margin) unless ``op_norm``
    is given. With ``adaptive`` the ratio sigma / tau is tuned per image by residual balancing
    (Goldstein, Li & Yuan 2015: tau sigma stays fixed, the changes decay geometrically, so
    convergence is kept): the best fixed ratio differs between denoising and deblurring and
    with alpha, and in our checks balancing reached a given objective accuracy in up to about
    half the iterations (never markedly more). ``x0`` and ``dual0`` (a previous result's
    ``dual``, for a nearby alpha) warm-start the iteration; without ``dual0`` the duals start
    at zero. Stops when the relative change of x (per image, max over the batch) is below ``tol``.
    (One algorithm, kept whole so that it can be read against the paper's pseudo-code.)
    """
    if operator is not None and not is_linear(operator):
        raise ConfigError("tv_pdhg needs a linear operator with an adjoint; use tv_fista")
    _check_alpha(alpha)
    if op_norm is None:
        op_norm = 1.02 * operator_norm(operator, z)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return x if operator is None else operator(x)

    def adjoint(y: torch.Tensor) -> torch.Tensor:
        return y if operator is None else operator.adjoint(y)

    with torch.no_grad():
        z = z.detach()
        x = (z if x0 is None else x0).detach().clone()
        shape = (x.shape[0], *([1] * (x.ndim - 1)))
        step = 0.99 / math.sqrt(op_norm**2 + GRAD_NORM_SQ)
        tau = torch.full(shape, step, dtype=x.dtype, device=x.device)
        sigma = tau.clone()
        rate = torch.full(shape, 0.5, dtype=x.dtype, device=x.device)  # adaptation strength
        if dual0:
            y, p = dual0[0].detach().clone(), _project_balls(dual0[1].detach(), alpha)
            kty = adjoint(y) - div(p)  # K^T (y, p) = A^T y - div p
        else:
            y, p = torch.zeros_like(z), torch.zeros_like(grad(x))
            kty = torch.zeros_like(x)
        ax, gx = forward(x), grad(x)
        change, it = math.inf, 0
        while it < max_iter:
            it += 1
            x_new = x - tau * kty
            ax_new, gx_new = forward(x_new), grad(x_new)
            # K x_bar with x_bar = 2 x_new - x, by linearity from the stored K x.
            y_new = (y + sigma * (2.0 * ax_new - ax - z)) / (1.0 + sigma)
            p_new = _project_balls(p + sigma[..., None] * (2.0 * gx_new - gx), alpha)
            kty_new = adjoint(y_new) - div(p_new)
            change = _relative_change(x_new, x)
            if adaptive:
                # Primal and dual residuals of the PDHG fixed-point equations (l1, per image).
                primal = _per_image(((x - x_new) / tau - (kty - kty_new)).abs())
                dual = _per_image(((y - y_new) / sigma - (ax - ax_new)).abs()) + _per_image(
                    ((p - p_new) / sigma[..., None] - (gx - gx_new)).abs()
                )
                up = (primal > 1.5 * dual).reshape(shape)  # primal lags: larger tau
                down = (primal < dual / 1.5).reshape(shape)  # dual lags: larger sigma
                factor = torch.where(up, 1.0 / (1.0 - rate), torch.where(down, 1.0 - rate, 1.0))
                tau, sigma = tau * factor, sigma / factor
                rate = torch.where(up | down, 0.95 * rate, rate)
            x, y, p, ax, gx, kty = x_new, y_new, p_new, ax_new, gx_new, kty_new
            if change < tol and (it > 1 or dual0):  # from zero duals the first step is zero
                break
    return TVResult(x, it, change < tol, change, (y, p))


# ---------------------------------------------------------------------------------------------
# TV prox (denoising) by the fast dual projected gradient


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
        p = torch.zeros_like(grad(v)) if p0 is None else _project_balls(p0, weight)
        r, t = p, 1.0
        u = v + div(p)
        for _ in range(max_iter):
            p_new = _project_balls(r + grad(v + div(r)) / GRAD_NORM_SQ, weight)
            t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            r = p_new + ((t - 1.0) / t_new) * (p_new - p)
            p, t = p_new, t_new
            u_new = v + div(p)
            change = _relative_change(u_new, u)
            u = u_new
            if change < tol:
                break
    return u, p


# ---------------------------------------------------------------------------------------------
# Nonlinear operators: monotone FISTA with autograd gradients


def _data_value_and_grad(
    operator: torch.nn.Module | None, x: torch.Tensor, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image 1/2 ||F(x) - z||^2 and its gradient F'(x)^T (F(x) - z) by one vjp."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        r = _apply(operator, xg) - z
        value = 0.5 * _per_image(r * r)
        (g,) = torch.autograd.grad(value.sum(), xg)
    return value.detach(), g


def _data_value(operator: torch.nn.Module | None, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        r = _apply(operator, x) - z
        return 0.5 * _per_image(r * r)


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
    (One algorithm, kept whole so that it can be read against the paper's pseudo-code.)
    """
    _check_alpha(alpha)
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
        f_y, g_y = _data_value_and_grad(operator, y, z)
        for _ in range(60):  # halvings; 2^-60 means a broken operator, not a step size
            cand, dual_new = tv_prox(y - step * g_y, alpha * step, inner_tol, inner_max_iter, dual)
            d = cand - y
            f_cand = _data_value(operator, cand, z)
            model = f_y + _per_image(g_y * d) + _per_image(d * d) / (2.0 * step.reshape(-1))
            ok = f_cand <= model + 1e-12 * f_y.abs().clamp_min(1.0)
            if bool(ok.all()):
                break
            step = torch.where(ok.reshape(shape), step, 0.5 * step)
        dual = dual_new
        cand_value = f_cand + alpha * total_variation(cand)
        better = (cand_value <= value).reshape(shape)
        x_new = torch.where(better, cand, x)
        value = torch.where(better.reshape(-1), cand_value, value)
        momentum_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * momentum * momentum))
        y = (
            x_new
            + (momentum / momentum_new) * (cand - x_new)
            + ((momentum - 1.0) / momentum_new) * (x_new - x)
        )
        momentum = torch.where(better, momentum_new, torch.ones_like(momentum))
        change = _relative_change(cand, cand - d)
        x = x_new
        if change < tol:
            break
    return TVResult(x, it, change < tol, change, (dual,))


# ---------------------------------------------------------------------------------------------
# Dispatch and the alpha search


def tv_reconstruct(
    operator: torch.nn.Module | None,
    z: torch.Tensor,
    alpha: float,
    tol: float = 1e-4,
    max_iter: int = 2000,
    x0: torch.Tensor | None = None,
    dual0: tuple[torch.Tensor, ...] = (),
) -> TVResult:
    """TV reconstruction of the batch ``z``: PDHG for linear operators (and ``None`` =
    identity), monotone FISTA otherwise. ``x0``/``dual0`` warm-start from a previous result of
    the same operator (its ``x`` and ``dual``)."""
    if operator is None or is_linear(operator):
        return tv_pdhg(operator, z, alpha, tol=tol, max_iter=max_iter, x0=x0, dual0=dual0)
    return tv_fista(operator, z, alpha, tol=tol, max_iter=max_iter, x0=x0, dual0=dual0)


def search_alpha(
    operator: torch.nn.Module | None,
    z_val: torch.Tensor,
    x_val: torch.Tensor,
    samples: int = 12,
    low: float = 1e-4,
    high: float = 1.0,
    seed: int = 0,
    tol: float = 1e-3,
    max_iter: int = 500,
    warm_start: bool = True,
    progress: bool = False,
    solver: Callable[..., TVResult] | None = None,
) -> AlphaSearch:
    """Random search (as in the paper) for the alpha maximizing the mean PSNR on validation
    pairs (z_val, x_val): ``samples`` log-uniform draws from [low, high] with ``seed``.

    Cheap by design: all validation images are solved as one batch per alpha, and with
    ``warm_start`` the alphas are visited from the largest down (continuation), each solve
    starting from the previous solution and duals; large alphas converge fast, and each
    smaller one starts close to its minimizer. The default ``tol`` is coarse: on blur it
    understates the table's PSNRs (by about 0.4 dB near the best alpha with warm starts, 1 to
    2 dB without) but picked the same alpha as tol 1e-4 at a sixth of the cost in our checks;
    reconstruct the final images with :func:`tv_reconstruct` at its finer default.
    ``solver`` (default :func:`tv_reconstruct`) takes (operator, z, alpha, tol=, max_iter=,
    x0=, dual0=). Returns the best alpha and the (alpha, mean PSNR) table sorted by alpha.
    """
    if not 0 < low <= high:
        raise ConfigError(f"need 0 < low <= high, got low={low}, high={high}")
    if samples < 1:
        raise ConfigError(f"need at least one sample, got {samples}")
    rng = np.random.default_rng(seed)
    alphas = np.exp(rng.uniform(math.log(low), math.log(high), samples))
    solve = tv_reconstruct if solver is None else solver
    reference = x_val.detach().cpu().double().numpy().reshape(len(x_val), *x_val.shape[-2:])
    table: list[tuple[float, float]] = []
    previous: TVResult | None = None
    bar = tqdm(np.sort(alphas)[::-1], desc="TV alpha search", file=sys.stderr, disable=not progress)
    for a in bar:
        start = {"x0": previous.x, "dual0": previous.dual} if warm_start and previous else {}
        result = solve(operator, z_val, float(a), tol=tol, max_iter=max_iter, **start)
        previous = result
        estimate = result.x.detach().cpu().double().numpy().reshape(reference.shape)
        score = float(np.mean(psnr(reference, estimate)))
        table.append((float(a), score))
        bar.set_postfix(alpha=f"{a:.3g}", psnr=f"{score:.2f}", iters=result.iterations)
    table.sort()
    best_alpha, best_psnr = max(table, key=lambda row: row[1])
    return AlphaSearch(best_alpha, best_psnr, table)


class TotalVariation(Model):
    """TV reconstruction as a module: forward(z) solves min_x 1/2 ||F(x) - z||^2 + alpha TV(x)
    (``iresnet_inverse.tv``). alpha is a buffer, set by the validation search."""

    trained_by_gradient = False

    def __init__(
        self, operator: torch.nn.Module, alpha: float, tol: float = 1e-4, max_iter: int = 500
    ) -> None:
        super().__init__()
        self.operator = operator
        self.tol, self.max_iter = tol, max_iter
        self.register_buffer("alpha", torch.tensor(float(alpha), dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():  # the nonlinear solver differentiates the data term
            result = tv_reconstruct(
                self.operator, z, float(self.alpha), tol=self.tol, max_iter=self.max_iter
            )
        return result.x.detach()
