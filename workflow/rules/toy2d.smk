# The Bayesian toy study: exact references per (prior, eps, delta), one job per toy cell.

TOY_CELLS = study_config.toy_cells(config)
TOY_REFERENCE = "prior~{prior}/eps~{eps}/noise_level~{noise_level}"
TOY_PATTERN = "/".join(f"{k}~{{{k}}}" for k in study_config.TOY_KEYS)


def toy_config_json(wc):
    """What a toy cell reads: its resolved training settings and architecture, not the grid."""
    cell = {k: wc[k] for k in study_config.TOY_KEYS}
    settings = study_config.toy_train_settings(config, cell)
    toy = {k: v for k, v in config["toy2d"].items() if k != "grid"}
    arch = toy["arch"]
    return json.dumps(
        {
            "train": settings,
            "toy2d": {**toy, "train": settings},
            "archs": {arch: study_config.architecture(config, arch)},
        },
        sort_keys=True,
    )


def toy_files():
    fmt = study_config.format_value
    cells = [f"{RESULTS}/toy2d/cells/{'/'.join(f'{k}~{fmt(c[k])}' for k in study_config.TOY_KEYS)}/results.nc" for c in TOY_CELLS]
    refs = sorted({f"{RESULTS}/toy2d/reference/prior~{c['prior']}/eps~{fmt(c['eps'])}/noise_level~{fmt(c['noise_level'])}/reference.nc" for c in TOY_CELLS})
    return cells, refs


rule toy_reference:
    output:
        f"{RESULTS}/toy2d/reference/{TOY_REFERENCE}/reference.nc",
    params:
        cfg=lambda wc: json.dumps(
            {"toy2d": {k: config["toy2d"][k] for k in ("points", "seed")}}, sort_keys=True
        ),
    log:
        f"{RESULTS}/logs/toy2d/reference/{TOY_REFERENCE}.log",
    threads: 1
    shell:
        "iresnet-inverse toy-reference --config-json {params.cfg:q} --prior {wildcards.prior} "
        "--eps {wildcards.eps} --noise-level {wildcards.noise_level} --out {output} "
        "--rule toy_reference 2>&1 | tee {log}"


rule toy_train:
    input:
        f"{RESULTS}/toy2d/reference/{TOY_REFERENCE}/reference.nc",
    output:
        f"{RESULTS}/toy2d/cells/{TOY_PATTERN}/results.nc",
    params:
        cfg=toy_config_json,
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/toy2d/cells/{TOY_PATTERN}.log",
    threads: 1
    shell:
        "iresnet-inverse toy-train --config-json {params.cfg:q} --threads {threads} "
        "--prior {wildcards.prior} --eps {wildcards.eps} --noise-level {wildcards.noise_level} "
        "--lipschitz {wildcards.lipschitz} --objective {wildcards.objective} "
        "--noise-factor {wildcards.noise_factor} --seed {wildcards.seed} --reference {input} "
        "--out-dir {params.out_dir} --rule toy_train 2>&1 | tee {log}"


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
        "iresnet-inverse combine {input.cells} --also {input.references} --out {output} "
        "--title 'toy study' --rule combine_toy2d 2>&1 | tee {log}"
