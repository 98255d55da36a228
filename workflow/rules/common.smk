# Shared helpers: config validation, the cell grid, and how rules call the command line.
import json
import os
import sys

from iresnet_inverse import config as study_config
from iresnet_inverse.registry import (
    ANALYSIS_FIGURES,
    PROBES,
    RECONSTRUCTION_FIGURES,
    TOY_FIGURES,
)

# Rules call the command line of the environment that runs Snakemake.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

try:
    validate(config, os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml"))
except Exception:
    study_config.validate(config)  # re-raises as one line naming the field
    raise

CELLS = study_config.cells(config)
NOISE_LEVELS = study_config.noise_levels(config)  # operator -> sorted deltas
OPERATOR_NAMES = sorted(NOISE_LEVELS)
RESULTS = "results"
CELL_PATTERN = "/".join(f"{k}~{{{k}}}" for k in study_config.CELL_DIR_KEYS)

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


def config_json(*sections):
    """The config sections a rule depends on, as JSON: a change elsewhere does not rerun it."""
    return json.dumps({s: config[s] for s in sections}, sort_keys=True)


def observation_files():
    return [
        f"{RESULTS}/data/operator~{op}/noise_level~{study_config.format_value(d)}/observations.nc"
        for op, deltas in NOISE_LEVELS.items()
        for d in deltas
    ]


def all_targets():
    return [
        f"{RESULTS}/data/images.nc",
        *observation_files(),
        *expand(f"{RESULTS}/figures/operators.{{ext}}", ext=["png", "pdf"]),
        f"{RESULTS}/datasets/reconstruction.nc",
        f"{RESULTS}/datasets/methods.csv",
        *[
            f"{RESULTS}/figures/{name}.{ext}"
            for name in reconstruction_figures()
            for ext in ("png", "pdf")
        ],
        *(
            [f"{RESULTS}/datasets/{probe}.nc" for probe in PROBES]
            + [
                f"{RESULTS}/figures/{name}.{ext}"
                for name in ANALYSIS_FIGURES
                for ext in ("png", "pdf")
            ]
            if ANALYSIS_CELLS
            else []
        ),
        *(
            [f"{RESULTS}/datasets/toy2d.nc"]
            + [f"{RESULTS}/figures/{name}.{ext}" for name in TOY_FIGURES for ext in ("png", "pdf")]
            if config["toy2d"]["grid"]
            else []
        ),
    ]
