# Figures: one rule for all of them, driven by the figure registry (iresnet_inverse.registry).
# They read NetCDF only, so restyling never recomputes anything upstream.

# What each group of figures is drawn from, and where the report files it.
FIGURE_INPUTS = {
    "operators": [rules.data.output[0], *observation_files()],
    "reconstruction": rules.combine_reconstruction.output,
    "analysis": expand(rules.combine_probe.output[0], probe=PROBES),
    "training": rules.combine_training.output,
    "scaling": [*rules.combine_scaling.output, *rules.combine_reconstruction.output],
    "search": rules.combine_search.output,
    "toy": rules.combine_toy2d.output,
}
FIGURE_CATEGORIES = {
    "operators": "Data",
    "analysis": "What the networks learned",
    "toy": "Bayesian toy study",
}


FIGURE_PATTERN = "|".join(
    [*(name for names in FIGURE_GROUPS.values() for name in names), f"{EXAMPLES_PREFIX}\\w+"]
)


def figure_inputs(wildcards):
    return FIGURE_INPUTS[figure_group(wildcards.figure)]


def figure_category(wildcards):
    return FIGURE_CATEGORIES.get(figure_group(wildcards.figure), "Reconstruction study")


rule figure:
    input:
        figure_inputs,
    output:
        report(
            f"{RESULTS}/figures/{{figure}}.png",
            caption="../report/figures.rst",
            category=figure_category,
        ),
        f"{RESULTS}/figures/{{figure}}.pdf",
    log:
        f"{RESULTS}/logs/figures/{{figure}}.log",
    wildcard_constraints:
        figure=FIGURE_PATTERN,
    localrule: True
    params:
        cfg=config_json("figures"),
        stem=lambda wc, output: os.path.splitext(output[0])[0],
    shell:
        "iresnet-inverse figure {wildcards.figure} {input:q} --out-stem {params.stem:q} "
        "--config-json {params.cfg:q} --rule {rule} 2>&1 | tee {log:q}"
