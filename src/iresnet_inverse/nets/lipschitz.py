"""Lipschitz-constrained layers: operator norms, projection inside the forward pass, certificates.

A convolution's Lipschitz constant is the operator norm of the linear map it defines at the real
image shape and zero padding, not the norm of its kernel. It is estimated by power iteration
on A^T A (conv2d, then conv_transpose2d with the same padding) with a persistent vector, and
the weight used in the forward pass is W * min(1, c / sigma(W)): autograd differentiates
through sigma, so optimizer steps cannot leave the constraint set. 1x1 convolutions and
dense layers have exact norms (the spectral norm of their channel matrix).
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _project(weight: torch.Tensor, sigma: torch.Tensor, bound: float) -> torch.Tensor:
    """W * min(1, bound / sigma). Inside the bound W is returned as is, so that no gradient
    flows through sigma there (its gradient is undefined at W = 0, the zero initialization)."""
    if float(sigma.detach()) <= bound:
        return weight
    return weight * (bound / sigma)


def block_lipschitz(total: float, blocks: int) -> float:
    """Per-block L_i with prod_i (1 - L_i) = 1 - L (paper eq. 2.3), equal for all blocks."""
    if not 0 < total < 1:
        raise ValueError(f"Lipschitz parameter L must lie in (0, 1), got {total}")
    return 1.0 - (1.0 - total) ** (1.0 / blocks)


def dense_matrix(apply: torch.nn.Module | object, in_shape: tuple[int, ...]) -> torch.Tensor:
    """The matrix of a linear map on tensors of ``in_shape`` (one sample), column per input."""
    n = math.prod(in_shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *in_shape)
    with torch.no_grad():
        return apply(basis).reshape(n, -1).T


class LipschitzConv2d(torch.nn.Module):
    """A "same"-padded convolution whose operator norm is kept at most ``bound``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, bound: float, image_size: int
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd for same padding")
        conv = torch.nn.Conv2d(in_channels, out_channels, kernel_size)  # PyTorch's default init
        self.weight = torch.nn.Parameter(conv.weight.detach().clone())
        self.bias = torch.nn.Parameter(conv.bias.detach().clone())
        self.padding = kernel_size // 2
        self.bound = bound
        self.exact = kernel_size == 1
        shape = (1, in_channels, image_size, image_size)
        self.register_buffer(
            "power_vector", F.normalize(torch.randn(shape).flatten(), dim=0).view(shape)
        )
        if not self.exact:
            self.power_step(10)

    # --- the linear map and its adjoint on the power-iteration shape -------------------------
    def _conv(self, u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(u, weight, padding=self.padding)

    def _conv_t(self, v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(v, weight, padding=self.padding)

    @torch.no_grad()
    def power_step(self, iterations: int = 1) -> None:
        """Advance the persistent vector by ``iterations`` steps of power iteration on A^T A."""
        u = self.power_vector
        w = self.weight.detach()
        for _ in range(iterations):
            v = self._conv_t(self._conv(u, w), w)
            norm = v.norm()
            if not norm > 0:  # a zero weight: keep the vector for when it is not
                break
            u = v / norm
        self.power_vector.copy_(u)

    @torch.no_grad()
    def refresh(self, tol: float = 1e-9, max_iter: int = 1000) -> float:
        """Converge the persistent vector by block power iteration (see ``top_singular``);
        returns sigma of the raw weight."""
        if not self.exact:
            w = self.weight.detach()
            _, u = top_singular(
                lambda u: self._conv(u, w),
                lambda v: self._conv_t(v, w),
                tuple(self.power_vector.shape[1:]),
                tol=tol,
                max_iter=max_iter,
                start=self.power_vector,
            )
            self.power_vector.copy_(u.to(self.power_vector.dtype))
        return float(self.sigma().detach())

    def sigma(self) -> torch.Tensor:
        """Operator norm of the raw weight (differentiable w.r.t. the weight)."""
        if self.exact:
            return torch.linalg.matrix_norm(self.weight.flatten(1), ord=2)
        return self._conv(self.power_vector, self.weight).norm()

    def effective_weight(self) -> torch.Tensor:
        """W * min(1, bound / sigma(W)); in training mode one power step refreshes sigma first."""
        if self.training and not self.exact and torch.is_grad_enabled():
            self.power_step(1)
        return _project(self.weight, self.sigma(), self.bound)

    @torch.no_grad()
    def rescale_raw(self) -> None:
        """Replace the raw weight by its projection (after an optimizer step), so the raw norm
        stays at the bound and the projection's scale invariance does not shrink the steps."""
        sigma = float(self.sigma())
        if sigma > self.bound:
            self.weight.mul_(self.bound / sigma)

    def certified_norm(
        self, exact_below: int = 4096, tol: float = 1e-10, max_iter: int = 1000
    ) -> float:
        """Operator norm of the effective weight: the raw weight's norm (dense SVD when the map
        has at most ``exact_below`` inputs, else block power iteration started from the
        persistent vector) times the current projection scale."""
        with torch.no_grad():
            scale = min(1.0, self.bound / max(float(self.sigma()), 1e-300))
            w = self.weight.detach().double()
            shape = tuple(self.power_vector.shape[1:])
            if self.exact:
                sigma = float(torch.linalg.matrix_norm(w.flatten(1), ord=2))
            elif math.prod(shape) <= exact_below:
                matrix = dense_matrix(lambda u: self._conv(u, w), shape)
                sigma = float(torch.linalg.matrix_norm(matrix, ord=2))
            else:
                sigma, _ = top_singular(
                    lambda u: self._conv(u, w),
                    lambda v: self._conv_t(v, w),
                    shape,
                    tol=tol,
                    max_iter=max_iter,
                    start=self.power_vector.double(),
                )
            return sigma * scale

    def extra_repr(self) -> str:
        c_out, c_in, k, _ = self.weight.shape
        return f"{c_in}->{c_out}, kernel={k}, bound={self.bound:.4g}"


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


class LipschitzLinear(torch.nn.Module):
    """A dense layer with exact spectral-norm projection to ``bound`` (for the toy problems)."""

    def __init__(self, in_features: int, out_features: int, bound: float) -> None:
        super().__init__()
        linear = torch.nn.Linear(in_features, out_features)
        self.weight = torch.nn.Parameter(linear.weight.detach().clone())
        self.bias = torch.nn.Parameter(linear.bias.detach().clone())
        self.bound = bound

    def sigma(self) -> torch.Tensor:
        return torch.linalg.matrix_norm(self.weight, ord=2)

    def effective_weight(self) -> torch.Tensor:
        return _project(self.weight, self.sigma(), self.bound)

    @torch.no_grad()
    def rescale_raw(self) -> None:
        """See ``LipschitzConv2d.rescale_raw``."""
        sigma = float(self.sigma())
        if sigma > self.bound:
            self.weight.mul_(self.bound / sigma)

    def certified_norm(self) -> float:
        with torch.no_grad():
            return float(torch.linalg.matrix_norm(self.effective_weight().double(), ord=2))

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}->{self.weight.shape[0]}, bound={self.bound:.4g}"
