"""One training run for one cell: seeded, checkpointed every epoch, resumable, with progress.

Training noise is drawn fresh every epoch (and the samples shuffled) from one CPU generator
seeded by the cell's seed; its state is part of the resume checkpoint, so a run killed after
epoch k and restarted continues exactly as an uninterrupted run would.
"""

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from iresnet_inverse import objectives
from iresnet_inverse.analysis.metrics import psnr
from iresnet_inverse.artifacts import ArtifactError, read_dataset, variable, write_dataset
from iresnet_inverse.checkpoints import load_checkpoint, save_checkpoint
from iresnet_inverse.data.observations import paired_split
from iresnet_inverse.interrupted import RESUME_FILE
from iresnet_inverse.jobs import Job
from iresnet_inverse.models import (
    MODEL_FILE,
    ModelMeta,
    build_network,
    load_trained_cell,
    save_model,
    snapshot_file,
)
from iresnet_inverse.nets.iresnet import InverseResult, IResNet, count_parameters
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.operators import get_operator
from iresnet_inverse.reconstruct import reconstruct
from iresnet_inverse.runtime import generator, setup
from iresnet_inverse.tv import TotalVariation, search_alpha

HISTORY_FILE = "history.nc"
RESUME_KEYS = frozenset(
    {"run_id", "model", "optimizer", "scheduler", "generator", "history", "epoch", "elapsed"}
)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message names cell and step."""


@dataclass
class History:
    """What a run records; kept in the resume checkpoint and written to ``history.nc``."""

    loss: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    inverse_evaluations: list[float] = field(default_factory=list)
    inverse_residual: list[float] = field(default_factory=list)
    val_psnr: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    lipschitz_estimate: list[list[float]] = field(default_factory=list)
    jacobian_trace: list[list[float]] = field(default_factory=list)  # lifted nets: on / off D
    resumed_at_epochs: list[int] = field(default_factory=list)
    best_epoch: int = 0  # with early stopping: the epoch whose weights were kept (1-based)
    plateau_epoch: int = 0  # lr_schedule plateau: the epoch the plateau was found (0: not yet)


# lr_schedule "plateau" (the convergence rule): a constant rate until the validation PSNR has
# not risen by RULE_GAIN_DB over the last P epochs, P = max(2, ceil(RULE_FRACTION * epochs so
# far)); then a cosine decay over as many epochs, and the run stops. Found at a constant rate, the
# plateau cannot be an artefact of the schedule; a run that reaches ``epochs`` first has not
# converged.
RULE_GAIN_DB, RULE_FRACTION = 0.05, 0.2


def plateau_window(epochs_run: int) -> int:
    """P: the epochs without a RULE_GAIN_DB gain that make a plateau, and the decay's length."""
    return max(2, math.ceil(RULE_FRACTION * epochs_run))


def plateau_reached(val_psnr: list[float]) -> bool:
    """No gain of RULE_GAIN_DB over the best before the last P epochs, P = plateau_window."""
    window = plateau_window(len(val_psnr))
    if len(val_psnr) <= window:
        return False
    return max(val_psnr[-window:]) < max(val_psnr[:-window]) + RULE_GAIN_DB


def _cosine(t: float) -> float:
    """From 1 at t = 0 to 0.01 at t >= 1."""
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def _lr_lambda(
    schedule: str, total_steps: int, steps_per_epoch: int, history: History
) -> Callable[[int], float]:
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "plateau":  # reads the history, which training updates in place

        def rate(step: int) -> float:
            found = history.plateau_epoch
            if not found:
                return 1.0
            decay = plateau_window(found) * steps_per_epoch  # its last step at 1 % of the rate
            return _cosine((step + 1 - found * steps_per_epoch) / decay)

        return rate
    return lambda step: _cosine(step / total_steps)


def fingerprint(payload: Mapping[str, Any]) -> str:
    """A hash of everything that determines a run, to refuse resuming a different one."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def training_code_version() -> str:
    """A hash of the sources that define the nets and their losses: a resume checkpoint written
    by other code is not continued."""
    package = Path(__file__).parent
    sources = sorted((package / "nets").glob("*.py")) + [package / "objectives.py"]
    return hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()


def run_fingerprint(job: Job, warm_start: str | Path | None = None) -> str:
    """What an image cell's training reads: the cell, its settings and spec, the operator's
    parameters, the data section, the warm start and the code of the nets and losses."""
    return fingerprint(
        {
            "cell": dict(job.cell),
            "settings": job.settings,
            "spec": job.spec,
            "operator_params": dict(job.operator_params),
            "data": job.sections.get("data"),
            "warm_start": str(warm_start),
            "code": training_code_version(),
        }
    )


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
    if compile and isinstance(net, IResNet):
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

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> "TrainSettings":
        """From a validated settings mapping (extra keys such as ``runtime`` are the
        scheduler's, not training's)."""
        values = {f.name: settings[f.name] for f in fields(cls) if f.name != "solver"}
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
    autocast, to_format = accelerate(
        net, task.x.device, settings.precision, settings.channels_last, settings.compile
    )
    per_epoch = math.ceil(len(task.x) / settings.batch_size)
    history = History()
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(settings.lr_schedule, settings.epochs * per_epoch, per_epoch, history)
    )
    state = _State(optimizer, scheduler, generator(task.seed), autocast, to_format, history)
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
    missing = sorted(RESUME_KEYS - set(saved))
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
        if settings.rescale_weights and isinstance(net, IResNet):
            net.rescale_raw_weights()
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
    scores = state.history.val_psnr
    scores.append(run.validate(net))
    if run.diagnose is not None:
        state.history.jacobian_trace.append(run.diagnose(net))
    if settings.patience is not None and scores[-1] >= max(scores):
        state.best = {k: v.detach().clone() for k, v in net.state_dict().items()}
        state.history.best_epoch = len(scores)
    if settings.lr_schedule == "plateau" and not state.history.plateau_epoch:
        if plateau_reached(scores):
            state.history.plateau_epoch = len(scores)
            run.log(f"{run.label}: plateau after epoch {len(scores)}; decaying the rate")
    net.train()
    if isinstance(net, IResNet):
        state.history.lipschitz_estimate.append(net.lipschitz_certificate())
        net.refresh_norms()
    seconds = time.perf_counter() - started  # training, validation and the Lipschitz refresh
    state.history.epoch_seconds.append(seconds)
    state.elapsed += seconds
    state.epoch += 1
    if run.snapshot is not None and state.epoch in settings.snapshots:
        run.snapshot(net, state.epoch)  # before the resume checkpoint: a resumed run has it
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
    if isinstance(net, IResNet) and state.epoch == 0:
        net.refresh_norms()  # the projection holds at every size
    history = state.history
    while state.epoch < settings.epochs and not _stopped(history, settings.patience):
        started = time.perf_counter()
        _train_epoch(net, task, settings, state, run, progress)
        _end_epoch(net, state, settings, run, started)
        progress.set_postfix(loss=f"{history.loss[-1]:.4g}", val_psnr=f"{history.val_psnr[-1]:.2f}")
    progress.close()
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


def _stopped(history: History, patience: int | None) -> bool:
    """Early stopping (the best validation PSNR is ``patience`` or more epochs old), or the
    plateau schedule's decay done."""
    epochs, found = len(history.val_psnr), history.plateau_epoch
    if found and epochs >= found + plateau_window(found):
        return True
    return patience is not None and epochs - history.best_epoch >= patience


def history_dataset(
    history: History,
    certificate: list[float],
    net: torch.nn.Module,
    steps_per_epoch: int,
    batch_size: int,
) -> xr.Dataset:
    steps = np.arange(len(history.loss))
    ds = xr.Dataset(
        {
            "loss": variable("step", np.array(history.loss), "training loss (batch mean)"),
            "learning_rate": variable("step", np.array(history.learning_rate), "learning rate"),
            "inverse_evaluations": variable(
                "step",
                np.array(history.inverse_evaluations),
                "residual evaluations per block and sample in the inverse",
            ),
            "inverse_residual": variable(
                "step",
                np.array(history.inverse_residual),
                "largest final relative residual of the inverse",
            ),
            "val_psnr": variable("epoch", np.array(history.val_psnr), "validation PSNR", "dB"),
            "epoch_seconds": variable(
                "epoch", np.array(history.epoch_seconds), "wall time per epoch", "s"
            ),
            "wall_time": variable(
                (), float(np.sum(history.epoch_seconds)), "training wall time", "s"
            ),
            "parameters": variable((), count_parameters(net), "trainable parameters"),
            "epochs": variable((), len(history.val_psnr), "training epochs"),
            "best_epoch": variable(
                (), history.best_epoch, "epoch whose weights were kept (0: the last)"
            ),
            "plateau_epoch": variable(
                (), history.plateau_epoch, "epoch after which the plateau rule decayed (0: none)"
            ),
            "converged": variable(
                (),
                np.int8(_stopped(history, None)),
                f"plateau rule met: no {RULE_GAIN_DB} dB gain in the window, then the decay",
            ),
            "batch_size": variable((), batch_size, "batch size"),
        },
        coords={
            "step": steps,
            "epoch": np.arange(1, len(history.val_psnr) + 1),
            "epoch_of_step": ("step", steps // steps_per_epoch),
        },
        attrs={"resumed_at_epochs": json.dumps(history.resumed_at_epochs)},
    )
    if isinstance(net, IResNet):
        ds["lipschitz_estimate"] = variable(
            ("epoch", "block"),
            np.array(history.lipschitz_estimate),
            "per-block any-size Lipschitz bound at the end of each epoch (uncapped)",
        )
        ds["lipschitz_certificate"] = variable(
            "block", np.array(certificate), "per-block Lipschitz bound at every image size"
        )
        ds["block_bound"] = variable((), float(net.blocks[0].lipschitz), "per-block bound L_i")
        ds = ds.assign_coords(block=np.arange(len(net.blocks)))
    if history.jacobian_trace:
        ds["jacobian_trace"] = variable(
            ("epoch", "subspace"),
            np.array(history.jacobian_trace),
            "trace of D Phi(c x) per dimension on the diagonal D (the map on X) and off it, "
            "at validation patches",
        )
        ds = ds.assign_coords(subspace=["diagonal", "off_diagonal"])
    return ds


def certify(net: IResNet) -> list[float]:
    """Converge the power vectors and size ratios, then bound every block at every image size
    (the saved net is the refreshed one, so the certificate holds for it)."""
    net.refresh_norms()
    return net.lipschitz_certificate()


def finish(
    net: torch.nn.Module,
    history: History,
    spec: Mapping[str, Any],
    meta: ModelMeta,
    out_dir: Path,
    steps_per_epoch: int,
    batch_size: int,
    record: Mapping[str, Any],
) -> None:
    """Certify (iResNets), then write model.pt and history.nc (with ``record``'s config, rule
    and cell as provenance); drop the resume checkpoint."""
    certificate = certify(net) if isinstance(net, IResNet) else []
    save_model(net, spec, replace(meta, certificate=certificate), out_dir / MODEL_FILE)
    write_dataset(
        history_dataset(history, certificate, net, steps_per_epoch, batch_size),
        out_dir / HISTORY_FILE,
        title=f"training history of {record['cell'].dir}",
        **record,
    )
    end_run(out_dir)


def end_run(out_dir: Path) -> None:
    """A run's outputs are written: its resume checkpoint goes (image and toy cells alike)."""
    (out_dir / RESUME_FILE).unlink(missing_ok=True)


def check_not_diverged(val_psnr: float, x_val: np.ndarray, label: str) -> None:
    """A net whose validation PSNR is 3 dB below that of a constant image (the mean gray of the
    validation patches) learned nothing usable: training diverged (too large a learning rate,
    say). Stop, so that no model is written and used."""
    floor = float(np.mean(psnr(x_val, np.full_like(x_val, x_val.mean())))) - 3.0
    if not val_psnr >= floor:
        raise TrainingError(
            f"{label}: training diverged: final validation PSNR {val_psnr:.2f} dB is below "
            f"{floor:.2f} dB (a constant gray image less 3 dB); lower train.learning_rate"
        )


def tune_total_variation(
    tv: TotalVariation,
    x_val: np.ndarray,
    z_val: torch.Tensor,
    spec: Mapping[str, Any],
    seed: int,
    label: str,
    log: Callable[[str], None],
) -> xr.Dataset:
    """TV's training: a seeded random search of alpha on the validation split (as the paper
    tuned its baselines). Sets ``tv.alpha``; returns the search as a history dataset."""
    started = time.perf_counter()
    search = search_alpha(
        tv.operator,
        z_val,
        torch.as_tensor(x_val)[:, None],
        samples=spec["samples"],
        low=spec["alpha_min"],
        high=spec["alpha_max"],
        seed=seed,
        tol=spec["tol"],
        max_iter=spec["max_iter"],
        progress=True,
    )
    seconds = time.perf_counter() - started
    best = search.alpha
    tv.alpha.fill_(best)
    alphas, scores = (np.array(column) for column in zip(*search.table, strict=True))
    log(f"{label}: alpha {best:.4g} (validation PSNR {search.psnr:.2f} dB, {seconds:.1f} s)")
    return xr.Dataset(
        {
            "alpha_tried": variable("trial", alphas, "TV weight alpha tried"),
            "val_psnr_tried": variable("trial", scores, "validation PSNR", "dB"),
            "alpha": variable((), best, "chosen TV weight alpha"),
            "wall_time": variable((), seconds, "search wall time", "s"),
            "parameters": variable((), 0, "trainable parameters"),
            "epochs": variable((), 0, "training epochs"),
            "batch_size": variable((), len(x_val), "images per TV solve"),
        },
        coords={"trial": np.arange(len(alphas))},
    )


def train_image_cell(
    job: Job,
    images_path: str | Path,
    observations_path: str | Path,
    out_dir: str | Path,
    warm_start: str | Path | None = None,
    rule: str = "train",
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> None:
    """Train the job's network on image patches (for TV: search alpha on the validation
    split); write model.pt and history.nc to ``out_dir``."""
    cell, settings, spec = job.cell, job.settings, job.spec
    out_dir, label = Path(out_dir), cell.dir
    device = setup(job.device, job.deterministic)
    images = read_dataset(images_path)
    observations = read_dataset(observations_path, cell)
    operator = get_operator(cell.operator, **job.operator_params).to(device)
    x_train = torch.as_tensor(paired_split(images, None, "train")[0])[:, None].to(device)
    x_val, _, z_val = paired_split(images, observations, "val")
    z_val_t = torch.as_tensor(z_val)[:, None].to(device)
    meta = ModelMeta(
        cell=dict(cell),
        lipschitz=cell.lipschitz,
        solver=settings["solver"],
        operator_params=dict(job.operator_params),
        patch_size=int(x_train.shape[-1]),
    )
    torch.manual_seed(cell.seed)
    net = build_network(spec, meta).to(device)
    record = {"config": job.as_dict(), "rule": rule, "cell": cell}
    if spec["kind"] == "tv":
        search = tune_total_variation(net, x_val, z_val_t, spec, cell.seed, label, log)
        save_model(net, spec, meta, out_dir / MODEL_FILE)
        title = f"TV weight search of {label}"
        write_dataset(search, out_dir / HISTORY_FILE, title=title, **record)
        return
    log(
        f"{label}: {count_parameters(net):,} parameters, {len(x_train)} training patches, "
        f"device {device}, {torch.get_num_threads()} threads"
    )
    if warm_start is not None:
        start = load_trained_cell(warm_start, device, expect=cell, ignore=("objective",))
        net.load_state_dict(start.net.state_dict())
        log(f"{label}: warm start from {warm_start}")
    solver = SolverConfig(**settings["solver"])

    def validate(model: torch.nn.Module) -> float:
        x_hat, _ = reconstruct(model, cell.objective, operator, z_val_t, solver)
        return float(np.mean(psnr(x_val, x_hat[:, 0].cpu().numpy())))

    run_id = run_fingerprint(job, warm_start)
    with torch.no_grad():
        clean_train = operator(x_train)
    task = Task(cell.objective, operator, x_train, clean_train, cell.noise_level, cell.seed)

    def snapshot(model: torch.nn.Module, epoch: int) -> None:
        certificate = model.lipschitz_certificate() if isinstance(model, IResNet) else []
        kept = replace(meta, certificate=certificate)
        save_model(model, spec, kept, snapshot_file(out_dir, epoch))

    run = Run(
        out_dir, run_id, label, validate, log, snapshot, _trace_diagnostic(net, x_val, device)
    )
    history = fit(net, task, TrainSettings.of(settings), run)
    check_not_diverged(history.val_psnr[-1], x_val, label)
    steps_per_epoch = math.ceil(len(x_train) / settings["batch_size"])
    finish(net, history, spec, meta, out_dir, steps_per_epoch, settings["batch_size"], record)
    log(f"{label}: done, final validation PSNR {history.val_psnr[-1]:.2f} dB")


def _trace_diagnostic(
    net: torch.nn.Module, x_val: np.ndarray, device: torch.device
) -> Callable[[torch.nn.Module], list[float]] | None:
    """For lifted iResNets, the Jacobian traces on and off the diagonal at up to 16 validation
    inputs (fixed probes, so epochs compare; the training generator is not touched): what the
    regularizers see, and what only the lifting sees (``objectives.lifted_traces``)."""
    if not (isinstance(net, IResNet) and net.lift_channels > 1):
        return None
    x = torch.as_tensor(x_val[:16])[:, None].to(device)

    def diagnose(model: torch.nn.Module) -> list[float]:
        probes = torch.Generator().manual_seed(0)
        return list(objectives.lifted_traces(model, x, probes=2, generator=probes))

    return diagnose


def record_failed_trial(job: Job, error: Exception, out_dir: str | Path, rule: str) -> Path:
    """A trial whose training diverged (a learning rate too large, say) is a result of the
    search, not an error of the workflow: its history holds a NaN validation PSNR and the
    reason."""
    print(f"{job.cell.dir}: failed trial: {error}", flush=True)
    history = xr.Dataset(
        {"val_psnr": variable("epoch", [np.nan], "validation PSNR", "dB")},
        attrs={"failure": str(error)},
    )
    path = Path(out_dir) / HISTORY_FILE
    record = {"config": job.as_dict(), "rule": rule, "cell": job.cell}
    write_dataset(history, path, title="failed search trial", **record)
    end_run(Path(out_dir))
    return path
