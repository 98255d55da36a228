"""TV reconstruction as one call (the solver chosen by the operator) and as a model that the
workflow trains, saves and applies like the networks."""

from typing import Any

import torch

from iresnet_inverse.nets.model import Model
from iresnet_inverse.operators.linear import is_linear
from iresnet_inverse.tv.discrete import TVResult
from iresnet_inverse.tv.fista import tv_fista
from iresnet_inverse.tv.pdhg import tv_pdhg


def tv_reconstruct(
    operator: torch.nn.Module | None, z: torch.Tensor, alpha: float, **options: Any
) -> TVResult:
    """TV reconstruction of the batch ``z``: PDHG for linear operators (and ``None`` =
    identity), monotone FISTA otherwise. ``options`` go to the solver: ``tol`` (1e-4),
    ``max_iter`` (2000 here, for both), ``x0``/``dual0`` to warm-start from a previous result of
    the same operator (its ``x`` and ``dual``)."""
    options.setdefault("max_iter", 2000)
    solver = tv_pdhg if operator is None or is_linear(operator) else tv_fista
    return solver(operator, z, alpha, **options)


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
