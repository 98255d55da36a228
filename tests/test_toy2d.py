"""The toy study's reference data and one toy cell, end to end through the command line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from iresnet_inverse import bayes
from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.data.priors import get_prior
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
    subprocess.run(
        [
            *cli,
            "toy-train",
            *common,
            "--lipschitz",
            "0.99",
            "--objective",
            "divergence",
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
