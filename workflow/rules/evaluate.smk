# Evaluation of every trained cell on the test split, then one study dataset.


rule evaluate:
    input:
        model=rules.train.output.model,
        images=rules.data.output[0],
        observations=rules.observe.output[0],
    output:
        f"{RESULTS}/evaluate/{CELL_PATTERN}/metrics.nc",
    log:
        f"{RESULTS}/logs/evaluate/{CELL_PATTERN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{CELL_PATTERN}.tsv"
    priority: 3
    threads: config["threads"]
    resources:
        **DEVICE_RESOURCES,
        **JOB_RESOURCES,
    params:
        job=lambda wc: cell_job_json(wc, "evaluate"),
    shell:
        "iresnet-inverse evaluate --job-json {params.job:q} --threads {threads} "
        "--model {input.model:q} --images {input.images:q} "
        "--observations {input.observations:q} --out {output:q} --rule {rule} 2>&1 | tee {log:q}"


rule combine_reconstruction:
    input:
        cell_files(rules.evaluate.output[0], CELLS),
    output:
        f"{RESULTS}/datasets/reconstruction.nc",
    log:
        f"{RESULTS}/logs/combine_reconstruction.log",
    localrule: True
    shell:
        "iresnet-inverse combine {input:q} --out {output:q} --title 'reconstruction study' "
        "--rule {rule} 2>&1 | tee {log:q}"


rule methods_table:
    input:
        histories=cell_files(rules.train.output.history, CELLS),
        reconstruction=rules.combine_reconstruction.output[0],
    output:
        report(
            f"{RESULTS}/datasets/methods.csv",
            caption="../report/methods.rst",
            category="Reconstruction study",
        ),
    log:
        f"{RESULTS}/logs/methods_table.log",
    localrule: True
    shell:
        "iresnet-inverse methods-table {input.histories:q} "
        "--reconstruction {input.reconstruction:q} --out {output:q} "
        "--rule {rule} 2>&1 | tee {log:q}"


rule combine_training:
    input:
        cell_files(rules.train.output.history, TRAINED_CELLS),
    output:
        f"{RESULTS}/datasets/training.nc",
    log:
        f"{RESULTS}/logs/combine_training.log",
    localrule: True
    shell:
        "iresnet-inverse training-curves {input:q} --out {output:q} "
        "--rule {rule} 2>&1 | tee {log:q}"


rule evaluate_snapshots:
    input:
        history=rules.train.output.history,
        images=rules.data.output[0],
        observations=rules.observe.output[0],
    output:
        f"{RESULTS}/evaluate/{CELL_PATTERN}/scaling.nc",
    log:
        f"{RESULTS}/logs/evaluate_snapshots/{CELL_PATTERN}.log",
    threads: config["threads"]
    resources:
        **DEVICE_RESOURCES,
        **JOB_RESOURCES,
    params:
        job=lambda wc: cell_job_json(wc, "evaluate"),
        train_dir=lambda wc, input: os.path.dirname(input.history),
    shell:
        "iresnet-inverse evaluate-snapshots --job-json {params.job:q} --threads {threads} "
        "--train-dir {params.train_dir:q} --images {input.images:q} "
        "--observations {input.observations:q} --out {output:q} "
        "--rule {rule} 2>&1 | tee {log:q}"


rule combine_scaling:
    input:
        cell_files(rules.evaluate_snapshots.output[0], SCALING_CELLS),
    output:
        f"{RESULTS}/datasets/scaling.nc",
    log:
        f"{RESULTS}/logs/combine_scaling.log",
    localrule: True
    shell:
        "iresnet-inverse combine {input:q} --out {output:q} --title 'budget scaling' "
        "--rule {rule} 2>&1 | tee {log:q}"


rule scaling_table:
    input:
        scaling=rules.combine_scaling.output[0],
        reconstruction=rules.combine_reconstruction.output[0],
    output:
        f"{RESULTS}/datasets/scaling.csv",
    log:
        f"{RESULTS}/logs/scaling_table.log",
    localrule: True
    shell:
        "iresnet-inverse scaling-table {input.scaling:q} "
        "--reconstruction {input.reconstruction:q} --out {output:q} "
        "--rule {rule} 2>&1 | tee {log:q}"
