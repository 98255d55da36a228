"""One function per figure. Figures read NetCDF only and write ``<stem>.png`` and ``<stem>.pdf``."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from iresnet_inverse.errors import InputDataError
from iresnet_inverse.registry import RECONSTRUCTION_FIGURES
from iresnet_inverse.stages.figures.analysis import ANALYSIS_FIGURES
from iresnet_inverse.stages.figures.methods import (
    plot_examples,
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


def draw_figure(
    name: str, inputs: Sequence[str], out_stem: str, settings: Mapping[str, Any]
) -> list[Path]:
    """Draw the figure ``name`` from its NetCDF ``inputs`` with the config's ``figures``
    settings (dpi, colormap): the figure rule's one entry point."""
    dpi = settings.get("dpi", 150)
    if name == "operators":
        return FIGURES["operators"](
            inputs[0], inputs[1:], out_stem, dpi=dpi, cmap=settings.get("cmap", "gray")
        )
    if name in DATASET_FIGURES:
        return DATASET_FIGURES[name](inputs[0], out_stem, dpi=dpi)
    if name in PAIR_FIGURES:
        return PAIR_FIGURES[name](*inputs[:2], out_stem, dpi=dpi)
    if name.startswith("examples_"):
        return plot_examples(inputs[0], out_stem, name.removeprefix("examples_"), dpi=dpi)
    raise InputDataError(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")


__all__ = [
    "ANALYSIS_FIGURES",
    "DATASET_FIGURES",
    "FIGURES",
    "PAIR_FIGURES",
    "RECONSTRUCTION_FIGURES",
    "draw_figure",
    "plot_operators",
]
