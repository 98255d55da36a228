"""The residual functions as pure functions of their input, settings and weights (what
``torch.compile`` traces), and their activations: soft shrinkage with a learned threshold, ELU and
tanh, all 1-Lipschitz."""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F


def soft_shrink(x: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """sign(x) max(|x| - t, 0), differentiable in the threshold t >= 0; 1-Lipschitz. A float
    t (a solve without gradients) takes PyTorch's fused kernel, with the same values."""
    if isinstance(threshold, float):
        return F.softshrink(x, threshold)
    return x - torch.clamp(x, -threshold, threshold)


def activate(x: torch.Tensor, name: str, threshold: torch.Tensor) -> torch.Tensor:
    if name == "softshrink":
        return soft_shrink(x, threshold)
    if name == "elu":
        return F.elu(x)
    if name == "tanh":
        return torch.tanh(x)
    raise ValueError(f"unknown activation {name!r}; valid: softshrink, elu, tanh")


# The residual functions as functions of their input, settings and weights alone: what
# ``torch.compile`` traces. No module is an argument, so one compiled function serves every
# block and every net (a graph per argument kind: grad mode and which inputs require grad,
# with sizes dynamic), where a compiled method recompiled per block and fell back to eager.


def conv_residual(
    x: torch.Tensor,
    padding: int,
    w_in: torch.Tensor,
    b_in: torch.Tensor,
    threshold: torch.Tensor | float,
    w_out: torch.Tensor,
    b_out: torch.Tensor,
) -> torch.Tensor:
    """f(x) = conv1x1(softshrink(conv_k(x))) (``ConvResidual``)."""
    h = soft_shrink(F.conv2d(x, w_in, b_in, padding=padding), threshold)
    return F.conv2d(h, w_out, b_out)


def dense_residual(
    x: torch.Tensor, activation: str, threshold: torch.Tensor, *layers: torch.Tensor
) -> torch.Tensor:
    """f(x) = W_n act(... act(W_1 x + b_1) ...) + b_n (``DenseResidual``)."""
    for i in range(0, len(layers), 2):
        if i:
            x = activate(x, activation, threshold)
        x = F.linear(x, layers[i], layers[i + 1])
    return x


@functools.cache
def compiled(function: Callable[..., torch.Tensor], backend: str) -> Callable[..., torch.Tensor]:
    """``function`` compiled once per backend, sizes dynamic (batch and image sizes vary).
    The implicit backward differentiates one evaluation many times (``retain_graph``), which
    AOTAutograd's donated buffers forbid: they are turned off (for this process), and so is
    duck sizing, which ties a batch size to an equal weight size and recompiles when they part."""
    import torch._functorch.config as aot_config
    import torch.fx.experimental._config as shape_config

    aot_config.donated_buffer = False
    shape_config.use_duck_shape = False
    return torch.compile(function, backend=backend, dynamic=True)


# CPU solves without gradients run channels-last with a float threshold (``conv_solve_layout``)
# for residuals up to this hidden width: faster on the 16-wide nets the configs train (0.76-0.92x
# per inverse), slower on iresnet_small (64) and the paper's iresnet (128), 0.96-1.25x
# (benchmarks/README.md). benchmarks/inversion.py sets it to time either layout.
CPU_CHANNELS_LAST_MAX_HIDDEN = 16

SolveInputs = tuple[torch.Tensor, torch.Tensor, Sequence[Any]]


def conv_solve_layout(
    z: torch.Tensor, start: torch.Tensor, weights: Sequence[torch.Tensor]
) -> SolveInputs:
    """z, the start and a ``conv_residual``'s weights as a solve without gradients runs them: on
    the CPU and for narrow residuals channels-last (oneDNN's NCHW convolutions with few channels
    took 1.09-1.32x as long per inverse: benchmarks/README.md) with a float threshold (the fused
    soft-shrinkage). The same values up to rounding."""
    w_in, b_in, threshold, w_out, b_out = weights
    if z.device.type != "cpu" or w_in.shape[0] > CPU_CHANNELS_LAST_MAX_HIDDEN:
        return z, start, weights
    last = [t.contiguous(memory_format=torch.channels_last) for t in (z, start, w_in, w_out)]
    return last[0], last[1], (last[2], b_in, float(threshold), last[3], b_out)


def as_given(z: torch.Tensor, start: torch.Tensor, weights: Sequence[torch.Tensor]) -> SolveInputs:
    """The solve's inputs unchanged (dense residuals: vectors have no memory format)."""
    return z, start, weights
