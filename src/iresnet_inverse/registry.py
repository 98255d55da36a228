"""The names of each concept, in one place: objectives, probes, figures, operators, priors and
architecture kinds. The Snakefile reads them at parse time and the schema's enums must agree
(``tests/test_config.py``), so this module imports neither torch nor matplotlib. The functions
behind the names live with their concept (``objectives.py``, ``stages/probe.py``,
``stages/figures/``); their tables are checked against these names."""

from collections.abc import Iterable, Mapping
from typing import Any

OBJECTIVES = ("reconstruction", "approximation", "logdet", "divergence")
# Baselines are not trained with an iResNet objective: theirs is fixed by their kind.
BASELINE_OBJECTIVES = {
    "unet": "supervised",
    "convresnet": "supervised",
    "diffnet": "supervised",
    "tv": "variational",
}
INVERTIBLE_KINDS = ("conv", "dense")
ARCH_KINDS = (*INVERTIBLE_KINDS, *BASELINE_OBJECTIVES)
OPERATORS = ("blur", "diffusion")  # image operators; the toy problems add linear2d/linear3d
PRIORS = ("bimodal", "gaussian", "trimodal", "bimodal3d", "logcosh")
PROBES = ("directional", "saliency")
BUILTIN_SMALLEST_SIDE = 300  # pixels: chelsea, 300 x 451 (tests/test_data.py checks it)
BUILTIN_TEST_IMAGES = ("astronaut", "camera", "chelsea")  # the builtin source's test split
STL10_SIDE = 96

RECONSTRUCTION_FIGURES = (
    "psnr_vs_lipschitz",
    "methods_vs_noise",
    "inversion_error",
    "forward_approximation",
    "learned_operator",
)
ANALYSIS_FIGURES = (
    "directional_directions",
    "directional_norms",
    "saliency_clusters",
    "saliency_means",
    "cluster_selection",
    "manual_clusters",
    "clusters_vs_lipschitz",
)
TRAINING_FIGURES = ("learning_curves",)
SCALING_FIGURES = ("budget_scaling",)
SEARCH_FIGURES = ("search",)
TOY_FIGURES = ("toy_grid", "toy_mse_vs_noise", "toy_noise_ablation", "toy_estimators")
# The figure registry: group -> its figures. One workflow rule draws every figure; its inputs and
# its report category follow from the group (workflow/rules/figures.smk).
FIGURE_GROUPS: dict[str, tuple[str, ...]] = {
    "operators": ("operators",),
    "reconstruction": RECONSTRUCTION_FIGURES,
    "analysis": ANALYSIS_FIGURES,
    "training": TRAINING_FIGURES,
    "scaling": SCALING_FIGURES,
    "search": SEARCH_FIGURES,
    "toy": TOY_FIGURES,
}
EXAMPLES_PREFIX = "examples_"  # examples_<operator>: reconstructions of the named test images


def figure_group(name: str) -> str:
    """The group of a figure name (``examples_<operator>`` belongs to the reconstructions)."""
    if name.startswith(EXAMPLES_PREFIX):
        return "reconstruction"
    for group, names in FIGURE_GROUPS.items():
        if name in names:
            return group
    raise KeyError(f"unknown figure {name!r}")


def toy_figures(cells: Iterable[Mapping[str, Any]]) -> list[str]:
    """The toy figures a toy grid has the cells for (a figure the grid cannot fill is left
    out, not drawn empty): the grid and MSE figures need the bimodal prior at dhat = delta,
    the ablation the bimodal prior with log-det or divergence cells, the estimator figure
    log-det or divergence cells at dhat = delta."""
    cells = list(cells)
    bimodal = [c for c in cells if c["prior"] == "bimodal"]
    regularized = [c for c in cells if c["objective"] in ("logdet", "divergence")]
    can_draw = {
        "toy_grid": any(float(c["noise_factor"]) == 1.0 for c in bimodal),
        "toy_mse_vs_noise": any(float(c["noise_factor"]) == 1.0 for c in bimodal),
        "toy_noise_ablation": any(c in regularized for c in bimodal),
        "toy_estimators": any(float(c["noise_factor"]) == 1.0 for c in regularized),
    }
    return [name for name in TOY_FIGURES if can_draw[name]]
