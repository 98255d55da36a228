"""One function per figure. Figures read NetCDF only and write ``<stem>.png`` and ``<stem>.pdf``."""

from iresnet_inverse.plots.operators import plot_operators
from iresnet_inverse.plots.toy import (
    plot_toy_estimators,
    plot_toy_grid,
    plot_toy_mse_vs_noise,
    plot_toy_noise_ablation,
)

# Figures drawn from one study dataset: name -> function(dataset path, stem, dpi).
DATASET_FIGURES = {
    "toy_grid": plot_toy_grid,
    "toy_mse_vs_noise": plot_toy_mse_vs_noise,
    "toy_noise_ablation": plot_toy_noise_ablation,
    "toy_estimators": plot_toy_estimators,
}
FIGURES = {"operators": plot_operators, **DATASET_FIGURES}

__all__ = ["DATASET_FIGURES", "FIGURES", "plot_operators"]
