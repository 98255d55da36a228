"""Reconstruction-study figures (paper 002, Figs. 2-10) from ``reconstruction.nc``.

A *method* is an arch: baselines have one cell per (operator, delta); for iResNet archs the
figures comparing methods use reconstruction training at the highest L (as the paper reports).
Metrics are means over test images (and seeds).
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from iresnet_inverse.archs import label
from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.errors import InputDataError
from iresnet_inverse.metrics import psnr, ssim
from iresnet_inverse.stages.figures.common import (
    figure_legend,
    frame,
    key,
    lipschitz_axis,
    lipschitz_color,
    lipschitz_values,
    method_color,
    noise_level_axis,
    panels,
    plt,
    save_figure,
)

METRICS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"))
# Fig. 8's parameter choice rule L(delta).
INVERSION_RULE = ((0.01, 0.999), (0.025, 0.99), (0.05, 0.95))
# Noise levels within one method's lines on an L axis: line style and marker, in order.
DELTA_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "d"), ((0, (5, 1, 1, 1)), "v"))


def _mean(da: xr.DataArray) -> xr.DataArray:
    dims = [d for d in ("image", "seed") if d in da.dims]
    return da.mean(dims)


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if np.isfinite(v)]


def iresnet_archs(ds: xr.Dataset) -> list[str]:
    """Archs with a finite Lipschitz parameter somewhere (the invertible ones)."""
    finite = ds["lipschitz"].values[np.isfinite(ds["lipschitz"].values)]
    out = []
    for arch in ds["arch"].values:
        psnr_ = ds["psnr"].sel(arch=arch, lipschitz=finite)
        if finite.size and bool(np.isfinite(psnr_.values).any()):
            out.append(str(arch))
    return out


def main_iresnet(ds: xr.Dataset) -> str:
    archs = iresnet_archs(ds)
    if not archs:
        raise InputDataError("the reconstruction dataset holds no iResNet cell")
    return "iresnet" if "iresnet" in archs else archs[0]


def method_cells(ds: xr.Dataset, operator: str) -> dict[str, xr.Dataset]:
    """Per method (arch), its cells for ``operator`` over delta: baselines' single cell, iResNets'
    reconstruction training at the highest L that has results."""
    out = {}
    sub = ds.sel(operator=operator)
    for arch in sub["arch"].values:
        cells = sub.sel(arch=arch)
        if str(arch) in iresnet_archs(ds):
            if "reconstruction" not in cells["objective"].values:
                continue
            cells = cells.sel(objective="reconstruction")
            have = [
                lip
                for lip in _finite(cells["lipschitz"].values)
                if np.isfinite(cells["psnr"].sel(lipschitz=lip).values).any()
            ]
            if not have:
                continue
            out[str(arch)] = cells.sel(lipschitz=max(have))
        else:
            lip = cells["lipschitz"].values[~np.isfinite(cells["lipschitz"].values)]
            cells = cells.sel(lipschitz=lip[0]) if lip.size else cells
            objective = [
                o
                for o in cells["objective"].values
                if np.isfinite(cells["psnr"].sel(objective=o)).values.any()
            ]
            if objective:
                out[str(arch)] = cells.sel(objective=objective[0])
    return out


def _operators(ds: xr.Dataset) -> list[str]:
    return [str(op) for op in ds["operator"].values]


def _outer_labels(axes: np.ndarray, ylabels: Sequence[str]) -> None:
    """Axis labels on the outer panels only: x on the bottom row, row i's y on column 0."""
    for ax in axes[:-1].flat:
        ax.set_xlabel("")
    for row, ylabel in zip(axes, ylabels, strict=True):
        row[0].set_ylabel(ylabel)


def studied_lipschitz(ds: xr.Dataset) -> list[float]:
    """The finite L values with a result in any cell: the categories of every L axis."""
    other = [d for d in ds["psnr"].dims if d != "lipschitz"]
    has = np.isfinite(ds["psnr"]).any(other).values
    return lipschitz_values(ds["lipschitz"].values[has])


def _lipschitz_line(
    ax: plt.Axes, y: xr.DataArray, where: dict[float, int], arch: str, k: int
) -> bool:
    """One method's metric over L on the categorical L axis, in the k-th noise-level style."""
    values = y.values
    keep = np.isfinite(values)
    if not keep.any():
        return False
    x = np.array([where[float(lip)] for lip in y["lipschitz"].values])
    ls, marker = DELTA_STYLES[k % len(DELTA_STYLES)]
    ax.plot(x[keep], values[keep], ls=ls, marker=marker, color=method_color(arch), gid=str(arch))
    return True


def _method_delta_legend(
    fig: plt.Figure, drawn: set[tuple[str, int]], archs: Sequence[str], deltas: Sequence[float]
) -> None:
    """Legend below the panels: each drawn method's colour, then each drawn δ's line style."""
    shown = [arch for arch in archs if any(arch == drawn_arch for drawn_arch, _ in drawn)]
    handles = [key(label(arch), method_color(arch), lw=2) for arch in shown]
    for k, delta in enumerate(deltas):
        if any(k == drawn_k for _, drawn_k in drawn):
            ls, marker = DELTA_STYLES[k % len(DELTA_STYLES)]
            handles.append(key(f"δ = {delta:g}", ls=ls, marker=marker))
    figure_legend(fig, handles, ncols=6)


def draw_psnr_vs_lipschitz(ds: xr.Dataset) -> plt.Figure:
    """PSNR and SSIM against L (categorical axis), one line per (iResNet arch, delta), per
    operator: colour is the method, line style the noise level (Figs. 2-3)."""
    ds = ds.sel(objective="reconstruction")
    operators, archs, lips = _operators(ds), iresnet_archs(ds), studied_lipschitz(ds)
    deltas = [float(d) for d in ds["noise_level"].values]
    fig, axes = panels(2, len(operators))
    drawn: set[tuple[str, int]] = set()
    for j, op in enumerate(operators):
        for i, (var, _) in enumerate(METRICS):
            where = lipschitz_axis(axes[i, j], lips)
            for arch in archs:
                for k, delta in enumerate(deltas):
                    cell = ds[var].sel(operator=op, arch=arch, noise_level=delta, lipschitz=lips)
                    if _lipschitz_line(axes[i, j], _mean(cell), where, arch, k):
                        drawn.add((arch, k))
        axes[0, j].set_title(op)
    _outer_labels(axes, [name for _, name in METRICS])
    _method_delta_legend(fig, drawn, archs, deltas)
    return fig


def plot_psnr_vs_lipschitz(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """``draw_psnr_vs_lipschitz`` of the dataset at ``path``, saved to ``stem``."""
    return save_figure(draw_psnr_vs_lipschitz(read_dataset(path)), stem, dpi)


def draw_methods_vs_noise(ds: xr.Dataset) -> plt.Figure:
    """Every method and the noisy data against delta: PSNR top, SSIM bottom (Figs. 4-5)."""
    operators = _operators(ds)
    fig, axes = panels(2, len(operators))
    deltas = ds["noise_level"].values
    for j, op in enumerate(operators):
        methods = method_cells(ds, op)
        for i, (var, _) in enumerate(METRICS):
            ax = axes[i, j]
            for arch, cells in methods.items():
                y = _mean(cells[var]).values
                _noise_line(ax, deltas, y, arch, label(arch), marker="o")
            data = _data_metric(ds.sel(operator=op), f"data_{var}")
            _noise_line(ax, deltas, data, "data", "noisy data", ls="--", marker="x")
            noise_level_axis(ax, deltas)
        axes[0, j].set_title(op)
    _outer_labels(axes, [name for _, name in METRICS])
    figure_legend(fig, ncols=7)
    return fig


def _noise_line(
    ax: plt.Axes, deltas: np.ndarray, y: np.ndarray, method: str, text: str, **style: object
) -> None:
    """A method's (or the data's) finite values against delta, in the method's colour."""
    keep = np.isfinite(y)
    if keep.any():
        color = method_color(method)
        ax.plot(deltas[keep], y[keep], color=color, label=text, gid=method, **style)


def plot_methods_vs_noise(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """``draw_methods_vs_noise`` of the dataset at ``path``, saved to ``stem``."""
    return save_figure(draw_methods_vs_noise(read_dataset(path)), stem, dpi)


def _data_metric(sub: xr.Dataset, var: str) -> np.ndarray:
    """The data's own quality per delta (identical in every cell of that delta)."""
    other = [d for d in sub[var].dims if d not in ("noise_level",)]
    return sub[var].mean(other, skipna=True).values


def _named(cells: xr.Dataset, var: str, name: str) -> np.ndarray:
    """The image ``var`` of ``name`` from the first cell in ``cells`` that has it."""
    da = cells[var].sel(name=name)
    rest = [d for d in da.dims if d not in ("ny", "nx")]
    stacked = da.stack(cell=rest) if rest else da.expand_dims(cell=[0])
    finite = np.isfinite(stacked.values).all(axis=(0, 1))
    return stacked.isel(cell=int(np.argmax(finite))).values


def _image(ax: plt.Axes, image: np.ndarray, title: str, color: object | None = None) -> None:
    """A gray image in [0, 1] without ticks, bordered in ``color`` (a method's) if given."""
    ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=7)
    if color is not None:
        frame(ax, color)


def plot_examples(
    path: str | Path, stem: str | Path, operator: str, dpi: int = 150, name: str | None = None
) -> list[Path]:
    """``draw_examples`` of the dataset at ``path``, saved to ``stem``."""
    return save_figure(draw_examples(read_dataset(path), operator, name), stem, dpi)


def draw_examples(ds: xr.Dataset, operator: str, name: str | None = None) -> plt.Figure:
    """A named test image at the lowest and highest delta: truth, data and every method's
    reconstruction (framed in the method's colour), PSNR/SSIM in the titles (Figs. 6-7)."""
    methods = method_cells(ds, operator)
    name = name or str(ds["name"].values[0])
    deltas = [
        d
        for d in ds["noise_level"].values
        if any(np.isfinite(c["psnr"].sel(noise_level=d).values).any() for c in methods.values())
    ]
    rows = sorted({deltas[0], deltas[-1]})
    fig, axes = panels(len(rows), 2 + len(methods), 2.2, 2.4)
    for i, delta in enumerate(rows):
        any_cell = ds.sel(operator=operator, noise_level=delta)
        truth = _named(any_cell, "named_truth", name)
        panels_ = [
            ("ground truth", truth, None),
            (f"data δ={delta:g}", _named(any_cell, "named_data", name), method_color("data")),
        ]
        for arch, cells in methods.items():
            image = _named(cells.sel(noise_level=delta), "named_reconstruction", name)
            panels_.append((label(arch), image, method_color(arch)))
        for j, (title, image, color) in enumerate(panels_):
            if j > 0 and np.isfinite(image).all():
                p, s = psnr(truth[None], image[None])[0], ssim(truth[None], image[None])[0]
                title = f"{title}\nPSNR {p:.2f}, SSIM {s:.3f}"
            _image(axes[i, j], image, title, color)
    fig.suptitle(f"{operator}: {name}")
    return fig


def _lipschitz_legend(fig: plt.Figure, lips: Sequence[float], *extra: object) -> None:
    """Legend below the panels: each L's colour, then ``extra`` handles."""
    handles = [key(f"L = {lip:g}", lipschitz_color(lip), marker="o") for lip in lips]
    figure_legend(fig, [*handles, *extra], ncols=6)


def _rule_line(ax: plt.Axes, sub: xr.DataArray) -> bool:
    """The inversion error along the parameter choice rule L(delta), each point in its L's
    colour, where those cells exist."""
    deltas, lips = sub["noise_level"].values, sub["lipschitz"].values
    rule = [
        (d, lip, float(sub.sel(noise_level=d, lipschitz=lip)))
        for d, lip in INVERSION_RULE
        if d in deltas and lip in lips and np.isfinite(sub.sel(noise_level=d, lipschitz=lip))
    ]
    if not rule:
        return False
    x, lip, y = zip(*rule, strict=True)
    ax.plot(x, y, "k-", lw=2, zorder=2)
    colors = [lipschitz_color(v) for v in lip]
    ax.scatter(x, y, s=45, c=colors, edgecolors="k", linewidths=1.2, zorder=3)
    return True


def draw_inversion_error(ds: xr.Dataset) -> plt.Figure:
    """||phi^-1(F(x)) - x|| against delta: per fixed L (thin, the L's colour) and along the
    parameter choice L(0.01)=0.999, L(0.025)=0.99, L(0.05)=0.95 (thick black, where those
    cells exist) (Fig. 8)."""
    ds = ds.sel(objective="reconstruction")
    operators, arch = _operators(ds), main_iresnet(ds)
    fig, axes = panels(1, len(operators), 4.2, 3.2)
    drawn, rule = set(), False
    for ax, op in zip(axes[0], operators, strict=True):
        sub = _mean(ds["inversion_error"].sel(operator=op, arch=arch))
        deltas = sub["noise_level"].values
        for lip in lipschitz_values(sub["lipschitz"].values):
            y = sub.sel(lipschitz=lip).values
            keep = np.isfinite(y)
            if keep.any():
                color, gid = lipschitz_color(lip), f"L={lip:g}"
                ax.plot(deltas[keep], y[keep], marker=".", lw=1, color=color, gid=gid)
                drawn.add(lip)
        rule = _rule_line(ax, sub) or rule
        ax.set_title(op)
        noise_level_axis(ax, deltas)
    _outer_labels(axes, ["inversion error ‖φ⁻¹(F(x)) − x‖"])
    extra = [key("L(δ) rule", "k", lw=2, marker="o")] if rule else []
    _lipschitz_legend(fig, sorted(drawn), *extra)
    fig.suptitle(label(arch))
    return fig


def plot_inversion_error(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """``draw_inversion_error`` of the dataset at ``path``, saved to ``stem``."""
    return save_figure(draw_inversion_error(read_dataset(path)), stem, dpi)


def draw_forward_approximation(ds: xr.Dataset) -> plt.Figure:
    """MSE and SSIM of phi(x) against F(x) over delta, one line per L in its colour (Fig. 9)."""
    ds = ds.sel(objective="reconstruction")
    operators, arch = _operators(ds), main_iresnet(ds)
    rows = (("forward_mse", "MSE of φ(x) vs F(x)"), ("forward_ssim", "SSIM of φ(x) vs F(x)"))
    fig, axes = panels(2, len(operators))
    drawn = set()
    for j, op in enumerate(operators):
        sub = ds.sel(operator=op, arch=arch)
        deltas = sub["noise_level"].values
        for i, (var, _) in enumerate(rows):
            for lip in lipschitz_values(sub["lipschitz"].values):
                y = _mean(sub[var].sel(lipschitz=lip)).values
                keep = np.isfinite(y)
                if keep.any():
                    color, gid = lipschitz_color(lip), f"L={lip:g}"
                    axes[i, j].plot(deltas[keep], y[keep], marker="o", color=color, gid=gid)
                    drawn.add(lip)
            noise_level_axis(axes[i, j], deltas)
        axes[0, j].set_title(op)
    _outer_labels(axes, [name for _, name in rows])
    _lipschitz_legend(fig, sorted(drawn))
    fig.suptitle(label(arch))
    return fig


def plot_forward_approximation(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """``draw_forward_approximation`` of the dataset at ``path``, saved to ``stem``."""
    return save_figure(draw_forward_approximation(read_dataset(path)), stem, dpi)


def draw_learned_operator(ds: xr.Dataset) -> plt.Figure:
    """F(x) beside phi(x) learned at the lowest and highest delta, per operator (Fig. 10)."""
    arch = main_iresnet(ds)
    operators = _operators(ds)
    name = str(ds["name"].values[0])
    fig, axes = panels(len(operators), 4, 2.4, 2.6)
    for i, op in enumerate(operators):
        cells = method_cells(ds, op)[arch]
        deltas = [
            d
            for d in cells["noise_level"].values
            if np.isfinite(cells["psnr"].sel(noise_level=d)).any()
        ]
        first = cells.sel(noise_level=deltas[0])
        panels_ = [
            ("x", _named(first, "named_truth", name), None),
            (f"F(x) ({op})", _named(first, "named_clean_data", name), None),
        ]
        for d in (deltas[0], deltas[-1]):
            image = _named(cells.sel(noise_level=d), "named_forward", name)
            panels_.append((f"φ(x), δ={d:g}", image, method_color(arch)))
        for ax, (title, image, color) in zip(axes[i], panels_, strict=True):
            _image(ax, image, title, color)
    fig.suptitle(f"learned forward operator, {label(arch)}")
    return fig


def plot_learned_operator(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """``draw_learned_operator`` of the dataset at ``path``, saved to ``stem``."""
    return save_figure(draw_learned_operator(read_dataset(path)), stem, dpi)
