# Shared helpers: config validation, the cell grid, the files rules expect, the resolved jobs.
# Rules live in the other files, functions here (`snakemake --lint`: one concern per file).
import json
import os
import shlex
import sys
from pathlib import Path

from iresnet_inverse import config as study_config
from iresnet_inverse.stages.archive import default_name
from iresnet_inverse.cells import ImageCell, Observations, ToyCell, ToyReference
from iresnet_inverse.interrupted import remove_stale_results
from iresnet_inverse.jobs import image_job, toy_job
from iresnet_inverse.stages.search import trial_job
from iresnet_inverse.registry import (
    EXAMPLES_PREFIX,
    FIGURE_GROUPS,
    figure_group,
    ANALYSIS_FIGURES,
    PROBES,
    RECONSTRUCTION_FIGURES,
    SCALING_FIGURES,
    SEARCH_FIGURES,
    TOY_FIGURES,
    TRAINING_FIGURES,
    toy_figures,
)

# Rules call the command line of the environment that runs Snakemake. (`snakemake --lint` asks
# for an `envvars:` assertion on PATH; it is set here, not read from the user, so none is needed.)
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

try:
    validate(config, str(study_config.SCHEMA_PATH))
except Exception:
    study_config.validate(config)  # re-raises as one line naming the field
    raise
study_config.check(config)  # what the schema cannot express, before any job

CELLS = study_config.cells(config)
# Cells trained by gradient steps (TV only searches its weight): they have learning curves.
TRAINED_CELLS = [c for c in CELLS if study_config.architecture(config, c.arch)["kind"] != "tv"]
# Cells that keep snapshots (train.snapshots): their budget curves make the scaling study.
SCALING_CELLS = [c for c in TRAINED_CELLS if study_config.train_settings(config, c)["snapshots"]]
# What each cluster job asks for: the workflow owns job sizes (training jobs take the cell's
# train.runtime/mem_mb, the others `cluster`), so a site profile that sets only the partition and
# account loses nothing. A CUDA job gets `threads` CPUs per GPU (sbatch --cpus-per-gpu), a CPU job
# `threads` CPUs (the SLURM plugin's --cpus-per-task).


def cluster_gpus(wildcards):
    """device auto: one GPU where jobs go to a cluster (CUDA is present there only if asked for),
    none where they run here. Resources are evaluated once the executor is known; a dry run
    (its executor local) shows none."""
    return 0 if workflow.local_exec else 1


def cluster_cpus_per_gpu(wildcards):
    return cluster_gpus(wildcards) * config["threads"]


DEVICE_RESOURCES = {
    "cuda": {"gpu": 1, "cpus_per_gpu": config["threads"]},
    "auto": {"gpu": cluster_gpus, "cpus_per_gpu": cluster_cpus_per_gpu},
    "cpu": {"gpu": 0},
}[config["device"]]
JOB_RESOURCES = {key: config["cluster"][key] for key in ("runtime", "mem_mb")}
NOISE_LEVELS = study_config.noise_levels(config)  # operator -> sorted deltas
OPERATOR_NAMES = sorted(NOISE_LEVELS)
RESULTS = "results"
CELL_PATTERN = ImageCell.pattern()
OBSERVATIONS = f"{RESULTS}/data/{Observations.pattern()}/observations.nc"

for _cell in CELLS:
    study_config.architecture(config, _cell["arch"])  # an unknown arch fails here, before any job


wildcard_constraints:
    operator=r"[A-Za-z0-9_]+",
    noise_level=r"[0-9.eE+-]+",
    lipschitz=r"[0-9.eE+-]+|inf",
    objective=r"[A-Za-z0-9_]+",
    arch=r"[A-Za-z0-9_]+",
    seed=r"[0-9]+",
    prior=r"[a-z0-9]+",
    eps=r"[0-9.eE+-]+",
    noise_factor=r"[0-9.eE+-]+",
    trial=r"[0-9]+",


def config_json(*sections):
    """The config sections a job depends on, as JSON: a change elsewhere does not rerun it."""
    return json.dumps({s: config[s] for s in sections}, sort_keys=True)


def cell_files(pattern, cells, **wildcards):
    """A rule's output pattern (``rules.X.output``) filled in for each cell."""
    return [cell.fill(pattern, **wildcards) for cell in cells]


def figure_files(names):
    """The PNG and PDF of each named figure."""
    return [path for name in names for path in expand(rules.figure.output, figure=name)]


def observation_files():
    cells = [Observations(op, d) for op, deltas in NOISE_LEVELS.items() for d in deltas]
    return cell_files(rules.observe.output[0], cells)


def cell_job_json(wc, *sections):
    """The resolved job of the wildcards' cell: what its command reads, and all it reads, so
    that changes to other cells never rerun it."""
    return image_job(config, ImageCell.of(dict(wc.items())), sections).to_json()


def all_targets():
    """Everything a run makes: the imaging study when the grid has cells (a config may hold the
    toy study alone), the toy study when toy2d.grid has cells."""
    # Every cell's own outputs too: Snakemake does not rerun a job whose outputs are missing
    # while everything downstream is present, so a forced rerun killed mid-training would leave
    # the cell "complete" without its model.
    image_study = [
        *cell_files(rules.train.output.model, CELLS),
        *cell_files(rules.train.output.history, CELLS),
        *rules.data.output,
        *observation_files(),
        *figure_files(["operators"]),
        *rules.combine_reconstruction.output,
        *rules.methods_table.output,
        *figure_files(reconstruction_figures()),
    ]
    training = [*rules.combine_training.output, *figure_files(TRAINING_FIGURES)]
    search = [*rules.combine_search.output, *figure_files(SEARCH_FIGURES)]
    scaling = [*rules.combine_scaling.output, *rules.scaling_table.output]
    analysis = [*expand(rules.combine_probe.output, probe=PROBES)]
    gaussian = [*rules.gaussian_reference.output, *rules.gaussian_check.output]
    toy = [
        *rules.combine_toy2d.output,
        *rules.toy_claims.output,
        *figure_files(toy_figures(TOY_CELLS)),
    ]
    return [
        *(image_study if CELLS else []),
        *(training if TRAINED_CELLS else []),
        *(search if SEARCH_CELLS else []),
        *(scaling + figure_files(SCALING_FIGURES) if SCALING_CELLS else []),
        *(analysis + figure_files(ANALYSIS_FIGURES) if ANALYSIS_CELLS else []),
        *(gaussian if GAUSSIAN_CHECK else []),
        *(toy if config["toy2d"]["grid"] else []),
    ]


# Training


def train_settings(wc):
    return study_config.train_settings(config, ImageCell.of(dict(wc.items())))


def search_input(wc):
    """The search's results, for a cell whose architecture is searched."""
    return [*rules.combine_search.output] if wc.arch in SEARCHED_ARCHS else []


def warm_start_input(wc):
    source = train_settings(wc)["warm_start_from"]
    if source is None or source == wc.objective:
        return []
    start = ImageCell.of({**dict(wc.items()), "objective": source})
    return [start.fill(rules.train.output.model)]


# Hyperparameter search

SEARCH_CELLS = study_config.search_cells(config)
SEARCHED_ARCHS = {c.arch for c in SEARCH_CELLS}


def trial_job_json(wc):
    cell = ImageCell.of(dict(wc.items()))
    return trial_job(config, cell, int(wc.trial)).to_json()


def search_trial_histories():
    return [
        c.fill(rules.search_trial.output.history, trial=str(t))
        for c in SEARCH_CELLS
        for t in range(config["search"]["trials"])
    ]


# What the networks learned

ANALYSIS_CELLS = study_config.analysis_cells(config)


# The toy study

TOY_CELLS = study_config.toy_cells(config)
TOY_REFERENCE = ToyReference.pattern()
TOY_PATTERN = ToyCell.pattern()


# Evaluations of a model that a killed forced rerun deleted go first (interrupted.py), so that
# every target that needs them retrains the cell.
for _stale in remove_stale_results(
    Path(RESULTS), [c.dir for c in CELLS], [c.dir for c in TOY_CELLS]
):
    print(f"removed {_stale}: its cell's training was interrupted", file=sys.stderr)


def toy_files():
    references = {ToyReference.of(c).fill(rules.toy_reference.output[0]) for c in TOY_CELLS}
    return cell_files(rules.toy_train.output[0], TOY_CELLS), sorted(references)


# The Gaussian-prior check: the blur cells of a config with data.source gaussian (the one
# prior whose estimators are closed form; diffusion has no dense linear reference).

GAUSSIAN_CELLS = [c for c in CELLS if c.operator == "blur"]
GAUSSIAN_CHECK = config["data"]["source"] == "gaussian" and bool(GAUSSIAN_CELLS)


def gaussian_observation_files():
    cells = [Observations("blur", d) for d in NOISE_LEVELS.get("blur", [])]
    return cell_files(rules.observe.output[0], cells)


def gaussian_noise_factors():
    """dhat / delta of every blur cell (1 always: the Wiener estimator's divergence target)."""
    factors = {study_config.train_settings(config, c)["noise_factor"] for c in GAUSSIAN_CELLS}
    return sorted(factors | {1.0})


# Figures and archive


def reconstruction_figures():
    """Figure names for the reconstruction study: the iResNet figures need reconstruction-
    trained iResNet cells, the method figures those or baselines; the examples figure is drawn
    per operator."""
    invertible = any(
        c["objective"] == "reconstruction" and c["lipschitz"] != study_config.UNCONSTRAINED
        for c in CELLS
    )
    baselines = any(c["lipschitz"] == study_config.UNCONSTRAINED for c in CELLS)
    if not (invertible or baselines):  # only log-det / divergence cells: no method to compare
        return []
    names = list(RECONSTRUCTION_FIGURES) if invertible else ["methods_vs_noise"]
    return names + [f"examples_{op}" for op in OPERATOR_NAMES]


ARCHIVE_NAME = config["archive"]["name"] or default_name(config)


def archived_files():
    """Everything `all` makes (data, every cell's model and history, datasets, figures): an
    archive that `iresnet-inverse restore` lays back into a results/ Snakemake finds done."""
    return all_targets()


# Figures (figures.smk): what each group of the figure registry is drawn from, and where the
# report files it. Evaluated when a figure job is planned, after every rule exists.
FIGURE_PATTERN = "|".join(
    [*(name for names in FIGURE_GROUPS.values() for name in names), f"{EXAMPLES_PREFIX}\\w+"]
)
FIGURE_CATEGORIES = {
    "operators": "Data",
    "analysis": "What the networks learned",
    "toy": "Bayesian toy study",
}


def figure_inputs(wildcards):
    group = figure_group(wildcards.figure)
    if group == "operators":
        return [rules.data.output[0], *observation_files()]
    if group == "analysis":
        return expand(rules.combine_probe.output[0], probe=PROBES)
    if group == "scaling":
        return [*rules.combine_scaling.output, *rules.combine_reconstruction.output]
    combined = {
        "reconstruction": rules.combine_reconstruction,
        "training": rules.combine_training,
        "search": rules.combine_search,
        "toy": rules.combine_toy2d,
    }
    return combined[group].output


def figure_category(wildcards):
    return FIGURE_CATEGORIES.get(figure_group(wildcards.figure), "Reconstruction study")
