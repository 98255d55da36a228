"""The low-dimensional Bayesian study (arXiv 2510.26704): reference data with exact MAP and
posterior mean per (prior, eps, delta), and training plus evaluation of one toy cell.

A toy cell is (prior, eps, noise_level, lipschitz, objective, noise_factor, seed); the operator is
diag(1, eps) in 2D and diag(1, eps, eps) in 3D (eps = 1: denoising). Training data are fresh
prior samples with noise drawn anew every epoch; test points are fixed per (prior, eps, delta).
"""

import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from iresnet_inverse import bayes, objectives
from iresnet_inverse.artifacts import variable
from iresnet_inverse.data.priors import get_prior
from iresnet_inverse.jobs import Job
from iresnet_inverse.nets.iresnet import IResNet, build_iresnet
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.operators import get_operator
from iresnet_inverse.training import (
    Run,
    Task,
    TrainSettings,
    end_run,
    fingerprint,
    fit,
    training_code_version,
)


def toy_operator(prior: str, eps: float) -> torch.nn.Module:
    dim = get_prior(prior).dim
    return get_operator(f"linear{dim}d", eps=eps).double()


def reference_dataset(
    prior_name: str, eps: float, delta: float, points: int, seed: int
) -> xr.Dataset:
    """Test points x, data y = A x + noise, exact MAP, posterior mean and linear MMSE (Tikhonov)."""
    prior = get_prior(prior_name)
    A = toy_operator(prior_name, eps).matrix.numpy()
    rng = np.random.default_rng([seed, int(round(eps * 1e6)), int(round(delta * 1e6))])
    x = prior.sample(points, rng)
    y = x @ A.T + delta * rng.standard_normal(x.shape)
    dims = ("point", "component")

    def var(values: np.ndarray, name: str) -> tuple:
        return variable(dims, values, name)

    ds = xr.Dataset(
        {
            "x": var(x, "ground truth drawn from the prior"),
            "y": var(y, "data A x + noise"),
            "map": var(bayes.map_estimate(prior, A, delta, y), "exact MAP estimate"),
            "posterior_mean": var(bayes.posterior_mean(prior, A, delta, y), "exact posterior mean"),
            "tikhonov": var(bayes.linear_mmse(prior, A, delta, y), "Tikhonov (linear MMSE)"),
        },
        coords={"point": np.arange(points), "component": np.arange(x.shape[1])},
    )
    if prior.dim == 2:  # the density on a plotting grid, for the figures' contours
        axis = np.linspace(-2.5, 2.5, 101)
        xx, yy = np.meshgrid(axis, axis, indexing="ij")
        points_2d = torch.as_tensor(np.stack([xx.ravel(), yy.ravel()], axis=1))
        density = prior.log_density(points_2d).exp().numpy().reshape(xx.shape)
        ds["prior_density"] = variable(("u", "v"), density, "prior density")
        ds = ds.assign_coords(u=axis, v=axis)
    return ds


def _grid(prior_name: str, lines: int = 11, resolution: int = 60) -> np.ndarray:
    """Points on the lines of a regular grid over [-2, 2]^2 (2D priors only), (lines*2, res, 2)."""
    t = np.linspace(-2, 2, resolution)
    level = np.linspace(-2, 2, lines)
    horizontal = np.stack(
        [np.broadcast_to(t, (lines, resolution)), level[:, None].repeat(resolution, 1)], -1
    )
    return np.concatenate([horizontal, horizontal[..., ::-1]])


def _grid_dataset(net: IResNet, prior_name: str, solver: SolverConfig) -> xr.Dataset:
    """A regular grid of the 2D prior's domain and its images under phi and phi^-1 (Fig. 1)."""
    grid = _grid(prior_name)
    g = torch.as_tensor(grid.reshape(-1, 2))
    dims = ("line", "t", "component")
    with torch.no_grad():
        forward = net(g).numpy().reshape(grid.shape)
        inverse = net.inverse(g, solver).x.numpy().reshape(grid.shape)
    return xr.Dataset(
        {
            "grid": variable(dims, grid, "regular grid"),
            "grid_forward": variable(dims, forward, "grid under phi"),
            "grid_inverse": variable(dims, inverse, "grid under phi^-1"),
        }
    )


def toy_fingerprint(job: Job) -> str:
    """What a toy cell's training reads: the cell, its settings and spec, the number of
    training points and the code of the nets and losses."""
    return fingerprint(
        {
            "cell": dict(job.cell),
            "settings": dict(job.settings),
            "spec": dict(job.spec),
            "points": job.section("toy2d")["training_points"],
            "code": training_code_version(),
        }
    )


def _results(
    x_hat: torch.Tensor, forward: torch.Tensor, target: torch.Tensor, reference: xr.Dataset
) -> xr.Dataset:
    """The toy cell's reconstructions and forward map at the reference points."""
    return xr.Dataset(
        {
            "reconstruction": variable(("point", "component"), x_hat.numpy(), "phi^-1 of the data"),
            "forward": variable(("point", "component"), forward.numpy(), "phi of the test points"),
            "forward_error": variable(
                "point", (forward - target).norm(dim=1).numpy(), "||phi(x) - target map of x||"
            ),
        },
        coords={"point": reference["point"], "component": reference["component"]},
    )


def train_toy_cell(
    job: Job,
    reference: xr.Dataset,
    out_dir: str | Path,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> xr.Dataset:
    """Train the toy job's dense iResNet and evaluate it on the reference points."""
    cell, settings, spec = job.cell, job.settings, job.spec
    training_points = job.section("toy2d")["training_points"]
    out_dir = Path(out_dir)
    prior = get_prior(cell.prior)
    operator = toy_operator(cell.prior, cell.eps)
    seed, delta = cell.seed, cell.noise_level
    x_train = torch.as_tensor(prior.sample(training_points, np.random.default_rng(seed)))
    clean = operator(x_train)
    torch.manual_seed(seed)
    solver = SolverConfig(**settings["solver"])
    net = build_iresnet({**spec, "dim": prior.dim}, cell.lipschitz, solver=solver).double()
    x_test = torch.as_tensor(reference["x"].values)
    y_test = torch.as_tensor(reference["y"].values)
    objective = cell.objective

    def recon(model: IResNet, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.inverse(objectives.reconstruction_input(objective, operator, y), solver).x

    def validate(model: IResNet) -> float:
        mse = float(((recon(model, y_test[:200]) - x_test[:200]) ** 2).sum(dim=1).mean())
        return -10 * math.log10(max(mse, 1e-300))

    run_id = toy_fingerprint(job)
    label = cell.dir
    train_settings = TrainSettings.of({**settings, "noise_factor": cell.noise_factor})
    task = Task(objective, operator, x_train, clean, delta, seed)
    fit(net, task, train_settings, Run(out_dir, run_id, label, validate, log))
    net.eval()
    x_hat = recon(net, y_test)
    with torch.no_grad():
        forward = net(x_test)
        target = objectives.reconstruction_input(objective, operator, operator(x_test))
    ds = _results(x_hat, forward, target, reference)
    if prior.dim == 2:
        ds = ds.merge(_grid_dataset(net, cell.prior, solver))
    end_run(out_dir)
    return ds
