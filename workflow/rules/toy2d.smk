# The Bayesian toy study: exact references per (prior, eps, delta), one job per toy cell.


rule toy_reference:
    output:
        f"{RESULTS}/toy2d/reference/{TOY_REFERENCE}/reference.nc",
    log:
        f"{RESULTS}/logs/toy2d/reference/{TOY_REFERENCE}.log",
    threads: 1
    resources:
        **JOB_RESOURCES,
    params:
        cfg=lambda wc: json.dumps(
            {"toy2d": {k: config["toy2d"][k] for k in ("points", "seed")}}, sort_keys=True
        ),
    shell:
        "iresnet-inverse toy-reference --config-json {params.cfg:q} --prior {wildcards.prior} "
        "--eps {wildcards.eps} --noise-level {wildcards.noise_level} --out {output:q} "
        "--rule {rule} 2>&1 | tee {log:q}"


rule toy_train:
    input:
        rules.toy_reference.output,
    output:
        f"{RESULTS}/toy2d/cells/{TOY_PATTERN}/results.nc",
    log:
        f"{RESULTS}/logs/toy2d/cells/{TOY_PATTERN}.log",
    threads: 1
    resources:
        **JOB_RESOURCES,
    params:
        job=lambda wc: toy_job(config, ToyCell.of(dict(wc.items()))).to_json(),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "iresnet-inverse toy-train --job-json {params.job:q} --threads {threads} "
        "--reference {input:q} --out-dir {params.out_dir:q} --rule {rule} 2>&1 | tee {log:q}"


rule combine_toy2d:
    input:
        cells=toy_files()[0],
        references=toy_files()[1],
    output:
        f"{RESULTS}/datasets/toy2d.nc",
    log:
        f"{RESULTS}/logs/combine_toy2d.log",
    localrule: True
    shell:
        "iresnet-inverse combine {input.cells:q} --also {input.references:q} --out {output:q} "
        "--title 'toy study' --rule {rule} 2>&1 | tee {log:q}"


rule toy_claims:
    input:
        rules.combine_toy2d.output[0],
    output:
        f"{RESULTS}/datasets/toy_claims.csv",
    log:
        f"{RESULTS}/logs/toy_claims.log",
    localrule: True
    shell:
        "iresnet-inverse toy-claims {input:q} --out {output:q} --rule {rule} 2>&1 | tee {log:q}"
