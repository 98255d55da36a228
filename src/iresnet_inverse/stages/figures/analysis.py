"""What the networks learned (paper 002, Figs. 11-17) from ``directional.nc`` and ``saliency.nc``.

Each figure looks at the probed iResNet (the first arch with probes, ``iresnet`` if present),
reconstruction training, per operator: over delta at the highest L probed there, or over L at
the highest delta. In cluster maps the cluster with the most edge pixels is green (the paper's
convention), the others red, blue, ...
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

from iresnet_inverse.archs import label
from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.errors import InputDataError
from iresnet_inverse.stages.figures.common import (
    figure_legend,
    frame,
    lipschitz_color,
    noise_level_axis,
    plt,
    save_figure,
    side_legend,
)

CLUSTER_COLORS = ("tab:green", "tab:red", "tab:blue", "tab:orange", "tab:purple", "tab:brown")
MAP_COLORS = {"network": "tab:red", "operator": "tab:blue"}


def _probed(ds: xr.Dataset, var: str) -> xr.Dataset:
    """The probed arch's reconstruction cells, first seed; dims operator, noise_level, L."""
    ds = ds.sel(objective="reconstruction").isel(seed=0)
    archs = [a for a in ds["arch"].values if np.isfinite(ds[var].sel(arch=a).values).any()]
    if not archs:
        raise InputDataError(f"no probed cell holds {var}")
    arch = "iresnet" if "iresnet" in archs else archs[0]
    return ds.sel(arch=arch).assign_attrs(arch=str(arch))


def _has(da: xr.DataArray) -> bool:
    return bool(np.isfinite(da.values).any())


def _over_delta(ds: xr.Dataset, var: str, operator: str) -> list[tuple[float, xr.Dataset]]:
    """(delta, cell at the highest L probed there) for every probed delta of the operator."""
    out = []
    sub = ds.sel(operator=operator)
    for delta in sub["noise_level"].values:
        at = sub.sel(noise_level=delta)
        lips = [lip for lip in at["lipschitz"].values if _has(at[var].sel(lipschitz=lip))]
        if lips:
            out.append((float(delta), at.sel(lipschitz=max(lips))))
    return out


def _over_lipschitz(ds: xr.Dataset, var: str, operator: str) -> list[tuple[float, xr.Dataset]]:
    """(L, cell) for every probed L at the operator's highest probed delta."""
    cells = _over_delta(ds, var, operator)
    if not cells:
        return []
    at = ds.sel(operator=operator, noise_level=cells[-1][0])
    return [
        (float(lip), at.sel(lipschitz=lip))
        for lip in at["lipschitz"].values
        if _has(at[var].sel(lipschitz=lip))
    ]


def _operators(ds: xr.Dataset, var: str) -> list[str]:
    return [str(op) for op in ds["operator"].values if _has(ds[var].sel(operator=op))]


def _bare(ax: plt.Axes, title: str = "") -> None:
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=7)


def _signed(ax: plt.Axes, image: np.ndarray, title: str = "") -> None:
    """A signed map (direction, kernel) on a symmetric red-blue scale."""
    bound = float(np.nanmax(np.abs(image))) or 1.0
    ax.imshow(image, cmap="RdBu_r", vmin=-bound, vmax=bound)
    _bare(ax, title)


def _gray(ax: plt.Axes, image: np.ndarray, title: str = "") -> None:
    ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1)
    _bare(ax, title)


def plot_directional_directions(
    directional: str | Path, saliency: str | Path, stem: str | Path, dpi: int = 150
) -> list[Path]:
    """Per operator and named image: the image with its subject outlined, then the direction h
    of strongest regularization, whole image and subject only, at the lowest and highest
    delta (Fig. 11)."""
    ds = _probed(read_dataset(directional), "phi_norm")
    rows = [(op, str(n)) for op in _operators(ds, "phi_norm") for n in ds["name"].values]
    fig, axes = plt.subplots(
        len(rows), 5, figsize=(10, 2.1 * len(rows)), squeeze=False, layout="constrained"
    )
    for i, (op, name) in enumerate(rows):
        cells = _over_delta(ds, "phi_norm", op)
        first = cells[0][1].sel(name=name)
        _gray(axes[i, 0], first["image"].values, f"{op}: {name}")
        axes[i, 0].contour(first["subject_mask"].values, levels=[0.5], colors="yellow")
        for j, (delta, cell) in enumerate((cells[0], cells[-1])):
            for r, region in enumerate(("image", "subject")):
                at = cell.sel(name=name, region=region)
                title = f"h ({region}), δ={delta:g}\n‖∂φ‖={float(at['phi_norm']):.2f}"
                title += f", ‖∂F‖={float(at['operator_norm']):.2f}"
                _signed(axes[i, 1 + 2 * j + r], at["direction"].values, title)
    fig.suptitle(f"directions of strongest regularization, {label(ds.attrs['arch'])}")
    return save_figure(fig, stem, dpi)


def plot_directional_norms(
    directional: str | Path, saliency: str | Path, stem: str | Path, dpi: int = 150
) -> list[Path]:
    """||D phi h|| (red) and ||D F h|| (blue) against delta, mean over the named images; solid
    for the whole image, dashed for the subject (Fig. 12). Where the dataset holds it, also the
    lifted ||D Phi(c x0)(c h)|| / sqrt(M) (purple) with its guaranteed lower bound 1 - L (gray):
    the bound holds for Phi on X^M, not for phi = mean o Phi o c (``analysis.directional``)."""
    ds = _probed(read_dataset(directional), "phi_norm")
    operators = _operators(ds, "phi_norm")
    fig, axes = plt.subplots(
        1, len(operators), figsize=(4.2 * len(operators), 3.2), squeeze=False, layout="constrained"
    )
    for ax, op in zip(axes[0], operators, strict=True):
        cells = _over_delta(ds, "phi_norm", op)
        deltas = [d for d, _ in cells]
        lifted = "lifted_norm" in ds and all(_has(c["lifted_norm"]) for _, c in cells)
        lines = [("phi_norm", "tab:red", "‖∂hφ‖"), ("operator_norm", "tab:blue", "‖∂hF‖")]
        if lifted:
            lines.append(("lifted_norm", "tab:purple", "‖∂chΦ‖/√M"))
        for region, style in (("image", "-"), ("subject", "--")):
            for var, color, name in lines:
                y = [float(c[var].sel(region=region).mean("name")) for _, c in cells]
                ax.plot(deltas, y, style, marker="o", color=color, label=f"{name}, {region}")
        if lifted:  # the bound of the lifted norm only: phi on X has none
            lips = sorted({float(c["lipschitz"]) for _, c in cells})
            ax.axhline(1 - max(lips), color="gray", lw=0.8, ls=":", label="1 − L ≤ ‖∂chΦ‖/√M")
        ax.set(title=op)
        noise_level_axis(ax, deltas)
    axes[0, 0].set_ylabel("norm (mean over images)")
    figure_legend(fig, ncols=4)
    fig.suptitle(f"directional derivatives, {label(ds.attrs['arch'])}")
    return save_figure(fig, stem, dpi)


def _cluster_map(ax: plt.Axes, cell: xr.Dataset, name: str, which: str, title: str) -> None:
    """The image in gray with the pixel set P coloured by cluster, edge cluster green."""
    at = cell.sel(name=name, map=which)
    _gray(ax, at["image"].values, title)
    labels = at["label"].values.astype(int)
    edge = int(at["edge_cluster"])
    order = [edge] + [c for c in range(int(labels.max()) + 1) if c != edge]
    colors = np.array([CLUSTER_COLORS[order.index(c) % len(CLUSTER_COLORS)] for c in labels])
    ax.scatter(cell["pixel_col"], cell["pixel_row"], c=colors, s=2, linewidths=0)


def _edge_overlay(ax: plt.Axes, cell: xr.Dataset, name: str, title: str) -> None:
    at = cell.sel(name=name)
    rgb = np.repeat(np.clip(at["image"].values, 0, 1)[..., None], 3, axis=2) * 0.6
    rgb[at["weak_edge"].values > 0] = (1.0, 0.8, 0.0)
    rgb[at["strong_edge"].values > 0] = (1.0, 0.1, 0.1)
    ax.imshow(rgb)
    _bare(ax, title)


def plot_saliency_clusters(
    directional: str | Path, saliency: str | Path, stem: str | Path, dpi: int = 150
) -> list[Path]:
    """Per operator and named image: Canny edges (strong red, weak yellow), the clusters of
    F's saliency kernels, and those of phi at every delta (Fig. 13)."""
    ds = _probed(read_dataset(saliency), "saliency_seconds")
    operators = _operators(ds, "saliency_seconds")
    rows = [(op, str(n)) for op in operators for n in ds["name"].values]
    cols = 2 + max(len(_over_delta(ds, "saliency_seconds", op)) for op in operators)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(2.0 * cols, 2.2 * len(rows)), squeeze=False, layout="constrained"
    )
    for i, (op, name) in enumerate(rows):
        cells = _over_delta(ds, "saliency_seconds", op)
        _edge_overlay(axes[i, 0], cells[0][1], name, f"{op}: {name}, edges")
        _cluster_map(axes[i, 1], cells[0][1], name, "operator", "F")
        for j, (delta, cell) in enumerate(cells):
            _cluster_map(axes[i, 2 + j], cell, name, "network", f"φ, δ={delta:g}")
        for ax in axes[i, 2 + len(cells) :]:
            ax.axis("off")
    fig.suptitle(f"spectral clusters of saliency kernels, {label(ds.attrs['arch'])}")
    return save_figure(fig, stem, dpi)


def _edge_and_rest(cell: xr.Dataset, which: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Mean over named images of the edge cluster's kernel and the largest other cluster's,
    with their weak/strong edge shares as text."""
    kernels, shares = {"edge": [], "rest": []}, {"edge": [], "rest": []}
    for name in cell["name"].values:
        at = cell.sel(name=name, map=which)
        edge = int(at["edge_cluster"])
        counts = at["cluster_count"].values.copy()
        counts[edge] = -1
        rest = int(np.argmax(counts))
        for key, c in (("edge", edge), ("rest", rest)):
            kernels[key].append(at["cluster_kernel"].isel(cluster=c).values)
            shares[key].append((float(at["weak_share"][c]), float(at["strong_share"][c])))
    text = ", ".join(
        f"{key}: w {np.mean([s[0] for s in v]):.0%} s {np.mean([s[1] for s in v]):.0%}"
        for key, v in shares.items()
    )
    return np.mean(kernels["edge"], axis=0), np.mean(kernels["rest"], axis=0), text


def _pair(ax: plt.Axes, left: np.ndarray, right: np.ndarray, title: str) -> None:
    """Two kernels side by side with a blank column between them."""
    gap = np.full((left.shape[0], 1), np.nan)
    _signed(ax, np.hstack([left, gap, right]), title)


def _kernel_pairs(
    ds: xr.Dataset,
    panel: tuple[float, float],
    pair: Callable[[xr.Dataset, str], tuple[np.ndarray, np.ndarray, str]],
) -> plt.Figure:
    """One row per operator of kernel pairs: F's, then phi's at every delta; ``pair(cell, map)``
    gives the left and right kernels and a line for the panel's title ("" for none)."""
    operators = _operators(ds, "saliency_seconds")
    cols = 1 + max(len(_over_delta(ds, "saliency_seconds", op)) for op in operators)
    fig, axes = plt.subplots(
        len(operators),
        cols,
        figsize=(panel[0] * cols, panel[1] * len(operators)),
        squeeze=False,
        layout="constrained",
    )
    for i, op in enumerate(operators):
        cells = _over_delta(ds, "saliency_seconds", op)
        panels = [("operator", cells[0][1], f"{op}: F")]
        panels += [("network", c, f"φ, δ={d:g}") for d, c in cells]
        for j, (which, cell, title) in enumerate(panels):
            left, right, note = pair(cell, which)
            _pair(axes[i, j], left, right, f"{title}\n{note}" if note else title)
        for ax in axes[i, len(panels) :]:
            ax.axis("off")
    return fig


def plot_saliency_means(
    directional: str | Path, saliency: str | Path, stem: str | Path, dpi: int = 150
) -> list[Path]:
    """Mean kernel of the edge cluster (left) and of the largest other cluster (right), for F
    and for phi at every delta, with each cluster's share of weak and strong edge pixels
    (Fig. 14)."""
    ds = _probed(read_dataset(saliency), "saliency_seconds")
    fig = _kernel_pairs(ds, (2.9, 2.4), _edge_and_rest)
    fig.suptitle("mean kernels: edge cluster (left) and the other cluster (right)")
    return save_figure(fig, stem, dpi)


def plot_cluster_selection(
    directional: str | Path, saliency: str | Path, stem: str | Path, dpi: int = 150
) -> list[Path]:
    """Elbow (k-means dispersion), gap and gap* curves over k for the kernels of F and of phi
    at the lowest and highest delta (first named image), with the k each one picks."""
    ds = _probed(read_dataset(saliency), "saliency_seconds")
    operators = _operators(ds, "saliency_seconds")
    fig, axes = plt.subplots(
        len(operators), 3, figsize=(14, 3.0 * len(operators)), squeeze=False, layout="constrained"
    )
    for i, op in enumerate(operators):
        cells = _over_delta(ds, "saliency_seconds", op)
        lines = [("operator", cells[0][1], "F", "tab:blue", "-")]
        lines += [("network", cells[0][1], f"φ, δ={cells[0][0]:g}", "tab:red", "-")]
        if len(cells) > 1:
            lines += [("network", cells[-1][1], f"φ, δ={cells[-1][0]:g}", "tab:red", "--")]
        for which, cell, name, color, style in lines:
            at = cell.sel(map=which)
            k = at["k"].values
            picks = (int(at["k_elbow"]), int(at["k_gap"]), int(at["k_gap_star"]))
            w = at["dispersion"].values
            axes[i, 0].plot(
                k, w / w[0], style, marker="o", color=color, label=f"{name}: {picks[0]}"
            )
            for j, (var, se) in enumerate((("gap", "gap_se"), ("gap_star", "gap_star_se")), 1):
                axes[i, j].errorbar(
                    k, at[var], at[se], fmt=style, marker="o", color=color,
                    label=f"{name}: k={picks[j]}", capsize=2,
                )  # fmt: skip
        for ax, title in zip(axes[i], ("elbow: W_k / W_1", "gap", "gap*"), strict=True):
            ax.set(title=f"{op}, {title}", xlabel="k")
            side_legend(ax, fontsize=6)
    fig.suptitle("choosing k for the spectral clustering (first named image)")
    return save_figure(fig, stem, dpi)


def plot_manual_clusters(
    directional: str | Path, saliency: str | Path, stem: str | Path, dpi: int = 150
) -> list[Path]:
    """Mean kernels of the manual edge (left) and smooth (right) clusters, pooled over the N
    test images (the named images in datasets written before the test split was used), for F
    and for phi at every delta (Fig. 15)."""
    ds = _probed(read_dataset(saliency), "saliency_seconds")

    def edge_and_smooth(cell: xr.Dataset, which: str) -> tuple[np.ndarray, np.ndarray, str]:
        kernels = cell["manual_kernel"].sel(map=which)
        return kernels.sel(manual="edge"), kernels.sel(manual="smooth"), ""

    fig = _kernel_pairs(ds, (2.6, 2.3), edge_and_smooth)
    over = "the named images"
    if "manual_images" in ds and _has(ds["manual_images"]):
        over = f"the {int(np.nanmax(ds['manual_images'].values))} test images"
    fig.suptitle(
        f"manual clusters over {over}: mean kernel on edges (left) and in smooth regions (right)"
    )
    return save_figure(fig, stem, dpi)


def plot_clusters_vs_lipschitz(
    directional: str | Path, saliency: str | Path, stem: str | Path, dpi: int = 150
) -> list[Path]:
    """At the highest delta, per L: phi's clusters on the first named image and the mean
    edge/other kernels (Figs. 16-17)."""
    ds = _probed(read_dataset(saliency), "saliency_seconds")
    operators = _operators(ds, "saliency_seconds")
    name = str(ds["name"].values[0])
    cols = max(len(_over_lipschitz(ds, "saliency_seconds", op)) for op in operators)
    fig, axes = plt.subplots(
        2 * len(operators),
        cols,
        figsize=(2.6 * cols, 4.6 * len(operators)),
        squeeze=False,
        layout="constrained",
    )
    for i, op in enumerate(operators):
        cells = _over_lipschitz(ds, "saliency_seconds", op)
        delta = float(cells[0][1]["noise_level"])
        for j, (lip, cell) in enumerate(cells):
            _cluster_map(axes[2 * i, j], cell, name, "network", f"{op}, δ={delta:g}, L={lip:g}")
            edge, rest, shares = _edge_and_rest(cell, "network")
            _pair(axes[2 * i + 1, j], edge, rest, shares)
            for ax in axes[2 * i : 2 * i + 2, j]:
                frame(ax, lipschitz_color(lip))
        for ax in [*axes[2 * i, len(cells) :], *axes[2 * i + 1, len(cells) :]]:
            ax.axis("off")
    fig.suptitle("clusters of φ's saliency kernels against the Lipschitz parameter L")
    return save_figure(fig, stem, dpi)


# name -> function(directional.nc, saliency.nc, stem, dpi)
ANALYSIS_FIGURES = {
    "directional_directions": plot_directional_directions,
    "directional_norms": plot_directional_norms,
    "saliency_clusters": plot_saliency_clusters,
    "saliency_means": plot_saliency_means,
    "cluster_selection": plot_cluster_selection,
    "manual_clusters": plot_manual_clusters,
    "clusters_vs_lipschitz": plot_clusters_vs_lipschitz,
}
