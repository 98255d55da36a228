"""The grammar of the ``iresnet-inverse`` command line: every subcommand and its options, one
function per group of subcommands. ``cli`` runs the chosen subcommand (``args.command``)."""

import argparse
import math
from dataclasses import dataclass

from iresnet_inverse.registry import OPERATORS, PROBES


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 2**32 - 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 2**32 - 1], not {text}")
    return value


def _noise_level(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


@dataclass
class Parents:
    """The option sets subcommands share: ``common`` (threads, rule, config) for commands that
    read the config, ``job`` (threads, rule, the resolved job) for one cell's job, ``tool``
    (threads only) for the user tools, which read what they need from their inputs."""

    common: argparse.ArgumentParser
    job: argparse.ArgumentParser
    tool: argparse.ArgumentParser


def _parents() -> Parents:
    """The shared option sets; every compute command sets its torch threads."""
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--threads", type=_positive_int, default=1, help="torch threads")
    run.add_argument("--rule", default="", help="Snakemake rule name, for provenance")
    common = argparse.ArgumentParser(add_help=False, parents=[run])
    common.add_argument("--config-json", default="{}", help="the (resolved) config as JSON")
    common.add_argument("--config", help="a YAML config file (validated; overrides --config-json)")
    # A cell's job takes the job the rule resolved (jobs.Job as JSON), not the config.
    job = argparse.ArgumentParser(add_help=False, parents=[run])
    job.add_argument("--job-json", required=True, help="the resolved job (cell, settings, ...)")
    tool = argparse.ArgumentParser(add_help=False)
    tool.add_argument(
        "--threads", type=_positive_int, help="torch threads (default: torch's choice)"
    )
    return Parents(common, job, tool)


def _data_parsers(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The image dataset and its observations."""
    p = sub.add_parser("data", parents=[parents.common], help="write the image dataset (images.nc)")
    p.add_argument("--out", required=True)

    p = sub.add_parser(
        "observe", parents=[parents.common], help="noisy val/test data per operator and δ"
    )
    p.add_argument("--images", required=True)
    p.add_argument("--operator", required=True, choices=OPERATORS)
    p.add_argument("--noise-level", type=_noise_level, required=True)
    p.add_argument("--out", required=True)


def _cell_parsers(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """One image cell's jobs: train, evaluate and probe."""
    p = sub.add_parser("train", parents=[parents.job], help="train one cell")
    p.add_argument("--images", required=True)
    p.add_argument("--observations", required=True, help="observations.nc (validation data)")
    p.add_argument("--out-dir", required=True, help="writes model.pt and history.nc here")
    p.add_argument("--warm-start", help="model.pt of another cell to start from")
    p.add_argument("--search", help="search.nc: train with the best trial's hyperparameters")
    p.add_argument(
        "--trial", action="store_true", help="a search trial: a diverged run is a failed trial"
    )

    p = sub.add_parser(
        "evaluate", parents=[parents.job], help="evaluate a trained cell on the test split"
    )
    _required(p, "--model", "--images", "--observations", "--out")

    p = sub.add_parser(
        "evaluate-snapshots", parents=[parents.job], help="test PSNR of a cell's train.snapshots"
    )
    p.add_argument("--train-dir", required=True, help="the cell's training directory")
    _required(p, "--images", "--observations", "--out")

    p = sub.add_parser(
        "probe", parents=[parents.job], help="what a trained cell learned, on the named images"
    )
    p.add_argument("probe", choices=PROBES)
    _required(p, "--model", "--images", "--out")


def _toy_parsers(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The low-dimensional Bayesian study: reference points, one toy cell, the claims."""
    toy = argparse.ArgumentParser(add_help=False)
    toy.add_argument("--prior", required=True)
    toy.add_argument("--eps", type=float, required=True)
    toy.add_argument("--noise-level", type=_noise_level, required=True)

    p = sub.add_parser(
        "toy-reference", parents=[parents.common, toy], help="toy test points, exact MAP and PM"
    )
    p.add_argument("--out", required=True)

    p = sub.add_parser("toy-train", parents=[parents.job], help="train and evaluate one toy cell")
    p.add_argument("--reference", required=True)
    p.add_argument("--out-dir", required=True, help="writes results.nc here")

    _aggregation(
        sub,
        parents,
        "toy-claims",
        "the toy study's claims as CSV",
        "toy",
        "toy2d.nc (the combined toy study)",
    )


def _gaussian_parsers(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The exact Gaussian-prior estimators and the check of the blur cells against them."""
    p = sub.add_parser(
        "gaussian-reference",
        parents=[parents.common],
        help="exact estimators of the gaussian source",
    )
    p.add_argument("observations", nargs="+", help="observations.nc of the blur noise levels")
    p.add_argument("--images", required=True)
    p.add_argument(
        "--noise-factors", type=float, nargs="+", default=[1.0], help="dhat / delta values"
    )
    p.add_argument("--out", required=True)

    p = sub.add_parser(
        "gaussian-check",
        parents=[parents.common],
        help="test MSE of each blur cell against its target",
    )
    p.add_argument("reconstruction", help="reconstruction.nc (the combined study)")
    p.add_argument("--reference", required=True, help="gaussian_reference.nc")
    p.add_argument("--out", required=True)


def _required(p: argparse.ArgumentParser, *flags: str) -> None:
    """File options that a command cannot run without."""
    for flag in flags:
        p.add_argument(flag, required=True)


def _aggregation(
    sub: argparse._SubParsersAction,
    parents: Parents,
    name: str,
    description: str,
    inputs: str,
    inputs_help: str | None = None,
) -> argparse.ArgumentParser:
    """A command that reads datasets and writes one with ``--out``, without torch threads;
    ``inputs`` names its positional argument (``+`` at the end: one or more files)."""
    p = sub.add_parser(name, parents=[parents.common], help=description)
    many = inputs.endswith("+")
    p.add_argument(inputs.rstrip("+"), nargs="+" if many else None, help=inputs_help)
    p.add_argument("--out", required=True)
    p.set_defaults(threads=None)
    return p


def _table_parsers(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The study's datasets, tables and figures, from the cells' files (no torch threads)."""
    p = _aggregation(sub, parents, "combine", "combine per-cell NetCDF files into one", "inputs+")
    p.add_argument("--title", default="study dataset")
    p.add_argument(
        "--also", nargs="+", help="a second group of files, combined on its own, then merged"
    )
    histories = "history.nc of every cell"
    _aggregation(
        sub,
        parents,
        "search-table",
        "the search trials, best per arch",
        "histories+",
        "history.nc of every trial",
    )
    p = _aggregation(sub, parents, "methods-table", "Table 1 as CSV", "histories+", histories)
    p.add_argument("--reconstruction", help="reconstruction.nc, for test PSNR/SSIM columns")
    _aggregation(
        sub, parents, "training-curves", "learning curves of all cells", "histories+", histories
    )
    p = _aggregation(
        sub,
        parents,
        "scaling-table",
        "dB per doubling of the budget",
        "scaling",
        "scaling.nc (the combined budget curves)",
    )
    p.add_argument("--reconstruction", required=True, help="reconstruction.nc (for TV)")

    p = sub.add_parser(
        "figure", parents=[parents.common], help="draw one figure from NetCDF inputs"
    )
    p.add_argument("name")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out-stem", required=True, help="output path without suffix")
    p.set_defaults(threads=None)


def _archive_parsers(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """Archives of a study: write, verify, restore."""
    p = sub.add_parser("archive", parents=[parents.common], help="archive a study's results")
    p.add_argument("inputs", nargs="*", help="files under results/ (the archive rule's inputs)")
    p.add_argument(
        "--results", help="archive every file of this results directory (a study in parts)"
    )
    p.add_argument(
        "--checkpoints",
        action="store_true",
        help="with --results: also the resume checkpoints of unfinished cells",
    )
    p.add_argument("--out", required=True)
    p.set_defaults(threads=None)

    p = sub.add_parser(
        "restore", help="lay a verified archive back into results/ (Snakemake finds it done)"
    )
    p.add_argument("archive")
    p.add_argument("--results", default="results", help="the results directory (default results)")
    p.add_argument("--force", action="store_true", help="overwrite existing files that differ")
    p.set_defaults(threads=None)

    p = sub.add_parser(
        "verify-archive", parents=[parents.common], help="check an archive's manifest"
    )
    p.add_argument("archive")
    p.set_defaults(threads=None)


def _tool_parsers(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The user tools: ``reconstruct`` and ``summary`` read what they need from model.pt or the
    study dataset, so they take no config (and no Snakemake provenance options); ``describe``
    shows a config."""
    p = sub.add_parser(
        "reconstruct", parents=[parents.tool], help="apply a trained model.pt to your own image"
    )
    p.add_argument("--model", required=True, help="results/train/<cell>/model.pt")
    p.add_argument(
        "--image",
        help="the clean image (gray or RGB, an image file or .npy, scaled by its dtype); "
        "required unless --data is given",
    )
    p.add_argument(
        "--data",
        help="observed data z of the image's shape (default: simulated from --image); --image "
        "or --data is required",
    )
    p.add_argument(
        "--noise-level",
        type=_noise_level,
        help="delta of the simulated data (default: the cell's)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="seed of the simulated noise")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--out", required=True, help="the reconstruction as an 8-bit PNG (*.png)")
    p.add_argument("--nc", help="also write x, the data z and x_hat to this NetCDF file")

    p = sub.add_parser(
        "summary", parents=[parents.tool], help="mean PSNR/SSIM per method of a study"
    )
    p.add_argument("reconstruction", nargs="?", default="results/datasets/reconstruction.nc")
    style = p.add_mutually_exclusive_group()
    style.add_argument("--csv", action="store_true", help="CSV to stdout")
    style.add_argument("--markdown", action="store_true", help="a markdown table")

    sub.add_parser(
        "describe",
        parents=[parents.common],
        help="print the config's architectures and sizes (without --config: the schema's defaults)",
    )
    p = sub.add_parser(
        "forkserver",
        help="run forwarded commands in children of one process that has imported torch once "
        "(make demo; IRESNET_INVERSE_FORKSERVER names the socket)",
    )
    p.add_argument("socket", help="the Unix socket to listen on (created, removed at exit)")
    p.set_defaults(threads=None)


def parser(description: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand and its options; the chosen one is ``args.command``."""
    top = argparse.ArgumentParser(prog="iresnet-inverse", description=description)
    sub = top.add_subparsers(dest="command", required=True)
    parents = _parents()
    _data_parsers(sub, parents)
    _cell_parsers(sub, parents)
    _toy_parsers(sub, parents)
    _gaussian_parsers(sub, parents)
    _table_parsers(sub, parents)
    _archive_parsers(sub, parents)
    _tool_parsers(sub, parents)
    return top
