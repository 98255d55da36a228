"""One function per figure. Figures read NetCDF only and write ``<stem>.png`` and ``<stem>.pdf``."""

from iresnet_inverse.registry import RECONSTRUCTION_FIGURES
from iresnet_inverse.stages.figures.analysis import ANALYSIS_FIGURES
from iresnet_inverse.stages.figures.methods import (
    plot_forward_approximation,
    plot_inversion_error,
    plot_learned_operator,
    plot_methods_vs_noise,
    plot_psnr_vs_lipschitz,
)
from iresnet_inverse.stages.figures.operators import plot_operators
from iresnet_inverse.stages.figures.toy import (
    plot_toy_estimators,
    plot_toy_grid,
    plot_toy_mse_vs_noise,
    plot_toy_noise_ablation,
)
from iresnet_inverse.stages.figures.training import (
    plot_budget_scaling,
    plot_learning_curves,
    plot_search,
)

# Figures drawn from one study dataset: name -> function(dataset path, stem, dpi).
DATASET_FIGURES = {
    "toy_grid": plot_toy_grid,
    "toy_mse_vs_noise": plot_toy_mse_vs_noise,
    "toy_noise_ablation": plot_toy_noise_ablation,
    "toy_estimators": plot_toy_estimators,
    "psnr_vs_lipschitz": plot_psnr_vs_lipschitz,
    "methods_vs_noise": plot_methods_vs_noise,
    "inversion_error": plot_inversion_error,
    "forward_approximation": plot_forward_approximation,
    "learned_operator": plot_learned_operator,
    "learning_curves": plot_learning_curves,
    "search": plot_search,
}
# Figures drawn from two datasets: name -> function(path, path, stem, dpi).
PAIR_FIGURES = {**ANALYSIS_FIGURES, "budget_scaling": plot_budget_scaling}
FIGURES = {"operators": plot_operators, **DATASET_FIGURES, **PAIR_FIGURES}

__all__ = [
    "ANALYSIS_FIGURES",
    "DATASET_FIGURES",
    "FIGURES",
    "PAIR_FIGURES",
    "RECONSTRUCTION_FIGURES",
    "plot_operators",
]
