# Training: one job per cell of the grid.


def wildcard_cell(wc):
    return study_config.parse_cell(dict(wc.items()))


def train_settings(wc):
    return study_config.train_settings(config, wildcard_cell(wc))


def cell_config_json(wc, *sections):
    """What a cell's job reads: the given sections, its resolved training settings, its
    architecture and the cell alone as grid. Changes to other cells never rerun it."""
    cell = wildcard_cell(wc)
    payload = {s: config[s] for s in sections}
    payload["train"] = train_settings(wc)
    payload["archs"] = {wc.arch: study_config.architecture(config, wc.arch)}
    payload["grid"] = [study_config.single_cell_block(config, cell)]
    return json.dumps(payload, sort_keys=True)


def warm_start_input(wc):
    source = train_settings(wc)["warm_start_from"]
    if source is None or source == wc.objective:
        return []
    return [f"{RESULTS}/train/{CELL_PATTERN.replace('{objective}', source)}/model.pt".format(**dict(wc.items()))]


rule train:
    input:
        images=f"{RESULTS}/data/images.nc",
        observations=f"{RESULTS}/data/operator~{{operator}}/noise_level~{{noise_level}}/observations.nc",
        warm_start=warm_start_input,
    output:
        model=f"{RESULTS}/train/{CELL_PATTERN}/model.pt",
        history=f"{RESULTS}/train/{CELL_PATTERN}/history.nc",
    params:
        cfg=lambda wc: cell_config_json(wc, "device", "data", "operators"),
        out_dir=lambda wc, output: os.path.dirname(output.model),
        warm=lambda wc, input: f"--warm-start {input.warm_start[0]}" if input.warm_start else "",
    log:
        f"{RESULTS}/logs/train/{CELL_PATTERN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{CELL_PATTERN}.tsv"
    threads: config["threads"]
    resources:
        gpu=1 if config["device"] == "cuda" else 0,
        runtime=lambda wc: train_settings(wc)["runtime"],
        mem_mb=lambda wc: train_settings(wc)["mem_mb"],
    shell:
        "iresnet-inverse train --config-json {params.cfg:q} --threads {threads} "
        "--operator {wildcards.operator} --noise-level {wildcards.noise_level} "
        "--lipschitz {wildcards.lipschitz} --objective {wildcards.objective} "
        "--arch {wildcards.arch} --seed {wildcards.seed} --images {input.images} "
        "--observations {input.observations} --out-dir {params.out_dir} {params.warm} "
        "--rule train 2>&1 | tee {log}"
