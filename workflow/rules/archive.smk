# Archive (run with `snakemake archive`, not part of `all`): everything `all` makes (data,
# models, datasets, figures), the resolved config, a lock of installed packages and a sha256
# manifest. `iresnet-inverse restore` lays it back into results/.
rule archive:
    input:
        archived_files(),
    output:
        f"{RESULTS}/archive/{ARCHIVE_NAME}.tar.gz",
    log:
        f"{RESULTS}/logs/archive.log",
    localrule: True
    params:
        cfg=json.dumps(config, sort_keys=True),
    shell:
        "iresnet-inverse archive {input:q} --out {output:q} --config-json {params.cfg:q} "
        "--rule {rule} 2>&1 | tee {log:q} && iresnet-inverse verify-archive {output:q} "
        "| tee -a {log:q}"
