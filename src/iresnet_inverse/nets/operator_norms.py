"""Operator norms at one image size: dense matrices and block power iteration, the independent
truth the tests and benchmarks check the Lipschitz bounds (``lipschitz``) against."""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def dense_matrix(apply: torch.nn.Module | object, in_shape: tuple[int, ...]) -> torch.Tensor:
    """The matrix of a linear map on tensors of ``in_shape`` (one sample), column per input."""
    n = math.prod(in_shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *in_shape)
    with torch.no_grad():
        return apply(basis).reshape(n, -1).T


def top_singular(
    apply: Callable[[torch.Tensor], torch.Tensor],
    apply_t: Callable[[torch.Tensor], torch.Tensor],
    in_shape: tuple[int, ...],
    tol: float = 1e-10,
    max_iter: int = 2000,
    block: int = 4,
    start: torch.Tensor | None = None,
    seed: int = 0,
) -> tuple[float, torch.Tensor]:
    """Largest singular value of a linear map and its right singular vector (shape (1, *in)).

    Block power iteration on A^T A with Rayleigh-Ritz every 10 steps: the top singular values of
    convolutions come in near-degenerate pairs (frequencies +w and -w), which stall a single
    vector, while a block of ``block`` vectors converges at the rate sigma_{block+1} / sigma_1.
    Stops when the Ritz value changes by less than ``tol`` (relative) over 10 steps.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    dtype = start.dtype if start is not None else torch.float64
    device = start.device if start is not None else torch.device("cpu")
    basis = torch.randn((block, *in_shape), generator=g, dtype=dtype).to(device)
    if start is not None:
        basis[0] = start[0]
    previous, sigma = 0.0, 0.0
    with torch.no_grad():
        for step in range(1, max_iter + 1):
            q, _ = torch.linalg.qr(basis.flatten(1).T)
            basis = q.T.reshape(basis.shape)
            if step % 10 == 0 or step == max_iter:
                images = apply(basis).flatten(1)
                eigenvalues, vectors = torch.linalg.eigh(images @ images.T)
                sigma = float(eigenvalues[-1].clamp_min(0).sqrt())
                top = (vectors[:, -1] @ basis.flatten(1)).reshape(1, *in_shape)
                if abs(sigma - previous) <= tol * sigma:
                    break
                previous = sigma
            basis = apply_t(apply(basis))
    return sigma, top / top.norm()


def conv_operator_norm(
    weight: torch.Tensor, in_shape: tuple[int, ...], padding: int, tol: float = 1e-10
) -> float:
    """Largest singular value of u -> conv2d(u, weight, padding) on inputs of ``in_shape``."""
    sigma, _ = top_singular(
        lambda u: F.conv2d(u, weight, padding=padding),
        lambda v: F.conv_transpose2d(v, weight, padding=padding),
        in_shape,
        tol=tol,
        max_iter=20000,
    )
    return sigma
