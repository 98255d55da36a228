"""Random search of training hyperparameters on the validation split, as the imaging paper did:
"We optimize the hyperparameters of our iResNets, TV, ConvResNet and U-Net on the validation set
using random search" (Arndt & Nickel 2024, Sec. 4.2; TV's weight is searched by the TV cells
themselves). Table 1 of the paper lists learning rate, epochs and batch size per network; we
search the learning rate (log-uniform) and the batch size (uniform over a list) with a short
training budget (``search.epochs``), one workflow job per trial, on one cell per architecture.
Every cell of a searched architecture then trains with the best trial's values.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from iresnet_inverse.artifacts import read_dataset, variable
from iresnet_inverse.errors import InputDataError
from iresnet_inverse.jobs import Job, image_job


def trial_values(search: Mapping[str, Any], trial: int) -> dict[str, Any]:
    """The hyperparameters of trial ``trial``: drawn from a generator seeded by the search's
    seed and the trial number, so a trial is the same whichever others run."""
    rng = np.random.default_rng([search["seed"], trial])
    low, high = np.log(search["learning_rate"])
    return {
        "learning_rate": float(np.exp(rng.uniform(low, high))),
        "batch_size": int(rng.choice(search["batch_size"])),
    }


def trial_settings(
    settings: Mapping[str, Any], search: Mapping[str, Any], trial: int
) -> dict[str, Any]:
    """A cell's training settings for one trial: the trial's values, ``search.epochs`` epochs,
    no early stopping and no snapshots."""
    return {
        **settings,
        **trial_values(search, trial),
        "epochs": search["epochs"],
        "patience": None,
        "snapshots": [],
    }


def search_dataset(history_paths: Sequence[str | Path]) -> xr.Dataset:
    """The trials of every searched architecture: learning rate, batch size and best validation
    PSNR per (arch, trial), and the chosen trial per arch (the best validation PSNR)."""
    rows: dict[str, dict[int, dict[str, float]]] = {}
    for path in history_paths:
        history = read_dataset(path)
        job = Job.from_json(history.attrs["config_json"])
        trial = int(Path(path).parent.name.removeprefix("trial~"))
        rows.setdefault(job.cell.arch, {})[trial] = {
            "learning_rate": float(job.settings["learning_rate"]),
            "batch_size": float(job.settings["batch_size"]),
            "val_psnr": _best(history["val_psnr"].values),
        }
    if not rows:
        raise InputDataError("no search trials among the inputs")
    archs = sorted(rows)
    trials = sorted({t for per_arch in rows.values() for t in per_arch})

    def table(name: str) -> np.ndarray:
        return np.array(
            [[rows[a].get(t, {}).get(name, np.nan) for t in trials] for a in archs], dtype=float
        )

    val = table("val_psnr")
    failed = [a for a, row in zip(archs, val, strict=True) if not np.isfinite(row).any()]
    if failed:
        raise InputDataError(f"every search trial of {', '.join(failed)} failed")
    best = np.nanargmax(val, axis=1)
    return xr.Dataset(
        {
            "learning_rate": variable(("arch", "trial"), table("learning_rate"), "learning rate"),
            "batch_size": variable(("arch", "trial"), table("batch_size"), "batch size"),
            "val_psnr": variable(("arch", "trial"), val, "best validation PSNR of the trial", "dB"),
            "best_trial": variable("arch", np.array(trials)[best], "trial with the best val PSNR"),
        },
        coords={"arch": archs, "trial": trials},
    )


def _best(val_psnr: np.ndarray) -> float:
    """A trial's best validation PSNR (NaN for a failed trial)."""
    finite = val_psnr[np.isfinite(val_psnr)]
    return float(finite.max()) if finite.size else float("nan")


def best_values(search_path: str | Path, arch: str) -> dict[str, Any] | None:
    """The best trial's hyperparameters for ``arch``; None if it was not searched."""
    ds = read_dataset(search_path)
    if arch not in ds["arch"].values:
        return None
    chosen = ds.sel(arch=arch, trial=int(ds["best_trial"].sel(arch=arch)))
    return {
        "learning_rate": float(chosen["learning_rate"]),
        "batch_size": int(chosen["batch_size"]),
    }


def tuned(job: Job, search_path: str | Path) -> Job:
    """The job with its architecture's best hyperparameters from the search (as it is if the
    search did not cover its architecture)."""
    best = best_values(search_path, job.cell.arch)
    if best is None:
        return job
    return dataclasses.replace(job, settings={**job.settings, **best})


def trial_job(config: Mapping[str, Any], cell: Any, trial: int) -> Job:
    """The training job of one trial on ``cell`` (the searched cell of its architecture)."""
    job = image_job(config, cell, ("data",))
    return dataclasses.replace(job, settings=trial_settings(job.settings, config["search"], trial))
