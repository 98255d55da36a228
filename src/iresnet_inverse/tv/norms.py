"""Power-iteration estimates of an operator's norm, for the solvers' step sizes."""

import math

import torch

from iresnet_inverse.operators.linear import is_linear
from iresnet_inverse.tv.discrete import per_image


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
            quotient = per_image(v * w)
            v = w
    return math.sqrt(max(float(quotient.max()), 0.0))
