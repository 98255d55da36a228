# Figures: read NetCDF only, so restyling never recomputes anything upstream. Their names come
# from iresnet_inverse.registry (imported in common.smk).


rule figure_operators:
    input:
        f"{RESULTS}/data/images.nc",
        observation_files(),
    output:
        report(
            f"{RESULTS}/figures/operators.png",
            caption="../report/operators.rst",
            category="Data",
        ),
        f"{RESULTS}/figures/operators.pdf",
    params:
        cfg=config_json("figures"),
        stem=f"{RESULTS}/figures/operators",
    log:
        f"{RESULTS}/logs/figures/operators.log",
    localrule: True
    shell:
        "iresnet-inverse figure operators {input} --out-stem {params.stem} "
        "--config-json {params.cfg:q} --rule figure_operators 2>&1 | tee {log}"


rule figure_toy:
    input:
        f"{RESULTS}/datasets/toy2d.nc",
    output:
        report(
            f"{RESULTS}/figures/{{toy_figure}}.png",
            caption="../report/toy_figures.rst",
            category="Bayesian toy study",
        ),
        f"{RESULTS}/figures/{{toy_figure}}.pdf",
    wildcard_constraints:
        toy_figure="|".join(TOY_FIGURES),
    params:
        cfg=config_json("figures"),
        stem=lambda wc: f"{RESULTS}/figures/{wc.toy_figure}",
    log:
        f"{RESULTS}/logs/figures/{{toy_figure}}.log",
    localrule: True
    shell:
        "iresnet-inverse figure {wildcards.toy_figure} {input} --out-stem {params.stem} "
        "--config-json {params.cfg:q} --rule figure_toy 2>&1 | tee {log}"


def reconstruction_figures():
    """Figure names for the reconstruction study: the iResNet figures need reconstruction-
    trained iResNet cells; the examples figure is drawn per operator."""
    invertible = any(
        c["objective"] == "reconstruction" and c["lipschitz"] != study_config.UNCONSTRAINED
        for c in CELLS
    )
    names = list(RECONSTRUCTION_FIGURES) if invertible else ["methods_vs_noise"]
    return names + [f"examples_{op}" for op in OPERATOR_NAMES]


rule figure_reconstruction:
    input:
        f"{RESULTS}/datasets/reconstruction.nc",
    output:
        report(
            f"{RESULTS}/figures/{{reconstruction_figure}}.png",
            caption="../report/reconstruction_figures.rst",
            category="Reconstruction study",
        ),
        f"{RESULTS}/figures/{{reconstruction_figure}}.pdf",
    wildcard_constraints:
        reconstruction_figure="|".join([*RECONSTRUCTION_FIGURES, "examples_[A-Za-z0-9_]+"]),
    params:
        cfg=config_json("figures"),
        stem=lambda wc: f"{RESULTS}/figures/{wc.reconstruction_figure}",
    log:
        f"{RESULTS}/logs/figures/{{reconstruction_figure}}.log",
    localrule: True
    shell:
        "iresnet-inverse figure {wildcards.reconstruction_figure} {input} "
        "--out-stem {params.stem} --config-json {params.cfg:q} "
        "--rule figure_reconstruction 2>&1 | tee {log}"


rule figure_analysis:
    input:
        f"{RESULTS}/datasets/directional.nc",
        f"{RESULTS}/datasets/saliency.nc",
    output:
        report(
            f"{RESULTS}/figures/{{analysis_figure}}.png",
            caption="../report/analysis_figures.rst",
            category="What the networks learned",
        ),
        f"{RESULTS}/figures/{{analysis_figure}}.pdf",
    wildcard_constraints:
        analysis_figure="|".join(ANALYSIS_FIGURES),
    params:
        cfg=config_json("figures"),
        stem=lambda wc: f"{RESULTS}/figures/{wc.analysis_figure}",
    log:
        f"{RESULTS}/logs/figures/{{analysis_figure}}.log",
    localrule: True
    shell:
        "iresnet-inverse figure {wildcards.analysis_figure} {input} "
        "--out-stem {params.stem} --config-json {params.cfg:q} "
        "--rule figure_analysis 2>&1 | tee {log}"
