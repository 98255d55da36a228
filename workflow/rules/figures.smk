# Figures: one rule for all of them, driven by the figure registry (iresnet_inverse.registry).
# They read NetCDF only, so restyling never recomputes anything upstream.


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
