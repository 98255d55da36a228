# iresnet-inverse: invertible residual networks as learned forward operators.
# The rules are thin: each calls the `iresnet-inverse` command line; all outputs go to results/.
# Every rule runs in the environment that runs Snakemake (`make demo` makes it from
# pyproject.toml; environment.yml pins the same versions): `snakemake --lint`'s request for a
# conda environment or container per rule is the one lint left, on purpose.
from snakemake.utils import min_version, validate

min_version("9.0")


# The demo config unless configs are given with --configfile (those then stand alone).
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/gaussian.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/toy2d.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/archive.smk"


rule all:
    default_target: True
    input:
        all_targets(),
