"""The ``iresnet-inverse`` command line: one subcommand per kind of workflow rule, and the user
tools ``reconstruct`` (a trained model on your own image) and ``summary`` (a study's numbers)."""

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from iresnet_inverse.cli_parser import parser
from iresnet_inverse.errors import ConfigError, UserError
from iresnet_inverse.jobs import Job


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
    from iresnet_inverse.artifacts import combine_cells, refuse_overwriting, write_dataset

    groups = [args.inputs] + ([args.also] if args.also else [])
    refuse_overwriting({"--out": args.out}, {f"input {p}": p for group in groups for p in group})
    # Without an explicit config the inputs' own configs (attribute cell_configs_json) are the
    # provenance: the defaults would misstate what was run.
    config = cfg if _config_given(args) else None
    write_dataset(combine_cells(*groups), args.out, title=args.title, config=config, rule=args.rule)


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
    from iresnet_inverse.artifacts import refuse_overwriting
    from iresnet_inverse.stages.archive import archive_files, build_archive

    files = archive_files(args.inputs, args.results, args.checkpoints)
    refuse_overwriting({"--out": args.out}, {f"member {m}": str(p) for m, p in files.items()})
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


def cmd_forkserver(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.forkserver import serve

    serve(args.socket, main)


def cmd_training_curves(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.artifacts import write_dataset
    from iresnet_inverse.stages.tables import training_curves

    title = "validation PSNR and training time per epoch of every trained network"
    write_dataset(training_curves(args.histories), args.out, title=title, rule=args.rule)


def cmd_figure(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.figures import draw_figure

    draw_figure(args.name, args.inputs, args.out_stem, cfg.get("figures", {}))


def cmd_methods_table(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.tables import methods_table

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    methods_table(args.histories, args.reconstruction).to_csv(args.out, index=False)


def cmd_describe(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.describe import describe

    if not _config_given(args):
        print("config: the schema's defaults (the demo is --config config/config.yaml)")
    print(describe(cfg))


def cmd_reconstruct(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.reconstruct import reconstruct_files, report

    result, written = reconstruct_files(
        args.model,
        args.image,
        args.data,
        args.noise_level,
        args.seed,
        args.device,
        args.out,
        args.nc,
    )
    print(report(result, args.model, args.data, args.seed))
    if result.converged is False:
        print("warning: the inversion did not reach the solver's tolerance", file=sys.stderr)
    print("wrote " + ", ".join(str(path) for path in written))


def cmd_summary(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    from iresnet_inverse.stages.tables import format_table, summary_table

    style = "csv" if args.csv else "markdown" if args.markdown else "text"
    print(format_table(summary_table(args.reconstruction), style))


COMMANDS: dict[str, Callable[[argparse.Namespace, dict[str, Any]], None]] = {
    "data": cmd_data,
    "observe": cmd_observe,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "evaluate-snapshots": cmd_evaluate_snapshots,
    "probe": cmd_probe,
    "toy-reference": cmd_toy_reference,
    "toy-train": cmd_toy_train,
    "toy-claims": cmd_toy_claims,
    "gaussian-reference": cmd_gaussian_reference,
    "gaussian-check": cmd_gaussian_check,
    "combine": cmd_combine,
    "search-table": cmd_search_table,
    "methods-table": cmd_methods_table,
    "training-curves": cmd_training_curves,
    "scaling-table": cmd_scaling_table,
    "figure": cmd_figure,
    "archive": cmd_archive,
    "restore": cmd_restore,
    "verify-archive": cmd_verify_archive,
    "reconstruct": cmd_reconstruct,
    "summary": cmd_summary,
    "describe": cmd_describe,
    "forkserver": cmd_forkserver,
}


def _config_given(args: argparse.Namespace) -> bool:
    """Whether the command was given a config (a file or JSON), not the schema's defaults."""
    return bool(args.config or args.config_json != "{}")


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
    if argv is None and sys.argv[1:2] != ["forkserver"]:  # a fork server may run it
        from iresnet_inverse.forkserver import forward

        status = forward(sys.argv[1:])
        if status is not None:
            return status
    args = parser(__doc__).parse_args(argv)
    func = COMMANDS[args.command]
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
