"""Cost of one reconstruction-training step: iResNet vs ConvResNet, breakdown, scaling.

Measures the iResNet's step against the ConvResNet of the same size, where the iResNet's step
goes, and how both scale with image size and depth.

One step is what ``train.fit`` does per batch: ``optimizer.zero_grad``, ``objectives.loss``
(``reconstruction`` for the iResNet: phi^-1(z) by fixed-point iteration, differentiated
implicitly; ``supervised`` for the ConvResNet: net(z)), ``backward``, ``Adam.step``. Same batch
(16 random images in [0, 1], z = blur(x) + 0.01 noise) every step, L = 0.999; the headline
row is measured with the training solver of ``config/config.yaml`` (Anderson, rtol 1e-3,
adjoint 1e-2) and, in the same run, with the former plain fixed point at rtol 1e-5 for both
solves. The iResNet starts from PyTorch's random initialization of every layer
(``--init random``; a fresh net is the identity and would invert in one evaluation per block);
warm-up steps train it before the timed ones, and the tables give the evaluations per block,
which set the cost. The two nets' steps alternate, so load on the machine hits both alike.

The breakdown times extra steps with the library's pieces wrapped in timers (nothing
reimplemented): ``_ImplicitFixedPoint.forward`` (the inverse), ``_ImplicitFixedPoint.backward``
(implicit backward) and within it ``solve`` (the adjoint fixed point), ``lipschitz.
symbol_grid_max`` (the 5x5 layer's norm on the training frequency grid, once per layer and step)
and ``ConvResidual.weights`` (norms and projection, around the grid norm).

    .venv/bin/python benchmarks/training_step.py            # sizes 32/64/96, depths 3/6/12
    .venv/bin/python benchmarks/training_step.py --quick    # sizes 16/32, depths 2/4, < 1 min
"""

import argparse
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iresnet_inverse import config, objectives
from iresnet_inverse.models import load_model
from iresnet_inverse.nets import implicit, iresnet, lipschitz
from iresnet_inverse.nets.baselines import BASELINES, build_baseline
from iresnet_inverse.nets.examples import gaussian_residuals, random_residuals
from iresnet_inverse.nets.iresnet import ARCHITECTURES, IResNet, build_iresnet
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.operators import get_operator

ROOT = Path(__file__).resolve().parents[1]  # the checkout

ARCH, BASELINE = "iresnet_demo", "convresnet_demo"
BATCH, LIPSCHITZ, NOISE, LEARNING_RATE = 16, 0.999, 0.01, 2e-3  # as config/config.yaml
TRAINING_SOLVER = SolverConfig(**config.load(ROOT / "config" / "config.yaml")["train"]["solver"])
TIGHT_SOLVER = SolverConfig(method="fixed_point", tol=1e-5, max_iter=200)  # the former setting
SETTINGS = {  # main image size, scaling sizes, depths (at depth_size), warm-up and timed steps
    "full": {"size": 32, "sizes": (32, 64, 96), "depths": (3, 6, 12), "depth_size": 32,
             "warmup": 3, "repeats": 7},
    "quick": {"size": 32, "sizes": (16, 32), "depths": (2, 4), "depth_size": 16,
              "warmup": 2, "repeats": 5},
}  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Case:
    """An iResNet and its ConvResNet twin with their optimizers and one fixed batch."""

    def __init__(
        self,
        size: int,
        blocks: int,
        device: torch.device,
        init: str,
        solver: SolverConfig = TRAINING_SOLVER,
    ) -> None:
        spec = {**ARCHITECTURES[ARCH], "blocks": blocks}
        twin = {k: spec[k] for k in ("blocks", "channels", "hidden", "kernel_size")}
        twin = {"kind": "convresnet", **twin}
        if blocks == ARCHITECTURES[ARCH]["blocks"]:
            assert twin == BASELINES[BASELINE], "ConvResNet twin differs from convresnet_demo"
        torch.manual_seed(0)
        self.iresnet = build_iresnet(spec, LIPSCHITZ, solver=solver)
        if init == "random":
            random_residuals(self.iresnet)
        elif init.endswith(".pt"):  # a trained model of this architecture and image size
            trained, _ = load_model(init, device)
            self.iresnet.load_state_dict(trained.state_dict())
        elif init == "gaussian":
            gaussian_residuals(self.iresnet)
        self.iresnet.to(device).train()
        self.convresnet = build_baseline(twin).to(device).train()
        self.optimizers = {
            net: torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
            for net in (self.iresnet, self.convresnet)
        }
        g = torch.Generator().manual_seed(1)
        self.operator = get_operator("blur").to(device)
        self.x = torch.rand(BATCH, 1, size, size, generator=g).to(device)
        noise = NOISE * torch.randn(self.x.shape, generator=g).to(device)
        with torch.no_grad():
            self.z = self.operator(self.x) + noise
        self.device, self.size, self.blocks, self.solver = device, size, blocks, solver
        self.evaluations: list[float] = []  # per iResNet step: inverse evaluations per block

    def step(self, net: torch.nn.Module, phases: dict[str, float] | None = None) -> None:
        """One training step as in ``train.fit``; with ``phases``, add the seconds spent in
        forward (loss), backward and the optimizer to it."""
        objective = "reconstruction" if isinstance(net, IResNet) else "supervised"
        optimizer = self.optimizers[net]
        clock = [time.perf_counter()]

        def lap(name: str) -> None:
            if phases is not None:
                _sync(self.device)
                clock.append(time.perf_counter())
                phases[name] += clock[-1] - clock[-2]

        optimizer.zero_grad(set_to_none=True)
        value, inverse = objectives.loss(
            objective, net, self.operator, self.x, self.z, 0.0, self.solver
        )
        lap("forward")
        if not torch.isfinite(value):
            raise RuntimeError(f"non-finite loss {float(value)}")
        value.backward()
        lap("backward")
        optimizer.step()
        lap("optimizer")
        if inverse is not None:
            self.evaluations.append(float(inverse.iterations.float().mean()))

    def timed_steps(self, warmup: int, repeats: int) -> dict[str, float]:
        """Median seconds per step of each net, the two nets' steps alternating, and the mean
        inverse evaluations per block and sample over the timed iResNet steps ("evals")."""
        nets = {"iresnet": self.iresnet, "convresnet": self.convresnet}
        for _ in range(warmup):
            for net in nets.values():
                self.step(net)
        self.evaluations.clear()
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(repeats):
            for name, net in nets.items():
                _sync(self.device)
                start = time.perf_counter()
                self.step(net)
                _sync(self.device)
                times[name].append(time.perf_counter() - start)
        out = {name: statistics.median(t) for name, t in times.items()}
        return {**out, "evals": statistics.mean(self.evaluations)}


class Breakdown:
    """Wall time inside the library's pieces of an iResNet step, by wrapping them in timers."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.adjoint_evaluations: list[float] = []
        self.in_backward = False

    def _timer(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            _sync(self.device)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _sync(self.device)
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1

        return timed

    @contextmanager
    def installed(self) -> Iterator["Breakdown"]:
        """Wrap the pieces in timers for the duration of the block; restore them after."""
        function = implicit._ImplicitFixedPoint
        targets = [  # (owner, attribute) of each wrapped piece
            (function, "forward"),
            (function, "backward"),
            (implicit, "solve"),  # implicit.py's own name for the solver, looked up per call
            (lipschitz, "symbol_grid_max"),
            (iresnet.ConvResidual, "weights"),
        ]
        originals = [(owner, attr, owner.__dict__[attr]) for owner, attr in targets]
        backward = function.backward
        solve = implicit.solve

        def backward_flagged(ctx: Any, grad: torch.Tensor) -> Any:
            self.in_backward = True
            try:
                return backward(ctx, grad)
            finally:
                self.in_backward = False

        def solve_split(*args: Any, **kwargs: Any) -> Any:
            if not self.in_backward:  # the forward solve, timed as "inverse"
                return solve(*args, **kwargs)
            result = timed_solve(*args, **kwargs)
            self.adjoint_evaluations.append(float(result.iterations.float().mean()))
            return result

        timed_solve = self._timer("adjoint solve", solve)
        wrapped = {
            "forward": staticmethod(self._timer("inverse", function.forward)),
            "backward": staticmethod(self._timer("implicit backward", backward_flagged)),
            "solve": solve_split,
            "symbol_grid_max": self._timer("grid norm", lipschitz.symbol_grid_max),
            "weights": self._timer("weights", iresnet.ConvResidual.weights),
        }
        try:
            for owner, attr in targets:
                setattr(owner, attr, wrapped[attr])
            yield self
        finally:
            for owner, attr, original in originals:
                setattr(owner, attr, original)


def breakdown(case: Case, repeats: int) -> tuple[list[tuple[str, float]], tuple[float, float]]:
    """Mean ms per instrumented iResNet step by piece (rows that sum to the step), and the
    mean evaluations per block and sample of the inverse and the adjoint solves."""
    case.evaluations.clear()
    phases: dict[str, float] = defaultdict(float)
    timers = Breakdown(case.device)
    with timers.installed():
        for _ in range(repeats):
            case.step(case.iresnet, phases)
    s, n = timers.seconds, repeats
    for name in ("inverse", "implicit backward", "adjoint solve", "grid norm", "weights"):
        if timers.calls[name] != n * case.blocks:  # every piece ran once per block and step
            raise RuntimeError(f"{name}: {timers.calls[name]} calls, expected {n * case.blocks}")
    norm = s["weights"] - s["grid norm"]
    rows = [
        ("inverse: forward fixed-point solves (`_ImplicitFixedPoint.forward`)", s["inverse"]),
        ("grid norm of the 5x5 layers (`lipschitz.symbol_grid_max`)", s["grid norm"]),
        ("1x1 norms + projection forward (rest of `ConvResidual.weights`)", norm),
        (
            "other forward (lift, projection to X, loss, solver bookkeeping)",
            phases["forward"] - s["inverse"] - s["weights"],
        ),
        ("implicit backward: adjoint solves (`solve` in backward)", s["adjoint solve"]),
        (
            "implicit backward: rest (recompute f, parameter VJP)",
            s["implicit backward"] - s["adjoint solve"],
        ),
        (
            "other backward (gradients of sigma/projection, lift, loss)",
            phases["backward"] - s["implicit backward"],
        ),
        ("optimizer (`zero_grad` + `Adam.step`)", phases["optimizer"]),
    ]
    rows = [(name, 1e3 * t / n) for name, t in rows]
    evals = statistics.mean(case.evaluations), statistics.mean(timers.adjoint_evaluations)
    return rows, evals


def describe(solver: SolverConfig) -> str:
    adjoint = solver.adjoint()
    return f"{solver.method} {solver.tol:g}, adjoint {adjoint.method} {adjoint.tol:g}"


def exponent(xs: list[float], ts: list[float]) -> float:
    """Slope of log t against log x (least squares)."""
    return float(np.polyfit(np.log(xs), np.log(ts), 1)[0])


def run(mode: str, device: torch.device, init: str) -> None:
    cfg = SETTINGS[mode]
    warmup, repeats = cfg["warmup"], cfg["repeats"]
    spec = ARCHITECTURES[ARCH]
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, device {device}, {mode}"
    )
    print(
        f"# {ARCH} ({spec['blocks']} blocks, {spec['channels']} channels, hidden "
        f"{spec['hidden']}, kernel {spec['kernel_size']}) vs {BASELINE}; batch {BATCH}, "
        f"L {LIPSCHITZ}, training solver {describe(TRAINING_SOLVER)}, blur, init {init}, "
        f"{warmup} warm-up steps, median of {repeats}\n"
    )
    cache: dict[tuple[int, int], tuple[Case, dict[str, float]]] = {}

    def measure(size: int, blocks: int) -> tuple[Case, dict[str, float]]:
        if (size, blocks) not in cache:
            main = (size, blocks) == (cfg["size"], spec["blocks"])
            case = Case(
                size, blocks, device, init if main or not init.endswith(".pt") else "random"
            )
            cache[size, blocks] = case, case.timed_steps(warmup, repeats)
        return cache[size, blocks]

    # 1. iResNet vs ConvResNet, with the training solver and with the former tight one
    size, blocks = cfg["size"], spec["blocks"]
    tight = Case(size, blocks, device, init, TIGHT_SOLVER).timed_steps(warmup, repeats)
    case, t = measure(size, blocks)
    print("## One training step\n")
    print(
        "| solver | image | blocks | iResNet ms | ConvResNet ms | iResNet/ConvResNet | target | "
        "inverse evals/block |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for solver, tt in ((TIGHT_SOLVER, tight), (TRAINING_SOLVER, t)):
        ratio = tt["iresnet"] / tt["convresnet"]
        print(
            f"| {describe(solver)} | {size} | {blocks} | {1e3 * tt['iresnet']:.1f} | "
            f"{1e3 * tt['convresnet']:.1f} | {ratio:.2f}x | "
            f"<= 3x {'ok' if ratio <= 3 else 'MISSED'} | {tt['evals']:.1f} |",
            flush=True,
        )
    print(f"\niResNet step, tight / training solver: {tight['iresnet'] / t['iresnet']:.2f}x\n")

    # 2. where the iResNet step goes
    rows, (inverse_evals, adjoint_evals) = breakdown(case, repeats)
    step = sum(ms for _, ms in rows)
    print(f"## iResNet step breakdown (image {size}, mean of {repeats} instrumented steps)\n")
    print("| part | ms | % of step |")
    print("|---|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {100 * ms / step:.1f} |")
    print(f"| **instrumented step** | {step:.1f} | 100.0 |")
    print(
        f"\nuninstrumented median step {1e3 * t['iresnet']:.1f} ms; evaluations per block and "
        f"sample in these steps: inverse {inverse_evals:.1f}, adjoint {adjoint_evals:.1f}\n"
    )
    control = rows[1][1] + rows[2][1]
    bound = control + rows[6][1]
    print("| Lipschitz control | ms | % of step | target |")
    print("|---|---|---|---|")
    print(
        f"| power iteration + sigma/projection forward | {control:.1f} | "
        f"{100 * control / step:.1f} | <= 10% {'ok' if control <= 0.1 * step else 'MISSED'} |"
    )
    print(
        f"| upper bound: + all backward outside the implicit solves | {bound:.1f} | "
        f"{100 * bound / step:.1f} | |\n",
        flush=True,
    )

    # 3. scaling
    print("## Scaling\n")
    print("| image | pixels | blocks | iResNet ms | ConvResNet ms | ratio | inverse evals/block |")
    print("|---|---|---|---|---|---|---|")
    fits = {}
    for axis, points in (
        ("pixels", [(s, blocks) for s in cfg["sizes"]]),
        ("depth", [(cfg["depth_size"], d) for d in cfg["depths"]]),
    ):
        xs, ts = [], defaultdict(list)
        for s, d in points:
            _, tt = measure(s, d)
            xs.append(s * s if axis == "pixels" else d)
            for name in ("iresnet", "convresnet"):
                ts[name].append(tt[name])
            print(
                f"| {s} | {s * s} | {d} | {1e3 * tt['iresnet']:.1f} | "
                f"{1e3 * tt['convresnet']:.1f} | {tt['iresnet'] / tt['convresnet']:.2f} | "
                f"{tt['evals']:.1f} |",
                flush=True,
            )
        fits[axis] = {name: exponent(xs, t_) for name, t_ in ts.items()}
    print("\n| log-log exponent of step time | iResNet | ConvResNet |")
    print("|---|---|---|")
    for axis, label in (("pixels", "vs pixels"), ("depth", "vs blocks")):
        f = fits[axis]
        print(f"| {label} | {f['iresnet']:.2f} | {f['convresnet']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="sizes 16/32, depths 2/4, fewer steps (< 1 min)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's own)"
    )
    parser.add_argument(
        "--init",
        default="random",
        help="iResNet weights before warm-up: random (PyTorch's init), gaussian (L_i * Gaussian "
        "blur, worst case for fixed point), identity (untrained), or the model.pt of a trained "
        "iresnet_demo cell at L 0.999 and 32x32 (the scaling rows then use random)",
    )
    args = parser.parse_args()
    if args.init not in ("random", "gaussian", "identity") and not args.init.endswith(".pt"):
        parser.error(f"--init {args.init}: random, gaussian, identity or a model.pt")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run("quick" if args.quick else "full", torch.device(args.device), args.init)


if __name__ == "__main__":
    main()
