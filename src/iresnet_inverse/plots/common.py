"""Shared figure plumbing: a non-interactive backend and saving in both formats."""

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

FORMATS = ("png", "pdf")


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
