"""A Fourier preconditioner for inverting a convolutional residual block.

Inverting phi(x) = x - f(x) solves x = z + f(x), f(x) = W2 S(W1 x + b1) + b2 (``ConvResidual``:
W1 a k x k convolution, S the soft-shrinkage, W2 a 1x1 convolution). Near the solution the
iteration contracts like the Jacobian J = W2 D W1, D the 0/1 mask of the pre-activations that
S lets through. On trained nets J sits near its bound (0.68 per block at L = 0.999, N = 6), and
its slow modes keep Anderson acceleration at ~8 evaluations per block for rtol 1e-5.

Replacing the mask by p, each hidden channel's fraction of active pixels, gives a convolution
Jbar = W2 diag(p) W1 that the Fourier transform diagonalises: on a grid padded by k // 2 (so that
the circular convolution of a zero-extended image equals the zero-padded one on the image), it is
one C x C matrix per frequency, and P = (I - Jbar)^-1 is their inverses (cropped back to the
image). The preconditioned iteration steps x + P(T(x) - x) and contracts like I - P (I - J),
small when D is close to its mean. Stopping still tests the residual of T itself, so an answer
is accepted only when it solves x = T(x) to the tolerance, as in the plain solve (a sample that
does not get there is reported, never accepted); only the number of evaluations changes. This
is our addition; the papers invert by plain fixed-point iteration.
"""

from collections.abc import Callable

import torch

Map = Callable[[torch.Tensor], torch.Tensor]


def padded_grid(height: int, width: int, kernel_size: int) -> tuple[int, int]:
    """A grid on which the circular convolution of a zero-extended image equals the zero-padded
    ("same") convolution on the image: at least k // 2 more pixels per axis, rounded up to a
    2-3-5-smooth FFT length (lengths with a large prime factor, 34 = 2 x 17, took twice as long)."""
    from scipy.fft import next_fast_len  # here: every job imports this module, few use it

    r = kernel_size // 2
    return next_fast_len(height + r, real=True), next_fast_len(width + r, real=True)


def conv_symbol(weight: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The Fourier symbol of u -> conv2d(u, weight, padding=k // 2) on the circular ``grid``:
    shape (grid[0], grid[1] // 2 + 1, out, in), so that rfft2 of the output is symbol @ rfft2 of
    the input at each frequency (conv2d is a cross-correlation, hence the conjugate)."""
    c_out, c_in, k, _ = weight.shape
    r = k // 2
    kernel = weight.new_zeros(c_out, c_in, *grid)
    rows, columns = ((torch.arange(k, device=weight.device) - r) % n for n in grid)
    kernel[:, :, rows[:, None], columns[None, :]] = weight
    return torch.fft.rfft2(kernel).conj().permute(2, 3, 0, 1)


def apply_symbol(symbol: torch.Tensor, v: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The multiplier ``symbol`` (per frequency a C_out x C_in matrix) applied to images v
    (batch, C_in, H, W), zero-extended to ``grid`` and cropped back to H x W."""
    height, width = v.shape[-2:]
    spectrum = torch.fft.rfft2(v, s=grid)  # (batch, C_in, G0, G1')
    mixed = torch.einsum("hwij,bjhw->bihw", symbol, spectrum)
    return torch.fft.irfft2(mixed, s=grid)[..., :height, :width]


def fourier_preconditioner(
    w_in: torch.Tensor, w_out: torch.Tensor, activity: torch.Tensor, shape: tuple[int, int]
) -> Map:
    """P = (I - W2 diag(activity) W1)^-1 as a Fourier multiplier for images of ``shape``
    (module docstring); ``w_in`` the k x k input convolution, ``w_out`` the 1x1 output one,
    ``activity`` the fraction of active pixels per hidden channel. Computed in float32 or wider
    (the iterates' dtype), whatever autocast is doing."""
    dtype = torch.promote_types(w_in.dtype, torch.float32)
    with torch.autocast(w_in.device.type, enabled=False):
        grid = padded_grid(*shape, w_in.shape[-1])
        symbol_in = conv_symbol(w_in.detach().to(dtype), grid)  # (G0, G1', hidden, C)
        mixing = w_out.detach().to(dtype)[:, :, 0, 0] * activity.to(dtype)  # W2 diag(p)
        jbar = mixing.to(symbol_in.dtype) @ symbol_in  # (G0, G1', C, C)
        eye = torch.eye(jbar.shape[-1], dtype=jbar.dtype, device=jbar.device)
        inverse = torch.linalg.inv(eye - jbar)

    def apply(v: torch.Tensor) -> torch.Tensor:
        with torch.autocast(v.device.type, enabled=False):
            return apply_symbol(inverse, v.to(dtype), grid).to(v.dtype)

    return apply
