"""What a training run records (``history.nc``) and the convergence rule read from it."""

import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr

from iresnet_inverse.artifacts import variable
from iresnet_inverse.nets.model import count_parameters

HISTORY_FILE = "history.nc"


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
# not risen by RULE_GAIN_DB over the last P epochs, P = max(RULE_MIN_WINDOW, ceil(RULE_FRACTION *
# epochs so far)); then a cosine decay over as many epochs, and the run stops. Found at a constant
# rate, the plateau cannot be an artefact of the schedule; a run that reaches ``epochs`` first has
# not converged. At least 5 epochs: at a constant rate the study's validation PSNR moves by
# 0.1-0.3 dB between single epochs, and a window of 2 stopped its first cells after 7-9 epochs
# (the iResNet at diffusion delta 0.05 still gained 0.3 dB in its 2-epoch decay).
RULE_GAIN_DB, RULE_FRACTION, RULE_MIN_WINDOW = 0.05, 0.2, 5


def plateau_window(epochs_run: int) -> int:
    """P: the epochs without a RULE_GAIN_DB gain that make a plateau, and the decay's length."""
    return max(RULE_MIN_WINDOW, math.ceil(RULE_FRACTION * epochs_run))


def plateau_reached(val_psnr: list[float]) -> bool:
    """No gain of RULE_GAIN_DB over the best before the last P epochs, P = plateau_window."""
    window = plateau_window(len(val_psnr))
    if len(val_psnr) <= window:
        return False
    return max(val_psnr[-window:]) < max(val_psnr[:-window]) + RULE_GAIN_DB


def run_stopped(history: History, patience: int | None) -> bool:
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
    """``history.nc``: the run's curves per step and per epoch, its totals, and for iResNets
    the Lipschitz bounds per block and the Jacobian traces."""
    steps = np.arange(len(history.loss))
    ds = xr.Dataset(
        {
            **_per_step(history),
            **_per_epoch(history),
            **_totals(history, net, batch_size),
        },
        coords={
            "step": steps,
            "epoch": np.arange(1, len(history.val_psnr) + 1),
            "epoch_of_step": ("step", steps // steps_per_epoch),
        },
        attrs={"resumed_at_epochs": json.dumps(history.resumed_at_epochs)},
    )
    if certificate:
        ds["lipschitz_estimate"] = variable(
            ("epoch", "block"),
            np.array(history.lipschitz_estimate),
            "per-block any-size Lipschitz bound at the end of each epoch (uncapped)",
        )
        ds["lipschitz_certificate"] = variable(
            "block", np.array(certificate), "per-block Lipschitz bound at every image size"
        )
        block_bound = net.describe()["block_bound"]
        ds["block_bound"] = variable((), block_bound, "per-block bound L_i")
        ds = ds.assign_coords(block=np.arange(len(certificate)))
    if history.jacobian_trace:
        ds["jacobian_trace"] = variable(
            ("epoch", "subspace"),
            np.array(history.jacobian_trace),
            "trace of D Phi(c x) per dimension on the diagonal D (the map on X) and off it, "
            "at validation patches",
        )
        ds = ds.assign_coords(subspace=["diagonal", "off_diagonal"])
    return ds


def _per_step(history: History) -> dict[str, tuple]:
    """The curves recorded at every optimizer step."""
    return {
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
    }


def _per_epoch(history: History) -> dict[str, tuple]:
    """The curves recorded at the end of every epoch."""
    return {
        "val_psnr": variable("epoch", np.array(history.val_psnr), "validation PSNR", "dB"),
        "epoch_seconds": variable(
            "epoch", np.array(history.epoch_seconds), "wall time per epoch", "s"
        ),
    }


def _totals(history: History, net: torch.nn.Module, batch_size: int) -> dict[str, tuple]:
    """One number each: wall time, size, epochs, the kept and plateau epochs, convergence."""
    return {
        "wall_time": variable((), float(np.sum(history.epoch_seconds)), "training wall time", "s"),
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
            np.int8(run_stopped(history, None)),
            f"plateau rule met: no {RULE_GAIN_DB} dB gain in the window, then the decay",
        ),
        "batch_size": variable((), batch_size, "batch size"),
    }
