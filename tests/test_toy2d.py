"""The toy study's reference data and one toy cell, end to end through the command line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iresnet_inverse import bayes
from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.config import toy_cells, validate
from iresnet_inverse.data.priors import get_prior
from iresnet_inverse.jobs import toy_job
from iresnet_inverse.toy2d import reference_dataset

CONFIG = json.dumps(
    {"toy2d": {"points": 50, "training_points": 256, "train": {"epochs": 3, "batch_size": 64}}}
)


def test_reference_dataset_holds_exact_estimators() -> None:
    ref = reference_dataset("bimodal", 0.1, 0.2, points=20, seed=0)
    A = np.diag([1.0, 0.1])
    np.testing.assert_allclose(
        ref["posterior_mean"].values,
        bayes.posterior_mean(get_prior("bimodal"), A, 0.2, ref["y"].values),
    )
    noise = ref["y"].values - ref["x"].values @ A.T
    assert 0.1 < noise.std() < 0.3  # delta = 0.2
    again = reference_dataset("bimodal", 0.1, 0.2, points=20, seed=0)
    np.testing.assert_array_equal(ref["y"].values, again["y"].values)


def test_toy_cell_through_the_command_line(tmp_path: Path) -> None:
    common = ["--config-json", CONFIG, "--prior", "bimodal", "--eps", "0.1", "--noise-level", "0.2"]
    cli = [sys.executable, "-m", "iresnet_inverse.cli"]
    subprocess.run([*cli, "toy-reference", *common, "--out", str(tmp_path / "ref.nc")], check=True)
    cfg = json.loads(CONFIG)
    cfg["toy2d"]["grid"] = [
        {
            "prior": ["bimodal"],
            "eps": [0.1],
            "noise_level": [0.2],
            "lipschitz": [0.99],
            "objective": ["divergence"],
        }
    ]
    cfg = validate(cfg)
    job = toy_job(cfg, toy_cells(cfg)[0])
    subprocess.run(
        [
            *cli,
            "toy-train",
            "--job-json",
            job.to_json(),
            "--reference",
            str(tmp_path / "ref.nc"),
            "--out-dir",
            str(tmp_path / "cell"),
        ],
        check=True,
        capture_output=True,
    )
    ds = read_dataset(tmp_path / "cell" / "results.nc")
    assert ds["reconstruction"].squeeze().shape == (50, 2)
    assert ds["grid_inverse"].squeeze().shape == ds["grid"].squeeze().shape
    assert float(ds["noise_factor"].values[0]) == 1.0 and str(ds["prior"].values[0]) == "bimodal"
    assert np.isfinite(ds["forward_error"].values).all()
    assert not (tmp_path / "cell" / "resume.pt").exists()


@pytest.mark.parametrize(("eps", "delta"), [(1.0, 0.4), (0.5, 0.3)])
def test_divergence_training_gives_the_gaussian_map(tmp_path: Path, eps: float, delta: float):
    """Heilenkoetter (2025), Theorem 2, on the Gaussian prior N(0, Sigma), Sigma = diag(1, 0.5^2),
    and A = diag(1, eps): the minimizer of E[1/2 ||phi(x) - A^T y||^2 - delta^2 div phi(x)] is
    phi(x) = A^T A x - delta^2 grad log p(x) = M x with M = A^T A + delta^2 Sigma^-1, so
    phi^-1(A^T y) = M^-1 A^T y, the MAP point, here in closed form (computed below, not by
    ``bayes``). A small dense iResNet trained by ``train_toy_cell`` must reproduce it.

    Tolerance: the mean distance to the MAP must be below 5 % of the mean distance between
    the MAP and the unregularized solution A^-1 y (the size of what the regularizer does; at
    eps = 1 that is MAP - y), and so also below 5 % of the mean norm of the MAP.
    """
    from iresnet_inverse.cells import ToyCell
    from iresnet_inverse.jobs import Job
    from iresnet_inverse.toy2d import train_toy_cell

    cell = {
        "prior": "gaussian",
        "eps": eps,
        "noise_level": delta,
        "lipschitz": 0.99,
        "objective": "divergence",
        "noise_factor": 1.0,
        "seed": 0,
    }
    settings = validate(
        {
            "epochs": 40,
            "batch_size": 256,
            "learning_rate": 3e-3,
            "lr_schedule": "cosine",
            "solver": {"method": "anderson", "tol": 1e-6, "max_iter": 200},
        },
        "train",
    )
    spec = {"kind": "dense", "blocks": 2, "hidden": 32, "layers": 2, "activation": "elu"}
    ref = reference_dataset("gaussian", eps, delta, points=200, seed=1)
    job = Job(ToyCell.of(cell), settings, spec, {}, "cpu", {"toy2d": {"training_points": 8192}})
    ds = train_toy_cell(job, ref, tmp_path, log=lambda msg: None)

    A, sigma = np.diag([1.0, eps]), np.diag([1.0, 0.25])
    M = A.T @ A + delta**2 * np.linalg.inv(sigma)
    y = ref["y"].values
    exact_map = np.linalg.solve(M, A.T @ y.T).T
    np.testing.assert_allclose(ref["map"].values, exact_map, atol=1e-6)  # bayes agrees
    unregularized = np.linalg.solve(A, y.T).T

    err = np.linalg.norm(ds["reconstruction"].values - exact_map, axis=1).mean()
    shift = np.linalg.norm(exact_map - unregularized, axis=1).mean()
    assert shift > 0.25 * np.linalg.norm(exact_map, axis=1).mean()  # MAP is far from A^-1 y
    assert err < 0.05 * shift
    assert err < 0.05 * np.linalg.norm(exact_map, axis=1).mean()

    # phi itself is the Theorem-2 minimizer M x where the prior has mass (|x_i| <= 2 sd).
    grid = ds["grid"].values.reshape(-1, 2)
    inside = (np.abs(grid[:, 0]) <= 2.0) & (np.abs(grid[:, 1]) <= 1.0)
    phi = ds["grid_forward"].values.reshape(-1, 2)[inside]
    target = grid[inside] @ M.T
    rel = np.linalg.norm(phi - target, axis=1).mean() / np.linalg.norm(target, axis=1).mean()
    assert rel < 0.05
