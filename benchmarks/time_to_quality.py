"""Time to quality: training time until the iResNet reaches a validation PSNR, beside its
unconstrained twin (the ConvResNet), and what each training lever changes.

Every run trains on the same data with the workflow's own loop (``train.fit``): the demo's
training patches (``config/config.yaml``: 512 photograph patches of 32x32, augmented), blur at
delta = 0.025, Adam at 2e-3, batch 16, a constant rate (``--cosine``: decaying to zero over
``--max-epochs``, without early stopping); after every epoch it validates on the
demo's 32 validation patches (evaluation solver, rtol 1e-5) and it stops once the best
validation PSNR is ``--patience`` epochs old or after ``--max-epochs``. Runs go ``--workers``
at a time, each in its own process with one thread. Training time is the process's CPU time
without validation (one thread: the wall time of a dedicated core), so that other load on the
machine does not tilt the comparison.

For each iResNet run v and the ConvResNet c the gain G = min(gain_v, gain_c) of the final (best)
validation PSNRs over the data's is the common target; the table gives the training seconds
each needs to reach 95 % and 99 % of G (linear between epochs) and their ratio. On the default
iResNet's trained net it also gives the error of each inexact gradient against the exact
implicit gradient (adjoint solved to rtol 1e-8) on one training batch.

    .venv/bin/python benchmarks/time_to_quality.py             # every lever, about 40 min
    .venv/bin/python benchmarks/time_to_quality.py --quick     # 2 epochs each, a smoke run
"""

import argparse
import math
import multiprocessing
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iresnet_inverse import config, objectives
from iresnet_inverse.data.splits import paired_split
from iresnet_inverse.metrics import psnr
from iresnet_inverse.models import reconstruct
from iresnet_inverse.nets.baselines import BASELINES, build_baseline
from iresnet_inverse.nets.iresnet import ARCHITECTURES, IResNet, build_iresnet
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.operators import get_operator
from iresnet_inverse.stages.data import image_dataset
from iresnet_inverse.training import Run, Task, TrainSettings, fit

ROOT = Path(__file__).resolve().parents[1]  # the checkout

DEMO = config.load(ROOT / "config" / "config.yaml")
NOISE, LIPSCHITZ, SEED = 0.025, 0.999, 0
TRAINING_SOLVER = dict(DEMO["train"]["solver"])
EVALUATION_SOLVER = SolverConfig(**DEMO["evaluate"]["solver"])
# The levers over the default: "solver" settings over the demo's training solver (Anderson, rtol
# 1e-3, the adjoint by a 2-term Neumann series), "train" settings, or another "arch" of about the
# same parameters. None: the ConvResNet twin, trained supervised.
EXACT_ADJOINT = {"adjoint_method": "anderson", "adjoint_tol": 1e-2, "adjoint_max_iter": None}
THIN = {**ARCHITECTURES["iresnet_demo"], "blocks": 12, "hidden": 8}  # 20,172 parameters, not 20,118
VARIANTS: dict[str, dict[str, Any] | None] = {
    "ConvResNet": None,
    "iResNet (default)": {},
    "adjoint to 1e-2 (former default)": {"solver": EXACT_ADJOINT},
    "warm start": {"solver": {"warm_start": True}},
    "Jacobian-free": {"solver": {"adjoint_max_iter": 0}},
    "plain fixed point": {"solver": {"method": "fixed_point"}},
    "preconditioned": {"solver": {"precondition": True}},
    "moving average of the weights (ema 0.99)": {"train": {"ema": 0.99}},
    "warmup 2 epochs to twice the rate": {"train": {"warmup_epochs": 2, "learning_rate": 4e-3}},
    "12 thinner blocks (hidden 8)": {"arch": THIN},
    "learned split of the budget": {"arch": {**ARCHITECTURES["iresnet_demo"], "split": "learned"}},
}
FRACTIONS = (0.95, 0.99)


def _data() -> dict[str, torch.Tensor]:
    """Training patches, their blurred images, and the noisy validation pairs."""
    images = image_dataset(DEMO["data"])
    operator = get_operator("blur")
    x = torch.as_tensor(paired_split(images, None, "train")[0])[:, None]
    x_val = torch.as_tensor(paired_split(images, None, "val")[0])[:, None]
    noise = torch.randn(x_val.shape, generator=torch.Generator().manual_seed(SEED + 1))
    with torch.no_grad():
        z_val = operator(x_val) + NOISE * noise
        return {"x": x, "clean": operator(x), "x_val": x_val, "z_val": z_val}


def _network(variant: str, seed: int = SEED) -> torch.nn.Module:
    """The variant's net at its seeded start; its solver settings are the training settings'."""
    torch.manual_seed(seed)
    if VARIANTS[variant] is None:
        return build_baseline(BASELINES["convresnet_demo"])
    return build_iresnet(VARIANTS[variant].get("arch", ARCHITECTURES["iresnet_demo"]), LIPSCHITZ)


def _settings(variant: str, epochs: int, patience: int | None) -> TrainSettings:
    lever = VARIANTS[variant] or {}
    solver = {**TRAINING_SOLVER, **lever.get("solver", {})}
    schedule = "constant" if patience else "cosine"
    base = {**DEMO["train"], "epochs": epochs, "patience": patience, "lr_schedule": schedule}
    return TrainSettings.of({**base, **lever.get("train", {}), "snapshots": [], "solver": solver})


def train_variant(variant: str, epochs: int, patience: int | None, seed: int) -> dict[str, Any]:
    """Train one variant from ``seed`` (start, noise and order; the validation data are
    fixed); per epoch its cumulative training seconds and validation PSNR."""
    torch.set_num_threads(1)
    data, operator = _data(), get_operator("blur")
    net = _network(variant, seed)
    objective = "reconstruction" if isinstance(net, IResNet) else "supervised"
    x_val = data["x_val"][:, 0].numpy()
    marks = [time.process_time()]  # CPU seconds: the end of the previous validation
    training: list[float] = []

    def validate(model: torch.nn.Module) -> float:
        training.append((training[-1] if training else 0.0) + time.process_time() - marks[-1])
        x_hat, _ = reconstruct(model, objective, operator, data["z_val"], EVALUATION_SOLVER)
        marks.append(time.process_time())
        return float(np.mean(psnr(x_val, x_hat[:, 0].numpy())))

    task = Task(objective, operator, data["x"], data["clean"], NOISE, seed)
    with tempfile.TemporaryDirectory() as out:
        run = Run(Path(out), variant, variant, validate, lambda _: None)
        history = fit(net, task, _settings(variant, epochs, patience), run)
    evaluations = [e for e in history.inverse_evaluations if not math.isnan(e)]
    return {
        "variant": variant,
        "seconds": training,
        "val_psnr": history.val_psnr,
        "evaluations": float(np.mean(evaluations)) if evaluations else float("nan"),
        "state": {k: v.clone() for k, v in net.state_dict().items()},
    }


def time_to(seconds: list[float], scores: list[float], level: float) -> float:
    """Training seconds until the best-so-far score first reaches ``level`` (linear between
    epochs; the first epoch's end if it already does); inf if it never does."""
    best = np.maximum.accumulate(scores)
    hits = np.flatnonzero(best >= level)
    if not len(hits):
        return math.inf
    i = int(hits[0])
    if i == 0:
        return seconds[0]
    t0, t1, s0, s1 = seconds[i - 1], seconds[i], best[i - 1], best[i]
    return t0 + (t1 - t0) * (level - s0) / (s1 - s0)


def gradient_errors(
    state: dict[str, torch.Tensor], data: dict[str, torch.Tensor], seed: int = SEED
) -> dict[str, float]:
    """Relative error of each variant's parameter gradient against the exact implicit one on
    the trained default net, one batch of 16 training patches."""
    torch.set_num_threads(1)
    operator = get_operator("blur")
    g = torch.Generator().manual_seed(SEED + 2)
    idx = torch.randperm(len(data["x"]), generator=g)[:16]
    x = data["x"][idx]
    z = data["clean"][idx] + NOISE * torch.randn(x.shape, generator=g)

    def gradient(solver: dict[str, Any]) -> torch.Tensor:
        net = _network("iResNet (default)", seed)
        net.load_state_dict(state)
        config_ = SolverConfig(**{**TRAINING_SOLVER, **solver})
        value, _ = objectives.loss("reconstruction", net, operator, x, z, solver=config_)
        value.backward()
        return torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])

    exact = gradient({**EXACT_ADJOINT, "tol": 1e-6, "adjoint_tol": 1e-8, "max_iter": 500})
    errors = {}
    for variant, lever in VARIANTS.items():
        if lever is not None and set(lever) <= {"solver"}:  # a gradient of the default net
            errors[variant] = float(
                (gradient(lever.get("solver", {})) - exact).norm() / exact.norm()
            )
    return errors


def _table(runs: list[dict[str, Any]], data_psnr: float) -> list[str]:
    by_name = {r["variant"]: r for r in runs}
    base = by_name["ConvResNet"]
    base_gain = max(base["val_psnr"]) - data_psnr
    head = ["run", "epochs", "final val PSNR", "gain", "evals/block (train)"]
    for f in FRACTIONS:
        head += [f"s to {f:.0%} G", f"ratio {f:.0%}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        gain = max(run["val_psnr"]) - data_psnr
        target = min(gain, base_gain)
        row = [
            run["variant"],
            str(len(run["val_psnr"])),
            f"{max(run['val_psnr']):.2f}",
            f"{gain:.2f}",
            f"{run['evaluations']:.2f}",
        ]
        for f in FRACTIONS:
            level = data_psnr + f * target
            mine = time_to(run["seconds"], run["val_psnr"], level)
            theirs = time_to(base["seconds"], base["val_psnr"], level)
            row += [f"{mine:.0f}", f"{mine / theirs:.2f}x"]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=80)
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--cosine", action="store_true", help="cosine rate, no early stopping")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="variants to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="2 epochs each")
    parser.add_argument("--seed", type=int, default=SEED, help="of every run's start and noise")
    args = parser.parse_args()
    epochs = 2 if args.quick else args.max_epochs
    variants = args.only or list(VARIANTS)
    if "ConvResNet" not in variants:
        variants = ["ConvResNet", *variants]
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers) as pool:
        patience = None if args.cosine else args.patience
        jobs = [(v, epochs, patience, args.seed) for v in variants]
        runs = pool.starmap(train_variant, jobs)
    data = _data()
    data_psnr = float(np.mean(psnr(data["x_val"][:, 0].numpy(), data["z_val"][:, 0].numpy())))
    print(
        f"# {platform.machine()}, torch {torch.__version__}, 1 thread per run, {args.workers} "
        f"runs at a time, CPU seconds of training, {'cosine' if args.cosine else 'constant'} "
        f"rate; blur delta {NOISE}, L {LIPSCHITZ}, seed {args.seed}, demo "
        f"data; data PSNR {data_psnr:.2f} dB; {time.perf_counter() - started:.0f} s wall\n"
    )
    print("\n".join(_table(runs, data_psnr)))
    default = next((r for r in runs if r["variant"] == "iResNet (default)"), None)
    if default is not None:
        print("\n| gradient on the trained default net | relative error vs exact |\n|---|---|")
        for variant, error in gradient_errors(default["state"], data, args.seed).items():
            print(f"| {variant} | {error:.3g} |")
    print("\nper epoch (training s, validation PSNR):")
    for run in runs:
        points = zip(run["seconds"], run["val_psnr"], strict=True)
        pairs = ", ".join(f"{s:.0f}:{p:.2f}" for s, p in points)
        print(f"- {run['variant']}: {pairs}")


if __name__ == "__main__":
    main()
