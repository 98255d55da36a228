"""The names of each concept, in one place: objectives, probes, figures, operators, priors and
architecture kinds. The Snakefile reads them at parse time and the schema's enums must agree
(``tests/test_config.py``), so this module imports neither torch nor matplotlib. The functions
behind the names live with their concept (``objectives.py``, ``analysis/probes.py``,
``plots/``); their tables are checked against these names."""

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
PRIORS = ("bimodal", "gaussian", "trimodal", "bimodal3d")
PROBES = ("directional", "saliency")

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
TOY_FIGURES = ("toy_grid", "toy_mse_vs_noise", "toy_noise_ablation", "toy_estimators")
