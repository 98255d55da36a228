"""One training run: seeded, checkpointed every epoch, resumable, with progress.

Training noise is drawn fresh every epoch (and the samples shuffled) from one CPU generator
seeded by the cell's seed; its state is part of the resume checkpoint, so a run killed after
epoch k and restarted continues exactly as an uninterrupted run would. Image cells
(``stages.train``) and toy cells (``stages.toy``) both train through ``fit``.
"""

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from iresnet_inverse import objectives
from iresnet_inverse.averaging import WeightAverage
from iresnet_inverse.checkpoints import load_checkpoint, save_checkpoint
from iresnet_inverse.errors import ArtifactError, TrainingError
from iresnet_inverse.history import History, plateau_reached, run_stopped
from iresnet_inverse.interrupted import RESUME_FILE
from iresnet_inverse.nets.iresnet import InverseResult
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.runtime import generator
from iresnet_inverse.schedules import rate_factor

RESUME_KEYS = frozenset(
    {"run_id", "model", "optimizer", "scheduler", "generator", "history", "epoch", "elapsed"}
)


def fingerprint(payload: Mapping[str, Any]) -> str:
    """A hash of everything that determines a run, to refuse resuming a different one."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def training_code_version() -> str:
    """A hash of the sources that define the nets and their losses: a resume checkpoint written
    by other code is not continued."""
    package = Path(__file__).parent
    sources = sorted((package / "nets").glob("*.py")) + [package / "objectives.py"]
    return hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()


def accelerate(
    net: torch.nn.Module,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: str | None = None,
) -> tuple[torch.autocast, Callable[[torch.Tensor], torch.Tensor]]:
    """Apply the GPU-path training settings to ``net``: ``compile`` (a torch.compile backend
    for iResNet residual functions), ``channels_last``; return the loss's autocast context
    (``precision`` bf16) and the memory-format conversion for batches."""
    if compile == "cudagraphs" and device.type != "cuda":  # device auto, resolved to the CPU
        raise ValueError(f"train.compile cudagraphs needs a CUDA device; this job runs on {device}")
    if compile:
        net.compile_residuals(compile)
    memory_format = torch.channels_last if channels_last else None
    if memory_format is not None:
        net.to(memory_format=memory_format)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def to_memory_format(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=memory_format) if memory_format is not None else t

    return autocast, to_memory_format


@dataclass(frozen=True)
class TrainSettings:
    """The resolved ``train`` settings of one job (schema ``$defs/train``), typed once."""

    epochs: int
    patience: int | None
    snapshots: tuple[int, ...]
    batch_size: int
    learning_rate: float
    lr_schedule: str
    noise_factor: float
    probes: int
    logdet_terms: int
    stacked_targets: bool
    augment: bool
    rescale_weights: bool
    solver: SolverConfig
    precision: str
    channels_last: bool
    compile: str | None
    warmup_epochs: int = 0  # absent from a config: none
    ema: float = 0.0  # decay of the weights' moving average; absent or 0: none

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> "TrainSettings":
        """From a validated settings mapping (extra keys such as ``runtime`` are the
        scheduler's, not training's)."""
        names = [f.name for f in fields(cls) if f.name != "solver"]
        values = {name: settings[name] for name in names if name in settings}
        values["snapshots"] = tuple(values["snapshots"])
        return cls(solver=SolverConfig(**settings["solver"]), **values)


@dataclass(frozen=True)
class Task:
    """What is learned: the objective, the operator, clean training samples x and F(x), the
    noise level delta of z = F(x) + delta * noise, and the seed of noise and order."""

    objective: str
    operator: torch.nn.Module
    x: torch.Tensor
    clean: torch.Tensor
    noise_level: float
    seed: int


@dataclass(frozen=True)
class Run:
    """How a run is recorded: resume checkpoints in ``out_dir`` tagged ``run_id``, progress
    and messages under ``label``, and the per-epoch validation score."""

    out_dir: Path
    run_id: str
    label: str
    validate: Callable[[torch.nn.Module], float]
    log: Callable[[str], None]
    snapshot: Callable[[torch.nn.Module, int], None] | None = None  # the net after an epoch
    diagnose: Callable[[torch.nn.Module], list[float]] | None = None  # recorded every epoch


@dataclass
class _State:
    """The mutable part of a run, all of it in the resume checkpoint."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    rng: torch.Generator
    autocast: torch.autocast
    to_format: Callable[[torch.Tensor], torch.Tensor]
    history: History = field(default_factory=History)
    epoch: int = 0
    elapsed: float = 0.0
    best: dict[str, torch.Tensor] | None = None  # early stopping: weights of the best epoch
    average: WeightAverage | None = None  # train.ema: the net that is validated and kept

    def model(self, net: torch.nn.Module) -> torch.nn.Module:
        """The net to validate and keep: the live one, or its moving average."""
        return net if self.average is None else self.average.averaged()


def dihedral(images: torch.Tensor, symmetry: torch.Tensor) -> torch.Tensor:
    """Image i of (n, c, h, h) under the symmetry[i]-th of the 8 symmetries of the square:
    symmetry % 4 quarter turns, then a transpose (a flip about the diagonal) if symmetry >= 4.
    Every symmetry of the whole batch, then a selection: no shape depends on the draw, so the
    host never waits for the device (a mask's count would make it)."""
    out = images
    for g in range(1, 8):
        turned = torch.rot90(images, g % 4, dims=(-2, -1))
        turned = turned.transpose(-2, -1) if g >= 4 else turned
        out = torch.where((symmetry == g).view(-1, 1, 1, 1), turned, out)
    return out


def _start(net: torch.nn.Module, task: Task, settings: TrainSettings, run: Run) -> _State:
    """GPU-path settings applied; optimizer, schedule and generator, restored from the resume
    checkpoint of the same run."""
    average = WeightAverage(net, settings.ema) if settings.ema else None
    autocast, to_format = accelerate(
        net, task.x.device, settings.precision, settings.channels_last, settings.compile
    )
    per_epoch = math.ceil(len(task.x) / settings.batch_size)
    history = History()
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        rate_factor(
            settings.lr_schedule, settings.epochs, settings.warmup_epochs, per_epoch, history
        ),
    )
    state = _State(optimizer, scheduler, generator(task.seed), autocast, to_format, history)
    state.average = average
    path = run.out_dir / RESUME_FILE
    if not path.exists():
        return state
    try:
        saved = load_checkpoint(path)
    except ArtifactError:
        run.log(
            f"{run.label}: {path} is not a loadable checkpoint (corrupt, truncated, or a pickle "
            "that would run code, which is never loaded); discarding it and starting afresh"
        )
        path.unlink()
        return state
    if saved.get("run_id") != run.run_id:
        run.log(f"{run.label}: {path} belongs to another configuration; starting afresh")
        return state
    missing = sorted((RESUME_KEYS | ({"average"} if average else set())) - set(saved))
    if missing:
        run.log(f"{run.label}: {path} lacks {', '.join(missing)}; discarding it, starting afresh")
        path.unlink()
        return state
    net.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    state.rng.set_state(saved["generator"])
    vars(state.history).update(vars(History(**json.loads(saved["history"]))))  # the schedule's
    state.epoch, state.elapsed = int(saved["epoch"]), float(saved["elapsed"])
    state.best = saved.get("best_model")
    if average is not None:
        average.load_state_dict(saved["average"])
    state.history.resumed_at_epochs.append(state.epoch)
    run.log(f"{run.label}: resuming from epoch {state.epoch} of {settings.epochs} ({path})")
    return state


def _save(net: torch.nn.Module, state: _State, run: Run) -> None:
    save_checkpoint(
        {
            "run_id": run.run_id,
            "model": net.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "generator": state.rng.get_state(),
            "history": json.dumps(state.history.__dict__),
            "epoch": state.epoch,
            "elapsed": state.elapsed,
            **({"best_model": state.best} if state.best is not None else {}),
            **({"average": state.average.state_dict()} if state.average is not None else {}),
        },
        run.out_dir / RESUME_FILE,
    )


def _train_epoch(
    net: torch.nn.Module,
    task: Task,
    settings: TrainSettings,
    state: _State,
    run: Run,
    progress: tqdm,
) -> None:
    """One pass over the shuffled training set with fresh noise; records loss and solves."""
    device, batch = task.x.device, settings.batch_size
    estimators = objectives.Estimators(settings.probes, settings.logdet_terms)
    order = torch.randperm(len(task.x), generator=state.rng).to(device)
    noise = (task.noise_level * torch.randn(task.x.shape, generator=state.rng)).to(device)
    images = settings.augment and task.x.ndim == 4
    symmetry = torch.randint(8, (len(task.x),), generator=state.rng) if images else None
    symmetry = symmetry.to(device) if symmetry is not None else None
    history = state.history
    for i in range(math.ceil(len(task.x) / batch)):
        idx = order[i * batch : (i + 1) * batch]
        x, clean = task.x[idx], task.clean[idx]
        if symmetry is not None:  # F commutes with the symmetry: F(g x) = g F(x)
            x, clean = (dihedral(t, symmetry[idx]) for t in (x, clean))
        state.optimizer.zero_grad(set_to_none=True)
        with state.autocast:
            value, inverse = objectives.loss(
                task.objective,
                net,
                task.operator,
                state.to_format(x),
                state.to_format(clean + noise[idx]),
                settings.noise_factor * task.noise_level,
                settings.solver,
                estimators,
                state.rng,
                settings.stacked_targets,
            )
        loss, evaluations, residual = _step_record(value, inverse)
        if not math.isfinite(loss):
            raise TrainingError(
                f"{run.label}: non-finite loss {loss} at step {len(history.loss)} "
                f"(epoch {state.epoch})"
            )
        value.backward()
        state.optimizer.step()
        net.after_step(settings.rescale_weights)
        if state.average is not None:
            state.average.update(net)
        history.loss.append(loss)
        history.learning_rate.append(state.scheduler.get_last_lr()[0])
        state.scheduler.step()
        history.inverse_evaluations.append(evaluations)
        history.inverse_residual.append(residual)
        progress.update(1)


def _step_record(value: torch.Tensor, inverse: InverseResult | None) -> tuple[float, ...]:
    """The step's loss, mean evaluations per block and largest final residual of its inverse
    (NaN without one), read from the device at once: one synchronization, not four."""
    if inverse is None:
        return float(value.detach()), math.nan, math.nan
    stats = [value.detach().float(), inverse.iterations.float().mean(), inverse.residual.max()]
    return tuple(torch.stack(stats).tolist())


def _end_epoch(
    net: torch.nn.Module, state: _State, settings: TrainSettings, run: Run, started: float
) -> None:
    """Validate (with early stopping, keep the weights of the best epoch), record the uncapped
    any-size Lipschitz bound (iResNets: it exceeds L_i if the size ratios went stale during the
    epoch), refresh them, and checkpoint."""
    net.eval()
    model = state.model(net)
    scores = state.history.val_psnr
    scores.append(run.validate(model))
    if run.diagnose is not None:
        state.history.jacobian_trace.append(run.diagnose(model))
    if settings.patience is not None and scores[-1] >= max(scores):
        state.best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        state.history.best_epoch = len(scores)
    if settings.lr_schedule == "plateau" and not state.history.plateau_epoch:
        if plateau_reached(scores):
            state.history.plateau_epoch = len(scores)
            run.log(f"{run.label}: plateau after epoch {len(scores)}; decaying the rate")
    net.train()
    estimate = net.certificate()
    if estimate:
        state.history.lipschitz_estimate.append(estimate)
    net.refresh()
    seconds = time.perf_counter() - started  # training, validation and the Lipschitz refresh
    state.history.epoch_seconds.append(seconds)
    state.elapsed += seconds
    state.epoch += 1
    if run.snapshot is not None and state.epoch in settings.snapshots:
        run.snapshot(model, state.epoch)  # before the resume checkpoint: a resumed run has it
    _save(net, state, run)


def fit(net: torch.nn.Module, task: Task, settings: TrainSettings, run: Run) -> History:
    """Train ``net`` (an iResNet, or a baseline with the ``supervised`` objective) on
    (x, F(x) + noise) pairs; checkpoint every epoch to ``run.out_dir``, resume from there."""
    state = _start(net, task, settings, run)
    steps = math.ceil(len(task.x) / settings.batch_size)
    progress = tqdm(
        total=settings.epochs * steps,
        initial=state.epoch * steps,
        desc=run.label,
        file=sys.stderr,
        mininterval=2.0,
        dynamic_ncols=True,
    )
    net.train()
    if state.epoch == 0:
        net.refresh()  # the projection holds at every size
    history = state.history
    while state.epoch < settings.epochs and not run_stopped(history, settings.patience):
        started = time.perf_counter()
        _train_epoch(net, task, settings, state, run, progress)
        _end_epoch(net, state, settings, run, started)
        progress.set_postfix(loss=f"{history.loss[-1]:.4g}", val_psnr=f"{history.val_psnr[-1]:.2f}")
    progress.close()
    if state.average is not None:
        net.load_state_dict(state.model(net).state_dict())
    if state.best is not None:
        net.load_state_dict(state.best)
        if state.epoch < settings.epochs:
            run.log(
                f"{run.label}: stopped after epoch {state.epoch} of {settings.epochs}: no "
                f"validation gain in {settings.patience} epochs; keeping epoch "
                f"{history.best_epoch} ({max(history.val_psnr):.2f} dB)"
            )
    net.eval()
    return history


def end_run(out_dir: Path) -> None:
    """A run's outputs are written: its resume checkpoint goes (image and toy cells alike)."""
    (out_dir / RESUME_FILE).unlink(missing_ok=True)
