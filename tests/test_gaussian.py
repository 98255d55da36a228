"""The Gaussian-prior check: the gaussian data source, the closed-form estimators and targets
against independent computations, the reference dataset and the check table."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from scipy.optimize import minimize

from iresnet_inverse import config as study_config
from iresnet_inverse import linear_gaussian as lg
from iresnet_inverse.artifacts import combine_cells, read_dataset, write_dataset
from iresnet_inverse.bayes import posterior_mean
from iresnet_inverse.cells import ImageCell
from iresnet_inverse.data.gaussian_field import (
    crop_covariance,
    gaussian_dataset,
    prior_moments,
    sample_fields,
)
from iresnet_inverse.data.patches import split_of
from iresnet_inverse.data.priors import GaussianMixture
from iresnet_inverse.operators import get_operator
from iresnet_inverse.stages.data import image_dataset, observation_dataset
from iresnet_inverse.stages.gaussian import check_table, dense_operator, reference_dataset
from tests.conftest import ROOT, run_snakemake

FIELD = {"alpha": 2.0, "k0": 1 / 32, "mean": 0.5, "std": 0.12, "period": 16}
DATA = {
    "source": "gaussian",
    "patch_size": 6,
    "patches": {"train": 20, "val": 4, "test": 300},
    "named_images": None,
    "named_size": 8,
    "seed": 0,
    "gaussian": FIELD,
}
BLUR = {"kernel_size": 11, "sigma": 5 / 3}
SIDE8 = {"patch_size": 8, "named_size": 8}  # the smallest patch the schema allows


def _prior(side: int = 6) -> tuple[np.ndarray, np.ndarray]:
    return prior_moments({**DATA, "patch_size": side})


# The data source


@pytest.mark.parametrize("period", [8, 16])  # with wrap-around (8 < 2 * 6 - 1) and without
def test_empirical_covariance_of_crops_is_the_claimed_covariance(period: int) -> None:
    params = {k: FIELD[k] for k in ("alpha", "k0", "std")}
    fields = sample_fields(40_000, period, rng=np.random.default_rng(1), **params)
    crops = fields[:, :6, :6].reshape(len(fields), -1)
    empirical = np.cov(crops, rowvar=False)
    claimed = crop_covariance(6, period, **params)
    # Monte Carlo standard error of each sample covariance: sqrt((C_ii C_jj + C_ij^2) / n).
    se = np.sqrt((np.outer(np.diag(claimed), np.diag(claimed)) + claimed**2) / len(crops))
    assert np.abs(empirical - claimed).max() / se.max() < 5
    assert np.allclose(np.diag(claimed), 0.12**2)
    wrong = crop_covariance(6, period, **{**params, "alpha": 3.0})  # the test can fail
    assert np.abs(empirical - wrong).max() / se.max() > 20


def test_gaussian_dataset_has_the_image_dataset_format() -> None:
    ds = image_dataset(DATA)
    builtin = image_dataset(
        {
            "source": "builtin",
            "downscale": 8,
            "patch_size": 6,
            "patches": {"train": 2, "val": 2, "test": 2},
            "named_images": None,
            "named_size": 8,
            "seed": 0,
        }
    )
    assert set(ds.variables) == set(builtin.variables)
    assert {k: ds[k].dims for k in ds.variables} == {k: builtin[k].dims for k in ds.variables}
    assert {k: ds[k].dtype.kind for k in ds.variables} == {
        k: builtin[k].dtype.kind for k in ds.variables
    }
    assert [len(split_of(ds, s)["sample"]) for s in ("train", "val", "test")] == [20, 4, 300]
    assert ds["named"].shape == (3, 8, 8) and list(ds["name"].values) == [
        "field_0",
        "field_1",
        "field_2",
    ]
    assert len(set(ds["source"].values)) == ds.sizes["sample"]  # one field per patch
    np.testing.assert_array_equal(ds["x"].values, gaussian_dataset(DATA)["x"].values)
    # The test split does not depend on how many training patches are drawn.
    more = gaussian_dataset({**DATA, "patches": {**DATA["patches"], "train": 50}})
    np.testing.assert_array_equal(
        split_of(ds, "test")["x"].values, split_of(more, "test")["x"].values
    )
    assert not np.array_equal(ds["x"].values, gaussian_dataset({**DATA, "seed": 1})["x"].values)
    obs = observation_dataset(ds, "blur", BLUR, 0.05, 0)
    assert obs["data"].shape == (304, 6, 6)


def test_gaussian_values_are_not_clipped() -> None:
    wide = gaussian_dataset({**DATA, "gaussian": {**FIELD, "std": 0.5}})["x"].values
    assert wide.min() < 0 and wide.max() > 1
    x = gaussian_dataset(DATA)["x"].values
    assert abs(x.mean() - 0.5) < 0.01 and abs(x.std() - 0.12) < 0.01


def test_gaussian_config_needs_no_path_and_a_period_that_holds_the_crops() -> None:
    block = {"operator": ["blur"], "noise_level": [0.05], "lipschitz": [0.9]}
    base = {"data": {"source": "gaussian"}, "grid": [{**block, "objective": ["reconstruction"]}]}
    study_config.check(study_config.validate(json.loads(json.dumps(base))))
    small = json.loads(json.dumps(base))
    small["data"]["gaussian"] = {"period": 32}  # named_size 64 does not fit
    with pytest.raises(study_config.ConfigError, match="data.gaussian.period"):
        study_config.check(study_config.validate(small))


def test_the_gaussian_config_is_valid() -> None:
    cfg = study_config.load(ROOT / "config" / "gaussian.yaml")
    assert cfg["data"]["source"] == "gaussian" and cfg["data"]["patches"]["test"] == 64
    assert {c.objective for c in study_config.cells(cfg)} == {
        "reconstruction",
        "divergence",
        "logdet",
    }


# The closed forms


def test_dense_blur_is_the_operator_and_its_transpose_the_adjoint() -> None:
    A = dense_operator("blur", BLUR, 6)
    x = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    op = get_operator("blur", **BLUR)
    np.testing.assert_allclose(x.reshape(3, -1).numpy() @ A.T, op(x).reshape(3, -1), atol=1e-14)
    y = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    np.testing.assert_allclose(
        y.reshape(3, -1).numpy() @ A, op.adjoint(y).reshape(3, -1), atol=1e-14
    )
    with pytest.raises(ValueError, match="no dense linear reference"):
        dense_operator("diffusion", {}, 6)


def test_wiener_is_the_gaussian_posterior_mean_and_its_mse_the_expected_one() -> None:
    mean, cov = _prior()
    A, delta = dense_operator("blur", BLUR, 6), 0.05
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal(mean, cov, size=100_000)
    z = x @ A.T + delta * rng.standard_normal(x.shape)
    wiener = lg.wiener(mean, cov, A, delta)
    # Precision form of the posterior mean (bayes.py, one mixture component).
    prior = GaussianMixture(np.ones(1), mean[None], cov[None])
    np.testing.assert_allclose(wiener(z[:50]), posterior_mean(prior, A, delta, z[:50]), atol=1e-9)
    # Monte Carlo: for jointly Gaussian (x, z) the posterior mean is the linear regression of x
    # on z, fitted here from samples.
    design = np.hstack([z, np.ones((len(z), 1))])
    coef = np.linalg.lstsq(design, x, rcond=None)[0]
    fitted = design[:2000] @ coef
    assert np.abs(fitted - wiener(z[:2000])).max() < 0.01  # fit error ~ 1e-3
    measured = np.mean((wiener(z) - x) ** 2)
    assert measured == pytest.approx(lg.expected_mse(wiener, mean, cov, A, delta), rel=0.01)


def test_divergence_target_minimizes_its_loss_and_inverts_to_the_map() -> None:
    rng = np.random.default_rng(2)
    d, delta, dhat = 4, 0.3, 0.45
    A = rng.normal(size=(d, d))
    root = rng.normal(size=(d, d))
    cov, mean = root @ root.T + 0.1 * np.eye(d), rng.normal(size=d)
    AtA = A.T @ A

    def loss(params: np.ndarray) -> float:
        # E[1/2 ||M x + c - A^T z||^2 - dhat^2 tr M] up to the noise constant.
        M, c = params[: d * d].reshape(d, d), params[d * d :]
        R = M - AtA
        bias = R @ mean + c
        return 0.5 * (np.trace(R @ cov @ R.T) + bias @ bias) - dhat**2 * np.trace(M)

    found = minimize(loss, np.zeros(d * d + d), method="BFGS", options={"gtol": 1e-10}).x
    M, c = lg.divergence_target(mean, cov, A, dhat)
    np.testing.assert_allclose(found[: d * d].reshape(d, d), M, atol=1e-5)
    np.testing.assert_allclose(found[d * d :], c, atol=1e-5)
    # phi^-1(A^T z): the MAP (= Wiener) at dhat = delta, Wiener with dhat for noise otherwise.
    z = rng.normal(size=(5, d))
    at_delta = lg.divergence_reconstruction(mean, cov, A, delta)
    np.testing.assert_allclose(at_delta(z), lg.wiener(mean, cov, A, delta)(z), atol=1e-10)
    M, c = lg.divergence_target(mean, cov, A, dhat)
    direct = np.linalg.solve(M, (z @ A - c).T).T  # solve phi(x) = A^T z
    np.testing.assert_allclose(lg.divergence_reconstruction(mean, cov, A, dhat)(z), direct)
    assert not np.allclose(direct, lg.wiener(mean, cov, A, delta)(z), atol=1e-3)


def test_divergence_target_inverts_to_wiener_on_blurred_fields() -> None:
    mean, cov = _prior()
    A = dense_operator("blur", BLUR, 6)
    z = np.random.default_rng(3).normal(0.5, 0.1, size=(4, 36))
    np.testing.assert_allclose(
        lg.divergence_reconstruction(mean, cov, A, 0.05)(z), lg.wiener(mean, cov, A, 0.05)(z)
    )


def test_logdet_loss_closed_form_is_its_monte_carlo_average() -> None:
    rng = np.random.default_rng(4)
    d, delta, dhat = 3, 0.2, 0.3
    A, G, b = rng.normal(size=(d, d)), rng.normal(size=(d, d)), rng.normal(size=d)
    root = rng.normal(size=(d, d))
    cov, mean = root @ root.T, rng.normal(size=d)
    x = rng.multivariate_normal(mean, cov, size=400_000)
    z = x @ A.T + delta * rng.standard_normal(x.shape)
    sampled = 0.5 * np.mean(np.sum((x @ G.T + b - z) ** 2, axis=1))
    sampled -= dhat**2 * np.log(abs(np.linalg.det(G)))
    assert lg.logdet_loss(G, b, mean, cov, A, delta, dhat) == pytest.approx(sampled, rel=0.01)


@pytest.mark.parametrize("orientation", [1.0, -1.0])  # sign of det A
def test_logdet_target_is_the_numerical_minimizer_among_orientation_preserving_maps(
    orientation: float,
) -> None:
    rng = np.random.default_rng(5)
    d, delta, dhat = 3, 0.2, 0.3
    A = rng.normal(size=(d, d))
    A[0] *= orientation * np.sign(np.linalg.det(A))
    root = rng.normal(size=(d, d))
    cov, mean = root @ root.T + 0.1 * np.eye(d), rng.normal(size=d)

    def loss(params: np.ndarray) -> float:
        G, b = params[: d * d].reshape(d, d), params[d * d :]
        if np.linalg.det(G) <= 0:  # what an iResNet can be: det(I + J) > 0
            return 1e6
        return lg.logdet_loss(G, b, mean, cov, A, delta, dhat)

    G, b = lg.logdet_target(mean, cov, A, dhat)
    assert np.linalg.det(G) > 0
    best = None
    for _ in range(3):  # descent from near the identity (an iResNet's start): -log|det G| is a
        # barrier, so it stays where det G > 0
        start = np.concatenate([(np.eye(d) + 0.3 * rng.normal(size=(d, d))).ravel(), np.zeros(d)])
        found = minimize(loss, start, method="BFGS", options={"gtol": 1e-9})
        best = found if best is None or found.fun < best.fun else best
    assert best.fun == pytest.approx(loss(np.concatenate([G.ravel(), b])), abs=1e-7)
    np.testing.assert_allclose(best.x[: d * d].reshape(d, d), G, atol=1e-3)
    np.testing.assert_allclose(best.x[d * d :], b, atol=1e-3)


def test_logdet_target_has_zero_gradient_and_inverts_to_its_reconstruction() -> None:
    mean, cov = _prior()
    A, delta, dhat = dense_operator("blur", BLUR, 6), 0.05, 0.05
    G, b = lg.logdet_target(mean, cov, A, dhat)
    # The gradient of the closed-form expected loss by autograd (independent of the derivation).
    g = torch.tensor(G, requires_grad=True)
    c = torch.tensor(b, requires_grad=True)
    At, mu, C = (torch.tensor(a) for a in (A, mean, cov))
    R = g - At
    bias = R @ mu + c
    loss = 0.5 * (torch.trace(R @ C @ R.T) + bias @ bias) - dhat**2 * torch.linalg.slogdet(g)[1]
    loss.backward()
    assert g.grad.abs().max() < 1e-9 and c.grad.abs().max() < 1e-9
    perturbed = G + 1e-3 * np.random.default_rng(6).normal(size=G.shape)
    assert lg.logdet_loss(perturbed, b, mean, cov, A, delta, dhat) > lg.logdet_loss(
        G, b, mean, cov, A, delta, dhat
    )
    z = np.random.default_rng(7).normal(0.5, 0.1, size=(4, 36))
    np.testing.assert_allclose(
        lg.logdet_reconstruction(mean, cov, A, dhat)(z), np.linalg.solve(G, (z - b).T).T
    )


# The reference dataset and the check table


@pytest.fixture(scope="module")
def reference_inputs() -> tuple[dict, xr.Dataset, xr.Dataset]:
    cfg = study_config.validate(
        {"data": {**DATA, **SIDE8, "patches": {"train": 4, "val": 2, "test": 200}}, "operators": {}}
    )
    images = image_dataset(cfg["data"])
    obs = observation_dataset(images, "blur", cfg["operators"]["blur"], 0.05, 0)
    obs = obs.expand_dims(operator=["blur"], noise_level=[0.05])
    return cfg, images, obs


def test_reference_dataset_measures_the_estimators_on_the_test_data(
    reference_inputs: tuple[dict, xr.Dataset, xr.Dataset],
) -> None:
    cfg, images, obs = reference_inputs
    ds = reference_dataset(cfg, images, [obs], [1.0, 2.0]).sel(operator="blur", noise_level=0.05)
    x = split_of(images, "test")["x"].values.reshape(200, -1).astype(np.float64)
    test = split_of(images, "test")["sample"].values
    z = obs.squeeze(["operator", "noise_level"])["data"].sel(sample=test).values.reshape(200, -1)
    mean, cov = _prior(8)
    A = dense_operator("blur", BLUR, 8)
    direct = np.mean((lg.wiener(mean, cov, A, 0.05)(z) - x) ** 2, axis=1)
    np.testing.assert_allclose(ds["wiener_mse"].values, direct, rtol=1e-6)
    np.testing.assert_allclose(ds["data_mse"].values, np.mean((z - x) ** 2, axis=1), rtol=1e-6)
    at_one = ds.sel(noise_factor=1.0)
    np.testing.assert_allclose(at_one["divergence_target_mse"], ds["wiener_mse"], rtol=1e-8)
    for name in ("data", "wiener"):  # 200 patches: the mean within a few standard errors
        values = ds[f"{name}_mse"].values
        assert abs(values.mean() - float(ds[f"{name}_expected_mse"])) < 4 * values.std() / 14
    for name in ("divergence_target", "logdet_target"):
        values = at_one[f"{name}_mse"].values
        assert abs(values.mean() - float(at_one[f"{name}_expected_mse"])) < 4 * values.std() / 14
    assert float(ds["wiener_mse"].mean()) < float(ds["data_mse"].mean())
    # dhat = 2 delta: the divergence target is the Wiener filter for noise 2 delta (worse).
    assert float(ds["divergence_target_mse"].sel(noise_factor=2.0).mean()) > float(
        ds["wiener_mse"].mean()
    )


def test_reference_refuses_other_sources_and_other_operator_parameters(
    reference_inputs: tuple[dict, xr.Dataset, xr.Dataset],
) -> None:
    cfg, images, obs = reference_inputs
    with pytest.raises(ValueError, match="needs gaussian"):
        reference_dataset({**cfg, "data": {**cfg["data"], "source": "builtin"}}, images, [obs], [1])
    other = {**cfg, "operators": {**cfg["operators"], "blur": {"kernel_size": 11, "sigma": 1.0}}}
    with pytest.raises(ValueError, match="differs from the dense operator"):
        reference_dataset(other, images, [obs], [1.0])


def _metrics_file(
    tmp_path: Path, cell: ImageCell, mse: np.ndarray, data_mse: np.ndarray, factor: float
) -> Path:
    """A per-cell evaluate output with what the check reads (MSE, data PSNR, the job)."""
    ds = xr.Dataset(
        {
            "mse": ("image", mse, {"long_name": "MSE", "units": "1"}),
            "data_psnr": ("image", -10 * np.log10(data_mse), {"long_name": "PSNR", "units": "dB"}),
        },
        coords={"image": np.arange(len(mse))},
    )
    job = {"cell": dict(cell), "settings": {"noise_factor": factor}, "kind": "image"}
    path = tmp_path / cell.dir / "metrics.nc"
    return write_dataset(ds, path, title="metrics", config=job, cell=cell)


def test_check_table_sets_each_cell_beside_its_target(
    tmp_path: Path, reference_inputs: tuple[dict, xr.Dataset, xr.Dataset]
) -> None:
    cfg, images, obs = reference_inputs
    reference = reference_dataset(cfg, images, [obs], [1.0, 2.0])
    write_dataset(reference, tmp_path / "reference.nc", title="reference")
    ref = reference.sel(operator="blur", noise_level=0.05)
    data_mse = ref["data_mse"].values
    cells = {
        "reconstruction": (ImageCell("blur", 0.05, 0.999, "reconstruction", "a", 0), 1.0, 1.25),
        "logdet": (ImageCell("blur", 0.05, 0.999, "logdet", "b", 0), 2.0, 1.5),
        "divergence": (ImageCell("blur", 0.05, 0.999, "divergence", "a", 0), 1.0, 1.1),
    }
    targets = {
        "reconstruction": ref["wiener_mse"].values,
        "logdet": ref["logdet_target_mse"].sel(noise_factor=2.0).values,
        "divergence": ref["divergence_target_mse"].sel(noise_factor=1.0).values,
    }
    paths = [
        _metrics_file(tmp_path, cell, ratio * targets[name], data_mse, factor)
        for name, (cell, factor, ratio) in cells.items()
    ]
    diffusion = ImageCell("diffusion", 0.05, 0.999, "reconstruction", "a", 0)
    paths.append(_metrics_file(tmp_path, diffusion, np.full(200, 0.01), np.full(200, 0.02), 1.0))
    write_dataset(combine_cells(paths), tmp_path / "reconstruction.nc", title="study")
    table, skipped = check_table(tmp_path / "reconstruction.nc", tmp_path / "reference.nc")
    assert skipped == [diffusion.dir]
    rows = table.set_index("objective")
    assert list(rows.loc[list(cells), "reference"]) == [
        "wiener",
        "logdet_target",
        "divergence_target",
    ]
    for name, (_, factor, ratio) in cells.items():
        assert rows.loc[name, "ratio"] == pytest.approx(ratio)
        assert rows.loc[name, "noise_factor"] == factor
        assert rows.loc[name, "data_mse"] == pytest.approx(data_mse.mean())
    # A study evaluated on other test data is refused.
    stale = _metrics_file(
        tmp_path / "stale", cells["reconstruction"][0], data_mse, data_mse * 1.1, 1.0
    )
    write_dataset(combine_cells([stale]), tmp_path / "stale.nc", title="study")
    with pytest.raises(ValueError, match="test data are not the reference's"):
        check_table(tmp_path / "stale.nc", tmp_path / "reference.nc")
    assert read_dataset(tmp_path / "reconstruction.nc")["mse"].dims[-1] == "image"


@pytest.mark.workflow
def test_workflow_writes_the_reference_and_the_check_table(tmp_path: Path) -> None:
    """The two rules end to end on a tiny config: one reconstruction cell, one log-det cell at
    dhat = 2 delta (its target needs that noise factor in the reference)."""
    block = {"operator": ["blur"], "noise_level": [0.05], "lipschitz": [0.9], "arch": ["tiny"]}
    cfg = {
        "device": "cpu",
        "threads": 1,
        "data": {**DATA, **SIDE8, "patches": {"train": 8, "val": 2, "test": 4}},
        "analysis": {"enabled": False},
        "archs": {
            "tiny": {"kind": "conv", "blocks": 1, "channels": 1, "hidden": 2, "kernel_size": 3}
        },
        "train": {"epochs": 1, "batch_size": 8, "solver": {"method": "fixed_point"}},
        "grid": [
            {**block, "objective": ["reconstruction"]},
            {**block, "objective": ["logdet"], "train": {"noise_factor": 2.0}},
        ],
    }
    configfile = tmp_path / "gaussian.yaml"
    configfile.write_text(json.dumps(cfg))
    target = "results/datasets/gaussian_check.csv"
    result = run_snakemake(tmp_path, target, configfile=configfile)
    assert result.returncode == 0, result.stderr[-3000:]
    reference = read_dataset(tmp_path / "results" / "datasets" / "gaussian_reference.nc")
    assert list(reference["noise_factor"].values) == [1.0, 2.0]
    table = pd.read_csv(tmp_path / target).set_index("objective")
    assert table.loc["logdet", "reference"] == "logdet_target"
    assert table.loc["logdet", "noise_factor"] == 2.0
    assert table.loc["reconstruction", "reference"] == "wiener"
    expected = reference["logdet_target_mse"].sel(noise_factor=2.0).mean()
    assert table.loc["logdet", "reference_mse"] == pytest.approx(float(expected))
    assert (table["ratio"] > 0).all()
