# Figures: read NetCDF only, so restyling never recomputes anything upstream.


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


TOY_FIGURES = ["toy_grid", "toy_mse_vs_noise", "toy_noise_ablation", "toy_estimators"]


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
