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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from iresnet_inverse import objectives
from iresnet_inverse.artifacts import ArtifactError, variable, write_dataset
from iresnet_inverse.checkpoints import load_checkpoint, save_checkpoint
from iresnet_inverse.config import cell_dir, is_invertible
from iresnet_inverse.nets.baselines import TotalVariation, build_baseline
from iresnet_inverse.nets.iresnet import IResNet, build_iresnet, count_parameters
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.runtime import generator

MODEL_FILE, HISTORY_FILE, RESUME_FILE = "model.pt", "history.nc", "resume.pt"


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message names cell and step."""


def solver_config(settings: Mapping[str, Any]) -> SolverConfig:
    return SolverConfig(**settings)


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
    resumed_at_epochs: list[int] = field(default_factory=list)


def _lr_lambda(schedule: str, total_steps: int) -> Callable[[int], float]:
    if schedule == "constant":
        return lambda step: 1.0
    return lambda step: (
        0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )


def fingerprint(payload: Mapping[str, Any]) -> str:
    """A hash of everything that determines a run, to refuse resuming a different one."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def accelerate(
    net: torch.nn.Module, settings: Mapping[str, Any], device: torch.device
) -> tuple[torch.autocast, Callable[[torch.Tensor], torch.Tensor]]:
    """Apply the GPU-path training settings to ``net``: ``compile`` (a torch.compile backend
    for iResNet residual functions), ``channels_last``; return the loss's autocast context
    (``precision`` bf16) and the memory-format conversion for batches."""
    if settings.get("compile") and isinstance(net, IResNet):
        net.compile_residuals(settings["compile"])
    memory_format = torch.channels_last if settings.get("channels_last") else None
    if memory_format is not None:
        net.to(memory_format=memory_format)
    bf16 = settings.get("precision", "fp32") == "bf16"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def to_memory_format(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=memory_format) if memory_format is not None else t

    return autocast, to_memory_format


def fit(
    net: torch.nn.Module,
    objective: str,
    operator: torch.nn.Module,
    x_train: torch.Tensor,
    clean_train: torch.Tensor,
    noise_level: float,
    settings: Mapping[str, Any],
    seed: int,
    out_dir: Path,
    validate: Callable[[torch.nn.Module], float],
    run_id: str,
    label: str,
    log: Callable[[str], None],
) -> History:
    """Train ``net`` on (x, F(x) + noise) pairs; checkpoint every epoch to ``out_dir``.
    ``net`` is an iResNet, or a baseline with the ``supervised`` objective."""
    device = x_train.device
    batch = int(settings["batch_size"])
    epochs = int(settings["epochs"])
    steps_per_epoch = math.ceil(len(x_train) / batch)
    solver = solver_config(settings["solver"])
    estimators = objectives.Estimators(settings["probes"], settings["logdet_terms"])
    noise_hat = settings["noise_factor"] * noise_level
    optimizer = torch.optim.Adam(net.parameters(), lr=settings["learning_rate"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(settings["lr_schedule"], epochs * steps_per_epoch)
    )
    rng = generator(seed)
    autocast, to_memory_format = accelerate(net, settings, device)
    history, start_epoch, elapsed = History(), 0, 0.0
    resume_path = out_dir / RESUME_FILE
    if resume_path.exists():
        state = load_checkpoint(resume_path, device)
        if state.get("run_id") == run_id:
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            rng.set_state(state["generator"])
            history = History(**json.loads(state["history"]))
            start_epoch, elapsed = int(state["epoch"]), float(state["elapsed"])
            history.resumed_at_epochs.append(start_epoch)
            log(f"{label}: resuming from epoch {start_epoch} of {epochs} ({resume_path})")
        else:
            log(f"{label}: {resume_path} belongs to another configuration; starting afresh")
    net.train()
    progress = tqdm(
        total=epochs * steps_per_epoch,
        initial=start_epoch * steps_per_epoch,
        desc=label,
        file=sys.stderr,
        mininterval=2.0,
        dynamic_ncols=True,
    )
    if isinstance(net, IResNet) and start_epoch == 0:
        net.refresh_norms()  # the projection holds at every size
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        order = torch.randperm(len(x_train), generator=rng).to(device)
        noise = (noise_level * torch.randn(x_train.shape, generator=rng)).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            z = to_memory_format(clean_train[idx] + noise[idx])
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                value, inverse = objectives.loss(
                    objective,
                    net,
                    operator,
                    to_memory_format(x_train[idx]),
                    z,
                    noise_hat,
                    solver,
                    estimators,
                    rng,
                    settings.get("stacked_targets", True),
                )
            step = epoch * steps_per_epoch + i
            if not torch.isfinite(value):
                loss_value = float(value.detach())
                raise TrainingError(
                    f"{label}: non-finite loss {loss_value} at step {step} (epoch {epoch})"
                )
            value.backward()
            optimizer.step()
            if settings.get("rescale_weights", False) and isinstance(net, IResNet):
                net.rescale_raw_weights()
            history.loss.append(float(value.detach()))
            history.learning_rate.append(scheduler.get_last_lr()[0])
            scheduler.step()
            if inverse is None:
                history.inverse_evaluations.append(float("nan"))
                history.inverse_residual.append(float("nan"))
            else:
                history.inverse_evaluations.append(float(inverse.iterations.float().mean()))
                history.inverse_residual.append(float(inverse.residual.max()))
            progress.update(1)
        net.eval()
        history.val_psnr.append(validate(net))
        net.train()
        if isinstance(net, IResNet):
            # Uncapped: the any-size bound of the weights as trained this epoch (it exceeds L_i
            # if the size ratios went stale); the refresh then restores the bound for the next.
            history.lipschitz_estimate.append(net.lipschitz_certificate())
            net.refresh_norms()
        history.epoch_seconds.append(time.perf_counter() - started)
        elapsed += history.epoch_seconds[-1]
        progress.set_postfix(loss=f"{history.loss[-1]:.4g}", val_psnr=f"{history.val_psnr[-1]:.2f}")
        save_checkpoint(
            {
                "run_id": run_id,
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": rng.get_state(),
                "history": json.dumps(history.__dict__),
                "epoch": epoch + 1,
                "elapsed": elapsed,
            },
            resume_path,
        )
    progress.close()
    net.eval()
    return history


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
    return ds


def certify(net: IResNet) -> list[float]:
    """Converge the power vectors and size ratios, then bound every block at every image size
    (the saved net is the refreshed one, so the certificate holds for it)."""
    net.refresh_norms()
    return net.lipschitz_certificate()


def model_payload(net: IResNet, spec: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "model": net.state_dict(),
        "spec": json.dumps(dict(spec)),
        "meta": json.dumps(dict(meta)),
    }


def build_network(spec: Mapping[str, Any], meta: Mapping[str, Any]) -> torch.nn.Module:
    """The untrained network of a cell: an iResNet, a learned baseline, or TV (whose one
    "weight" is alpha). ``meta`` holds the cell, solver and operator settings."""
    if is_invertible(spec):
        return build_iresnet(spec, meta["lipschitz"], solver_config(meta["solver"]))
    if spec["kind"] == "tv":
        from iresnet_inverse.operators import get_operator

        operator = get_operator(meta["cell"]["operator"], **meta["operator_params"])
        return TotalVariation(operator, 0.0, spec["tol"], spec["max_iter"])
    return build_baseline(spec)


def load_model(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A trained network and its metadata (cell, image size, solver) from ``model.pt``."""
    payload = load_checkpoint(path, device)
    try:
        spec, meta = json.loads(payload["spec"]), json.loads(payload["meta"])
        net = build_network(spec, meta)
        net.load_state_dict(payload["model"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise ArtifactError(f"{path}: not an iresnet-inverse model ({err})") from err
    return net.to(device).eval(), meta


def finish(
    net: torch.nn.Module,
    history: History,
    spec: Mapping[str, Any],
    meta: Mapping[str, Any],
    out_dir: Path,
    cell: Mapping[str, Any],
    config: Mapping[str, Any],
    steps_per_epoch: int,
    batch_size: int,
    rule: str,
) -> None:
    """Certify (iResNets), then write model.pt and history.nc; drop the resume checkpoint."""
    certificate = certify(net) if isinstance(net, IResNet) else []
    save_checkpoint(
        model_payload(net, spec, {**meta, "certificate": certificate}), out_dir / MODEL_FILE
    )
    write_dataset(
        history_dataset(history, certificate, net, steps_per_epoch, batch_size),
        out_dir / HISTORY_FILE,
        title=f"training history of {cell_dir(cell)}",
        config=config,
        rule=rule,
        cell=cell,
    )
    (out_dir / RESUME_FILE).unlink(missing_ok=True)


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
    from iresnet_inverse.tv import search_alpha

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
    cell: Mapping[str, Any],
    config: Mapping[str, Any],
    images_path: str | Path,
    observations_path: str | Path,
    out_dir: str | Path,
    warm_start: str | Path | None = None,
    rule: str = "train",
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> None:
    """Train the cell's network on image patches (for TV: search alpha on the validation
    split); write model.pt and history.nc to ``out_dir``."""
    from iresnet_inverse.analysis.metrics import psnr
    from iresnet_inverse.artifacts import read_dataset
    from iresnet_inverse.config import architecture, train_settings
    from iresnet_inverse.data.observations import paired_split
    from iresnet_inverse.operators import get_operator
    from iresnet_inverse.reconstruct import reconstruct
    from iresnet_inverse.runtime import resolve_device

    out_dir = Path(out_dir)
    device = resolve_device(config.get("device", "auto"))
    label = cell_dir(cell)
    settings = train_settings(config, cell)
    spec = architecture(config, cell["arch"])
    images, observations = read_dataset(images_path), read_dataset(observations_path)
    operator_params = config["operators"][cell["operator"]]
    operator = get_operator(cell["operator"], **operator_params).to(device)
    x_train = torch.as_tensor(paired_split(images, None, "train")[0])[:, None].to(device)
    x_val, _, z_val = paired_split(images, observations, "val")
    z_val_t = torch.as_tensor(z_val)[:, None].to(device)
    meta = {
        "cell": dict(cell),
        "lipschitz": float(cell["lipschitz"]),
        "image_size": int(x_train.shape[-1]),
        "solver": settings["solver"],
        "operator_params": dict(operator_params),
    }
    torch.manual_seed(int(cell["seed"]))
    net = build_network(spec, meta).to(device)
    if spec["kind"] == "tv":
        search = tune_total_variation(net, x_val, z_val_t, spec, int(cell["seed"]), label, log)
        save_checkpoint(model_payload(net, spec, meta), out_dir / MODEL_FILE)
        write_dataset(
            search,
            out_dir / HISTORY_FILE,
            title=f"TV weight search of {label}",
            config=config,
            rule=rule,
            cell=cell,
        )
        return
    log(
        f"{label}: {count_parameters(net):,} parameters, {len(x_train)} training patches, "
        f"device {device}, {torch.get_num_threads()} threads"
    )
    if warm_start is not None:
        warm, _ = load_model(warm_start, device)
        net.load_state_dict(warm.state_dict())
        log(f"{label}: warm start from {warm_start}")
    with torch.no_grad():
        clean_train = operator(x_train)
    solver = solver_config(settings["solver"])

    def validate(model: torch.nn.Module) -> float:
        x_hat, _ = reconstruct(model, cell["objective"], operator, z_val_t, solver)
        return float(np.mean(psnr(x_val, x_hat[:, 0].cpu().numpy())))

    run_id = fingerprint(
        {
            "cell": dict(cell),
            "settings": settings,
            "spec": spec,
            "warm_start": str(warm_start),
            "data": config.get("data"),
        }
    )
    history = fit(
        net,
        cell["objective"],
        operator,
        x_train,
        clean_train,
        float(cell["noise_level"]),
        settings,
        int(cell["seed"]),
        out_dir,
        validate,
        run_id,
        label,
        log,
    )
    steps_per_epoch = math.ceil(len(x_train) / settings["batch_size"])
    finish(
        net,
        history,
        spec,
        meta,
        out_dir,
        cell,
        config,
        steps_per_epoch,
        settings["batch_size"],
        rule,
    )
    log(f"{label}: done, final validation PSNR {history.val_psnr[-1]:.2f} dB")
