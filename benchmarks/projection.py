"""Cost of the Lipschitz projection per training step, exact grid against tracked norm, and
what share of a training step it is; how far the tracked norm lags the exact grid maximum.

Per architecture of ``config/paper.yaml`` (``iresnet``, ``iresnet_small``) and the demo's
``iresnet_demo``, for ``symbol_norm`` "grid" (the symbol's maximum on the 32 x 32 grid from
one eigenproblem per frequency) and "power" (``nets/lipschitz.py``: the tracked power
iteration): the per-step cost of every Lipschitz layer of one block (norm, projection, their
backward, after the weights changed; median of ``--repeats``), one training step of a block
(reconstruction loss, the config's training solver, batch size and patch size;
``iresnet_demo`` with config/config.yaml's), and the refresh (once per epoch: the any-size
certificate's fine grid). One block stands for the net: all three scale with the number of
blocks. The lag table trains one paper block at its rate on small patches and compares the
tracked estimate of every step with the exact grid maximum of the same weights.

    .venv/bin/python benchmarks/projection.py                 # CPU, about 10 min at 1 thread
    .venv/bin/python benchmarks/projection.py --device cuda   # the question for a GPU
    .venv/bin/python benchmarks/projection.py --quick         # a check that it runs
"""

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from paper_smoke import paper_networks  # this folder is on the path of a script

from iresnet_inverse import config
from iresnet_inverse.archs import ARCHITECTURES
from iresnet_inverse.nets.iresnet import build_iresnet
from iresnet_inverse.nets.lipschitz import TRAIN_GRID, symbol_grid_max
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.objectives import loss
from iresnet_inverse.operators import get_operator
from iresnet_inverse.runtime import setup

ROOT = Path(__file__).resolve().parents[1]  # the checkout


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: object, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def settings(arch: str) -> dict:
    """Training batch size, patch size, rate and solver of ``arch`` in its config."""
    if arch == "iresnet_demo":
        demo = config.load(ROOT / "config" / "config.yaml")
        train = {**demo["train"], "patch_size": demo["data"]["patch_size"]}
    else:
        paper = paper_networks()[arch]
        train = {**paper["settings"], "patch_size": paper["size"]}
    keys = ("batch_size", "patch_size", "learning_rate", "solver")
    return {key: train[key] for key in keys}


def block_costs(arch: str, norm: str, device: torch.device, quick: bool, repeats: int) -> tuple:
    """(projection ms, training step ms, refresh s) of one block of ``arch`` with
    ``symbol_norm``; the refresh (once per epoch) solves the any-size certificate's grid."""
    s = settings(arch)
    batch, size = (2, 16) if quick else (s["batch_size"], s["patch_size"])
    solver = SolverConfig(**s["solver"])
    torch.manual_seed(0)
    net = build_iresnet({**ARCHITECTURES[arch], "blocks": 1, "symbol_norm": norm}, 0.999, solver)
    net.to(device)
    _sync(device)
    start = time.perf_counter()
    net.refresh_norms()
    _sync(device)
    refresh = time.perf_counter() - start
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=s["learning_rate"])
    operator = get_operator("blur").to(device)
    x = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        z = operator(x) + 0.01 * torch.randn_like(x)
    layers = net.blocks[0].residual.layers()

    def project() -> None:
        with torch.no_grad():
            for layer in layers:
                layer.weight.mul_(1.0)  # a new state of the weights, as after a step
        weights = net.blocks[0].residual.weights()
        (weights[0].sum() + weights[3].sum()).backward()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss("reconstruction", net, operator, x, z, 0.0, solver)[0].backward()
        optimizer.step()

    for _ in range(3):  # past the steps solved exactly after the refresh
        project()
    step()
    steps = max(1, repeats // 3)
    return _median_ms(project, repeats, device), _median_ms(step, steps, device), refresh


def lags(steps: int, device: torch.device, quick: bool) -> list[float]:
    """1 - g / G at every step of training one paper block on 16 x 16 patches."""
    spec = {**ARCHITECTURES["iresnet"], "blocks": 1, "symbol_norm": "power"}
    if quick:
        spec.update(channels=4, hidden=8)
    s = settings("iresnet")
    solver = SolverConfig(**s["solver"])
    torch.manual_seed(0)
    net = build_iresnet(spec, 0.999, solver).to(device)
    net.refresh_norms()
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=s["learning_rate"])
    operator = get_operator("blur").to(device)
    conv, generator, out = net.blocks[0].residual.conv_in, torch.Generator().manual_seed(1), []
    for _ in range(steps):
        x = torch.rand(4, 1, 16, 16, generator=generator).to(device)
        with torch.no_grad():
            z = operator(x) + 0.01 * torch.randn_like(x)
        optimizer.zero_grad(set_to_none=True)
        loss("reconstruction", net, operator, x, z, 0.0, solver)[0].backward()
        tracked = float(conv.sigma().detach())  # the step's own value (cached)
        exact = symbol_grid_max(conv.weight.detach().cpu(), TRAIN_GRID)[0]  # CPU: LAPACK
        out.append(1 - tracked / exact)
        optimizer.step()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--lag-steps", type=int, default=200)
    args = parser.parse_args()
    device = setup(args.device)
    quick, repeats = args.quick, 3 if args.quick else args.repeats
    print(
        f"# {platform.node()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"device {device}{', quick' if quick else ''}\n"
    )
    print(
        "| arch | batch | image | symbol_norm | projection ms per step | block step ms | share "
        "| refresh s per epoch |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for arch in ("iresnet", "iresnet_small", "iresnet_demo"):
        s = settings(arch)
        batch, size = (2, 16) if quick else (s["batch_size"], s["patch_size"])
        for norm in ("grid", "power"):
            project, step, refresh = block_costs(arch, norm, device, quick, repeats)
            print(
                f"| {arch} | {batch} | {size} | {norm} | {project:.2f} | {step:.1f} | "
                f"{100 * project / step:.2f} % | {refresh:.2f} |",
                flush=True,
            )
    steps = 5 if quick else args.lag_steps
    found = lags(steps, device, quick)
    worst = max(range(len(found)), key=found.__getitem__)
    print(f"\n| tracked norm, {steps} training steps of a paper block | 1 - g / G |")
    print("|---|---|")
    print(f"| largest (step {worst}) | {found[worst]:.2e} |")
    print(f"| mean | {statistics.mean(found):.2e} |")
    print(f"| smallest (negative: above G) | {min(found):.2e} |")


if __name__ == "__main__":
    main()
