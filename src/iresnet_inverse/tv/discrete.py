"""The discrete pieces every TV solver shares: forward-difference gradient, its negative
adjoint (divergence), isotropic TV, the objective, the pixelwise projection onto the dual
balls and the stopping quantity; and ``TVResult``, what a solver returns."""

from dataclasses import dataclass

import torch

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


def pixel_norm(p: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """Euclidean norm of each pixel's 2-vector (torch's vector_norm is slow over dim -3)."""
    return (p * p).sum(dim=-3, keepdim=keepdim).sqrt()


def per_image(t: torch.Tensor) -> torch.Tensor:
    """Sum over everything but the batch dimension."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV per image of a batch (batch, ...): sum of pixelwise gradient norms."""
    return per_image(pixel_norm(grad(x)))


def apply_operator(operator: torch.nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """F(x), with ``None`` for the identity."""
    return x if operator is None else operator(x)


def tv_objective(
    operator: torch.nn.Module | None, x: torch.Tensor, z: torch.Tensor, alpha: float
) -> torch.Tensor:
    """1/2 ||F(x) - z||^2 + alpha TV(x) per image (``operator=None``: identity)."""
    with torch.no_grad():
        r = apply_operator(operator, x) - z
        return 0.5 * per_image(r * r) + alpha * total_variation(x)


def relative_change(new: torch.Tensor, old: torch.Tensor) -> float:
    """max over the batch of ||new - old|| / ||new|| (the stopping quantity of all solvers)."""
    num = torch.linalg.vector_norm((new - old).reshape(new.shape[0], -1), dim=1)
    den = torch.linalg.vector_norm(new.reshape(new.shape[0], -1), dim=1)
    return float((num / den.clamp_min(torch.finfo(new.dtype).tiny)).max())


def check_alpha(alpha: float) -> None:
    """Refuse alpha <= 0: plain (unregularized) inversion, with a degenerate dual ball."""
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")


def project_balls(p: torch.Tensor, radius: torch.Tensor | float) -> torch.Tensor:
    """Project each pixel's 2-vector of p (..., 2, H, W) onto the ball of ``radius`` (the dual
    set of alpha * isotropic TV); ``radius`` is a float or one value per image."""
    norm = pixel_norm(p, keepdim=True)
    if isinstance(radius, torch.Tensor):
        radius = radius.reshape(-1, *([1] * (p.ndim - 1)))
    return p / torch.clamp(norm / radius, min=1.0)
