"""Reconstruction-study figures (paper 002, Figs. 2-10) from ``reconstruction.nc``.

A *method* is an arch: baselines have one cell per (operator, delta); for iResNet archs the
figures comparing methods use reconstruction training at the highest L (as the paper reports).
Metrics are means over test images (and seeds).
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from iresnet_inverse.analysis.metrics import psnr, ssim
from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.plots.common import noise_level_axis, plt, save_figure

LABELS = {
    "iresnet": "iResNet",
    "iresnet_small": "small iResNet",
    "unet": "U-Net",
    "convresnet": "ConvResNet",
    "diffnet": "DiffNet",
    "tv": "TV",
}
METRICS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"))
# Fig. 8's parameter choice rule L(delta).
INVERSION_RULE = ((0.01, 0.999), (0.025, 0.99), (0.05, 0.95))


def label(arch: str) -> str:
    """A readable method name: Table 1 names, ``<name> (demo)`` for the demo variants."""
    base, _, suffix = str(arch).partition("_demo")
    name = LABELS.get(str(arch)) or LABELS.get(base, str(arch))
    return f"{name} (demo)" if str(arch).endswith("_demo") and base in LABELS else name


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
        raise ValueError("the reconstruction dataset holds no iResNet cell")
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


def _axes(rows: int, cols: int, width: float = 4.0, height: float = 3.0) -> tuple:
    return plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)


def plot_psnr_vs_lipschitz(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """PSNR and SSIM against L, one line per (iResNet arch, delta), per operator (Figs. 2-3)."""
    ds = read_dataset(path).sel(objective="reconstruction")
    operators = _operators(ds)
    fig, axes = _axes(2, len(operators))
    markers = dict(zip(iresnet_archs(ds), "osd^v<>", strict=False))
    lips = _finite(ds["lipschitz"].values)
    for j, op in enumerate(operators):
        deltas = ds["noise_level"].values
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(deltas)))
        for arch, marker in markers.items():
            for delta, color in zip(deltas, colors, strict=True):
                cell = ds.sel(operator=op, arch=arch, noise_level=delta, lipschitz=lips)
                for i, (var, name) in enumerate(METRICS):
                    y = _mean(cell[var]).values
                    if np.isfinite(y).any():
                        keep = np.isfinite(y)
                        axes[i, j].plot(
                            np.array(lips)[keep],
                            y[keep],
                            marker=marker,
                            color=color,
                            label=f"{label(arch)}, δ={delta:g}",
                        )
                    axes[i, j].set(xlabel="Lipschitz parameter L", ylabel=name)
        axes[0, j].set_title(op)
        axes[0, j].legend(fontsize=7)
    return save_figure(fig, stem, dpi)


def plot_methods_vs_noise(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """Every method and the noisy data against delta: PSNR top, SSIM bottom (Figs. 4-5)."""
    ds = read_dataset(path)
    operators = _operators(ds)
    palette = colors(ds)
    fig, axes = _axes(2, len(operators))
    for j, op in enumerate(operators):
        methods = method_cells(ds, op)
        deltas = ds["noise_level"].values
        for i, (var, name) in enumerate(METRICS):
            ax = axes[i, j]
            for arch, cells in methods.items():
                y = _mean(cells[var]).values
                keep = np.isfinite(y)
                ax.plot(deltas[keep], y[keep], marker="o", color=palette[arch], label=label(arch))
            data = _data_metric(ds.sel(operator=op), f"data_{var}")
            keep = np.isfinite(data)
            ax.plot(deltas[keep], data[keep], "k--", marker="x", label="noisy data")
            ax.set(ylabel=name)
            noise_level_axis(ax, deltas)
        axes[0, j].set_title(op)
        axes[0, j].legend(fontsize=7)
    return save_figure(fig, stem, dpi)


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


def colors(ds: xr.Dataset) -> dict[str, object]:
    """One color per arch, the same in every panel and figure of a study."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {str(a): cycle[i % len(cycle)] for i, a in enumerate(ds["arch"].values)}


def plot_examples(
    path: str | Path, stem: str | Path, operator: str, dpi: int = 150, name: str | None = None
) -> list[Path]:
    """A named test image at the lowest and highest delta: truth, data and every method's
    reconstruction, PSNR/SSIM in the titles (Figs. 6-7)."""
    ds = read_dataset(path)
    methods = method_cells(ds, operator)
    name = name or str(ds["name"].values[0])
    deltas = ds["noise_level"].values
    deltas = [
        d
        for d in deltas
        if any(np.isfinite(c["psnr"].sel(noise_level=d).values).any() for c in methods.values())
    ]
    rows = sorted({deltas[0], deltas[-1]})
    cols = 2 + len(methods)
    fig, axes = _axes(len(rows), cols, 2.2, 2.4)
    for i, delta in enumerate(rows):
        any_cell = ds.sel(operator=operator, noise_level=delta)
        truth = _named(any_cell, "named_truth", name)
        panels = [
            ("ground truth", truth),
            (f"data δ={delta:g}", _named(any_cell, "named_data", name)),
        ]
        for arch, cells in methods.items():
            panels.append(
                (label(arch), _named(cells.sel(noise_level=delta), "named_reconstruction", name))
            )
        for j, (title, image) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if j > 0 and np.isfinite(image).all():
                p, s = psnr(truth[None], image[None])[0], ssim(truth[None], image[None])[0]
                title = f"{title}\nPSNR {p:.2f}, SSIM {s:.3f}"
            ax.set_title(title, fontsize=7)
    fig.suptitle(f"{operator}: {name}")
    return save_figure(fig, stem, dpi)


def plot_inversion_error(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """||phi^-1(F(x)) - x|| against delta: per fixed L (thin) and along the parameter choice
    L(0.01)=0.999, L(0.025)=0.99, L(0.05)=0.95 (thick, where those cells exist) (Fig. 8)."""
    ds = read_dataset(path).sel(objective="reconstruction")
    operators = _operators(ds)
    fig, axes = _axes(1, len(operators))
    arch = main_iresnet(ds)
    for j, op in enumerate(operators):
        ax = axes[0, j]
        sub = _mean(ds["inversion_error"].sel(operator=op, arch=arch))
        deltas = sub["noise_level"].values
        for lip in _finite(sub["lipschitz"].values):
            y = sub.sel(lipschitz=lip).values
            keep = np.isfinite(y)
            if keep.any():
                ax.plot(deltas[keep], y[keep], marker=".", lw=0.8, label=f"L={lip:g}")
        rule = [
            (d, float(sub.sel(noise_level=d, lipschitz=lip)))
            for d, lip in INVERSION_RULE
            if d in deltas
            and lip in sub["lipschitz"].values
            and np.isfinite(sub.sel(noise_level=d, lipschitz=lip))
        ]
        if rule:
            x, y = zip(*rule, strict=True)
            ax.plot(x, y, "k-", marker="o", lw=2, label="L(δ)")
        ax.set(ylabel="inversion error ‖φ⁻¹(F(x)) − x‖", title=op)
        noise_level_axis(ax, deltas)
        ax.legend(fontsize=7)
    fig.suptitle(label(arch))
    return save_figure(fig, stem, dpi)


def plot_forward_approximation(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """MSE and SSIM of phi(x) against F(x) over delta, one line per L (Fig. 9)."""
    ds = read_dataset(path).sel(objective="reconstruction")
    operators = _operators(ds)
    arch = main_iresnet(ds)
    fig, axes = _axes(2, len(operators))
    for j, op in enumerate(operators):
        sub = ds.sel(operator=op, arch=arch)
        deltas = sub["noise_level"].values
        for i, (var, name) in enumerate((("forward_mse", "MSE"), ("forward_ssim", "SSIM"))):
            for lip in _finite(sub["lipschitz"].values):
                y = _mean(sub[var].sel(lipschitz=lip)).values
                keep = np.isfinite(y)
                if keep.any():
                    axes[i, j].plot(deltas[keep], y[keep], marker="o", label=f"L={lip:g}")
            axes[i, j].set(ylabel=f"{name} of φ(x) vs F(x)")
            noise_level_axis(axes[i, j], deltas)
        axes[0, j].set_title(op)
        axes[0, j].legend(fontsize=7)
    fig.suptitle(label(arch))
    return save_figure(fig, stem, dpi)


def plot_learned_operator(path: str | Path, stem: str | Path, dpi: int = 150) -> list[Path]:
    """F(x) beside phi(x) learned at the lowest and highest delta, per operator (Fig. 10)."""
    ds = read_dataset(path)
    arch = main_iresnet(ds)
    operators = _operators(ds)
    name = str(ds["name"].values[0])
    fig, axes = _axes(len(operators), 4, 2.4, 2.6)
    for i, op in enumerate(operators):
        cells = method_cells(ds, op)[arch]
        deltas = [
            d
            for d in cells["noise_level"].values
            if np.isfinite(cells["psnr"].sel(noise_level=d)).any()
        ]
        panels = [
            ("x", _named(cells.sel(noise_level=deltas[0]), "named_truth", name)),
            (f"F(x) ({op})", _named(cells.sel(noise_level=deltas[0]), "named_clean_data", name)),
        ]
        for d in (deltas[0], deltas[-1]):
            panels.append(
                (f"φ(x), δ={d:g}", _named(cells.sel(noise_level=d), "named_forward", name))
            )
        for j, (title, image) in enumerate(panels[:4]):
            axes[i, j].imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_title(title, fontsize=8)
            axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
    fig.suptitle(f"learned forward operator, {label(arch)}")
    return save_figure(fig, stem, dpi)
