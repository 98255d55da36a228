"""Learning curves of every trained network (``training.nc``): has each one plateaued?"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from iresnet_inverse.archs import label
from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.plots.common import (
    figure_legend,
    lipschitz_color,
    method_color,
    panels,
    save_figure,
)
from iresnet_inverse.tables import PLATEAU_DB, last_fifth_gain

OBJECTIVE_STYLES = {"reconstruction": "-", "approximation": "--", "logdet": ":", "divergence": "-."}


def plot_learning_curves(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """``draw_learning_curves`` of the dataset at ``path``, saved to ``stem``."""
    return save_figure(draw_learning_curves(read_dataset(path)), stem, dpi)


def _curves(ds: xr.Dataset) -> list[tuple[dict[str, object], np.ndarray, np.ndarray]]:
    """(cell, validation PSNR, elapsed) of every trained cell in the cube, finite epochs only."""
    keys = [d for d in ds["val_psnr"].dims if d != "epoch"]
    stacked = ds.stack(cell=keys)
    out = []
    for i in range(stacked.sizes["cell"]):
        one = stacked.isel(cell=i)
        keep = np.isfinite(one["val_psnr"].values)
        if keep.any():
            cell = {k: one[k].values.item() for k in keys}
            out.append((cell, one["val_psnr"].values[keep], one["elapsed"].values[keep]))
    return out


def draw_learning_curves(ds: xr.Dataset) -> plt.Figure:
    """One row per (operator, delta): validation PSNR against epoch (left) and against training
    time (right). Baselines thin, in their method's colour; iResNets thick, in their L's
    colour, one line style per objective. A hollow end marker: the curve gained at least
    0.1 dB in its last fifth of epochs (not plateaued)."""
    curves = _curves(ds)
    problems = sorted({(str(c["operator"]), float(c["noise_level"])) for c, _, _ in curves})
    fig, axes = panels(len(problems), 2, width=4.2, height=2.8)
    for row, (operator, delta) in zip(axes, problems, strict=True):
        for cell, val, elapsed in curves:
            if (str(cell["operator"]), float(cell["noise_level"])) != (operator, delta):
                continue
            lip, objective, arch = float(cell["lipschitz"]), str(cell["objective"]), cell["arch"]
            if np.isfinite(lip):  # iResNets: thick, in their L's colour
                color, style = lipschitz_color(lip), OBJECTIVE_STYLES.get(objective, "-")
                name, width = f"{label(str(arch))} L={lip:g} {objective}", 2.2
            else:
                color, style, name, width = method_color(str(arch)), "-", label(str(arch)), 1.0
            fill = color if last_fifth_gain(val) < PLATEAU_DB else "white"
            for ax, x in zip(row, (np.arange(1, len(val) + 1), elapsed), strict=True):
                ax.plot(x, val, style, color=color, label=name, linewidth=width)
                ax.plot(x[-1], val[-1], "o", color=color, markerfacecolor=fill, markersize=4)
        row[0].set_ylabel(f"{operator}, δ = {delta:g}\nvalidation PSNR (dB)")
        row[0].set_xlabel("epoch")
        row[1].set_xlabel("training time (s)")
    figure_legend(fig, ncols=3)
    return fig
