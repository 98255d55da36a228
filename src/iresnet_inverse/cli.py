"""The ``iresnet-inverse`` command line: one subcommand per kind of workflow rule, and the user
tools ``reconstruct`` (a trained model on your own image) and ``summary`` (a study's numbers)."""

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from iresnet_inverse.errors import ArtifactError, ConfigError, InputDataError, UserError
from iresnet_inverse.jobs import Job
from iresnet_inverse.registry import OPERATORS, PROBES


def cmd_data(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.artifacts import write_dataset
    from iresnet_inverse.stages.data import image_dataset

    ds = image_dataset(cfg["data"])
    write_dataset(
        ds,
        args.out,
        title="image patches by split and named test images",
        config=cfg,
        rule=args.rule,
    )


def cmd_observe(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.artifacts import read_dataset, write_dataset
    from iresnet_inverse.stages.data import observation_dataset

    images = read_dataset(args.images)
    ds = observation_dataset(
        images,
        args.operator,
        cfg["operators"][args.operator],
        args.noise_level,
        cfg["data"]["seed"],
    )
    write_dataset(
        ds,
        args.out,
        title=f"{args.operator} observations at noise level {args.noise_level:g}",
        config=cfg,
        rule=args.rule,
        cell={"operator": args.operator, "noise_level": args.noise_level},
    )


def _job(args: argparse.Namespace) -> Job:
    return Job.from_json(args.job_json)


def cmd_train(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.errors import TrainingError
    from iresnet_inverse.stages.search import tuned
    from iresnet_inverse.stages.train import record_failed_trial, train_image_cell

    job = tuned(_job(args), args.search) if args.search else _job(args)
    try:
        train_image_cell(
            job, args.images, args.observations, args.out_dir, args.warm_start, args.rule
        )
    except TrainingError as err:
        if not args.trial:
            raise
        record_failed_trial(job, err, args.out_dir, args.rule)


def _write_job_dataset(args: argparse.Namespace, job: Any, ds: Any, title: str) -> None:
    """A cell job's output dataset, with the job as its provenance."""
    from iresnet_inverse.artifacts import write_dataset

    write_dataset(ds, args.out, title=title, config=job.as_dict(), rule=args.rule, cell=job.cell)


def cmd_evaluate(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.evaluate import evaluate_model_file

    job = _job(args)
    ds = evaluate_model_file(args.model, args.images, args.observations, job)
    _write_job_dataset(args, job, ds, f"evaluation of {job.cell.dir}")


def cmd_evaluate_snapshots(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.evaluate import evaluate_snapshots

    job = _job(args)
    ds = evaluate_snapshots(args.train_dir, args.images, args.observations, job)
    _write_job_dataset(args, job, ds, f"budget curve of {job.cell.dir}")


def cmd_search_table(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.artifacts import write_dataset
    from iresnet_inverse.stages.search import search_dataset

    title = "random search of learning rate and batch size on the validation split"
    write_dataset(search_dataset(args.histories), args.out, title=title, rule=args.rule)


def cmd_scaling_table(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from pathlib import Path

    from iresnet_inverse.stages.scaling import scaling_table

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    scaling_table(args.scaling, args.reconstruction).to_csv(args.out, index=False)


def cmd_gaussian_reference(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.artifacts import read_dataset, write_dataset
    from iresnet_inverse.stages.gaussian import reference_dataset

    observations = [read_dataset(path) for path in args.observations]
    ds = reference_dataset(cfg, read_dataset(args.images), observations, args.noise_factors)
    title = "exact Gaussian-prior estimators on the test patches"
    write_dataset(ds, args.out, title=title, config=cfg, rule=args.rule)


def cmd_gaussian_check(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from pathlib import Path

    from iresnet_inverse.stages.gaussian import check_table

    table, skipped = check_table(args.reconstruction, args.reference)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    if skipped:
        print(f"skipped (no dense linear reference): {', '.join(skipped)}")
    print(table.to_string(index=False))


def cmd_toy_claims(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.toy_claims import write_claims

    table = write_claims(args.toy, args.out)
    print(table[table["claim"] != "forward_fidelity"].to_string(index=False))


def cmd_probe(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.probe import probe_model_file

    job = _job(args)
    ds = probe_model_file(args.probe, args.model, args.images, job)
    _write_job_dataset(args, job, ds, f"{args.probe} probe of {job.cell.dir}")


def cmd_combine(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.artifacts import combine_cells, write_dataset

    groups = [args.inputs] + ([args.also] if args.also else [])
    # Without an explicit config the inputs' own configs (attribute cell_configs_json) are the
    # provenance: the defaults would misstate what was run.
    given = args.config or args.config_json != "{}"
    combined = combine_cells(*groups)
    write_dataset(
        combined, args.out, title=args.title, config=cfg if given else None, rule=args.rule
    )


def cmd_toy_reference(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.artifacts import write_dataset
    from iresnet_inverse.stages.toy import reference_dataset

    toy = cfg["toy2d"]
    ds = reference_dataset(args.prior, args.eps, args.noise_level, toy["points"], toy["seed"])
    cell = {"prior": args.prior, "eps": args.eps, "noise_level": args.noise_level}
    write_dataset(
        ds,
        args.out,
        title="toy test points with exact MAP and posterior mean",
        config=cfg,
        rule=args.rule,
        cell=cell,
    )


def cmd_toy_train(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from pathlib import Path

    from iresnet_inverse.artifacts import read_dataset, write_dataset
    from iresnet_inverse.stages.toy import train_toy_cell

    job = _job(args)
    reference = read_dataset(args.reference, job.cell).squeeze(drop=True)
    write_dataset(
        train_toy_cell(job, reference, args.out_dir),
        Path(args.out_dir) / "results.nc",
        title=f"toy cell {job.cell.dir}",
        config=job.as_dict(),
        rule=args.rule,
        cell=job.cell,
    )


def cmd_archive(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from pathlib import Path

    from iresnet_inverse.stages.archive import build_archive, results_files

    if bool(args.inputs) == bool(args.results):
        raise InputDataError("give the files to archive or --results DIR, not both or neither")
    if args.checkpoints and not args.results:
        raise InputDataError("--checkpoints needs --results (checkpoints of unfinished cells)")
    if args.results:
        files = results_files(args.results, args.checkpoints)
    else:
        files = {}
        for path in args.inputs:
            p = Path(path)
            parts = p.parts
            name = "/".join(parts[parts.index("results") + 1 :]) if "results" in parts else p.name
            files[name] = p
    out = build_archive(files, cfg, args.out)
    print(f"{out}: {len(files)} files, {out.stat().st_size:,} bytes")


def cmd_restore(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.archive import restore_archive

    counts = restore_archive(args.archive, args.results, args.force)
    print(
        f"{args.archive}: restored {counts['written']} files into {args.results} "
        f"({counts['in_place']} already there with the same bytes)"
    )


def cmd_verify_archive(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.archive import verify_archive

    manifest = verify_archive(args.archive)
    print(
        f"{args.archive}: {len(manifest['files'])} files match the manifest "
        f"(commit {manifest['git_commit']})"
    )


def cmd_training_curves(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.artifacts import write_dataset
    from iresnet_inverse.stages.tables import training_curves

    title = "validation PSNR and training time per epoch of every trained network"
    write_dataset(training_curves(args.histories), args.out, title=title, rule=args.rule)


def cmd_figure(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.figures import DATASET_FIGURES, FIGURES, PAIR_FIGURES

    figures = cfg.get("figures", {})
    dpi = figures.get("dpi", 150)
    if args.name == "operators":
        FIGURES["operators"](
            args.inputs[0],
            args.inputs[1:],
            args.out_stem,
            dpi=dpi,
            cmap=figures.get("cmap", "gray"),
        )
    elif args.name in DATASET_FIGURES:
        DATASET_FIGURES[args.name](args.inputs[0], args.out_stem, dpi=dpi)
    elif args.name in PAIR_FIGURES:
        PAIR_FIGURES[args.name](*args.inputs[:2], args.out_stem, dpi=dpi)
    elif args.name.startswith("examples_"):
        from iresnet_inverse.stages.figures.methods import plot_examples

        operator = args.name.removeprefix("examples_")
        plot_examples(args.inputs[0], args.out_stem, operator, dpi=dpi)
    else:
        raise InputDataError(f"unknown figure {args.name!r}; known: {', '.join(FIGURES)}")


def cmd_methods_table(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from pathlib import Path

    from iresnet_inverse.stages.tables import methods_table

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    methods_table(args.histories, args.reconstruction).to_csv(args.out, index=False)


def cmd_describe(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.archs import ARCHITECTURES, BASELINES
    from iresnet_inverse.config import architecture, cells
    from iresnet_inverse.models import ModelMeta, build_network
    from iresnet_inverse.nets.iresnet import count_parameters

    # Trainable parameters in Table 1 of Arndt & Nickel (2024), shown beside ours for the
    # built-in specs (docs/methods.md, "Baselines": why our U-Net has fewer).
    table1 = {
        "iresnet": 4_263_700,
        "iresnet_small": 640_140,
        "diffnet": 101_310,
        "unet": 5_468_705,
        "convresnet": 4_263_873,
    }
    size = cfg["data"]["patch_size"]
    described = args.config or ("--config-json" if args.config_json != "{}" else None)
    if described is None:
        print("config: the schema's defaults (the demo is --config config/config.yaml)")
    archs = list(dict.fromkeys(cell["arch"] for cell in cells(cfg)))
    w = max(18, *(len(a) for a in archs))
    print(f"{'arch':<{w}} {'kind':<11} {'parameters':>12} {'Table 1':>12}   (patch size {size})")
    for arch in archs:
        spec = architecture(cfg, arch)
        cell = next(c for c in cells(cfg) if c["arch"] == arch)
        meta = ModelMeta(
            cell=cell,
            lipschitz=min(float(cell["lipschitz"]), 0.5),
            solver={},
            operator_params=cfg["operators"][cell["operator"]],
        )
        net = build_network(spec, meta)
        builtin = {**ARCHITECTURES, **BASELINES}.get(arch)
        paper = f"{table1[arch]:>12,}" if arch in table1 and spec == builtin else ""
        print(f"{arch:<{w}} {spec['kind']:<11} {count_parameters(net):>12,} {paper}".rstrip())
    print(f"{len(cells(cfg))} training cells")


def _refuse_overwriting(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """Refuse, before any work, an output path that is one of the inputs or another output
    (the same file by any spelling or link)."""
    seen = {Path(path).resolve(): flag for flag, path in inputs.items() if path is not None}
    for flag, path in outputs.items():
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            raise InputDataError(
                f"{flag} {path} is the file of {seen[key]}: it would be overwritten"
            )
        seen[key] = flag


def cmd_reconstruct(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.cells import ImageCell
    from iresnet_inverse.stages.reconstruct import apply_model, png_path

    _refuse_overwriting(
        {"--out": args.out, "--nc": args.nc},
        {"--model": args.model, "--image": args.image, "--data": args.data},
    )
    png_path(args.out)
    if args.nc and (Path(args.nc).suffix != ".nc" or Path(args.nc).is_dir()):
        raise InputDataError(f"--nc {args.nc}: name a NetCDF file, ending in .nc")
    result = apply_model(
        args.model, args.image, args.data, args.noise_level, args.seed, args.device
    )
    written = _write_both(result, args)
    simulated = result.noise_level is not None
    source = f"F(x) + {result.noise_level:g} * noise (seed {args.seed})" if simulated else args.data
    print(f"model           {args.model}")
    print(f"cell            {ImageCell.of(result.cell).dir}")
    print(f"data            {source}")
    if result.metrics:
        m = result.metrics
        print(
            f"PSNR / SSIM     data {m['data_psnr']:.2f} dB / {m['data_ssim']:.4f}   "
            f"reconstruction {m['psnr']:.2f} dB / {m['ssim']:.4f}"
        )
    else:
        print("PSNR / SSIM     need the clean image (--image)")
    if result.converged is False:
        print("warning: the inversion did not reach the solver's tolerance", file=sys.stderr)
    print("wrote " + ", ".join(str(path) for path in written))


def _write_both(result: Any, args: argparse.Namespace) -> list[Path]:
    """The PNG and the NetCDF file, or neither: the NetCDF file (the one a full disk would
    stop) is staged beside its place and moved there once the PNG is written."""
    from iresnet_inverse.stages.reconstruct import write_png, write_result

    if not args.nc:
        return [write_png(result.x_hat, args.out)]
    nc = Path(args.nc)
    staging = nc.with_name(f".{nc.name}.staged.nc")
    try:
        staged = write_result(result, staging, args.model)
    except ArtifactError as err:  # name the file asked for, not the staging one
        raise ArtifactError(str(err).replace(str(staging), str(nc))) from None
    try:
        png = write_png(result.x_hat, args.out)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    os.replace(staged, nc)
    return [png, nc]


def cmd_summary(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.tables import format_table, summary_table

    style = "csv" if args.csv else "markdown" if args.markdown else "text"
    print(format_table(summary_table(args.reconstruction), style))


def _tool_parsers(sub: argparse._SubParsersAction) -> None:
    """The user tools: they read what they need from model.pt or the study dataset, so they
    take no config (and no Snakemake provenance options)."""
    tool = argparse.ArgumentParser(add_help=False)
    tool.add_argument(
        "--threads", type=_positive_int, help="torch threads (default: torch's choice)"
    )

    p = sub.add_parser(
        "reconstruct", parents=[tool], help="apply a trained model.pt to your own image"
    )
    p.add_argument("--model", required=True, help="results/train/<cell>/model.pt")
    p.add_argument(
        "--image",
        help="the clean image (gray or RGB; .npy: a 2-D array); required unless --data is given",
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
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("summary", parents=[tool], help="mean PSNR/SSIM per method of a study")
    p.add_argument("reconstruction", nargs="?", default="results/datasets/reconstruction.nc")
    style = p.add_mutually_exclusive_group()
    style.add_argument("--csv", action="store_true", help="CSV to stdout")
    style.add_argument("--markdown", action="store_true", help="a markdown table")
    p.set_defaults(func=cmd_summary)


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


def _parser() -> argparse.ArgumentParser:
    """Every subcommand and its options: a flat list, one block per command, long but with
    nothing to follow across functions."""
    parser = argparse.ArgumentParser(prog="iresnet-inverse", description=__doc__)
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--threads", type=_positive_int, default=1, help="torch threads")
    run.add_argument("--rule", default="", help="Snakemake rule name, for provenance")
    common = argparse.ArgumentParser(add_help=False, parents=[run])
    common.add_argument("--config-json", default="{}", help="the (resolved) config as JSON")
    common.add_argument("--config", help="a YAML config file (validated; overrides --config-json)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", parents=[common], help="write the image dataset (images.nc)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("observe", parents=[common], help="noisy val/test data per operator and δ")
    p.add_argument("--images", required=True)
    p.add_argument("--operator", required=True, choices=OPERATORS)
    p.add_argument("--noise-level", type=_noise_level, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_observe)

    # A cell's job takes the job the rule resolved (jobs.Job as JSON), not the config.
    job = argparse.ArgumentParser(add_help=False, parents=[run])
    job.add_argument("--job-json", required=True, help="the resolved job (cell, settings, ...)")

    p = sub.add_parser("train", parents=[job], help="train one cell")
    p.add_argument("--images", required=True)
    p.add_argument("--observations", required=True, help="observations.nc (validation data)")
    p.add_argument("--out-dir", required=True, help="writes model.pt and history.nc here")
    p.add_argument("--warm-start", help="model.pt of another cell to start from")
    p.add_argument("--search", help="search.nc: train with the best trial's hyperparameters")
    p.add_argument(
        "--trial", action="store_true", help="a search trial: a diverged run is a failed trial"
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", parents=[job], help="evaluate a trained cell on the test split")
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--observations", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "evaluate-snapshots", parents=[job], help="test PSNR of a cell's train.snapshots"
    )
    p.add_argument("--train-dir", required=True, help="the cell's training directory")
    p.add_argument("--images", required=True)
    p.add_argument("--observations", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_evaluate_snapshots)

    p = sub.add_parser("search-table", parents=[common], help="the search trials, best per arch")
    p.add_argument("histories", nargs="+", help="history.nc of every trial")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_search_table, threads=None)

    p = sub.add_parser("scaling-table", parents=[common], help="dB per doubling of the budget")
    p.add_argument("scaling", help="scaling.nc (the combined budget curves)")
    p.add_argument("--reconstruction", required=True, help="reconstruction.nc (for TV)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_scaling_table, threads=None)

    p = sub.add_parser(
        "probe", parents=[job], help="what a trained cell learned, on the named images"
    )
    p.add_argument("probe", choices=PROBES)
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("combine", parents=[common], help="combine per-cell NetCDF files into one")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="study dataset")
    p.add_argument(
        "--also", nargs="+", help="a second group of files, combined on its own, then merged"
    )
    p.set_defaults(func=cmd_combine, threads=None)

    toy = argparse.ArgumentParser(add_help=False)
    toy.add_argument("--prior", required=True)
    toy.add_argument("--eps", type=float, required=True)
    toy.add_argument("--noise-level", type=_noise_level, required=True)

    p = sub.add_parser(
        "toy-reference", parents=[common, toy], help="toy test points, exact MAP and PM"
    )
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_toy_reference)

    p = sub.add_parser("toy-train", parents=[job], help="train and evaluate one toy cell")
    p.add_argument("--reference", required=True)
    p.add_argument("--out-dir", required=True, help="writes results.nc here")
    p.set_defaults(func=cmd_toy_train)

    p = sub.add_parser(
        "gaussian-reference", parents=[common], help="exact estimators of the gaussian source"
    )
    p.add_argument("observations", nargs="+", help="observations.nc of the blur noise levels")
    p.add_argument("--images", required=True)
    p.add_argument(
        "--noise-factors", type=float, nargs="+", default=[1.0], help="dhat / delta values"
    )
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_gaussian_reference)

    p = sub.add_parser(
        "gaussian-check", parents=[common], help="test MSE of each blur cell against its target"
    )
    p.add_argument("reconstruction", help="reconstruction.nc (the combined study)")
    p.add_argument("--reference", required=True, help="gaussian_reference.nc")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_gaussian_check)

    p = sub.add_parser("toy-claims", parents=[common], help="the toy study's claims as CSV")
    p.add_argument("toy", help="toy2d.nc (the combined toy study)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_toy_claims, threads=None)

    p = sub.add_parser("archive", parents=[common], help="archive a study's results")
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
    p.set_defaults(func=cmd_archive, threads=None)

    p = sub.add_parser(
        "restore", help="lay a verified archive back into results/ (Snakemake finds it done)"
    )
    p.add_argument("archive")
    p.add_argument("--results", default="results", help="the results directory (default results)")
    p.add_argument("--force", action="store_true", help="overwrite existing files that differ")
    p.set_defaults(func=cmd_restore, threads=None)

    p = sub.add_parser("verify-archive", parents=[common], help="check an archive's manifest")
    p.add_argument("archive")
    p.set_defaults(func=cmd_verify_archive, threads=None)

    p = sub.add_parser("methods-table", parents=[common], help="Table 1 as CSV")
    p.add_argument("histories", nargs="+", help="history.nc of every cell")
    p.add_argument("--reconstruction", help="reconstruction.nc, for test PSNR/SSIM columns")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_methods_table, threads=None)

    p = sub.add_parser("training-curves", parents=[common], help="learning curves of all cells")
    p.add_argument("histories", nargs="+", help="history.nc of every cell")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_training_curves, threads=None)

    p = sub.add_parser(
        "describe",
        parents=[common],
        help="print the config's architectures and sizes (without --config: the schema's defaults)",
    )
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("figure", parents=[common], help="draw one figure from NetCDF inputs")
    p.add_argument("name")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out-stem", required=True, help="output path without suffix")
    p.set_defaults(func=cmd_figure, threads=None)
    _tool_parsers(sub)
    return parser


def _config(args: argparse.Namespace) -> dict[str, Any]:
    from iresnet_inverse import config

    if args.config:
        return config.load(args.config)
    try:
        given = json.loads(args.config_json)
    except ValueError as err:
        raise ConfigError(f"--config-json is not JSON ({err})") from None
    if not isinstance(given, dict):
        raise ConfigError("--config-json must be a JSON object")
    return config.validate(given)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace, dict[str, Any]], None] = args.func
    try:
        # The user tools take no config: their inputs carry what they need.
        cfg = _config(args) if hasattr(args, "config_json") else {}
        if args.threads is not None:  # torch only where a command computes
            from iresnet_inverse.runtime import set_threads

            set_threads(args.threads)
        func(args, cfg)
    except BrokenPipeError:  # the reader stopped early (``summary | head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    # What the user can fix (errors.py) and what the machine refused (a full disk, a denied
    # permission, a missing file): one line. Every other exception is a bug and keeps its
    # traceback.
    except (UserError, OSError) as err:
        print(f"iresnet-inverse {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
