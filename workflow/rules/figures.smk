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
    log:
        f"{RESULTS}/logs/figures/operators.log",
    localrule: True
    params:
        cfg=config_json("figures"),
        stem=lambda wc, output: os.path.splitext(output[0])[0],
    shell:
        "iresnet-inverse figure operators {input:q} --out-stem {params.stem:q} "
        "--config-json {params.cfg:q} --rule figure_operators 2>&1 | tee {log:q}"


rule figure_toy:
    input:
        rules.combine_toy2d.output,
    output:
        report(
            f"{RESULTS}/figures/{{toy_figure}}.png",
            caption="../report/toy_figures.rst",
            category="Bayesian toy study",
        ),
        f"{RESULTS}/figures/{{toy_figure}}.pdf",
    log:
        f"{RESULTS}/logs/figures/{{toy_figure}}.log",
    wildcard_constraints:
        toy_figure="|".join(TOY_FIGURES),
    localrule: True
    params:
        cfg=config_json("figures"),
        stem=lambda wc, output: os.path.splitext(output[0])[0],
    shell:
        "iresnet-inverse figure {wildcards.toy_figure} {input:q} --out-stem {params.stem:q} "
        "--config-json {params.cfg:q} --rule figure_toy 2>&1 | tee {log:q}"


rule figure_reconstruction:
    input:
        rules.combine_reconstruction.output,
    output:
        report(
            f"{RESULTS}/figures/{{reconstruction_figure}}.png",
            caption="../report/reconstruction_figures.rst",
            category="Reconstruction study",
        ),
        f"{RESULTS}/figures/{{reconstruction_figure}}.pdf",
    log:
        f"{RESULTS}/logs/figures/{{reconstruction_figure}}.log",
    wildcard_constraints:
        reconstruction_figure="|".join([*RECONSTRUCTION_FIGURES, "examples_[A-Za-z0-9_]+"]),
    localrule: True
    params:
        cfg=config_json("figures"),
        stem=lambda wc, output: os.path.splitext(output[0])[0],
    shell:
        "iresnet-inverse figure {wildcards.reconstruction_figure} {input:q} "
        "--out-stem {params.stem:q} --config-json {params.cfg:q} "
        "--rule figure_reconstruction 2>&1 | tee {log:q}"


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
    log:
        f"{RESULTS}/logs/figures/{{analysis_figure}}.log",
    wildcard_constraints:
        analysis_figure="|".join(ANALYSIS_FIGURES),
    localrule: True
    params:
        cfg=config_json("figures"),
        stem=lambda wc, output: os.path.splitext(output[0])[0],
    shell:
        "iresnet-inverse figure {wildcards.analysis_figure} {input:q} "
        "--out-stem {params.stem:q} --config-json {params.cfg:q} "
        "--rule figure_analysis 2>&1 | tee {log:q}"


rule figure_training:
    input:
        rules.combine_training.output,
    output:
        report(
            f"{RESULTS}/figures/{{training_figure}}.png",
            caption="../report/learning_curves.rst",
            category="Reconstruction study",
        ),
        f"{RESULTS}/figures/{{training_figure}}.pdf",
    log:
        f"{RESULTS}/logs/figures/{{training_figure}}.log",
    wildcard_constraints:
        training_figure="|".join(TRAINING_FIGURES),
    localrule: True
    params:
        cfg=config_json("figures"),
        stem=lambda wc, output: os.path.splitext(output[0])[0],
    shell:
        "iresnet-inverse figure {wildcards.training_figure} {input:q} "
        "--out-stem {params.stem:q} --config-json {params.cfg:q} "
        "--rule figure_training 2>&1 | tee {log:q}"


rule figure_scaling:
    input:
        rules.combine_scaling.output,
        rules.combine_reconstruction.output,
    output:
        report(
            f"{RESULTS}/figures/{{scaling_figure}}.png",
            caption="../report/budget_scaling.rst",
            category="Reconstruction study",
        ),
        f"{RESULTS}/figures/{{scaling_figure}}.pdf",
    log:
        f"{RESULTS}/logs/figures/{{scaling_figure}}.log",
    wildcard_constraints:
        scaling_figure="|".join(SCALING_FIGURES),
    localrule: True
    params:
        cfg=config_json("figures"),
        stem=lambda wc, output: os.path.splitext(output[0])[0],
    shell:
        "iresnet-inverse figure {wildcards.scaling_figure} {input:q} "
        "--out-stem {params.stem:q} --config-json {params.cfg:q} "
        "--rule figure_scaling 2>&1 | tee {log:q}"


rule figure_search:
    input:
        rules.combine_search.output,
    output:
        report(
            f"{RESULTS}/figures/{{search_figure}}.png",
            caption="../report/search.rst",
            category="Reconstruction study",
        ),
        f"{RESULTS}/figures/{{search_figure}}.pdf",
    log:
        f"{RESULTS}/logs/figures/{{search_figure}}.log",
    wildcard_constraints:
        search_figure="|".join(SEARCH_FIGURES),
    localrule: True
    params:
        cfg=config_json("figures"),
        stem=lambda wc, output: os.path.splitext(output[0])[0],
    shell:
        "iresnet-inverse figure {wildcards.search_figure} {input:q} "
        "--out-stem {params.stem:q} --config-json {params.cfg:q} "
        "--rule figure_search 2>&1 | tee {log:q}"
