"""Figures of the Bayesian toy study, from ``results/datasets/toy2d.nc``."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.stages.figures.common import (
    figure_legend,
    key,
    noise_level_axis,
    panels,
    plt,
    save_figure,
)

OBJECTIVE_COLORS = {
    "approximation": "tab:blue",
    "reconstruction": "tab:orange",
    "logdet": "tab:green",
    "divergence": "tab:red",
}
# dhat / delta in the noise-level ablation: line style.
ABLATION_STYLES = {0.5: ":", 1.0: "-", 2.0: "--"}
REFERENCES = {
    "map": ("MAP", "k", "--"),
    "posterior_mean": ("PM", "0.4", ":"),
    "tikhonov": ("Tikhonov", "tab:purple", "-."),
}


def _present(da: xr.DataArray) -> bool:
    return bool(np.isfinite(da.values).any())


def _mse(estimate: xr.DataArray, truth: xr.DataArray) -> xr.DataArray:
    return ((estimate - truth) ** 2).sum("component", min_count=1).mean("point")


def _trained(sub: xr.Dataset, var: str) -> list[tuple[float, float]]:
    """The (eps, delta) pairs, ascending, where ``var`` has values (the combined cube holds every
    prior's eps and delta, most of them empty for any one prior)."""
    return [
        (float(e), float(d))
        for e in sub["eps"].values
        for d in sub["noise_level"].values
        if _present(sub[var].sel(eps=e, noise_level=d))
    ]


def _first(ds: xr.Dataset, **selection: object) -> xr.Dataset:
    """Select by value where given, else the first index of every other cell dimension."""
    out = ds.sel({k: v for k, v in selection.items() if k in ds.dims})
    rest = {d: 0 for d in ("lipschitz", "seed") if d in out.dims}
    return out.isel(rest)


def plot_toy_grid(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """A regular grid and its images under phi and phi^-1 over the prior density, per objective
    (bimodal prior, its first eps, its middle noise level, dhat = delta)."""
    ds = read_dataset(path)
    sub = _first(ds, prior="bimodal", noise_factor=1.0)
    # the cube's eps and delta are those of every prior: keep the bimodal prior's own
    trained = _trained(sub, "grid_forward")
    eps = trained[0][0]
    levels = [d for e, d in trained if e == eps]
    sub = sub.sel(eps=eps, noise_level=levels[len(levels) // 2])
    objectives = [
        o for o in sub["objective"].values if _present(sub["grid_forward"].sel(objective=o))
    ]
    fig, axes = panels(2, len(objectives), 3.2, 3.2)
    for j, obj in enumerate(objectives):
        cell = sub.sel(objective=obj)
        for i, (var, label) in enumerate((("grid_forward", "φ"), ("grid_inverse", "φ⁻¹"))):
            ax = axes[i, j]
            ax.contourf(
                cell["u"], cell["v"], cell["prior_density"].T, levels=12, cmap="Greys", alpha=0.6
            )
            for line in cell[var].values:
                ax.plot(line[:, 0], line[:, 1], lw=0.6, color=OBJECTIVE_COLORS.get(str(obj), "k"))
            ax.set(xlim=(-2.5, 2.5), ylim=(-2.5, 2.5), aspect="equal")
            ax.set_title(f"{obj}: grid under {label}", fontsize=9)
    fig.suptitle(
        f"bimodal prior, A = diag(1, {float(sub['eps']):g}), δ = {float(sub['noise_level']):g}",
        fontsize=10,
    )
    return save_figure(fig, stem, dpi=dpi)


def plot_toy_mse_vs_noise(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """Reconstruction MSE (top) and forward error (bottom) vs delta per objective, with the MAP,
    posterior-mean and Tikhonov references (bimodal prior, dhat = delta), one column per eps."""
    ds = read_dataset(path)
    sub = _first(ds, prior="bimodal", noise_factor=1.0)
    eps_values = [e for e in sub["eps"].values if _present(sub["reconstruction"].sel(eps=e))]
    fig, axes = panels(2, len(eps_values), 4.2, 3.2)
    for j, eps in enumerate(eps_values):
        cell = sub.sel(eps=eps)
        for obj in cell["objective"].values:
            mse = _mse(cell["reconstruction"].sel(objective=obj), cell["x"])
            if _present(mse):
                color = OBJECTIVE_COLORS.get(str(obj), "k")
                axes[0, j].plot(cell["noise_level"], mse, "o-", color=color, label=str(obj))
                fwd = cell["forward_error"].sel(objective=obj).mean("point")
                axes[1, j].plot(cell["noise_level"], fwd, "o-", color=color, label=str(obj))
        for var, (label, color, style) in REFERENCES.items():
            axes[0, j].plot(
                cell["noise_level"], _mse(cell[var], cell["x"]), style, color=color, label=label
            )
        axes[0, j].set(title=f"A = diag(1, {float(eps):g})", ylabel="reconstruction MSE")
        axes[1, j].set(ylabel="mean ||φ(x) − target||")
        for ax in axes[:, j]:
            noise_level_axis(ax, cell["noise_level"].values)
        axes[0, j].set_xlabel("")
    figure_legend(fig, ncols=7)
    fig.suptitle("Bimodal prior: reconstruction and forward errors against δ", fontsize=10)
    return save_figure(fig, stem, dpi=dpi)


def _distance(estimate: xr.DataArray, reference: xr.DataArray) -> xr.DataArray:
    return np.sqrt(((estimate - reference) ** 2).sum("component", min_count=1)).mean("point")


def plot_toy_noise_ablation(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """Mean distance of phi^-1(data) to the MAP and to the posterior mean against delta, for
    dhat in {0.5, 1, 2} delta (bimodal prior, first eps), logdet and divergence."""
    ds = read_dataset(path)
    sub = _first(ds, prior="bimodal").isel(eps=0)
    objectives = [o for o in ("logdet", "divergence") if o in sub["objective"].values]
    fig, axes = panels(2, len(objectives), 4.2, 3.2)
    for j, obj in enumerate(objectives):
        cell = sub.sel(objective=obj)
        for factor in cell["noise_factor"].values:
            rec = cell["reconstruction"].sel(noise_factor=factor)
            for i, ref in enumerate(("map", "posterior_mean")):
                dist = _distance(rec, cell[ref])
                if _present(dist):
                    axes[i, j].plot(
                        cell["noise_level"],
                        dist,
                        "o" + ABLATION_STYLES.get(float(factor), "-."),
                        color=OBJECTIVE_COLORS[obj],
                        label=f"δ̂ = {float(factor):g} δ",
                    )
        axes[0, j].set(title=obj, ylabel="mean distance to MAP")
        axes[1, j].set(ylabel="mean distance to PM")
        for ax in axes[:, j]:
            noise_level_axis(ax, cell["noise_level"].values)
        axes[0, j].set_xlabel("")
    _ablation_legend(fig, sub["noise_factor"].values, objectives)
    fig.suptitle(
        f"Noise-level ablation, bimodal prior, A = diag(1, {float(sub['eps']):g})", fontsize=10
    )
    return save_figure(fig, stem, dpi=dpi)


def _ablation_legend(fig: plt.Figure, factors: Sequence[float], objectives: Sequence[str]) -> None:
    """Legend below the panels: each objective's colour, then each dhat's line style."""
    handles = [key(str(obj), OBJECTIVE_COLORS[obj], lw=2) for obj in objectives]
    handles += [
        key(f"δ̂ = {float(f):g} δ", ls=ABLATION_STYLES.get(float(f), "-."), marker="o")
        for f in factors
    ]
    figure_legend(fig, handles, ncols=5)


ESTIMATOR_POINTS = 60  # test points per panel: enough to see the pattern, few enough to read


def _estimator_cell(sub: xr.Dataset) -> xr.Dataset | None:
    """The cell where MAP and PM differ most visibly: eps 1 first, at the largest noise level
    with trained networks."""
    trained = _trained(sub, "reconstruction")
    if not trained:
        return None
    e, d = min(trained, key=lambda pair: (not np.isclose(pair[0], 1.0), pair[0], -pair[1]))
    return sub.sel(eps=e, noise_level=d)


def plot_toy_estimators(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """Per prior (first two components), at eps 1 and the largest noise level: the exact MAP and
    posterior mean of each datum (open markers) and the networks' reconstructions of the same
    datum (dots, one color per objective, dhat = delta), over the prior density."""
    ds = read_dataset(path)
    priors = [p for p in ds["prior"].values if _present(ds["reconstruction"].sel(prior=p))]
    fig, axes = panels(1, len(priors), 4.2, 4.2)
    for j, prior in enumerate(priors):
        cell = _estimator_cell(_first(ds, prior=prior, noise_factor=1.0))
        if cell is not None:
            _estimator_panel(axes[0, j], cell, prior)
    figure_legend(fig, ncols=5)
    fig.suptitle(
        f"Exact MAP and PM of {ESTIMATOR_POINTS} test data, and the networks' reconstructions",
        fontsize=10,
    )
    return save_figure(fig, stem, dpi=dpi)


def _estimator_panel(ax: plt.Axes, cell: xr.Dataset, prior: str) -> None:
    """One prior's panel: the density's contours, the exact estimators of the first test
    data and each objective's reconstructions of them."""
    if "prior_density" in cell and _present(cell["prior_density"]):
        ax.contour(
            cell["u"],
            cell["v"],
            cell["prior_density"].T,
            levels=6,
            colors="0.8",
            linewidths=0.6,
        )
    shown = cell.isel(point=slice(0, ESTIMATOR_POINTS))
    first, second = (dict(component=i) for i in (0, 1))
    for var, marker in (("map", "s"), ("posterior_mean", "o")):
        label, color, _ = REFERENCES[var]
        ax.scatter(
            shown[var].isel(first),
            shown[var].isel(second),
            s=36,
            marker=marker,
            facecolors="none",
            edgecolors=color,
            linewidths=0.9,
            label=label,
            zorder=3,
        )
    for obj, marker in (("logdet", "v"), ("divergence", "o"), ("reconstruction", "^")):
        if obj not in shown["objective"].values:
            continue
        rec = shown["reconstruction"].sel(objective=obj)
        if _present(rec):
            ax.scatter(
                rec.isel(first),
                rec.isel(second),
                s=10,
                marker=marker,
                c=OBJECTIVE_COLORS[obj],
                label=f"φ⁻¹, {obj}",
                zorder=4,
            )
    # the mixtures span +-2; the log-cosh prior's data lie within +-0.6: zoom to the points
    shown_values = np.abs(shown[["map", "posterior_mean"]].to_array().values)
    lim = min(2.2, 1.3 * float(np.nanmax(shown_values)))
    ax.set(
        title=f"{prior}, eps {float(cell['eps']):g}, δ {float(cell['noise_level']):g}",
        aspect="equal",
        xlim=(-lim, lim),
        ylim=(-lim, lim),
    )
