# Figures: read NetCDF only, so restyling never recomputes anything upstream.


rule figure_operators:
    input:
        f"{RESULTS}/data/images.nc",
        observation_files(),
    output:
        f"{RESULTS}/figures/operators.png",
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
