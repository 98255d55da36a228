# Evaluation of every trained cell on the test split, then one study dataset.


rule evaluate:
    input:
        model=f"{RESULTS}/train/{CELL_PATTERN}/model.pt",
        images=f"{RESULTS}/data/images.nc",
        observations=f"{RESULTS}/data/operator~{{operator}}/noise_level~{{noise_level}}/observations.nc",
    output:
        f"{RESULTS}/evaluate/{CELL_PATTERN}/metrics.nc",
    params:
        cfg=lambda wc: cell_config_json(wc, "device", "operators", "evaluate"),
    log:
        f"{RESULTS}/logs/evaluate/{CELL_PATTERN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{CELL_PATTERN}.tsv"
    threads: config["threads"]
    resources:
        gpu=1 if config["device"] == "cuda" else 0,
    shell:
        "iresnet-inverse evaluate --config-json {params.cfg:q} --threads {threads} "
        "--model {input.model} --images {input.images} --observations {input.observations} "
        "--out {output} --rule evaluate 2>&1 | tee {log}"


rule combine_reconstruction:
    input:
        [f"{RESULTS}/evaluate/{study_config.cell_dir(c)}/metrics.nc" for c in CELLS],
    output:
        f"{RESULTS}/datasets/reconstruction.nc",
    log:
        f"{RESULTS}/logs/combine_reconstruction.log",
    localrule: True
    shell:
        "iresnet-inverse combine {input} --out {output} --title 'reconstruction study' "
        "--rule combine_reconstruction 2>&1 | tee {log}"


rule methods_table:
    input:
        histories=[f"{RESULTS}/train/{study_config.cell_dir(c)}/history.nc" for c in CELLS],
        reconstruction=f"{RESULTS}/datasets/reconstruction.nc",
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
        "iresnet-inverse methods-table {input.histories} "
        "--reconstruction {input.reconstruction} --out {output} "
        "--rule methods_table 2>&1 | tee {log}"
