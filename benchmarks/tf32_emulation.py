"""What TF32 convolutions would do to the evaluation solver, emulated on the CPU: cuDNN with
TF32 rounds the inputs and weights of every convolution to a 10-bit mantissa and accumulates
in float32. The demo net (random weights, L 0.99) is inverted with the evaluation solver
(Anderson, rtol 1e-5, at most 200 evaluations per block) on 8 random 32x32 images, in float32
(what every job runs: ``runtime.setup`` turns TF32 off) and with TF32 rounding.

    .venv/bin/python benchmarks/tf32_emulation.py
"""

import warnings

import torch
import torch.nn.functional as F

from iresnet_inverse.archs import ARCHITECTURES
from iresnet_inverse.nets import iresnet, kernels
from iresnet_inverse.nets.examples import random_residuals
from iresnet_inverse.nets.solvers import SolverConfig


def tf32(t: torch.Tensor) -> torch.Tensor:
    """float32 rounded to TF32 (10-bit mantissa), to nearest, ties to even."""
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0xFFF + ((bits >> 13) & 1)) & ~0x1FFF).view(torch.float32)


def tf32_conv_residual(x: torch.Tensor, padding: int, *weights: torch.Tensor) -> torch.Tensor:
    """``kernels.conv_residual`` with TF32 convolutions (``weights``: w_in, b_in, threshold,
    w_out, b_out, as there)."""
    w_in, b_in, threshold, w_out, b_out = weights
    h = kernels.soft_shrink(F.conv2d(tf32(x), tf32(w_in), b_in, padding=padding), threshold)
    return F.conv2d(tf32(h), tf32(w_out), b_out)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = random_residuals(iresnet.build_iresnet(ARCHITECTURES["iresnet_demo"], 0.99)).eval()
    z = torch.rand(8, 1, 32, 32)
    solver = SolverConfig(method="anderson", tol=1e-5, max_iter=200)
    print("| convolutions | converged | evaluations per block | largest residual |")
    print("| --- | --- | --- | --- |")
    for name, kernel in (("float32", kernels.conv_residual), ("TF32", tf32_conv_residual)):
        for block in net.blocks:
            block.residual.kernel = kernel
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unconverged samples are the result here
            result = net.inverse(z, solver)
        print(
            f"| {name} | {int(result.converged.sum())} of {len(z)} | "
            f"{float(result.iterations.float().mean()):.1f} | {float(result.residual.max()):.2g} |"
        )


if __name__ == "__main__":
    main()
