"""Linear operators: what makes one (``is_linear``: it knows its adjoint) and those of the
low-dimensional toy problems, x -> M x on (batch, dim) tensors."""

from collections.abc import Sequence

import torch


def is_linear(operator: torch.nn.Module) -> bool:
    """True when the operator is linear and knows its adjoint."""
    return hasattr(operator, "adjoint")


class MatrixOperator(torch.nn.Module):
    """x -> M x for a fixed matrix M (float64 storage, cast to the input's dtype)."""

    def __init__(self, matrix: Sequence[Sequence[float]] | torch.Tensor) -> None:
        super().__init__()
        m = torch.as_tensor(matrix, dtype=torch.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"matrix operator needs a square matrix, got shape {tuple(m.shape)}")
        self.register_buffer("matrix", m)

    def _m(self, x: torch.Tensor) -> torch.Tensor:
        return self.matrix.to(dtype=x.dtype, device=x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self._m(x).T

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y @ self._m(y)


def _linear(dim: int, eps: float, matrix: Sequence[Sequence[float]] | None) -> MatrixOperator:
    if matrix is not None:
        op = MatrixOperator(matrix)
        if op.matrix.shape[0] != dim:
            raise ValueError(f"linear{dim}d needs a {dim}x{dim} matrix")
        return op
    return MatrixOperator(torch.diag(torch.tensor([1.0] + [eps] * (dim - 1))))


def linear2d(eps: float = 1.0, matrix: Sequence[Sequence[float]] | None = None) -> MatrixOperator:
    """diag(1, eps) (eps = 1: identity, i.e. denoising), or any 2x2 ``matrix``."""
    return _linear(2, eps, matrix)


def linear3d(eps: float = 1.0, matrix: Sequence[Sequence[float]] | None = None) -> MatrixOperator:
    """diag(1, eps, eps) (eps = 1: identity), or any 3x3 ``matrix``."""
    return _linear(3, eps, matrix)
