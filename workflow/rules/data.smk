# Data: image patches by split, then noisy validation/test data per operator and noise level.


rule data:
    output:
        f"{RESULTS}/data/images.nc",
    log:
        f"{RESULTS}/logs/data.log",
    benchmark:
        f"{RESULTS}/benchmarks/data.tsv"
    # The image study's critical path first (data, then training; the probes and evaluations
    # of a trained net before the next training); the many short toy jobs fill in around it.
    priority: 4
    threads: 1
    resources:
        **JOB_RESOURCES,
    params:
        cfg=config_json("data"),
    shell:
        "iresnet-inverse data --config-json {params.cfg:q} --out {output:q} --rule {rule} "
        "2>&1 | tee {log:q}"


rule observe:
    input:
        rules.data.output,
    output:
        OBSERVATIONS,
    log:
        f"{RESULTS}/logs/observe/{Observations.pattern()}.log",
    priority: 4
    threads: 1
    resources:
        **JOB_RESOURCES,
    params:
        cfg=lambda wc: config_json("data", "operators"),
    shell:
        "iresnet-inverse observe --config-json {params.cfg:q} --images {input:q} "
        "--operator {wildcards.operator} --noise-level {wildcards.noise_level} "
        "--out {output:q} --rule {rule} 2>&1 | tee {log:q}"
