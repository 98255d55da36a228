"""Random search of hyperparameters and the budget-scaling table, on made-up trials and curves
(the workflow test runs both on config/ci.yaml)."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from iresnet_inverse import config
from iresnet_inverse.archs import label
from iresnet_inverse.artifacts import combine_datasets, write_dataset
from iresnet_inverse.cells import ImageCell
from iresnet_inverse.jobs import image_job
from iresnet_inverse.stages.scaling import scaling_table, slope_per_doubling
from iresnet_inverse.stages.search import (
    best_values,
    search_dataset,
    trial_job,
    trial_values,
    tuned,
)

SEARCH = {"trials": 4, "epochs": 1, "seed": 7, "learning_rate": [1e-4, 1e-2], "batch_size": [8, 32]}


def _config(**search: object) -> dict:
    return config.validate(
        {
            "search": {**SEARCH, **search},
            "grid": [
                {"operator": ["blur", "diffusion"], "noise_level": [0.01, 0.05],
                 "lipschitz": [0.9, 0.99], "objective": ["reconstruction"],
                 "arch": ["iresnet_demo"]},
                {"operator": ["blur"], "noise_level": [0.05], "arch": ["tv", "unet_demo"]},
            ],
        }
    )  # fmt: skip


def test_trials_are_seeded_in_range_and_independent_of_each_other() -> None:
    values = [trial_values(SEARCH, t) for t in range(200)]
    rates = np.log10([v["learning_rate"] for v in values])
    assert rates.min() >= -4 and rates.max() <= -2
    assert abs(rates.mean() + 3) < 0.15  # log-uniform: the mean exponent is the middle
    assert {v["batch_size"] for v in values} == {8, 32}
    assert trial_values(SEARCH, 5) == values[5]  # the same trial whichever others run
    assert trial_values({**SEARCH, "seed": 8}, 5) != values[5]


def test_the_searched_cell_of_each_trained_architecture() -> None:
    cells = config.search_cells(_config(operator="blur", noise_level=0.05))
    assert [(c.arch, c.operator, c.noise_level, c.lipschitz) for c in cells] == [
        ("iresnet_demo", "blur", 0.05, 0.9),
        ("unet_demo", "blur", 0.05, float("inf")),
    ]  # TV searches its own weight; the first grid cell's L
    assert config.search_cells(_config(trials=0)) == []
    with pytest.raises(config.ConfigError, match="search: no trained cell of arch 'unet_demo'"):
        config.check(_config(operator="diffusion", noise_level=0.05))
    cfg = _config(noise_level=0.05)
    job = trial_job(cfg, config.search_cells(cfg)[0], 3)
    assert job.settings["epochs"] == 1 and job.settings["patience"] is None
    assert job.settings["learning_rate"] == trial_values(cfg["search"], 3)["learning_rate"]


def test_the_best_trial_trains_every_cell_of_its_architecture(tmp_path: Path) -> None:
    cfg = _config(noise_level=0.05)
    scores = {"iresnet_demo": [20.0, 22.5, 21.0, np.nan], "unet_demo": [23.0, 22.0, 24.0, 19.0]}
    paths = []
    for cell in config.search_cells(cfg):
        for trial, score in enumerate(scores[cell.arch]):
            history = xr.Dataset({"val_psnr": ("epoch", [score - 1, score])})
            path = tmp_path / cell.arch / f"trial~{trial}" / "history.nc"
            write_dataset(history, path, title="t", config=trial_job(cfg, cell, trial).as_dict())
            paths.append(path)
    ds = search_dataset(paths)
    assert dict(zip(ds["arch"].values, ds["best_trial"].values, strict=True)) == {
        "iresnet_demo": 1,
        "unet_demo": 2,
    }
    write_dataset(ds, tmp_path / "search.nc", title="t")
    assert best_values(tmp_path / "search.nc", "unet_demo") == trial_values(cfg["search"], 2)
    assert best_values(tmp_path / "search.nc", "convresnet_demo") is None
    with pytest.raises(ValueError, match="every search trial of iresnet_demo failed"):
        search_dataset([p for p in paths if "iresnet" in str(p) and "trial~3" in str(p)])
    other = ImageCell("diffusion", 0.01, 0.99, "reconstruction", "iresnet_demo", 0)
    job = tuned(image_job(cfg, other), tmp_path / "search.nc")
    assert job.settings["learning_rate"] == trial_values(cfg["search"], 1)["learning_rate"]
    assert job.settings["epochs"] == cfg["train"]["epochs"]  # only the searched values change


def _curves(tmp_path: Path) -> tuple[Path, Path]:
    """Budget curves 20 + 0.5 log2(s / 1000) (iResNet, 4 budgets) and 22 + 0.2 log2(s / 1000)
    with a last doubling of 0.1 dB (U-Net, a 5th budget of 0.05 dB more, as the scaling config
    gives the cheap nets); TV at 24 dB; the data's PSNR per budget, as the snapshots write it."""
    samples = np.array([1000, 2000, 4000, 8000, 16000])
    cells = {
        ("iresnet_demo", 0.999, "reconstruction"): 20 + 0.5 * np.log2(samples[:4] / 1000),
        ("unet_demo", float("inf"), "supervised"): np.array([22.0, 22.2, 22.4, 22.5, 22.55]),
    }
    parts = []
    for (arch, lip, objective), psnr in cells.items():
        budgets = samples[: len(psnr)]
        one = xr.Dataset(
            {"psnr": ("samples", psnr), "data_psnr": ("samples", np.full(len(psnr), 19.0))},
            coords={"samples": budgets},
        )
        keys = {"operator": "blur", "noise_level": 0.025, "lipschitz": lip,
                "objective": objective, "arch": arch, "seed": 0}  # fmt: skip
        parts.append(one.expand_dims({k: [v] for k, v in keys.items()}))
    scaling = combine_datasets(parts)
    tv = xr.Dataset(
        {"psnr": ("image", [23.0, 25.0])},
    ).expand_dims({"operator": ["blur"], "noise_level": [0.025], "lipschitz": [float("inf")],
                   "objective": ["variational"], "arch": ["tv"], "seed": [0]})  # fmt: skip
    write_dataset(scaling, tmp_path / "scaling.nc", title="t")
    write_dataset(tv, tmp_path / "reconstruction.nc", title="t")
    return tmp_path / "scaling.nc", tmp_path / "reconstruction.nc"


def test_the_scaling_table_gives_db_per_doubling_and_the_distance_to_tv(tmp_path: Path) -> None:
    table = scaling_table(*_curves(tmp_path)).set_index("method")
    iresnet, unet = table.loc[label("iresnet_demo")], table.loc[label("unet_demo")]
    assert iresnet["db_per_doubling"] == pytest.approx(0.5)
    assert iresnet["db_last_doubling"] == pytest.approx(0.5)
    assert iresnet["tv_psnr"] == pytest.approx(24.0) and iresnet["data_psnr"] == 19.0
    assert iresnet["doublings_to_tv"] == pytest.approx((24.0 - 21.5) / 0.5)
    assert unet["db_per_doubling"] == pytest.approx(
        np.polyfit(range(5), [22, 22.2, 22.4, 22.5, 22.55], 1)[0]
    )
    assert unet["data_psnr"] == 19.0 and unet["samples_max"] == 16000
    assert unet["doublings_to_tv"] == pytest.approx((24.0 - 22.55) / 0.05)
    assert (iresnet["samples_min"], iresnet["samples_max"]) == (1000, 8000)
    assert np.isnan(slope_per_doubling([1000], [20.0]))


def test_the_budget_scaling_figure_draws(tmp_path: Path) -> None:
    from iresnet_inverse.stages.figures import FIGURES

    paths = FIGURES["budget_scaling"](*_curves(tmp_path), tmp_path / "budget_scaling", dpi=50)
    assert all(p.stat().st_size > 1000 for p in paths)
