# Training: one job per cell of the grid.


rule train:
    input:
        images=rules.data.output[0],
        observations=rules.observe.output[0],
        warm_start=warm_start_input,
        search=search_input,
    output:
        model=f"{RESULTS}/train/{CELL_PATTERN}/model.pt",
        history=f"{RESULTS}/train/{CELL_PATTERN}/history.nc",
    log:
        f"{RESULTS}/logs/train/{CELL_PATTERN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{CELL_PATTERN}.tsv"
    # Before the toy jobs (priority 0), after data and probes (workflow/rules/data.smk).
    priority: 2
    threads: config["threads"]
    resources:
        **DEVICE_RESOURCES,
        runtime=lambda wc: train_settings(wc)["runtime"],
        mem_mb=lambda wc: train_settings(wc)["mem_mb"],
    params:
        job=lambda wc: cell_job_json(wc, "data"),
        out_dir=lambda wc, output: os.path.dirname(output.model),
        warm=lambda wc, input: (
            f"--warm-start {shlex.quote(input.warm_start[0])}" if input.warm_start else ""
        ),
        search=lambda wc, input: (
            f"--search {shlex.quote(input.search[0])}" if input.search else ""
        ),
    shell:
        "iresnet-inverse train --job-json {params.job:q} --threads {threads} "
        "--images {input.images:q} --observations {input.observations:q} "
        "--out-dir {params.out_dir:q} {params.warm} {params.search} --rule {rule} 2>&1 | tee {log:q}"
