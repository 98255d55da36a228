"""The toy study's reference data and one toy cell, end to end through the command line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from iresnet_inverse import bayes
from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.cells import ToyCell
from iresnet_inverse.config import architecture, check, toy_cells, validate
from iresnet_inverse.data.priors import get_prior
from iresnet_inverse.jobs import Job, toy_job
from iresnet_inverse.stages.toy import reference_dataset, toy_fingerprint, train_toy_cell
from iresnet_inverse.stages.toy_claims import claims_table

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


def test_a_toy_block_chooses_its_training_points() -> None:
    """A block's training_points reach its cells' jobs, whose toy2d section train_toy_cell
    samples from, and their resume fingerprint; the other blocks keep toy2d.training_points."""
    block = {"prior": ["logcosh"], "eps": [1.0], "noise_level": [0.4], "lipschitz": [0.99]}
    grid = [
        {**block, "objective": ["reconstruction"], "training_points": 2048},
        {**block, "objective": ["logdet"]},
    ]
    cfg = validate({"toy2d": {"training_points": 512, "grid": grid}})
    check(cfg)
    reconstruction, logdet = (toy_job(cfg, cell) for cell in toy_cells(cfg))
    assert reconstruction.section("toy2d")["training_points"] == 2048
    assert logdet.section("toy2d")["training_points"] == 512
    grid[0].pop("training_points")
    plain = validate({"toy2d": {"training_points": 512, "grid": grid}})
    default = toy_job(plain, toy_cells(plain)[0])
    assert default.section("toy2d")["training_points"] == 512
    assert toy_fingerprint(reconstruction) != toy_fingerprint(default)


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
    # phi(x) on the test points, whose distance to A*A x = diag(1, 0.01) x is the forward error
    x = read_dataset(tmp_path / "ref.nc")["x"].values.reshape(-1, 2)
    gap = np.linalg.norm(ds["forward"].values.reshape(x.shape) - x * [1.0, 0.01], axis=1)
    np.testing.assert_allclose(gap, ds["forward_error"].values.ravel(), rtol=1e-9)
    assert not (tmp_path / "cell" / "resume.pt").exists()


def _trained_toy_cell(
    tmp_path: Path, cell: dict, settings: dict, spec: dict, ref: xr.Dataset, training_points: int
) -> xr.Dataset:
    """One toy cell (L 0.99, dhat = delta, seed 0 unless given) trained by ``train_toy_cell`` on
    its own, with a cosine rate unless given; quiet."""
    keys = {"lipschitz": 0.99, "noise_factor": 1.0, "seed": 0, **cell}
    train = validate({"lr_schedule": "cosine", **settings}, "train")
    sections = {"toy2d": {"training_points": training_points}}
    job = Job(ToyCell.of(keys), train, spec, {}, "cpu", sections)
    return train_toy_cell(job, ref, tmp_path, log=lambda msg: None)


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
    cell = {"prior": "gaussian", "eps": eps, "noise_level": delta, "objective": "divergence"}
    settings = {"epochs": 40, "batch_size": 256, "learning_rate": 3e-3,
                "solver": {"method": "anderson", "tol": 1e-6, "max_iter": 200}}  # fmt: skip
    spec = {"kind": "dense", "blocks": 2, "hidden": 32, "layers": 2, "activation": "elu"}
    ref = reference_dataset("gaussian", eps, delta, points=200, seed=1)
    ds = _trained_toy_cell(tmp_path, cell, settings, spec, ref, training_points=8192)

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


def _toy_cube(estimates: dict[str, str], factor: float = 1.0) -> xr.Dataset:
    """A toy2d.nc-like cube (bimodal at delta 0.05 and 0.4, Gaussian at 0.1, log-cosh at 0.4;
    eps 1) whose network reconstructions are given estimators of the references, the
    Gaussian's scaled by factor."""
    cells, refs = [], []
    for prior, delta in (("bimodal", 0.05), ("bimodal", 0.4), ("gaussian", 0.1), ("logcosh", 0.4)):
        ref = reference_dataset(prior, 1.0, delta, points=40, seed=0)
        ref = ref.drop_vars(["prior_density", "u", "v"])
        refs.append(ref.expand_dims(prior=[prior], eps=[1.0], noise_level=[delta]))
        for objective, estimator in estimates.items():
            recon = ref[estimator] * (factor if prior == "gaussian" else 1.0)
            cell = xr.Dataset(
                {
                    "reconstruction": recon,
                    "forward_error": 0.1 * np.sqrt((ref["x"] ** 2).sum("component")),
                    "forward": ref["x"],  # phi = identity = A^T A at eps 1
                }
            )
            keys = dict(prior=[prior], eps=[1.0], noise_level=[delta], lipschitz=[0.99],
                        objective=[objective], noise_factor=[1.0], seed=[0])  # fmt: skip
            cells.append(cell.expand_dims(**keys))
    return xr.merge([*cells, *refs], join="outer", compat="no_conflicts")


def test_toy_claims_are_measured_against_the_references() -> None:
    """Each claim's value recomputed from the references: a net equal to the PM reaches the PM
    (ratio 1), one equal to Tikhonov does not at delta 0.4 (where the bimodal PM beats it); the
    divergence net at the MAP is nearer the MAP (ratio 0); the Gaussian check is the relative
    distance to the MAP; forward fidelity is the mean error over the mean norm of x; the power
    is the MAP-PM distance over the reconstruction net's distance to the PM, on every prediction
    row; divergence_fits_target is phi's distance to Theorem 2's map."""
    estimates = {"reconstruction": "posterior_mean", "divergence": "map", "logdet": "tikhonov"}
    table = claims_table(_toy_cube(estimates, 1.01)).set_index(["claim", "prior", "noise_level"])
    assert table.loc[("reconstruction_reaches_pm", "bimodal", 0.4), "value"] == pytest.approx(1.0)
    assert table.loc[("reconstruction_reaches_pm", "bimodal", 0.4), "holds"]
    assert table.loc[("divergence_nearer_map", "bimodal", 0.4), "value"] == 0.0
    ref = reference_dataset("bimodal", 1.0, 0.4, points=40, seed=0)
    x, pm, tik, map_ = (ref[k].values for k in ("x", "posterior_mean", "tikhonov", "map"))
    distance = lambda a, b: np.linalg.norm(a - b, axis=1).mean()  # noqa: E731
    logdet = table.loc[("logdet_nearer_pm", "bimodal", 0.4)]
    assert logdet["value"] == pytest.approx(distance(tik, pm) / distance(tik, map_))
    assert logdet["holds"] == (distance(tik, pm) < distance(tik, map_))
    gaussian = table.loc[("gaussian_divergence_is_map", "gaussian", 0.1)]
    assert gaussian["value"] == pytest.approx(0.01) and gaussian["holds"]
    fidelity = table.xs("forward_fidelity", level="claim")["value"]
    assert np.allclose(fidelity, 0.1)
    # a reconstruction net exactly at the PM gives unbounded power; every prediction row has it
    assert table.loc[("power", "bimodal", 0.4), "value"] == np.inf
    assert table.loc[["divergence_nearer_map", "logdet_nearer_pm"], "power"].notna().all()
    concave = table.xs("divergence_nearer_map", level="claim")["log_concave"]
    assert concave.to_dict() == {
        ("bimodal", 0.05): False, ("bimodal", 0.4): False, ("gaussian", 0.1): True,
        ("logcosh", 0.4): True}  # fmt: skip
    assert table.loc[("divergence_nearer_map", "logcosh", 0.4), "value"] == 0.0

    linear = claims_table(_toy_cube({"reconstruction": "tikhonov", "divergence": "map"}))
    linear = linear.set_index(["claim", "prior", "noise_level"])
    row = linear.loc[("reconstruction_reaches_pm", "bimodal", 0.4)]
    expected = ((tik - x) ** 2).sum(1).mean() / ((pm - x) ** 2).sum(1).mean()
    assert row["value"] == pytest.approx(expected) and expected > 1.05
    assert not row["holds"]
    # power: MAP-PM distance in units of the reconstruction net's distance to the PM, > 3 on
    # the log-cosh cell where the linear estimator is near the PM, ~0 on the Gaussian (MAP = PM)
    for prior, delta in (("bimodal", 0.05), ("logcosh", 0.4), ("gaussian", 0.1)):
        ref = reference_dataset(prior, 1.0, delta, points=40, seed=0)
        pm, map_, tik = (ref[k].values for k in ("posterior_mean", "map", "tikhonov"))
        power = linear.loc[("power", prior, delta)]
        assert power["value"] == pytest.approx(distance(map_, pm) / distance(tik, pm))
        assert power["holds"] == (power["value"] >= 3)
        prediction = linear.loc[("divergence_nearer_map", prior, delta)]
        assert prediction["power"] == power["value"]
        # a cell without power decides no prediction: its row is reported, undecided
        assert pd.isna(prediction["holds"]) == (not power["holds"])
    assert linear.loc[("power", "gaussian", 0.1), "value"] < 1e-3

    # the divergence net's phi against Theorem 2's phi* = x + delta^2 grad U (eps 1), U the
    # log-cosh potential, written out: phi = identity misses it by the regularizer's share
    ref = reference_dataset("logcosh", 1.0, 0.4, points=40, seed=0)
    x = ref["x"].values
    shift = 0.4**2 * (np.tanh(x / 0.2) / 0.2 + 0.5 * x)
    expected = np.linalg.norm(shift, axis=1).mean() / np.linalg.norm(x + shift, axis=1).mean()
    fits = table.loc[("divergence_fits_target", "logcosh", 0.4), "value"]
    assert fits == pytest.approx(expected, rel=1e-9) and fits > 0.3


def test_reconstruction_trained_toy_net_beats_the_linear_estimator(
    tmp_path: Path, one_thread: object
) -> None:
    """Reconstruction training minimizes the MSE, so on the bimodal prior at delta 0.4 (eps 1),
    where the posterior mean (MSE 0.135 on config/toy.yaml's test points) is far better than the
    best linear estimator (Tikhonov, 0.201), a net that can bend must beat the linear one by a
    clear margin: a linear phi^-1 cannot pass. (The smooth ``toy`` net stayed at 0.2006 here.)"""
    cell = {"prior": "bimodal", "eps": 1.0, "noise_level": 0.4, "objective": "reconstruction"}
    settings = {"epochs": 60, "batch_size": 1024, "learning_rate": 1e-2,
                "solver": {"method": "fixed_point", "tol": 1e-5, "max_iter": 200}}  # fmt: skip
    spec = architecture({"archs": {}}, "toy_piecewise")
    ref = reference_dataset("bimodal", 1.0, 0.4, points=400, seed=1)
    ds = _trained_toy_cell(tmp_path, cell, settings, spec, ref, training_points=4096)

    x = ref["x"].values
    mse = {k: ((v - x) ** 2).sum(1).mean() for k, v in (
        ("net", ds["reconstruction"].values), ("pm", ref["posterior_mean"].values),
        ("linear", ref["tikhonov"].values))}  # fmt: skip
    assert mse["pm"] < 0.75 * mse["linear"]  # the problem leaves room for a nonlinear estimator
    assert mse["net"] < 0.85 * mse["linear"], mse
