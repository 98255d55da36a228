"""Inversion cost of iResNets: forward time, inverse time and residual evaluations, plain fixed
point vs Anderson at rtol 1e-5, for the demo and paper architectures at L in {0.95, 0.99, 0.999},
each with the CPU solve's NCHW layout of before and today's channels-last one.

Two kinds of untrained network are measured: PyTorch's random initialization of every layer
(trained nets start from the identity instead), and "gaussian"
residuals (L_i times a Gaussian blur, ``nets/examples.py``), whose aligned spectra are the
worst case for plain iteration and resemble nets fitted to smoothing operators.

    .venv/bin/python benchmarks/inversion.py            # both architectures (a few minutes on CPU)
    .venv/bin/python benchmarks/inversion.py --quick    # demo architecture only

``--preconditioner-cost``: one residual evaluation against one application and one build of the
Fourier preconditioner, per block, for the demo and paper blocks (what decides whether its saved
evaluations pay).

Trained networks: ``--trained results/train/<cell>`` (repeatable) inverts the cell's noisy
test data (its ``observations.nc`` found from the cell) with both methods, each plain and with
the Fourier preconditioner, at rtol 1e-5, as evaluation does (time: the fastest of
``--repeats`` calls after a warm-up).
"""

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from iresnet_inverse.nets import kernels
from iresnet_inverse.nets.examples import gaussian_residuals, random_residuals
from iresnet_inverse.nets.iresnet import build_iresnet
from iresnet_inverse.nets.solvers import SolverConfig

CASES = {  # name: (architecture, image size, batch)
    "demo": ("iresnet_small", 32, 8),
    "paper": ("iresnet", 96, 1),
    "trained": ("iresnet_demo", 32, 8),  # the architecture of every net the configs train
}


def _synchronize() -> None:
    """Wait for queued GPU work, so that a timer measures it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(repeats: int, fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Mean seconds per call after one warm-up call, and the last result."""
    fn(*args)
    _synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    _synchronize()
    return (time.perf_counter() - start) / repeats, out


def _fastest(repeats: int, fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """The fewest seconds of ``repeats`` calls after a warm-up (other load only adds), and the
    last result."""
    fn(*args)
    best = float("inf")
    for _ in range(repeats):
        _synchronize()
        start = time.perf_counter()
        out = fn(*args)
        _synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


METHODS = ("fixed_point", "anderson")
# The CPU solve's layout, as ``kernels.CPU_CHANNELS_LAST_MAX_HIDDEN``: NCHW (the default before
# 0d2afb9) first, then channels-last whatever the width.
NCHW, CHANNELS_LAST = 0, 1 << 30
LAYOUTS = {NCHW: "NCHW (before)", CHANNELS_LAST: "channels-last"}


def run(cases: list[str], repeats: int, device: str) -> None:
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, device {device}"
    )
    print(
        "| case | arch | image | batch | L | init | forward ms | method | layout | inverse ms | "
        "inverse / before | evals/block | inverse/forward | rel. roundtrip error |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        arch, size, batch = CASES[case]
        for total in (0.95, 0.99, 0.999):
            for init in ("random", "gaussian"):
                torch.manual_seed(0)
                net = build_iresnet(arch, total)
                if init == "gaussian":
                    gaussian_residuals(net)
                else:
                    random_residuals(net)
                net = net.to(device).eval()
                x = net.lift(torch.rand(batch, 1, size, size, device=device))
                with torch.no_grad():
                    t_forward, z = _timed(repeats, net.core_forward, x)
                    for method in METHODS:
                        solver = SolverConfig(method=method, tol=1e-5, max_iter=500)
                        before = None
                        for layout, name in LAYOUTS.items():
                            kernels.CPU_CHANNELS_LAST_MAX_HIDDEN = layout
                            t_inverse, result = _timed(repeats, net.core_inverse, z, solver)
                            before = before or t_inverse
                            evals = float(result.iterations.float().mean())
                            error = float((result.x - x).norm() / x.norm())
                            print(
                                f"| {case} | {arch} | {size} | {batch} | {total} | {init} | "
                                f"{1e3 * t_forward:.1f} | {method} | {name} | "
                                f"{1e3 * t_inverse:.1f} | {t_inverse / before:.2f} | "
                                f"{evals:.1f} | {t_inverse / t_forward:.1f} | {error:.1e} |",
                                flush=True,
                            )


# The inversions compared on trained nets, as (solver, channels-last CPU solve): the default
# before channels-last CPU solves first (the reference of the ratios).
TRAINED_VARIANTS = {
    "Anderson, NCHW (before)": (SolverConfig("anderson", 1e-5, 500), NCHW),
    "Anderson": (SolverConfig("anderson", 1e-5, 500), CHANNELS_LAST),
    "fixed point": (SolverConfig("fixed_point", 1e-5, 500), CHANNELS_LAST),
    "Anderson, channel-mean P": (
        SolverConfig("anderson", 1e-5, 500, precondition="channel_mean"),
        CHANNELS_LAST,
    ),
    "fixed point, channel-mean P": (
        SolverConfig("fixed_point", 1e-5, 500, precondition="channel_mean"),
        CHANNELS_LAST,
    ),
    "Anderson, full P": (SolverConfig("anderson", 1e-5, 500, precondition="full"), CHANNELS_LAST),
}


def run_trained(cells: list[str], images: str, device: str, repeats: int) -> None:
    """Per trained cell, on its noisy test data at rtol 1e-5: evaluations per block, time, and
    how far each reconstruction is from the first variant's (relative, largest over samples;
    and the mean test PSNR's change)."""
    from iresnet_inverse.artifacts import read_dataset
    from iresnet_inverse.cells import Observations
    from iresnet_inverse.data.splits import paired_split
    from iresnet_inverse.metrics import psnr
    from iresnet_inverse.models import load_model

    print(
        "| cell | samples | inversion | ms | time / first | evals/block (mean) | "
        "evals/block (max) | largest relative change | PSNR change (dB) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for cell in cells:
        net, meta = load_model(Path(cell) / "model.pt", torch.device(device))
        obs = Path(images).parent / Observations.of(meta.cell).dir
        x, _, z = paired_split(read_dataset(images), read_dataset(obs / "observations.nc"), "test")
        z = torch.as_tensor(z)[:, None].to(device)
        first: tuple[float, torch.Tensor, float] | None = None
        with torch.no_grad():
            for name, (solver, layout) in TRAINED_VARIANTS.items():
                kernels.CPU_CHANNELS_LAST_MAX_HIDDEN = layout
                t, result = _fastest(repeats, net.inverse, z, solver)
                image = result.x[:, 0].cpu().numpy()
                score = float(psnr(x, image).mean())
                first = first or (t, result.x, score)
                change = (result.x - first[1]).flatten(1).norm(dim=1) / first[1].flatten(1).norm(
                    dim=1
                )
                per_block = result.iterations.float()
                print(
                    f"| {Path(cell).as_posix().split('train/')[-1]} | {len(z)} | {name} | "
                    f"{1e3 * t:.0f} | {t / first[0]:.2f} | {float(per_block.mean()):.2f} | "
                    f"{float(per_block.max(dim=0).values.mean()):.2f} | "
                    f"{float(change.max()):.1e} | {score - first[2]:+.3f} |",
                    flush=True,
                )


PRECONDITIONER_CASES = (  # architecture, image size, batch
    ("iresnet_demo", 32, 64),
    ("iresnet_demo", 64, 16),
    ("iresnet_small", 96, 4),
    ("iresnet", 96, 2),
)


def run_preconditioner_cost(repeats: int, device: str) -> None:
    """Milliseconds of one evaluation of f, one application of P and one build of P, for the
    first block of an untrained net (random weights: the costs do not depend on the values)."""
    print("| arch | image | batch | P | evaluation ms | apply ms (/ eval) | build ms (/ eval) |")
    print("|---|---|---|---|---|---|---|")
    for arch, size, batch in PRECONDITIONER_CASES:
        torch.manual_seed(0)
        block = random_residuals(build_iresnet(arch, 0.999)).to(device).blocks[0].residual
        with torch.no_grad():
            weights = block.weights()
            z = torch.rand(batch, weights[0].shape[1], size, size, device=device)
            t_eval, _ = _fastest(repeats, block.call, z, weights)
            for kind in ("full", "channel_mean"):
                t_build, precondition = _fastest(repeats, block.preconditioner, z, weights, kind)
                t_apply, _ = _fastest(repeats, precondition, z)
                print(
                    f"| {arch} | {size} | {batch} | {kind} | {1e3 * t_eval:.1f} | "
                    f"{1e3 * t_apply:.1f} ({t_apply / t_eval:.2f}) | {1e3 * t_build:.1f} "
                    f"({t_build / t_eval:.2f}) |",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="demo architecture only")
    parser.add_argument("--case", action="append", choices=list(CASES), help="these cases only")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls after a warm-up")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--trained", action="append", help="a trained cell's directory")
    parser.add_argument("--images", default="results/data/images.nc")
    parser.add_argument("--preconditioner-cost", action="store_true")
    args = parser.parse_args()
    if args.preconditioner_cost:
        run_preconditioner_cost(args.repeats, args.device)
        return
    if args.trained:
        run_trained(args.trained, args.images, args.device, args.repeats)
        return
    run(args.case or (["demo"] if args.quick else list(CASES)), args.repeats, args.device)


if __name__ == "__main__":
    main()
