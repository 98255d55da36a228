"""Learning curves of every trained network (``training.nc``): has each one plateaued? And the
budget curves (``scaling.nc``): how fast does each method gain with more training?"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.ticker import FormatStrFormatter, LogLocator

from iresnet_inverse.archs import label
from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.stages.figures.common import (
    figure_legend,
    lipschitz_color,
    method_color,
    panels,
    save_figure,
)
from iresnet_inverse.stages.scaling import scaling_table
from iresnet_inverse.stages.tables import PLATEAU_DB, last_fifth_gain

OBJECTIVE_STYLES = {"reconstruction": "-", "approximation": "--", "logdet": ":", "divergence": "-."}


def plot_learning_curves(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """``draw_learning_curves`` of the dataset at ``path``, saved to ``stem``."""
    return save_figure(draw_learning_curves(read_dataset(path)), stem, dpi)


def _curves(ds: xr.Dataset) -> list[tuple[dict[str, object], np.ndarray, np.ndarray]]:
    """(cell, validation PSNR, elapsed) of every trained cell in the cube, finite epochs only;
    the epoch of the convergence rule's plateau (0: none) as the cell's ``plateau_epoch``."""
    keys = [d for d in ds["val_psnr"].dims if d != "epoch"]
    stacked = ds.stack(cell=keys)
    out = []
    for i in range(stacked.sizes["cell"]):
        one = stacked.isel(cell=i)
        keep = np.isfinite(one["val_psnr"].values)
        if keep.any():
            cell = {k: one[k].values.item() for k in keys}
            flags = one["plateau"].values[keep] if "plateau" in one else np.zeros(keep.sum())
            found = np.flatnonzero(flags == 1)
            cell["plateau_epoch"] = int(found[0]) + 1 if len(found) else 0
            out.append((cell, one["val_psnr"].values[keep], one["elapsed"].values[keep]))
    return out


def draw_learning_curves(ds: xr.Dataset) -> plt.Figure:
    """One row per (operator, delta): validation PSNR against epoch (left) and against training
    time (right). Baselines thin, in their method's colour; iResNets thick, in their L's
    colour, one line style per objective. A hollow end marker: the curve gained at least
    0.1 dB in its last fifth of epochs (not plateaued). A vertical tick: where the convergence
    rule (lr_schedule plateau) found the plateau and began the decay."""
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
                found = int(cell["plateau_epoch"])
                if 0 < found <= len(val):
                    ax.plot(x[found - 1], val[found - 1], "|", color=color, markersize=12)
        row[0].set_ylabel(f"{operator}, δ = {delta:g}\nvalidation PSNR (dB)")
        row[0].set_xlabel("epoch")
        row[1].set_xlabel("training time (s)")
    figure_legend(fig, ncols=3)
    return fig


def plot_budget_scaling(
    scaling_path: str | Path, reconstruction_path: str | Path, stem: str | Path, dpi: int = 150
) -> list[Path]:
    """``draw_budget_scaling`` of the budget curves at ``scaling_path`` (TV from
    ``reconstruction_path``), saved to ``stem``."""
    table = scaling_table(scaling_path, reconstruction_path)
    return save_figure(draw_budget_scaling(read_dataset(scaling_path), table), stem, dpi)


def draw_budget_scaling(ds: xr.Dataset, table: pd.DataFrame) -> plt.Figure:
    """One panel per (operator, delta): mean test PSNR against samples seen (log scale), one
    line per method (iResNets in their L's colour), TV dashed and the noisy data dotted; the
    legend gives each method's dB per doubling."""
    problems = sorted({(str(r.operator), float(r.noise_level)) for r in table.itertuples()})
    fig, axes = panels(1, len(problems), width=4.6, height=3.4)
    keys = [d for d in ds["psnr"].dims if d != "samples"]
    stacked = ds.stack(cell=keys)
    for ax, (operator, delta) in zip(axes[0], problems, strict=True):
        rows = table[(table["operator"] == operator) & (table["noise_level"] == delta)]
        for i in range(stacked.sizes["cell"]):
            one = stacked.isel(cell=i)
            cell = {k: one[k].values.item() for k in keys}
            keep = np.isfinite(one["psnr"].values)
            if (str(cell["operator"]), float(cell["noise_level"])) != (operator, delta):
                continue
            if not keep.any():
                continue
            lip, arch = float(cell["lipschitz"]), str(cell["arch"])
            color = lipschitz_color(lip) if np.isfinite(lip) else method_color(arch)
            name = f"{label(arch)} L={lip:g}" if np.isfinite(lip) else label(arch)
            slope = rows[(rows["method"] == label(arch)) & (rows["lipschitz"] == lip)]
            name += f" ({slope['db_per_doubling'].iloc[0]:+.2f} dB/doubling)" if len(slope) else ""
            samples = one["samples"].values[keep]
            ax.plot(samples, one["psnr"].values[keep], "o-", color=color, label=name)
        for value, style, name in (
            (rows["tv_psnr"].iloc[0], "--", "TV (tuned α)"),
            (rows["data_psnr"].iloc[0], ":", "noisy data"),
        ):
            if np.isfinite(value):
                ax.axhline(value, linestyle=style, color="0.2", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training samples seen")
        ax.set_ylabel("mean test PSNR (dB)")
        ax.set_title(f"{operator}, δ = {delta:g}")
        # One legend per panel, below it: the slopes differ between panels.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=7, frameon=False)
    return fig


def plot_search(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """``draw_search`` of the search dataset at ``path``, saved to ``stem``."""
    return save_figure(draw_search(read_dataset(path)), stem, dpi)


def draw_search(ds: xr.Dataset) -> plt.Figure:
    """One panel per searched architecture: each trial's best validation PSNR against its
    learning rate (log scale), the marker's size growing with the batch size; the chosen trial
    ringed."""
    archs = [str(a) for a in ds["arch"].values]
    fig, axes = panels(1, len(archs), width=3.6, height=3.0)
    sizes = np.unique(ds["batch_size"].values[np.isfinite(ds["batch_size"].values)])
    for ax, arch in zip(axes[0], archs, strict=True):
        one = ds.sel(arch=arch)
        rate, batch, val = (one[v].values for v in ("learning_rate", "batch_size", "val_psnr"))
        for size in sizes:
            chosen = batch == size
            ax.scatter(
                rate[chosen],
                val[chosen],
                s=12 + 6 * np.log2(size) ** 2,
                alpha=0.8,
                color=method_color(arch),
                label=f"batch {size:g}",
                edgecolor="0.2",
            )
        best = int(one["best_trial"])
        ax.scatter(
            one["learning_rate"].sel(trial=best),
            one["val_psnr"].sel(trial=best),
            s=260,
            facecolor="none",
            edgecolor="black",
            linewidth=1.5,
            label="chosen",
        )
        ax.set_xscale("log")
        # Labels at 1, 2 and 5 times powers of ten: all minor labels collide on a short range.
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FormatStrFormatter("%.0e"))
        ax.set_xlabel("learning rate")
        ax.set_ylabel("best validation PSNR (dB)")
        ax.set_title(label(arch))
    figure_legend(fig, ncols=len(sizes) + 1)
    return fig
