# Data: image patches by split, then noisy validation/test data per operator and noise level.


rule data:
    output:
        f"{RESULTS}/data/images.nc",
    params:
        cfg=config_json("data"),
    log:
        f"{RESULTS}/logs/data.log",
    benchmark:
        f"{RESULTS}/benchmarks/data.tsv"
    threads: 1
    shell:
        "iresnet-inverse data --config-json {params.cfg:q} --out {output} --rule data "
        "2>&1 | tee {log}"


rule observe:
    input:
        f"{RESULTS}/data/images.nc",
    output:
        f"{RESULTS}/data/operator~{{operator}}/noise_level~{{noise_level}}/observations.nc",
    params:
        cfg=lambda wc: config_json("data", "operators"),
    log:
        f"{RESULTS}/logs/observe/operator~{{operator}}/noise_level~{{noise_level}}.log",
    threads: 1
    shell:
        "iresnet-inverse observe --config-json {params.cfg:q} --images {input} "
        "--operator {wildcards.operator} --noise-level {wildcards.noise_level} "
        "--out {output} --rule observe 2>&1 | tee {log}"
