"""Table 1 of the study: per method and cell, trainable parameters, training time, epochs and
batch size (from each cell's ``history.nc``), with the mean test PSNR/SSIM beside them."""

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.config import CELL_DIR_KEYS


def methods_table(
    history_paths: Sequence[str | Path], reconstruction_path: str | Path | None = None
) -> pd.DataFrame:
    """One row per trained cell; PSNR/SSIM columns when the reconstruction dataset is given."""
    from iresnet_inverse.plots.methods import label

    rows = []
    for path in history_paths:
        ds = read_dataset(path)
        row = {k: ds[k].values.item() for k in CELL_DIR_KEYS if k in ds.coords}
        row["method"] = label(row["arch"])
        row["parameters"] = int(ds["parameters"].item())
        row["epochs"] = int(ds["epochs"].item())
        row["batch_size"] = int(ds["batch_size"].item())
        row["training_seconds"] = round(float(ds["wall_time"].item()), 3)
        rows.append(row)
    table = pd.DataFrame(rows)
    if reconstruction_path is None or table.empty:
        return table
    study = read_dataset(reconstruction_path)
    for var in ("psnr", "ssim", "data_psnr", "data_ssim"):
        means = study[var].mean("image")
        table[f"test_{var}"] = [
            round(float(means.sel({k: row[k] for k in CELL_DIR_KEYS})), 4)
            for row in table.to_dict("records")
        ]
    return table.sort_values(["operator", "noise_level", "method", "lipschitz", "objective"])
