# Random search of learning rate and batch size (config `search:`): one training job per trial
# on the searched cell of each architecture; the best trial's values train every cell of it.


rule search_trial:
    input:
        images=rules.data.output[0],
        observations=rules.observe.output[0],
    output:
        history=f"{RESULTS}/search/{CELL_PATTERN}/trial~{{trial}}/history.nc",
    log:
        f"{RESULTS}/logs/search/{CELL_PATTERN}/trial~{{trial}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/search/{CELL_PATTERN}/trial~{{trial}}.tsv"
    threads: config["threads"]
    resources:
        **DEVICE_RESOURCES,
        runtime=lambda wc: train_settings(wc)["runtime"],
        mem_mb=lambda wc: train_settings(wc)["mem_mb"],
    params:
        job=trial_job_json,
        out_dir=lambda wc, output: os.path.dirname(output.history),
    shell:
        "iresnet-inverse train --job-json {params.job:q} --threads {threads} "
        "--images {input.images:q} --observations {input.observations:q} "
        "--out-dir {params.out_dir:q} --trial --rule {rule} 2>&1 | tee {log:q}"


rule combine_search:
    input:
        search_trial_histories(),
    output:
        f"{RESULTS}/datasets/search.nc",
    log:
        f"{RESULTS}/logs/combine_search.log",
    localrule: True
    shell:
        "iresnet-inverse search-table {input:q} --out {output:q} "
        "--rule {rule} 2>&1 | tee {log:q}"
