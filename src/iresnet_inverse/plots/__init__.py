"""One function per figure. Figures read NetCDF only and write ``<stem>.png`` and ``<stem>.pdf``."""

from iresnet_inverse.plots.operators import plot_operators

FIGURES = {"operators": plot_operators}

__all__ = ["FIGURES", "plot_operators"]
