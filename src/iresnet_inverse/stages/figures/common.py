"""Shared figure plumbing: a non-interactive backend, saving in both formats, one layout, and the
palettes and axes every figure shares.

A method (arch) and a Lipschitz parameter L have one colour each, the same in every panel of
every figure (``method_color``, ``lipschitz_color``). Every L axis is categorical: the study's L
values evenly spaced and labelled with themselves (``lipschitz_axis``), so 0.95, 0.99 and 0.999
stay apart and no tick ever reads past 1.
"""

import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullFormatter, NullLocator  # noqa: E402

FORMATS = ("png", "pdf")

# One colour per method, keyed by arch name; variants (``*_demo``, ``iresnet_ci``) take their
# family's colour (longest matching prefix). "data" is the noisy data drawn beside the methods.
METHOD_COLORS = {
    "iresnet": "#1f77b4",  # blue
    "iresnet_small": "#17becf",  # cyan
    # Baselines stay off the plasma hues of L (purple, pink, orange), which colour iResNet cells.
    "unet": "#bcbd22",  # olive
    "convresnet": "#2ca02c",  # green
    "diffnet": "#393b79",  # indigo
    "tv": "#8c564b",  # brown
    "data": "#000000",  # black
}
# Methods outside METHOD_COLORS: picked from here by a stable hash of the name.
FALLBACK_COLORS = ("#e377c2", "#7f7f7f", "#d62728", "#637939", "#17a589", "#ff7f0e")
# One colour per L, dark to light as L grows (plasma, away from the method colours); other L
# values get the plasma colour of their place on the log(1 - L) scale.
LIPSCHITZ_COLORS = {0.95: "#7e03a8", 0.99: "#cc4778", 0.999: "#f89540"}
LIPSCHITZ_AXIS_LABEL = "Lipschitz parameter L"


def method_color(arch: str) -> str:
    """The colour of a method (arch name, or "data"), the same in every figure."""
    name = str(arch).removesuffix("_demo")
    family = max((k for k in METHOD_COLORS if name.startswith(k)), key=len, default=None)
    if family is not None:
        return METHOD_COLORS[family]
    return FALLBACK_COLORS[zlib.crc32(name.encode()) % len(FALLBACK_COLORS)]


def lipschitz_color(lip: float) -> object:
    """The colour of a Lipschitz parameter L, the same in every figure (gray if not in (0, 1))."""
    lip = float(lip)
    for known, color in LIPSCHITZ_COLORS.items():
        if np.isclose(lip, known, rtol=0, atol=1e-9):
            return color
    if not 0 < lip < 1:
        return "0.5"
    # -log10(1 - L): 1.3 at 0.95, 3 at 0.999; mapped onto plasma 0.25 ... 0.8 like the fixed ones.
    t = 0.25 + (-np.log10(1 - lip) - 1.3) / 1.7 * 0.55
    return plt.cm.plasma(float(np.clip(t, 0.05, 0.9)))


def lipschitz_values(values: Iterable[float]) -> list[float]:
    """The distinct finite L values, ascending (unconstrained cells, L = inf, dropped)."""
    return sorted({float(v) for v in values if np.isfinite(v)})


def lipschitz_axis(ax: plt.Axes, lips: Iterable[float]) -> dict[float, int]:
    """A categorical L x axis: one evenly spaced position per L, labelled with its value.
    Returns L -> position; give every panel the same ``lips`` so positions agree."""
    values = lipschitz_values(lips)
    ax.set_xticks(range(len(values)), [f"{v:g}" for v in values])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel(LIPSCHITZ_AXIS_LABEL)
    return {v: i for i, v in enumerate(values)}


def panels(
    rows: int, cols: int, width: float = 4.0, height: float = 3.0
) -> tuple[plt.Figure, np.ndarray]:
    """A ``rows`` x ``cols`` grid of axes (always 2-d) in constrained layout."""
    return plt.subplots(
        rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained"
    )


def figure_legend(fig: plt.Figure, handles: Sequence[Artist] | None = None, ncols: int = 4) -> None:
    """One legend below all panels: ``handles``, or each label drawn in any axes once."""
    if handles is None:
        seen: dict[str, Artist] = {}
        for ax in fig.axes:
            for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
                seen.setdefault(text, handle)
        handles = [h for h in seen.values()]
        labels = list(seen)
    else:
        labels = [h.get_label() for h in handles]
    if handles:
        fig.legend(
            handles, labels, loc="outside lower center", ncols=min(ncols, len(handles)),
            fontsize=8, frameon=False,
        )  # fmt: skip


def side_legend(ax: plt.Axes, fontsize: float = 7) -> None:
    """The axes' legend to the right of its data, outside the axes."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=fontsize)


def frame(ax: plt.Axes, color: object) -> None:
    """Border an image panel in ``color`` (the method or L it shows)."""
    for spine in ax.spines.values():
        spine.set(visible=True, color=color, linewidth=2.5)


def key(label: str, color: object = "0.3", **style: object) -> Line2D:
    """A legend entry drawn nowhere: a line of ``color`` and ``style`` named ``label``."""
    return Line2D([], [], color=color, label=label, **style)


def save_figure(fig: plt.Figure, stem: str | Path, dpi: int = 150) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` and close the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def noise_level_axis(ax: plt.Axes, deltas: Iterable[float]) -> None:
    """A log δ axis ticked at the study's noise levels only (log minor labels collide)."""
    ticks = sorted({float(d) for d in deltas})
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{d:g}" for d in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("noise level δ")
