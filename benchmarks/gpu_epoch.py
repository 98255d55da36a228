"""Paper-scale training epoch time on a GPU, and what bf16, channels_last and torch.compile gain:
the iResNet and ConvResNet of config/paper.yaml (Table 1: 20 blocks, 64 channels) at their
Table 1 batch sizes on 96x96 images, reconstruction (iResNet) and supervised (ConvResNet)
training steps with the paper config's training solver, each variant timed in the same run.
An epoch is 16,284 images (the paper's STL-10 training set). Per variant it prints the step
time, the iResNet's residual evaluations per block and sample in the forward solves and whether
every solve reached its tolerance (bf16 runs with a tolerance it can reach, at least
``config.BF16_TOL_FLOOR``, printed beside it): a variant that is faster per evaluation but
needs more of them, or stops at ``max_iter``, shows it. Float32 is IEEE float32 (TF32 off, as
in every job: ``runtime.setup``).

    .venv/bin/python benchmarks/gpu_epoch.py            # on a GPU machine
    .venv/bin/python benchmarks/gpu_epoch.py --quick    # a CPU check that it runs (tiny sizes)
"""

import argparse
import dataclasses
import math
import statistics
import time
from typing import NamedTuple

import torch
from paper_smoke import paper_networks  # this folder is on the path of a script

from iresnet_inverse.config import BF16_TOL_FLOOR
from iresnet_inverse.models import ModelMeta, build_network
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.objectives import loss
from iresnet_inverse.runtime import setup
from iresnet_inverse.training import accelerate

IMAGES = 16284
VARIANTS = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "channels_last": {"channels_last": True},
    "compile": {"compile": "inductor"},
    "all three": {"precision": "bf16", "channels_last": True, "compile": "inductor"},
}


class Timing(NamedTuple):
    seconds: float  # median training step
    batch: int
    tol: float  # the forward solves' tolerance
    evaluations: float  # per block and sample in the forward solves (nan: no inverse)
    reached: bool | None  # every forward solve reached tol (None: no inverse)


def variant_solver(settings: dict, variant: dict) -> SolverConfig:
    """The training solver; with bf16 its tolerance raised to what bf16 reaches."""
    solver = SolverConfig(**settings["solver"])
    if variant.get("precision") == "bf16" and solver.tol < BF16_TOL_FLOOR:
        return dataclasses.replace(solver, tol=BF16_TOL_FLOOR)
    return solver


def step_seconds(arch: str, variant: dict, device: torch.device, quick: bool) -> Timing:
    """Median seconds of a training step of a fresh ``arch`` net under ``variant``, with the
    forward solves' evaluations and convergence over the timed steps."""
    setup = paper_networks()[arch]
    cell, spec, settings = setup["cell"], dict(setup["spec"]), setup["settings"]
    batch, size, repeats = settings["batch_size"], setup["size"], 5
    if quick:
        spec.update(blocks=2, channels=4, hidden=8)
        batch, size, repeats = 2, 16, 2
    meta = ModelMeta(dict(cell), cell.lipschitz, settings["solver"], setup["operator"], size)
    torch.manual_seed(0)
    net = build_network(spec, meta).to(device)
    operator = meta.operator().to(device)
    autocast, to_format = accelerate(net, device, **variant)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings["learning_rate"])
    x = torch.rand(batch, 1, size, size, device=device)
    with torch.no_grad():
        z = operator(x) + cell.noise_level * torch.randn_like(x)
    solver = variant_solver(settings, variant)
    times, evaluations, reached = [], [], []
    for i in range(repeats + 2):  # two warm-up steps (compilation, autotuning)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            value, inverse = loss(
                cell.objective, net, operator, to_format(x), to_format(z), 0.0, solver
            )
        value.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - started)
            if inverse is not None:  # after the timing: these read the device
                evaluations.append(float(inverse.iterations.float().mean()))
                reached.append(bool(inverse.converged.all()))
    return Timing(
        statistics.median(times),
        batch,
        solver.tol,
        statistics.mean(evaluations) if evaluations else float("nan"),
        all(reached) if reached else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny nets: does it run?")
    parser.add_argument("--archs", nargs="+", default=["iresnet", "convresnet"])
    args = parser.parse_args()
    device = setup(args.device)
    print(
        f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
    )
    print(
        "| net | variant | batch | step | epoch | speed-up vs fp32 | tol | evaluations per "
        "block | tol reached |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for arch in args.archs:
        base = None
        for name, variant in VARIANTS.items():
            try:
                t = step_seconds(arch, variant, device, args.quick)
            except Exception as err:  # a variant this machine cannot run is a row, not a crash
                print(f"| {arch} | {name} | | failed: {type(err).__name__}: {err} | | | | | |")
                continue
            base = base or t.seconds
            epoch_h = math.ceil(IMAGES / t.batch) * t.seconds / 3600
            solved = t.reached is not None
            print(
                f"| {arch} | {name} | {t.batch} | {1000 * t.seconds:.0f} ms | {epoch_h:.2f} h "
                f"| {base / t.seconds:.2f}x | {t.tol:g} | "
                f"{f'{t.evaluations:.1f}' if solved else 'n/a'} | "
                f"{('yes' if t.reached else 'no') if solved else 'n/a'} |"
            )


if __name__ == "__main__":
    main()
