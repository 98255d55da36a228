"""Implicit (deep-equilibrium) gradients of a fixed point x* = z + f(x*; params).

By the implicit function theorem, for an upstream gradient v = dL/dx*,
    dL/dz = u  and  dL/dparams = (df/dparams)^T u,  with u = v + J_f(x*)^T u,
the adjoint fixed point, solved by the same solver (J_f^T is a contraction when f is), or
truncated (``SolverConfig.adjoint_max_iter``: the phantom gradient). Only x*,
z and the parameters are saved, so memory does not depend on the number of iterations.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from iresnet_inverse.nets.solvers import Map, SolverConfig, SolverResult, solve

Residual = Callable[[torch.Tensor, Sequence[torch.Tensor]], torch.Tensor]


class _ImplicitFixedPoint(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        fn: Residual,
        config: SolverConfig,
        info: dict[str, SolverResult],
        precondition: Map | None,
        x0: torch.Tensor,
        z: torch.Tensor,
        *params: torch.Tensor,
    ) -> torch.Tensor:
        result = solve(lambda x: z + fn(x, params), x0, config, precondition)
        # The statistics keep a detached x: the output itself (whose grad_fn holds ctx, which
        # holds info) would close a cycle through the autograd graph that Python's garbage
        # collector cannot see, and every training step's graph would stay in memory.
        info["forward"] = dataclasses.replace(result, x=result.x.detach())
        ctx.fn, ctx.config, ctx.info = fn, config, info
        ctx.save_for_backward(result.x, *params)
        return result.x

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_x: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, *params = ctx.saved_tensors
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            leaves = [p.detach().requires_grad_(p.requires_grad) for p in params]
            fx = ctx.fn(x, leaves)

            def adjoint_map(u: torch.Tensor) -> torch.Tensor:
                return grad_x + torch.autograd.grad(fx, x, u, retain_graph=True)[0]

            if ctx.config.adjoint_max_iter == 0:  # Jacobian-free backpropagation: u = v
                u = grad_x
            else:
                result = solve(adjoint_map, grad_x, ctx.config.adjoint())
                ctx.info["backward"], u = result, result.x
            wanted = [p for p in leaves if p.requires_grad]
            grads = iter(torch.autograd.grad(fx, wanted, u, allow_unused=True) if wanted else ())
        param_grads = [next(grads) if p.requires_grad else None for p in leaves]
        return (None, None, None, None, None, u, *param_grads)


def implicit_fixed_point(
    fn: Residual,
    z: torch.Tensor,
    params: Sequence[torch.Tensor],
    config: SolverConfig,
    x0: torch.Tensor | None = None,
    precondition: Map | None = None,
) -> tuple[torch.Tensor, dict[str, SolverResult]]:
    """Solve x = z + fn(x, params) (preconditioned by ``precondition``, which changes the
    iterates, not the fixed point); differentiable in z and params through the implicit
    function theorem. Returns x and ``info`` whose "forward" (and, after backward,
    "backward") entries are the solver results."""
    info: dict[str, SolverResult] = {}
    start = z if x0 is None else x0
    x = _ImplicitFixedPoint.apply(fn, config, info, precondition, start, z, *params)
    return x, info
