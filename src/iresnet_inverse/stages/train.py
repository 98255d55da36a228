"""The ``train`` rule: one image cell trained (or, for TV, its weight searched), certified and
written as model.pt and history.nc; failed search trials recorded as results."""

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from iresnet_inverse import objectives
from iresnet_inverse.artifacts import read_dataset, variable, write_dataset
from iresnet_inverse.data.splits import paired_split
from iresnet_inverse.history import HISTORY_FILE, History, history_dataset
from iresnet_inverse.jobs import Job
from iresnet_inverse.metrics import psnr
from iresnet_inverse.models import (
    MODEL_FILE,
    ModelMeta,
    build_network,
    load_trained_cell,
    reconstruct,
    save_model,
    snapshot_file,
)
from iresnet_inverse.nets.model import Model, count_parameters
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.operators import get_operator
from iresnet_inverse.runtime import setup
from iresnet_inverse.training import (
    Run,
    Task,
    TrainingError,
    TrainSettings,
    end_run,
    fingerprint,
    fit,
    training_code_version,
)
from iresnet_inverse.tv.model import TotalVariation
from iresnet_inverse.tv.search import search_alpha


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


def certify(net: Model) -> list[float]:
    """Refresh the size ratios, then bound every block at every image size (the saved net is
    the refreshed one, so the certificate holds for it); [] for a model without blocks."""
    net.refresh()
    return net.certificate()


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
    certificate = certify(net)
    save_model(net, spec, replace(meta, certificate=certificate), out_dir / MODEL_FILE)
    write_dataset(
        history_dataset(history, certificate, net, steps_per_epoch, batch_size),
        out_dir / HISTORY_FILE,
        title=f"training history of {record['cell'].dir}",
        **record,
    )
    end_run(out_dir)


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


@dataclass
class CellData:
    """What an image cell trains and validates on, on its device: the operator, the training
    patches, the validation patches (numpy, for the PSNR) and their data."""

    operator: torch.nn.Module
    x_train: torch.Tensor
    x_val: np.ndarray
    z_val: torch.Tensor
    device: torch.device


def load_cell_data(
    job: Job, images_path: str | Path, observations_path: str | Path, device: torch.device
) -> CellData:
    """The cell's operator and its training and validation split."""
    images = read_dataset(images_path)
    observations = read_dataset(observations_path, job.cell)
    operator = get_operator(job.cell.operator, **job.operator_params).to(device)
    x_train = torch.as_tensor(paired_split(images, None, "train")[0])[:, None].to(device)
    x_val, _, z_val = paired_split(images, observations, "val")
    z_val_t = torch.as_tensor(z_val)[:, None].to(device)
    return CellData(operator, x_train, x_val, z_val_t, device)


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
    data = load_cell_data(job, images_path, observations_path, device)
    meta = ModelMeta(
        cell=dict(cell),
        lipschitz=cell.lipschitz,
        solver=settings["solver"],
        operator_params=dict(job.operator_params),
        patch_size=int(data.x_train.shape[-1]),
    )
    torch.manual_seed(cell.seed)
    net = build_network(spec, meta).to(device)
    record = {"config": job.as_dict(), "rule": rule, "cell": cell}
    if not net.trained_by_gradient:
        search = tune_total_variation(net, data.x_val, data.z_val, spec, cell.seed, label, log)
        save_model(net, spec, meta, out_dir / MODEL_FILE)
        title = f"TV weight search of {label}"
        write_dataset(search, out_dir / HISTORY_FILE, title=title, **record)
        return
    log(
        f"{label}: {count_parameters(net):,} parameters, {len(data.x_train)} training patches, "
        f"device {device}, {torch.get_num_threads()} threads"
    )
    if warm_start is not None:
        start = load_trained_cell(warm_start, device, expect=cell, ignore=("objective",))
        net.load_state_dict(start.net.state_dict())
        log(f"{label}: warm start from {warm_start}")
    with torch.no_grad():
        clean_train = data.operator(data.x_train)
    task = Task(
        cell.objective, data.operator, data.x_train, clean_train, cell.noise_level, cell.seed
    )
    run = _run(job, net, meta, data, out_dir, run_fingerprint(job, warm_start), log)
    history = fit(net, task, TrainSettings.of(settings), run)
    check_not_diverged(history.val_psnr[-1], data.x_val, label)
    steps_per_epoch = math.ceil(len(data.x_train) / settings["batch_size"])
    finish(net, history, spec, meta, out_dir, steps_per_epoch, settings["batch_size"], record)
    log(f"{label}: done, final validation PSNR {history.val_psnr[-1]:.2f} dB")


def _run(
    job: Job,
    net: Model,
    meta: ModelMeta,
    data: CellData,
    out_dir: Path,
    run_id: str,
    log: Callable[[str], None],
) -> Run:
    """The run's callbacks: the validation PSNR, the snapshots and the trace diagnostic."""
    solver = SolverConfig(**job.settings["solver"])

    def validate(model: torch.nn.Module) -> float:
        x_hat, _ = reconstruct(model, job.cell.objective, data.operator, data.z_val, solver)
        return float(np.mean(psnr(data.x_val, x_hat[:, 0].cpu().numpy())))

    def snapshot(model: torch.nn.Module, epoch: int) -> None:
        certificate = model.certificate()
        kept = replace(meta, certificate=certificate)
        save_model(model, job.spec, kept, snapshot_file(out_dir, epoch))

    diagnostic = _trace_diagnostic(net, data.x_val, data.device)
    return Run(out_dir, run_id, job.cell.dir, validate, log, snapshot, diagnostic)


def _trace_diagnostic(
    net: torch.nn.Module, x_val: np.ndarray, device: torch.device
) -> Callable[[torch.nn.Module], list[float]] | None:
    """For lifted iResNets, the Jacobian traces on and off the diagonal at up to 16 validation
    inputs (fixed probes, so epochs compare; the training generator is not touched): what the
    regularizers see, and what only the lifting sees (``objectives.lifted_traces``)."""
    lifted = net.lifted_core()
    if lifted is None or lifted[1] == 1:
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
