"""Budget scaling: how fast each method gains per doubling of the training budget (samples
seen), from the budget curves ``reconstruct.evaluate_snapshots`` writes.

A cell with ``train.snapshots`` keeps its net after those epochs. At a constant learning rate and
without early stopping, the net after E epochs of a longer run *is* the net an E-epoch run
trains (same seed, same data order and noise, epoch by epoch; ``tests/test_train.py`` checks it
bit for bit), so one run per method gives the whole budget curve.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from iresnet_inverse.archs import label
from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.cells import ImageCell


def slope_per_doubling(samples: Sequence[float], psnr: Sequence[float]) -> float:
    """Least-squares slope of PSNR against log2(samples seen): dB gained per doubling."""
    x, y = np.log2(np.asarray(samples, dtype=float)), np.asarray(psnr, dtype=float)
    keep = np.isfinite(y)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(x[keep], y[keep], 1)[0])


def scaling_table(scaling_path: str | Path, reconstruction_path: str | Path) -> pd.DataFrame:
    """One row per (operator, noise level, method): test PSNR at the smallest and largest
    budget, dB per doubling (fit over all budgets, and over the last doubling), TV's and the
    data's PSNR, and, where the method is below TV and still gaining, how many more doublings
    of the last one's gain it would need to reach TV."""
    curves = read_dataset(scaling_path)
    study = read_dataset(reconstruction_path)
    keys = [k for k in ImageCell.KEYS if k in curves.dims]
    stacked = curves.stack(cell=keys)
    rows = []
    for i in range(stacked.sizes["cell"]):
        one = stacked.isel(cell=i)
        psnr = one["psnr"].values
        if not np.isfinite(psnr).any():
            continue
        cell = {k: one[k].values.item() for k in keys}
        samples = one["samples"].values[np.isfinite(psnr)]
        psnr = psnr[np.isfinite(psnr)]
        tv = _tv_psnr(study, cell["operator"], cell["noise_level"])
        last = psnr[-1] - psnr[-2] if len(psnr) > 1 else float("nan")
        gap = tv - psnr[-1]
        rows.append(
            {
                "operator": cell["operator"],
                "noise_level": float(cell["noise_level"]),
                "method": label(str(cell["arch"])),
                "lipschitz": float(cell["lipschitz"]),
                "objective": str(cell["objective"]),
                "samples_min": int(samples[0]),
                "samples_max": int(samples[-1]),
                "psnr_min_budget": round(float(psnr[0]), 4),
                "psnr_max_budget": round(float(psnr[-1]), 4),
                "db_per_doubling": round(slope_per_doubling(samples, psnr), 4),
                "db_last_doubling": round(float(last), 4),
                "tv_psnr": round(tv, 4),
                # the same at every budget; NaN at the budgets a cell lacks (combined cube)
                "data_psnr": round(float(np.nanmean(one["data_psnr"].values)), 4),
                "doublings_to_tv": round(gap / last, 2) if gap > 0 and last > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def _tv_psnr(study: xr.Dataset, operator: str, noise_level: float) -> float:
    """Mean test PSNR of the TV cells (objective ``variational``) of (operator, noise level);
    NaN without one."""
    if "variational" not in study["objective"].values:
        return float("nan")
    psnr = study["psnr"].sel(operator=operator, noise_level=noise_level, objective="variational")
    return float(psnr.mean(skipna=True))
