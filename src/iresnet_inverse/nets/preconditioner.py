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

The full P costs about an evaluation per application on the CPU (a C x C product per frequency).
``channel_mean_preconditioner`` keeps one number per frequency: Jbar along the direction in which
every channel is equal (where the lifted input starts and what the channel-mean output reads),
so an application is one channel's rfft2 and irfft2 (benchmarks/README.md). For one channel
(unlifted nets) it is the full P.
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


def _jbar_parts(
    w_in: torch.Tensor, w_out: torch.Tensor, activity: torch.Tensor
) -> tuple[torch.dtype, torch.Tensor, torch.Tensor]:
    """The working dtype (float32 or wider), W1 and W2 diag(p) (as a C x hidden matrix)."""
    dtype = torch.promote_types(w_in.dtype, torch.float32)
    mixing = w_out.detach().to(dtype)[:, :, 0, 0] * activity.to(dtype)
    return dtype, w_in.detach().to(dtype), mixing


def fourier_preconditioner(
    w_in: torch.Tensor, w_out: torch.Tensor, activity: torch.Tensor, shape: tuple[int, int]
) -> Map:
    """P = (I - W2 diag(activity) W1)^-1 as a Fourier multiplier for images of ``shape``
    (module docstring); ``w_in`` the k x k input convolution, ``w_out`` the 1x1 output one,
    ``activity`` the fraction of active pixels per hidden channel. Computed in float32 or wider
    (the iterates' dtype), whatever autocast is doing."""
    with torch.autocast(w_in.device.type, enabled=False):
        dtype, w_in, mixing = _jbar_parts(w_in, w_out, activity)
        grid = padded_grid(*shape, w_in.shape[-1])
        symbol_in = conv_symbol(w_in, grid)  # (G0, G1', hidden, C)
        jbar = mixing.to(symbol_in.dtype) @ symbol_in  # (G0, G1', C, C)
        eye = torch.eye(jbar.shape[-1], dtype=jbar.dtype, device=jbar.device)
        inverse = torch.linalg.inv(eye - jbar)

    def apply(v: torch.Tensor) -> torch.Tensor:
        with torch.autocast(v.device.type, enabled=False):
            return apply_symbol(inverse, v.to(dtype), grid).to(v.dtype)

    return apply


def channel_mean_preconditioner(
    w_in: torch.Tensor, w_out: torch.Tensor, activity: torch.Tensor, shape: tuple[int, int]
) -> Map:
    """P v = v + (1 / (1 - lambda) - 1) mean_c(v), copied to every channel, per frequency:
    lambda the symbol of the one-channel kernel (1/C) sum_ij (W2 diag(p) W1)_ij, which is Jbar's
    Rayleigh quotient along the equal-channel direction e (P is I outside e, the full P inside
    it when Jbar keeps e). Arguments as ``fourier_preconditioner``."""
    with torch.autocast(w_in.device.type, enabled=False):
        dtype, w_in, mixing = _jbar_parts(w_in, w_out, activity)
        grid = padded_grid(*shape, w_in.shape[-1])
        kernel = torch.einsum("ih,hjab->ab", mixing, w_in) / w_in.shape[1]
        lam = conv_symbol(kernel[None, None], grid)[..., 0, 0]  # (G0, G1')
        gain = 1 / (1 - lam) - 1

    def apply(v: torch.Tensor) -> torch.Tensor:
        with torch.autocast(v.device.type, enabled=False):
            height, width = v.shape[-2:]
            spectrum = torch.fft.rfft2(v.to(dtype).mean(dim=1), s=grid) * gain
            correction = torch.fft.irfft2(spectrum, s=grid)[..., :height, :width]
            return v + correction[:, None].to(v.dtype)

    return apply


PRECONDITIONERS = {"full": fourier_preconditioner, "channel_mean": channel_mean_preconditioner}
