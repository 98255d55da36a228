"""Training objectives for an iResNet phi approximating a forward operator F.

All losses are per-sample sums over pixels, averaged over the batch:

- approximation:  1/2 ||phi(x) - z||^2
- reconstruction: 1/2 ||phi^-1(z) - x||^2   (implicit gradients through the inverse)
- logdet:         1/2 ||phi(x) - z||^2 - dhat^2 log|det D phi(x)|
- divergence:     1/2 ||phi(x) - F*z||^2 - dhat^2 div phi(x)
- supervised:     1/2 ||net(z) - x||^2       (the learned baselines, which map z to x directly)

with z = F(x) + delta * noise and dhat = factor * delta. The log-det loss makes phi^-1(z) a
posterior-mean-type estimator, the divergence loss makes phi^-1(F*z) the MAP point
(Heilenkoetter 2025). Reconstructions are phi^-1(z), except for the divergence objective, which
inverts the normal-equation data F*z.

For the nonlinear diffusion operator there is no adjoint; we use the transpose of its Jacobian
at the data itself, F*z := DF(z)^T z (an autograd VJP), which needs nothing but z at test time
and equals A^T z for a linear operator A. This is our choice; the papers leave it open.

Log-determinant and divergence are exact (Jacobian by autograd) in dimension <= 3. For images,
the divergence is a Hutchinson estimate E[v^T D phi(x) v] with Rademacher probes v (unbiased).
The log-determinant of an image iResNet is taken on the lifted space X^M, where phi is invertible:
log det D Phi = sum_i log det(I - J_fi) with the power series
log det(I - J) = -sum_{k>=1} tr(J^k)/k, truncated after ``terms`` terms, each trace a Hutchinson
estimate. Each trace estimate is unbiased; the truncation makes the sum biased, by at most
d * sum_{k>terms} L_i^k / k per block (d the dimension), which is small for L_i ~ 0.5.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from iresnet_inverse.nets.iresnet import InverseResult, IResNet
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.operators import is_linear

OBJECTIVES = ("reconstruction", "approximation", "logdet", "divergence")
EXACT_MAX_DIM = 3


@dataclass
class Estimators:
    """Hutchinson settings for image-sized log-det and divergence terms."""

    probes: int = 1
    terms: int = 4


def normal_data(operator: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """F*z: the adjoint for linear operators, DF(z)^T z (autograd VJP) otherwise."""
    if is_linear(operator):
        return operator.adjoint(z)
    with torch.enable_grad():
        point = z.detach().requires_grad_()
        (vjp,) = torch.autograd.grad(operator(point), point, z.detach())
    return vjp


def reconstruction_input(
    objective: str, operator: torch.nn.Module, z: torch.Tensor
) -> torch.Tensor:
    """What phi^-1 is applied to: the data, or F*z for the divergence objective."""
    return normal_data(operator, z) if objective == "divergence" else z


def _sum_per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(dim=1)


def _rademacher(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    bits = torch.randint(0, 2, like.shape, generator=generator, device="cpu", dtype=torch.int8)
    return (2 * bits - 1).to(dtype=like.dtype, device=like.device)


def exact_jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobians (batch, d, d) of a map on (batch, d), differentiable (create_graph)."""
    x = x if x.requires_grad else x.requires_grad_()
    y = fn(x)
    rows = [torch.autograd.grad(y[:, i].sum(), x, create_graph=True)[0] for i in range(y.shape[1])]
    return torch.stack(rows, dim=1)


def divergence(
    net: IResNet, x: torch.Tensor, estimators: Estimators, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """phi(x) and div phi(x) per sample (exact for d <= 3, Hutchinson otherwise)."""
    x = x.detach().requires_grad_()
    if x.ndim == 2 and x.shape[1] <= EXACT_MAX_DIM:
        jac = exact_jacobian(net, x)
        return net(x), jac.diagonal(dim1=1, dim2=2).sum(dim=1)
    y = net(x)
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for _ in range(estimators.probes):
        v = _rademacher(x, generator)
        (vjp,) = torch.autograd.grad(y, x, v, create_graph=True)
        total = total + _sum_per_sample(vjp * v)
    return y, total / estimators.probes


def block_logdet(
    block: torch.nn.Module,
    h: torch.Tensor,
    estimators: Estimators,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """phi_i(h) and log det(I - J_fi(h)) per sample by the truncated, Hutchinson power series."""
    h = h if h.requires_grad else h.detach().requires_grad_()
    fh = block.residual(h)
    total = torch.zeros(h.shape[0], dtype=h.dtype, device=h.device)
    for _ in range(estimators.probes):
        v = _rademacher(h, generator)
        w = v
        for k in range(1, estimators.terms + 1):
            (w,) = torch.autograd.grad(fh, h, w, create_graph=True)  # w = (J^T)^k v
            total = total - _sum_per_sample(w * v) / k
    return h - fh, total / estimators.probes


def logdet(
    net: IResNet, x: torch.Tensor, estimators: Estimators, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """phi(x) and log|det D phi(x)| per sample (on X^M for lifted image networks)."""
    if x.ndim == 2 and x.shape[1] <= EXACT_MAX_DIM:
        x = x.detach().requires_grad_()
        jac = exact_jacobian(net, x)
        return net(x), torch.linalg.slogdet(jac)[1]
    h = net.lift(x.detach()).requires_grad_()
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for block in net.blocks:
        h, ld = block_logdet(block, h, estimators, generator)
        total = total + ld
    return net.project(h), total


def loss(
    objective: str,
    net: torch.nn.Module,
    operator: torch.nn.Module,
    x: torch.Tensor,
    z: torch.Tensor,
    noise_hat: float = 0.0,
    solver: SolverConfig | None = None,
    estimators: Estimators | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, InverseResult | None]:
    """The batch-mean loss of ``objective``, and the inverse result when one was computed."""
    estimators = estimators or Estimators()
    if objective == "supervised":  # baselines: a direct reconstruction map z -> x
        return 0.5 * _sum_per_sample((net(z) - x) ** 2).mean(), None
    if objective == "reconstruction":
        result = net.inverse(z, solver)
        return 0.5 * _sum_per_sample((result.x - x) ** 2).mean(), result
    if objective == "approximation":
        return 0.5 * _sum_per_sample((net(x) - z) ** 2).mean(), None
    if objective == "logdet":
        y, ld = logdet(net, x, estimators, generator)
        return (0.5 * _sum_per_sample((y - z) ** 2) - noise_hat**2 * ld).mean(), None
    if objective == "divergence":
        y, div = divergence(net, x, estimators, generator)
        target = normal_data(operator, z)
        return (0.5 * _sum_per_sample((y - target) ** 2) - noise_hat**2 * div).mean(), None
    valid = ", ".join((*OBJECTIVES, "supervised"))
    raise ValueError(f"unknown objective {objective!r}; valid: {valid}")
