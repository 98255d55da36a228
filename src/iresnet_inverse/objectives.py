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
- logdet:         1/2 ||Phi(x) - z||^2 - dhat^2 log|det D Phi(x)|   (1-channel nets only, below)
- divergence:     1/2 ||Phi(c x) - c F*z||^2 - dhat^2 M div phi~(x)  (phi~ the map on X, below)
- supervised:     1/2 ||net(z) - x||^2       (the learned baselines, which map z to x directly)

with z = F(x) + delta * noise and dhat = factor * delta. Training the stacked targets makes Phi
keep the diagonal {c v} on the data, so that the reconstruction mean(Phi^-1(c z)) inverts the
trained map; a loss after the channel mean (``stacked=False``, kept for comparison) fits only
mean o Phi o c, whose inverse is not mean o Phi^-1 o c.

How dhat enters on X^M. Write phi~ = mean o Phi o c for the map on X that data and
reconstruction see. The data terms see Phi only on the diagonal D = {c v}: for a net that keeps
D, ||Phi(c x) - c z||^2 = M ||phi~(x) - z||^2. A regularizer taken over all of X^M would also
count the (M - 1) d directions off D, which nothing else sees: on X its weight would drop to
dhat^2 / M, and a net could lower the loss there for free (trained nets did: the off-diagonal
trace of D Phi grew fivefold while the reconstruction stood still). So each regularizer is
that of the map on X, times M, and the whole loss stays M times the loss on X:

- divergence: the Hutchinson probe is drawn on X and lifted, v = c w. Then
  v^T D Phi(c x) v = w^T (c^T D Phi c) w = M w^T D phi~(x) w, so E_w = M div phi~(x) exactly,
  for any Phi, channel-mixing or not, and a change of Phi off D leaves every sample unchanged.
- log-det: log det D phi~ has no product formula when Phi mixes channels (phi~ need not even be
  invertible, and I - D phi~ has no norm bound below 1), so the log-det objective is defined
  only for nets invertible on X: one channel (``channels: 1``, e.g. ``iresnet_demo_unlifted``),
  where Phi = phi~ and log det is the sum of the blocks' log det(I - J_fi). A lifted net is
  refused. (Lifting the probes inside each block's series is not log det D phi~ either: the
  blocks' inputs leave D, so the product of the blocks' restrictions to D is not D phi~.)

The log-det loss makes phi^-1(z) a posterior-mean-type estimator, the divergence loss makes
phi^-1(F*z) the MAP point (Heilenkoetter 2025). Reconstructions are mean(Phi^-1(c z)), except
for the divergence objective, which inverts the normal-equation data F*z.

For the nonlinear diffusion operator there is no adjoint; we use the transpose of its Jacobian
at the data itself, F*z := DF(z)^T z (an autograd VJP), which needs nothing but z at test time
and equals A^T z for a linear operator A. This is our choice; the papers leave it open.

Log-determinant and divergence are exact (Jacobian by autograd) in dimension <= 3. For images,
the divergence is the lifted Hutchinson estimate above (Rademacher w on X), and
log det(I - J) = -sum_{k>=1} tr(J^k)/k per block, each trace a Hutchinson estimate. The series is
unbiased by a Russian roulette (Chen et al. 2019, residual flows): ``terms`` terms always, then
term ``terms + j`` with probability q^j, weighted by q^-j; its expectation is the whole series.
With q = (1 + L_i^2)/2 (L_i the block's Lipschitz bound, |tr(J^k)| <= d L_i^k) the weighted tail
has finite variance because L_i^2 / q < 1; it costs q / (1 - q) extra terms on average (2.8 at
the demo's L_i = 0.684). Without the roulette (``unbiased=False``) the truncation is biased by up
to d sum_{k>terms} L_i^k / k per block: 6 % of the value per dimension at four terms and
L_i = 0.684.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from iresnet_inverse.errors import ConfigError
from iresnet_inverse.nets.iresnet import InverseResult, IResNet
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.operators import is_linear
from iresnet_inverse.registry import OBJECTIVES

EXACT_MAX_DIM = 3


@dataclass
class Estimators:
    """Hutchinson settings for image-sized log-det and divergence terms."""

    probes: int = 1
    terms: int = 4  # log-det power-series terms always computed
    unbiased: bool = True  # a Russian-roulette tail after ``terms`` (module docstring)


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
    """Phi(c x) on X^M and M div phi~(x) per sample, phi~ = mean o Phi o c the map on X (exact
    for d <= 3; otherwise Hutchinson with probes drawn on X and lifted, module docstring)."""
    h = lifted_leaf(net, x)
    if _is_low_dimensional(h):
        jac = exact_jacobian(net.core_forward, h)
        return net.core_forward(h), jac.diagonal(dim1=1, dim2=2).sum(dim=1)
    y = net.core_forward(h)
    total = torch.zeros(h.shape[0], dtype=h.dtype, device=h.device)
    for _ in range(estimators.probes):
        v = net.lift(_rademacher(x, generator)).contiguous()
        (vjp,) = torch.autograd.grad(y, h, v, create_graph=True)
        total = total + _sum_per_sample(vjp * v)
    return y, total / estimators.probes


def lifted_traces(
    net: IResNet, x: torch.Tensor, probes: int, generator: torch.Generator | None = None
) -> tuple[float, float]:
    """Hutchinson estimates of tr(P D Phi(c x) P) per dimension, P the projection onto the
    diagonal D (= div phi~ / d) and onto its complement (per each of its (M - 1) d dimensions):
    what the regularizers see of the Jacobian, and what only the lifting sees."""
    m = net.lift_channels
    h = lifted_leaf(net, x)
    with torch.enable_grad():
        y = net.core_forward(h)
    on, off = 0.0, 0.0
    for _ in range(probes):
        v = net.lift(_rademacher(x, generator)).contiguous()
        r = _rademacher(h, generator)
        r = r - r.mean(dim=1, keepdim=True)  # the complement of D
        (jv,) = torch.autograd.grad(y, h, v, retain_graph=True)
        (jr,) = torch.autograd.grad(y, h, r, retain_graph=True)
        on += float((jv * v).sum()) / m
        off += float((jr * r).sum())
    d = x[0].numel()
    return on / (probes * len(x) * d), off / (probes * len(x) * d * max(m - 1, 1))


def roulette_continuation(lipschitz: float) -> float:
    """q = (1 + L_i^2) / 2: above L_i^2, so the roulette's weighted tail has finite variance."""
    return 0.5 * (1.0 + lipschitz**2)


def _roulette_terms(terms: int, q: float, generator: torch.Generator | None) -> int:
    """``terms`` plus a geometric count j >= 0 with P(j >= i) = q^i."""
    u = float(torch.rand(1, generator=generator, dtype=torch.float64).clamp_min(1e-300))
    return terms + int(math.floor(math.log(u) / math.log(q)))


def block_logdet(
    block: torch.nn.Module,
    h: torch.Tensor,
    estimators: Estimators,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """phi_i(h) and log det(I - J_fi(h)) per sample: the Hutchinson power series, unbiased by
    the Russian roulette (or truncated after ``terms`` with ``unbiased=False``)."""
    h = h if h.requires_grad else h.detach().requires_grad_()
    fh = block.residual(h)
    q = roulette_continuation(block.lipschitz)
    total = torch.zeros(h.shape[0], dtype=h.dtype, device=h.device)
    for _ in range(estimators.probes):
        n = (
            _roulette_terms(estimators.terms, q, generator)
            if estimators.unbiased
            else estimators.terms
        )
        v = _rademacher(h, generator)
        w = v
        for k in range(1, n + 1):
            (w,) = torch.autograd.grad(fh, h, w, create_graph=True)  # w = (J^T)^k v
            weight = q ** -max(k - estimators.terms, 0)  # 1 / P(term k is drawn)
            total = total - weight * _sum_per_sample(w * v) / k
    return h - fh, total / estimators.probes


def logdet(
    net: IResNet, x: torch.Tensor, estimators: Estimators, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Phi(x) and log|det D Phi(x)| per sample (exact for d <= 3, else the Hutchinson power
    series per block); for nets invertible on X only (refused when lifted, module docstring)."""
    if net.lift_channels > 1:
        raise ConfigError(
            f"the log-det objective needs a net invertible on X, but this one lifts X to "
            f"{net.lift_channels} channels (log det of the map on X has no estimator there); "
            "use a 1-channel architecture such as iresnet_demo_unlifted"
        )
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
    raise ConfigError(
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
