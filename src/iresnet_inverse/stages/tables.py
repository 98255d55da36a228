"""Table 1 of the study: per method and cell, trainable parameters, training time, epochs and
batch size (from each cell's ``history.nc``), with the mean test PSNR/SSIM beside them; and the
learning curves of every cell, with how much each gained at the end."""

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from pandas.api.types import is_string_dtype

from iresnet_inverse.archs import label
from iresnet_inverse.artifacts import combine_datasets, read_dataset
from iresnet_inverse.cells import ImageCell
from iresnet_inverse.errors import InputDataError

PLATEAU_DB = 0.1  # a curve has plateaued when its last fifth gains less than this


def last_fifth_gain(val_psnr: Sequence[float]) -> float:
    """How much the best validation PSNR rose in the last fifth of the epochs (at least one):
    max over all epochs less max over the others; 0 for one epoch. The study calls a curve
    plateaued when this is below ``PLATEAU_DB``."""
    values = np.asarray(val_psnr, dtype=float)
    values = values[np.isfinite(values)]
    head = len(values) - max(1, math.ceil(0.2 * len(values)))
    return float(values.max() - values[:head].max()) if head > 0 else 0.0


def training_curves(history_paths: Sequence[str | Path]) -> xr.Dataset:
    """Validation PSNR and elapsed training time per epoch of every trained network (TV, which
    only searches its weight, has none), as one cube over the cell keys and ``epoch``."""
    parts = []
    for path in history_paths:
        history = read_dataset(path)
        if "val_psnr" not in history or "epoch" not in history.dims:
            continue
        elapsed = history["epoch_seconds"].cumsum("epoch")
        part = xr.Dataset(
            {
                "val_psnr": history["val_psnr"],
                "elapsed": elapsed.assign_attrs(long_name="training time", units="s"),
            }
        )
        if "plateau_epoch" in history:  # the convergence rule's plateau, as a per-epoch flag
            found = history["epoch"] == history["plateau_epoch"].values.item()  # concatenates
            part["plateau"] = found.astype(np.int8).assign_attrs(
                long_name="epoch after which the convergence rule decayed the rate"
            )
        parts.append(part)
    if not parts:
        raise InputDataError("no history with validation PSNR per epoch among the inputs")
    return combine_datasets(parts)


def methods_table(
    history_paths: Sequence[str | Path], reconstruction_path: str | Path | None = None
) -> pd.DataFrame:
    """One row per trained cell; PSNR/SSIM columns when the reconstruction dataset is given."""
    rows = []
    for path in history_paths:
        ds = read_dataset(path)
        row = {k: ds[k].values.item() for k in ImageCell.KEYS if k in ds.coords}
        row["method"] = label(row["arch"])
        row["parameters"] = int(ds["parameters"].item())
        row["epochs"] = int(ds["epochs"].item())
        row["batch_size"] = int(ds["batch_size"].item())
        row["training_seconds"] = round(float(ds["wall_time"].item()), 3)
        if "val_psnr" in ds and "epoch" in ds.dims:
            row["best_epoch"] = int(ds["best_epoch"].item()) if "best_epoch" in ds else 0
            row["val_gain_last_fifth"] = round(last_fifth_gain(ds["val_psnr"].values.ravel()), 4)
            # The convergence rule (lr_schedule plateau): where it found the plateau, and whether
            # the decay after it ran to the end before the epoch cap.
            for key in ("plateau_epoch", "converged"):
                row[key] = int(ds[key].item()) if key in ds else 0
        rows.append(row)
    table = pd.DataFrame(rows)
    for key in ("best_epoch", "plateau_epoch", "converged"):  # whole numbers, blank for TV
        if key in table:
            table[key] = table[key].astype("Int64")
    if reconstruction_path is None or table.empty:
        return table
    study = read_dataset(reconstruction_path)
    for var in ("psnr", "ssim", "data_psnr", "data_ssim"):
        means = study[var].mean("image")
        table[f"test_{var}"] = [
            round(float(means.sel({k: row[k] for k in ImageCell.KEYS})), 4)
            for row in table.to_dict("records")
        ]
    return table.sort_values(["operator", "noise_level", "method", "lipschitz", "objective"])


SUMMARY_GROUPS = ["operator", "noise_level", "arch", "lipschitz", "objective"]
SUMMARY_COLUMNS = ["operator", "noise_level", "method", "lipschitz", "objective", "psnr", "ssim"]
DATA_ROW = "noisy data"


def _method_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean PSNR/SSIM over images and seeds per cell without the seed; an iResNet's L and
    objective stay columns (cells of one arch must not merge), a baseline's L (inf) is blank."""
    rows = frame.dropna(subset=["psnr"]).groupby(SUMMARY_GROUPS, as_index=False)[["psnr", "ssim"]]
    rows = rows.mean()
    rows["method"] = [label(arch) for arch in rows["arch"]]
    rows["lipschitz"] = rows["lipschitz"].astype(float).replace(float("inf"), float("nan"))
    return rows


def _data_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean PSNR/SSIM of the noisy data per (operator, noise level): every cell of one
    (operator, delta) sees the same test data, so the mean over all of them is the data's."""
    measured = frame.dropna(subset=["data_psnr"])
    rows = measured.groupby(["operator", "noise_level"], as_index=False)[["data_psnr", "data_ssim"]]
    rows = rows.mean().rename(columns={"data_psnr": "psnr", "data_ssim": "ssim"})
    rows["method"], rows["lipschitz"], rows["objective"] = DATA_ROW, float("nan"), ""
    return rows


def summary_table(reconstruction_path: str | Path) -> pd.DataFrame:
    """Mean test PSNR/SSIM per (operator, noise level, method; for iResNets also L and
    objective) from the study dataset, over images and seeds, with the noisy data's first in
    each (operator, noise level): the numbers a reader of the study asks for first."""
    study = read_dataset(reconstruction_path)
    variables = ["psnr", "ssim", "data_psnr", "data_ssim"]
    missing = [v for v in variables + list(ImageCell.KEYS) if v not in study.variables]
    if missing:
        raise InputDataError(f"{reconstruction_path}: not a reconstruction dataset (no {missing})")
    extra = sorted(set(study["psnr"].dims) - {*ImageCell.KEYS, "image"})
    if extra:  # scaling.nc holds a curve per cell: a mean over it would mix budgets
        raise InputDataError(
            f"{reconstruction_path}: not a reconstruction dataset (it varies over {extra}, as "
            "the budget curves of scaling.nc do); give results/datasets/reconstruction.nc"
        )
    frame = study[variables].to_dataframe().reset_index()
    frame["objective"] = frame["objective"].astype(str)
    rows = pd.concat([_data_rows(frame), _method_rows(frame)], ignore_index=True)
    rows["order"] = (rows["method"] != DATA_ROW).astype(int)
    order = ["operator", "noise_level", "order", "method", "lipschitz", "objective"]
    rows = rows.sort_values(order, key=lambda c: c.str.lower() if is_string_dtype(c) else c)
    return rows[SUMMARY_COLUMNS].reset_index(drop=True)


def _cells(table: pd.DataFrame) -> list[list[str]]:
    """The table as strings: PSNR to 0.01 dB, SSIM to 4 digits, a blank L for baselines."""
    out = []
    for row in table.itertuples(index=False):
        lipschitz = "" if pd.isna(row.lipschitz) else f"{row.lipschitz:g}"
        noise = f"{row.noise_level:g}"
        out.append([row.operator, noise, row.method, lipschitz, row.objective])
        out[-1] += [f"{row.psnr:.2f}", f"{row.ssim:.4f}"]
    return out


def format_table(table: pd.DataFrame, style: str = "text") -> str:
    """``summary_table`` as an aligned terminal table ("text"), a markdown table (both
    rounded for reading) or CSV (full precision, for further processing)."""
    header = ["operator", "noise_level", "method", "L", "objective", "PSNR", "SSIM"]
    body = _cells(table)
    if style == "csv":
        return table.to_csv(index=False, float_format="%.6g").rstrip("\n")
    if style == "markdown":
        align = ["---"] * 5 + ["---:"] * 2
        return "\n".join("| " + " | ".join(line) + " |" for line in [header, align, *body])
    if style != "text":
        raise ValueError(f"unknown table style {style!r}; valid: text, csv, markdown")
    return _aligned([header, *body], numeric_from=5)


def _aligned(lines: list[list[str]], numeric_from: int) -> str:
    """Columns padded to their widest cell, numbers right-aligned, a rule under the header."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def pad(line: list[str]) -> str:
        cells = zip(line, widths, strict=True)
        padded = [c.rjust(w) if i >= numeric_from else c.ljust(w) for i, (c, w) in enumerate(cells)]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([pad(lines[0]), rule, *(pad(line) for line in lines[1:])])
