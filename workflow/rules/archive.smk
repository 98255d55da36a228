# Archive (run with `snakemake archive`, not part of `all`): the study datasets and figures,
# the resolved config, a lock of installed packages and a sha256 manifest.
from iresnet_inverse.archive import default_name

ARCHIVE_NAME = config["archive"]["name"] or default_name(config)


rule archive:
    input:
        [t for t in all_targets() if "/datasets/" in t or "/figures/" in t],
    output:
        f"{RESULTS}/archive/{ARCHIVE_NAME}.tar.gz",
    params:
        cfg=json.dumps(config, sort_keys=True),
    log:
        f"{RESULTS}/logs/archive.log",
    localrule: True
    shell:
        "iresnet-inverse archive {input} --out {output} --config-json {params.cfg:q} "
        "--rule archive 2>&1 | tee {log} && iresnet-inverse verify-archive {output} | tee -a {log}"
