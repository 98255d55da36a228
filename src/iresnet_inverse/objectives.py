"""Training objectives for an iResNet phi approximating a forward operator F.

Image networks are trained on the lifted space, as Arndt & Nickel (2024, Sec. 4.1) prescribe:
"Input and target images z, x in X for training and evaluation of phi are accordingly stacked to
multichannel representations (z, ..., z), (x, ..., x) in X^M. The mapping of the network's
output back to the original space X is simply implemented as a mean over all channels. Note that
in this setting phi is not an invertible mapping on X but on X^M." With Phi the invertible core
on X^M and c(v) = (v, ..., v) the copy, every term is taken on X^M (per-sample sums over channels
and pixels, averaged over the batch):

- approximation:  1/2 ||Phi(c x) - c z||^2
- reconstruction: 1/2 ||Phi^-1(c z) - c x||^2   (implicit gradients through the inverse)
- logdet:         1/2 ||Phi(c x) - c z||^2 - dhat^2 log|det D Phi(c x)|
- divergence:     1/2 ||Phi(c x) - c F*z||^2 - dhat^2 div Phi(c x)
- supervised:     1/2 ||net(z) - x||^2       (the learned baselines, which map z to x directly)

with z = F(x) + delta * noise and dhat = factor * delta. Training the stacked targets makes Phi
keep the diagonal {c v} on the data, so that the reconstruction mean(Phi^-1(c z)) inverts the
trained map; a loss after the channel mean (``stacked=False``, kept for comparison) fits only
mean o Phi o c, whose inverse is not mean o Phi^-1 o c.

How dhat enters on X^M: for a channel-wise Phi = (phi, ..., phi), ||Phi(c x) - c z||^2 =
M ||phi(x) - z||^2, log|det D Phi| = M log|det D phi| and div Phi = M div phi, so with the same
dhat every term, and the whole loss, is exactly M times the loss on X: the balance between data
term and regularizer, and hence the Bayes estimator it targets, does not depend on M.

The log-det loss makes phi^-1(z) a posterior-mean-type estimator, the divergence loss makes
phi^-1(F*z) the MAP point (Heilenkoetter 2025). Reconstructions are mean(Phi^-1(c z)), except
for the divergence objective, which inverts the normal-equation data F*z.

For the nonlinear diffusion operator there is no adjoint; we use the transpose of its Jacobian
at the data itself, F*z := DF(z)^T z (an autograd VJP), which needs nothing but z at test time
and equals A^T z for a linear operator A. This is our choice; the papers leave it open.

Log-determinant and divergence are exact (Jacobian by autograd) in dimension <= 3. For images,
the divergence is a Hutchinson estimate E[v^T D Phi v] with Rademacher probes v on X^M (unbiased),
and log det D Phi = sum_i log det(I - J_fi) with the power series
log det(I - J) = -sum_{k>=1} tr(J^k)/k, truncated after ``terms`` terms, each trace a Hutchinson
estimate. Each trace estimate is unbiased; the truncation makes the sum biased, by at most
d * sum_{k>terms} L_i^k / k per block (d the dimension of X^M), small for L_i ~ 0.5.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from iresnet_inverse.nets.iresnet import InverseResult, IResNet
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.operators import is_linear
from iresnet_inverse.registry import OBJECTIVES

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


def lifted_leaf(net: IResNet, x: torch.Tensor) -> torch.Tensor:
    """c x on X^M (x itself for unlifted nets) as a fresh leaf, for derivatives of Phi."""
    return net.lift(x.detach()).contiguous().requires_grad_()


def _is_low_dimensional(h: torch.Tensor) -> bool:
    return h.ndim == 2 and h.shape[1] <= EXACT_MAX_DIM


def divergence(
    net: IResNet, x: torch.Tensor, estimators: Estimators, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Phi(c x) on X^M and div Phi(c x) per sample (exact for d <= 3, Hutchinson otherwise)."""
    h = lifted_leaf(net, x)
    if _is_low_dimensional(h):
        jac = exact_jacobian(net.core_forward, h)
        return net.core_forward(h), jac.diagonal(dim1=1, dim2=2).sum(dim=1)
    y = net.core_forward(h)
    total = torch.zeros(h.shape[0], dtype=h.dtype, device=h.device)
    for _ in range(estimators.probes):
        v = _rademacher(h, generator)
        (vjp,) = torch.autograd.grad(y, h, v, create_graph=True)
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
    """Phi(c x) on X^M and log|det D Phi(c x)| per sample (exact for d <= 3, else the
    truncated Hutchinson power series per block)."""
    h = lifted_leaf(net, x)
    if _is_low_dimensional(h):
        jac = exact_jacobian(net.core_forward, h)
        return net.core_forward(h), torch.linalg.slogdet(jac)[1]
    total = torch.zeros(h.shape[0], dtype=h.dtype, device=h.device)
    for block in net.blocks:
        h, ld = block_logdet(block, h, estimators, generator)
        total = total + ld
    return h, total


def _mean_space_loss(
    objective: str, net: IResNet, x: torch.Tensor, z: torch.Tensor, solver: SolverConfig | None
) -> tuple[torch.Tensor, InverseResult | None]:
    """The data terms after the channel mean, on X (``stacked=False``): they fit
    phi = mean o Phi o c only, so phi^-1 is not mean o Phi^-1 o c; kept for comparison."""
    if objective == "reconstruction":
        result = net.inverse(z, solver)
        return 0.5 * _sum_per_sample((result.x - x) ** 2).mean(), result
    if objective == "approximation":
        return 0.5 * _sum_per_sample((net(x) - z) ** 2).mean(), None
    raise ValueError(
        f"objective {objective!r} has no mean-space loss (log|det D phi| and div phi of the "
        "non-invertible phi on X are not defined by the lifting); use stacked targets"
    )


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
    stacked: bool = True,
) -> tuple[torch.Tensor, InverseResult | None]:
    """The batch-mean loss of ``objective`` (on X^M with stacked targets, see the module
    docstring), and the inverse result when one was computed."""
    estimators = estimators or Estimators()
    if objective == "supervised":  # baselines: a direct reconstruction map z -> x
        return 0.5 * _sum_per_sample((net(z) - x) ** 2).mean(), None
    if objective not in OBJECTIVES:
        valid = ", ".join((*OBJECTIVES, "supervised"))
        raise ValueError(f"unknown objective {objective!r}; valid: {valid}")
    if not stacked:
        return _mean_space_loss(objective, net, x, z, solver)
    if objective == "reconstruction":
        target = net.lift(x)
        start = net.core_states(target) if solver is not None and solver.warm_start else None
        result = net.core_inverse(net.lift(z), solver, start)
        return 0.5 * _sum_per_sample((result.x - target) ** 2).mean(), result
    if objective == "approximation":
        return 0.5 * _sum_per_sample(
            (net.core_forward(net.lift(x)) - net.lift(z)) ** 2
        ).mean(), None
    if objective == "logdet":
        y, regularizer = logdet(net, x, estimators, generator)
        target = net.lift(z)
    else:
        y, regularizer = divergence(net, x, estimators, generator)
        target = net.lift(normal_data(operator, z))
    return (0.5 * _sum_per_sample((y - target) ** 2) - noise_hat**2 * regularizer).mean(), None
