"""The ``evaluate`` rule: a trained cell on the test split (PSNR, SSIM, forward fit, solver
statistics), and the budget curve of its snapshots (``evaluate_snapshots``)."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from iresnet_inverse import objectives
from iresnet_inverse.artifacts import read_dataset, variable
from iresnet_inverse.data.splits import paired_split
from iresnet_inverse.errors import ConfigError
from iresnet_inverse.jobs import Job
from iresnet_inverse.metrics import mse, psnr, ssim
from iresnet_inverse.models import load_trained_cell, reconstruct, snapshot_file
from iresnet_inverse.nets.iresnet import InverseResult, IResNet
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.runtime import setup

# What phi(x) is compared with in forward_mse/forward_ssim: its training target without noise.
FORWARD_TARGETS = {
    "forward": "F(x)",
    "normal": "its training target F*F(x) (F* the adjoint; DF(F(x))^T F(x) if F is nonlinear)",
}


def forward_target(
    objective: str, operator: torch.nn.Module, clean: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """The noise-free version of what phi(x) is trained to match, from clean = F(x): F(x)
    itself, or for the divergence objective (whose loss is 1/2 ||phi(x) - F*z||^2 - ...) the
    normal data F*F(x) = ``objectives.normal_data(F, F(x))``, in batches."""
    if objective != "divergence":
        return clean
    with torch.no_grad():
        return torch.cat(
            [objectives.normal_data(operator, chunk) for chunk in torch.split(clean, batch_size)]
        )


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(a)[:, None].to(device)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t[:, 0].double().cpu().numpy()


def _operator_metrics(
    net: IResNet,
    objective: str,
    operator: torch.nn.Module,
    x: np.ndarray,
    clean: np.ndarray,
    solver: SolverConfig,
    batch_size: int,
) -> dict[str, np.ndarray]:
    """What only an iResNet has: the inversion error of noise-free data (eq. 2.6) and how
    well phi(x) matches its noise-free training target."""
    device = next(iter(net.state_dict().values())).device
    x_clean_hat, _ = reconstruct(
        net, objective, operator, _tensor(clean, device), solver, batch_size
    )
    with torch.no_grad():
        chunks = torch.split(_tensor(x, device), batch_size)
        forward = _numpy(torch.cat([net(chunk) for chunk in chunks]))
    target = _numpy(forward_target(objective, operator, _tensor(clean, device), batch_size))
    diff = (_numpy(x_clean_hat) - x).reshape(len(x), -1)
    return {
        "inversion_error": np.sqrt((diff**2).sum(axis=1)),
        "forward_mse": mse(target, forward),
        "forward_ssim": ssim(target, forward),
    }


def _solver_statistics(stats: InverseResult | None, n: int) -> dict[str, np.ndarray]:
    """Per image: evaluations per block, the largest final residual, convergence (baselines,
    which solve nothing: NaN, NaN, converged)."""
    if stats is None:
        nan = np.full(n, np.nan)
        return {"iterations": nan, "residual": nan, "converged": np.ones(n, dtype=np.int8)}
    return {
        "iterations": stats.iterations.float().mean(dim=1).cpu().numpy(),
        "residual": stats.residual.max(dim=1).values.cpu().numpy(),
        "converged": stats.converged.cpu().numpy().astype(np.int8),
    }


def _named_variables(
    named_hat: np.ndarray, named_forward: np.ndarray, named: np.ndarray, obs: xr.Dataset
) -> dict[str, xr.Variable]:
    dims = ("name", "ny", "nx")
    return {
        "named_reconstruction": variable(dims, named_hat.astype(np.float32), "reconstruction"),
        "named_forward": variable(dims, named_forward.astype(np.float32), "phi(x)"),
        "named_truth": variable(dims, named, "ground truth x"),
        "named_data": variable(dims, obs["named_data"].values.astype(np.float32), "noisy data z"),
        "named_clean_data": variable(
            dims, obs["named_clean_data"].values.astype(np.float32), "noise-free data F(x)"
        ),
    }


def evaluate_cell(
    net: torch.nn.Module,
    cell: Mapping[str, Any],
    operator: torch.nn.Module,
    images: xr.Dataset,
    observations: xr.Dataset,
    solver: SolverConfig,
    batch_size: int = 64,
    certificate: list[float] | None = None,
) -> xr.Dataset:
    """Per test image: reconstruction quality, inversion error, forward approximation, solver
    statistics and the data's own quality; plus reconstructions of the named images. For
    baselines, which learn no forward operator, the iResNet-only variables are NaN."""
    device = next(iter(net.state_dict().values())).device
    objective = cell["objective"]
    x, clean, z = paired_split(images, observations, "test")
    x_hat, stats = reconstruct(net, objective, operator, _tensor(z, device), solver, batch_size)
    x_hat = _numpy(x_hat)
    obs = observations.isel({d: 0 for d in ("operator", "noise_level") if d in observations.dims})
    named_z = _tensor(obs["named_data"].values, device)
    named_hat = _numpy(reconstruct(net, objective, operator, named_z, solver, batch_size)[0])
    named = images["named"].values.astype(np.float32)
    if net.learns_forward_map:
        learned = _operator_metrics(net, objective, operator, x, clean, solver, batch_size)
        with torch.no_grad():
            named_forward = _numpy(net(_tensor(named, device)))
    else:
        nan = np.full(len(x), np.nan)
        learned = dict.fromkeys(("inversion_error", "forward_mse", "forward_ssim"), nan)
        named_forward = np.full(named.shape, np.nan, dtype=np.float32)
    per_image = _per_image(x, z, x_hat, learned, _solver_statistics(stats, len(x)), objective)
    ds = xr.Dataset(
        {
            **{name: variable(("image",), *spec) for name, spec in per_image.items()},
            **_named_variables(named_hat, named_forward, named, obs),
        },
        coords={"image": np.arange(len(x)), "name": images["name"].values},
    )
    for name in ("forward_mse", "forward_ssim"):
        ds[name].attrs["forward_target"] = "normal" if objective == "divergence" else "forward"
    if certificate:
        ds["lipschitz_certificate"] = variable(
            ("block",), np.array(certificate), "per-block Lipschitz certificate"
        )
    return ds


def _per_image(
    x: np.ndarray,
    z: np.ndarray,
    x_hat: np.ndarray,
    learned: Mapping[str, np.ndarray],
    solved: Mapping[str, np.ndarray],
    objective: str,
) -> dict[str, tuple]:
    """The table of per-image variables: name -> (values, long name[, units])."""
    target = FORWARD_TARGETS["normal" if objective == "divergence" else "forward"]
    return {
        "psnr": (psnr(x, x_hat), "PSNR of the reconstruction", "dB"),
        "ssim": (ssim(x, x_hat), "SSIM of the reconstruction"),
        "mse": (mse(x, x_hat), "MSE of the reconstruction"),
        "inversion_error": (
            learned["inversion_error"],
            "inversion error ||phi^-1(F(x)) - x|| (eq. 2.6)",
        ),
        "forward_mse": (learned["forward_mse"], f"MSE of phi(x) against {target}"),
        "forward_ssim": (learned["forward_ssim"], f"SSIM of phi(x) against {target}"),
        "data_psnr": (psnr(x, z), "PSNR of the noisy data", "dB"),
        "data_ssim": (ssim(x, z), "SSIM of the noisy data"),
        "solver_iterations": (
            solved["iterations"],
            "residual evaluations per block in the inverse (mean over blocks)",
        ),
        "solver_residual": (solved["residual"], "largest final relative residual over blocks"),
        "converged": (solved["converged"], "inverse reached rtol"),
    }


def evaluate_model_file(
    model_path: str | Path,
    images_path: str | Path,
    observations_path: str | Path,
    job: Job,
) -> xr.Dataset:
    """Load the job's trained cell and evaluate it on the test split (a model or observations
    of another cell are refused)."""
    import warnings

    trained = load_trained_cell(model_path, setup(job.device, job.deterministic), expect=job.cell)
    net, cell, operator = trained.net, job.cell, trained.operator
    settings = job.section("evaluate")
    solver = SolverConfig(**settings["solver"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        ds = evaluate_cell(
            net,
            cell,
            operator,
            read_dataset(images_path),
            read_dataset(observations_path, cell),
            solver,
            settings["batch_size"],
            trained.meta.certificate,
        )
    failed = int((ds["converged"] == 0).sum())
    ds.attrs["nonconverged_samples"] = failed
    if failed or caught:
        print(
            f"warning: {failed} of {ds.sizes['image']} test reconstructions did not reach rtol "
            f"{solver.tol:g}",
            flush=True,
        )
    return ds


def evaluate_snapshots(
    train_dir: str | Path, images_path: str | Path, observations_path: str | Path, job: Job
) -> xr.Dataset:
    """Mean test PSNR/SSIM of the job's snapshots, against samples seen (epochs times training
    patches), with the noisy data's beside them."""
    epochs = sorted(job.settings["snapshots"])
    if not epochs:
        raise ConfigError(f"{job.cell.dir}: train.snapshots is empty: no budget curve to evaluate")
    patches = len(paired_split(read_dataset(images_path), None, "train")[0])
    rows = []
    for epoch in epochs:
        path = snapshot_file(train_dir, epoch)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no snapshot after epoch {epoch}; rerun the cell")
        rows.append(evaluate_model_file(path, images_path, observations_path, job))
    mean = [ds[["psnr", "ssim", "data_psnr", "data_ssim"]].mean("image") for ds in rows]
    samples = np.array(epochs) * patches
    return xr.Dataset(
        {
            "psnr": variable("samples", [float(m["psnr"]) for m in mean], "mean test PSNR", "dB"),
            "ssim": variable("samples", [float(m["ssim"]) for m in mean], "mean test SSIM"),
            "data_psnr": variable((), float(mean[0]["data_psnr"]), "PSNR of the noisy data", "dB"),
            "data_ssim": variable((), float(mean[0]["data_ssim"]), "SSIM of the noisy data"),
            "snapshot_epoch": variable("samples", np.array(epochs), "epochs trained"),
        },
        coords={"samples": ("samples", samples, {"long_name": "training samples seen"})},
    )
