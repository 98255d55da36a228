# What the networks learned: directional derivatives and saliency maps per probed cell, then one
# dataset per probe.

ANALYSIS_CELLS = study_config.analysis_cells(config)


rule probe:
    input:
        model=f"{RESULTS}/train/{CELL_PATTERN}/model.pt",
        images=f"{RESULTS}/data/images.nc",
    output:
        f"{RESULTS}/analysis/{CELL_PATTERN}/{{probe}}.nc",
    wildcard_constraints:
        probe="|".join(PROBES),
    params:
        cfg=lambda wc: cell_config_json(wc, "device", "operators", "analysis"),
    log:
        f"{RESULTS}/logs/analysis/{CELL_PATTERN}/{{probe}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/{CELL_PATTERN}/{{probe}}.tsv"
    threads: config["threads"]
    # Probes run as soon as their net is trained, ahead of waiting training jobs, so that none
    # is left to run alone after the figures that do not need it.
    priority: 1
    resources:
        gpu=1 if config["device"] == "cuda" else 0,
    shell:
        "iresnet-inverse probe {wildcards.probe} --config-json {params.cfg:q} "
        "--threads {threads} --model {input.model} --images {input.images} --out {output} "
        "--rule probe 2>&1 | tee {log}"


rule combine_probe:
    input:
        lambda wc: [
            f"{RESULTS}/analysis/{study_config.cell_dir(c)}/{wc.probe}.nc" for c in ANALYSIS_CELLS
        ],
    output:
        f"{RESULTS}/datasets/{{probe}}.nc",
    wildcard_constraints:
        probe="|".join(PROBES),
    log:
        f"{RESULTS}/logs/combine_{{probe}}.log",
    localrule: True
    shell:
        "iresnet-inverse combine {input} --out {output} --title '{wildcards.probe} probes' "
        "--rule combine_probe 2>&1 | tee {log}"
