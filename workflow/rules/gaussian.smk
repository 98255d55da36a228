# The Gaussian-prior check (data.source gaussian): the exact estimators on the test patches,
# then each trained blur cell's test MSE beside the one its objective should reach.


rule gaussian_reference:
    input:
        images=rules.data.output[0],
        observations=gaussian_observation_files(),
    output:
        f"{RESULTS}/datasets/gaussian_reference.nc",
    log:
        f"{RESULTS}/logs/gaussian_reference.log",
    benchmark:
        f"{RESULTS}/benchmarks/gaussian_reference.tsv"
    threads: 1
    resources:
        **JOB_RESOURCES,
    params:
        cfg=config_json("data", "operators"),
        factors=" ".join(f"{f!r}" for f in gaussian_noise_factors()),
    shell:
        "iresnet-inverse gaussian-reference {input.observations:q} --images {input.images:q} "
        "--config-json {params.cfg:q} --noise-factors {params.factors} --out {output:q} "
        "--threads {threads} --rule {rule} 2>&1 | tee {log:q}"


rule gaussian_check:
    input:
        reconstruction=rules.combine_reconstruction.output[0],
        reference=rules.gaussian_reference.output[0],
    output:
        report(
            f"{RESULTS}/datasets/gaussian_check.csv",
            caption="../report/gaussian_check.rst",
            category="Reconstruction study",
        ),
    log:
        f"{RESULTS}/logs/gaussian_check.log",
    localrule: True
    shell:
        "iresnet-inverse gaussian-check {input.reconstruction:q} "
        "--reference {input.reference:q} --out {output:q} --rule {rule} "
        "2>&1 | tee {log:q}"
