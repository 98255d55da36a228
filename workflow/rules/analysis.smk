# What the networks learned: directional derivatives and saliency maps per probed cell, then one
# dataset per probe.


rule probe:
    input:
        model=rules.train.output.model,
        images=rules.data.output[0],
    output:
        f"{RESULTS}/analysis/{CELL_PATTERN}/{{probe}}.nc",
    log:
        f"{RESULTS}/logs/analysis/{CELL_PATTERN}/{{probe}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/{CELL_PATTERN}/{{probe}}.tsv"
    wildcard_constraints:
        probe="|".join(PROBES),
    # Probes run as soon as their net is trained, ahead of waiting training jobs, so that none
    # is left to run alone after the figures that do not need it.
    priority: 3
    threads: config["threads"]
    resources:
        **DEVICE_RESOURCES,
        **JOB_RESOURCES,
    params:
        job=lambda wc: cell_job_json(wc, "analysis"),
    shell:
        "iresnet-inverse probe {wildcards.probe} --job-json {params.job:q} "
        "--threads {threads} --model {input.model:q} --images {input.images:q} --out {output:q} "
        "--rule {rule} 2>&1 | tee {log:q}"


rule combine_probe:
    input:
        lambda wc: cell_files(rules.probe.output[0], ANALYSIS_CELLS, probe=wc.probe),
    output:
        f"{RESULTS}/datasets/{{probe}}.nc",
    log:
        f"{RESULTS}/logs/combine_{{probe}}.log",
    wildcard_constraints:
        probe="|".join(PROBES),
    localrule: True
    shell:
        "iresnet-inverse combine {input:q} --out {output:q} --title '{wildcards.probe} probes' "
        "--rule {rule} 2>&1 | tee {log:q}"
