"""Gaussian blur: convolution with a normalized k x k Gaussian (paper: 11x11, sigma 5/3)."""

import torch
import torch.nn.functional as F

from iresnet_inverse.errors import ConfigError


def gaussian_kernel(size: int, sigma: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalized 2D Gaussian of odd ``size`` (sums to one)."""
    if size % 2 != 1 or size < 1:
        raise ConfigError(f"blur kernel_size must be a positive odd integer, got {size}")
    if sigma <= 0:
        raise ConfigError(f"blur sigma must be positive, got {sigma}")
    r = torch.arange(size, dtype=dtype) - size // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    kernel = torch.outer(g, g)
    return kernel / kernel.sum()


def _fold_reflect(u: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Adjoint of reflect padding along ``dim``: add each padded entry back to its source."""
    n = u.shape[dim] - 2 * pad
    idx = torch.arange(-pad, n + pad, device=u.device).abs()
    idx = torch.where(idx > n - 1, 2 * (n - 1) - idx, idx)
    shape = list(u.shape)
    shape[dim] = n
    return u.new_zeros(shape).index_add_(dim, idx, u)


class GaussianBlur(torch.nn.Module):
    """A x = k * x with reflect ("mirror without repeating the edge") boundary handling.

    Reflect padding keeps the image's mean level at the border, unlike zero padding, and
    its adjoint is exact: transposed convolution followed by folding the padding back.
    """

    def __init__(self, kernel_size: int = 11, sigma: float = 5 / 3) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.sigma = sigma
        self.register_buffer("kernel", gaussian_kernel(kernel_size, sigma)[None, None])

    def _weight(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel.to(dtype=x.dtype, device=x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.kernel_size // 2
        return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), self._weight(x))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        p = self.kernel_size // 2
        u = F.conv_transpose2d(y, self._weight(y))
        return _fold_reflect(_fold_reflect(u, p, -1), p, -2)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma:.4g}, padding=reflect"
