"""The Gaussian-prior check (``data.source: gaussian``): does image-scale training reach theory?

On a stationary Gaussian prior every target is closed form (``linear_gaussian``). The reference
(``reference_dataset``) applies the exact estimators to exactly the test data ``evaluate`` uses
(the test split of images.nc and the noisy data of observations.nc) with the blur operator as a
dense matrix: per test patch the MSE (mean over pixels, as ``evaluate`` reports it) of the data,
the Wiener estimator (posterior mean = MAP), the divergence target's phi^-1(A^T z) and the
affine log-det target's phi^-1(z), each also as its expectation over prior and noise. The check
(``check_table``) sets each trained blur cell's test MSE beside the MSE its objective should
reach: the Wiener estimator for reconstruction and for every other objective, except the
regularized ones, which are compared with their own target at the cell's dhat (the divergence
target is the Wiener estimator at dhat = delta).

Only a linear operator has a dense reference: diffusion observations are refused and
diffusion cells are left out of the table (``check_table`` returns them as skipped).
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from iresnet_inverse import linear_gaussian as lg
from iresnet_inverse.artifacts import combine_datasets, read_dataset, variable, with_cell
from iresnet_inverse.cells import ImageCell
from iresnet_inverse.data.gaussian_field import prior_moments
from iresnet_inverse.data.splits import paired_split
from iresnet_inverse.errors import InputDataError
from iresnet_inverse.metrics import mse
from iresnet_inverse.operators import get_operator

LINEAR_OPERATORS = ("blur",)
DATA_TOLERANCE = 1e-4  # largest |A x - F(x)| allowed between the dense A and the stored F(x)
PSNR_TOLERANCE = 1e-3  # dB: the study's data PSNR against the reference's, same test data
# Which reference each objective's test MSE is set beside (others: the Wiener estimator).
OWN_TARGET = {"logdet": "logdet_target_mse", "divergence": "divergence_target_mse"}


def dense_operator(operator: str, params: Mapping[str, Any], side: int) -> np.ndarray:
    """The matrix of a linear image operator on side x side patches (its adjoint's matrix is
    checked to be the transpose, so the dense A is the operator the training used)."""
    if operator not in LINEAR_OPERATORS:
        raise ValueError(
            f"operator {operator!r} has no dense linear reference "
            f"(only {', '.join(LINEAR_OPERATORS)})"
        )
    op = get_operator(operator, **params)
    A = lg.dense_matrix(op, (side, side))
    adjoint = lg.dense_matrix(op.adjoint, (side, side))
    if not np.allclose(adjoint, A.T, atol=1e-12):
        raise ValueError(f"{operator}: the adjoint's matrix is not the transpose of the forward")
    return A


def _spectrum_extent(name: str, jacobian: np.ndarray) -> dict[str, float]:
    """Singular values of a target's Jacobian and its distance to the identity: an iResNet
    phi = (I + R_k) ... (I + R_1) with Lip(R_i) <= L has singular values in [(1 - L)^k, (1 + L)^k],
    and one block represents the target only if ||J - I|| <= L."""
    s = np.linalg.svd(jacobian, compute_uv=False)
    return {
        f"{name}_singular_min": float(s[-1]),
        f"{name}_singular_max": float(s[0]),
        f"{name}_identity_distance": float(np.linalg.norm(jacobian - np.eye(len(jacobian)), 2)),
    }


SUMMARIES = {
    "expected_mse": "expected MSE over prior and noise of the target's reconstruction",
    "singular_min": "smallest singular value of the target's Jacobian",
    "singular_max": "largest singular value of the target's Jacobian",
    "identity_distance": "||J - I|| (spectral) of the target's Jacobian J",
}


TARGETS = {
    "divergence_target": "phi^-1(A^T z), phi the divergence target (Theorem 2)",
    "logdet_target": "phi^-1(z), phi the affine log-det target",
}


def _targets(
    mean: np.ndarray, cov: np.ndarray, A: np.ndarray, dhat: float
) -> dict[str, tuple[lg.Affine, np.ndarray]]:
    """Per regularized objective: its reconstruction as an affine map of z, and the Jacobian
    of its target phi."""
    return {
        "divergence_target": (
            lg.divergence_reconstruction(mean, cov, A, dhat),
            lg.divergence_target(mean, cov, A, dhat)[0],
        ),
        "logdet_target": (
            lg.logdet_reconstruction(mean, cov, A, dhat),
            lg.logdet_target(mean, cov, A, dhat)[0],
        ),
    }


def reference_for(
    x: np.ndarray,
    z: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    A: np.ndarray,
    delta: float,
    noise_factors: Sequence[float],
) -> xr.Dataset:
    """Per test patch (x, z: (n, h, w)) the MSE of the data and of the exact estimators, their
    expectations, and the extent of the targets' Jacobians, with dims (noise_factor, image)."""
    n = len(x)
    flat_z = z.reshape(n, -1)

    def measured(estimator: lg.Affine) -> np.ndarray:
        return mse(x, estimator(flat_z).reshape(x.shape))

    wiener = lg.wiener(mean, cov, A, delta)
    identity = lg.Affine(np.eye(len(mean)), np.zeros(len(mean)))
    variables = {
        "data_mse": variable("image", mse(x, z), "MSE of the noisy data z"),
        "wiener_mse": variable("image", measured(wiener), "MSE of the Wiener estimator (PM = MAP)"),
        "data_expected_mse": variable(
            (), lg.expected_mse(identity, mean, cov, A, delta), "expected MSE of the data"
        ),
        "wiener_expected_mse": variable(
            (), lg.expected_mse(wiener, mean, cov, A, delta), "expected MSE of the Wiener estimator"
        ),
    }
    per_image: dict[str, list[np.ndarray]] = {}
    per_factor: dict[str, list[float]] = {}
    for factor in noise_factors:
        for name, (estimator, jacobian) in _targets(mean, cov, A, factor * delta).items():
            per_image.setdefault(name, []).append(measured(estimator))
            expected = lg.expected_mse(estimator, mean, cov, A, delta)
            per_factor.setdefault(f"{name}_expected_mse", []).append(expected)
            for key, value in _spectrum_extent(name, jacobian).items():
                per_factor.setdefault(key, []).append(value)
    for name, described in TARGETS.items():
        variables[f"{name}_mse"] = variable(
            ("noise_factor", "image"), np.array(per_image[name]), f"MSE of {described}"
        )
    for key, values in per_factor.items():
        variables[key] = variable("noise_factor", np.array(values), SUMMARIES[key.split("_", 2)[2]])
    ds = xr.Dataset(variables, coords={"image": np.arange(n), "noise_factor": list(noise_factors)})
    ds["noise_factor"].attrs.update(long_name="dhat / delta", units="1")
    return ds


def reference_dataset(
    config: Mapping[str, Any],
    images: xr.Dataset,
    observations: Sequence[xr.Dataset],
    noise_factors: Sequence[float],
) -> xr.Dataset:
    """The exact estimators on the test split, per (operator, noise level) of ``observations``
    and per noise factor, as one cube (``reference_for``)."""
    data = config["data"]
    if data["source"] != "gaussian":
        raise InputDataError(
            f"data.source is {data['source']!r}: the Gaussian reference needs gaussian"
        )
    mean, cov = prior_moments(data)
    parts = []
    for obs in observations:
        operator = str(obs["operator"].values.item())
        delta = float(obs["noise_level"].values.item())
        A = dense_operator(operator, config["operators"][operator], data["patch_size"])
        x, clean, z = paired_split(images, obs, "test")
        gap = np.abs(x.reshape(len(x), -1).astype(np.float64) @ A.T - clean.reshape(len(x), -1))
        if gap.max() > DATA_TOLERANCE:
            raise InputDataError(
                f"{operator} at {delta:g}: the stored F(x) differs from the dense operator by "
                f"{gap.max():.3g} (observations made with other operator parameters?)"
            )
        part = reference_for(x, z, mean, cov, A, delta, sorted(set(noise_factors)))
        parts.append(with_cell(part, {"operator": operator, "noise_level": delta}))
    return combine_datasets(parts)


def _cell_settings(study: xr.Dataset) -> list[tuple[ImageCell, float]]:
    """Every cell of the study with its noise factor, from the evaluate jobs the combined
    dataset keeps as provenance (``cell_configs_json``)."""
    configs = json.loads(study.attrs.get("cell_configs_json", "{}"))
    if not configs:
        raise InputDataError("the reconstruction dataset keeps no cell configs (cell_configs_json)")
    return [
        (ImageCell.of(job["cell"]), float(job["settings"]["noise_factor"]))
        for job in configs.values()
    ]


def check_table(
    reconstruction_path: str | Path, reference_path: str | Path
) -> tuple[pd.DataFrame, list[str]]:
    """One row per trained cell of a linear operator: its mean test MSE, the reference MSE its
    objective should reach on the same test patches, their ratio, and the Wiener estimator's
    and the data's MSE; and the cells left out (no dense reference)."""
    study, reference = read_dataset(reconstruction_path), read_dataset(reference_path)
    rows, skipped = [], []
    for cell, factor in _cell_settings(study):
        if cell.operator not in reference["operator"].values:
            skipped.append(cell.dir)
            continue
        ref = reference.sel(operator=cell.operator, noise_level=cell.noise_level)
        measured = study.sel(dict(cell))
        _same_test_data(measured["data_psnr"].values, ref["data_mse"].values, cell)
        name = OWN_TARGET.get(cell.objective, "wiener_mse")
        target = ref[name]
        if "noise_factor" in target.dims:
            if factor not in target["noise_factor"].values:
                raise InputDataError(f"{cell.dir}: the reference has no noise factor {factor:g}")
            target = target.sel(noise_factor=factor)
        test_mse = float(measured["mse"].mean("image"))
        reference_mse = float(target.mean("image"))
        rows.append(
            {
                **dict(cell),
                "noise_factor": factor,
                "test_mse": test_mse,
                "reference": name.removesuffix("_mse"),
                "reference_mse": reference_mse,
                "ratio": test_mse / reference_mse,
                "wiener_mse": float(ref["wiener_mse"].mean("image")),
                "data_mse": float(ref["data_mse"].mean("image")),
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values(["operator", "noise_level", "objective", "arch", "lipschitz"])
    return table.reset_index(drop=True), skipped


def _same_test_data(data_psnr: np.ndarray, data_mse: np.ndarray, cell: ImageCell) -> None:
    """The study's data PSNR per test image must be the reference's data MSE in dB: both were
    measured on one test split with one noise draw (a stale file would compare others)."""
    if len(data_psnr) != len(data_mse) or not np.allclose(
        data_psnr, -10 * np.log10(data_mse), atol=PSNR_TOLERANCE
    ):
        raise InputDataError(
            f"{cell.dir}: its test data are not the reference's (rerun gaussian_reference)"
        )
