"""End-to-end: the workflow on config/ci.yaml in a scratch directory."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from iresnet_inverse import config as study_config
from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.stages.archive import verify_archive
from iresnet_inverse.stages.figures import ANALYSIS_FIGURES, RECONSTRUCTION_FIGURES
from tests.conftest import ROOT, SNAKEMAKE, run_snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    result = run_snakemake(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def _scheduled_rules(dry_run_output: str) -> set[str]:
    return set(re.findall(r"^rule (\w+):", dry_run_output, flags=re.MULTILINE))


def test_workflow_writes_artifacts_and_figures(finished_run: Path) -> None:
    results = finished_run / "results"
    images = read_dataset(results / "data" / "images.nc")
    assert set(images["split"].values) == {"train", "val", "test"}
    for op in ("blur", "diffusion"):
        obs = read_dataset(
            results / "data" / f"operator~{op}" / "noise_level~0.05" / "observations.nc"
        )
        assert obs["data"].dims[:2] == ("operator", "noise_level")
        assert obs.attrs["snakemake_rule"] == "observe"
    names = ("operators", *RECONSTRUCTION_FIGURES, *ANALYSIS_FIGURES)
    for name in (*names, "examples_blur", "examples_diffusion"):
        for ext in ("png", "pdf"):
            assert (results / "figures" / f"{name}.{ext}").stat().st_size > 1000, name
    assert (results / "logs" / "data.log").exists()


def test_baselines_share_the_study_dataset_and_table(finished_run: Path) -> None:
    results = finished_run / "results"
    study = read_dataset(results / "datasets" / "reconstruction.nc")
    assert {"tv", "unet_demo", "convresnet_demo", "diffnet", "iresnet_ci"} <= set(
        study["arch"].values
    )
    tv = study.sel(operator="blur", lipschitz=float("inf"), objective="variational", arch="tv")
    assert float(tv["psnr"].mean()) > float(tv["data_psnr"].mean())  # TV beats the data
    table = pd.read_csv(results / "datasets" / "methods.csv")
    ci = study_config.load(ROOT / "config" / "ci.yaml")
    assert len(table) == len(study_config.cells(ci)) == 10  # every cell of config/ci.yaml
    row = table[(table.arch == "convresnet_demo")].iloc[0]
    assert row.parameters == 20137 and row.epochs == 2 and row.batch_size == 8
    assert row.training_seconds > 0 and row.test_psnr > 0
    assert (table[table.arch == "tv"].parameters == 0).all()
    alpha = read_dataset(
        results
        / "train"
        / "operator~blur/noise_level~0.05/lipschitz~inf/objective~variational"
        / "arch~tv/seed~0/history.nc"
    )["alpha"]
    assert 1e-3 <= alpha.item() <= 0.1


def test_search_trains_with_the_best_trial_and_budget_curves_are_tabled(
    finished_run: Path,
) -> None:
    results = finished_run / "results"
    search = read_dataset(results / "datasets" / "search.nc")
    assert sorted(search["arch"].values) == ["iresnet_ci", "unet_demo"]
    assert search.sizes["trial"] == 2 and np.isfinite(search["val_psnr"]).all()
    best = search.sel(arch="unet_demo", trial=int(search["best_trial"].sel(arch="unet_demo")))
    unet = "operator~blur/noise_level~0.05/lipschitz~inf/objective~supervised/arch~unet_demo/seed~0"
    history = read_dataset(results / "train" / unet / "history.nc")
    assert history["batch_size"].values.item() == int(best["batch_size"])
    first_rate = float(history["learning_rate"].values.ravel()[0])  # constant schedule
    assert first_rate == pytest.approx(float(best["learning_rate"]))
    table = pd.read_csv(results / "datasets" / "scaling.csv")
    assert len(table) == 5  # two iResNet cells and three learned baselines keep snapshots
    assert (table["samples_max"] == 2 * table["samples_min"]).all()
    assert np.isfinite(table["tv_psnr"]).all() and np.isfinite(table["db_per_doubling"]).all()
    for name in ("budget_scaling", "search"):
        assert (results / "figures" / f"{name}.png").stat().st_size > 1000


def test_probes_of_every_reconstruction_trained_iresnet(finished_run: Path) -> None:
    datasets = finished_run / "results" / "datasets"
    directional = read_dataset(datasets / "directional.nc")
    saliency = read_dataset(datasets / "saliency.nc")
    probed = study_config.analysis_cells(study_config.load(ROOT / "config" / "ci.yaml"))
    assert {c["operator"] for c in probed} == {"blur", "diffusion"} and len(probed) == 2
    for probe in (directional["phi_norm"], saliency["saliency_seconds"]):
        per_cell = np.isfinite(probe).any([d for d in probe.dims if d in ("name", "region", "map")])
        assert int(per_cell.sum()) == 2
    # The Lipschitz guarantee holds for the core Phi on X^M in diagonal directions (trained
    # nets); phi = mean o Phi o c on X has no lower bound, only the upper one by the lifted norm.
    lifted = directional["lifted_norm"].sel(lipschitz=0.9)
    phi = directional["phi_norm"].sel(lipschitz=0.9)
    assert float(lifted.min()) >= 1 - 0.9 - 1e-5
    assert bool(((phi <= lifted + 1e-5) | np.isnan(lifted)).all())
    assert saliency["kernel"].sizes["ky"] == 9 and saliency["pixel"].size == 120


def test_second_run_has_nothing_to_do(finished_run: Path) -> None:
    result = run_snakemake(finished_run, "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_cell_without_its_model_is_trained_again(finished_run: Path) -> None:
    """A forced rerun killed mid-training leaves a cell's directory without model.pt while its
    metrics and the study datasets remain: the cell must not count as complete."""
    model = next((finished_run / "results" / "train").rglob("model.pt"))
    aside = model.with_name("model.pt.aside")
    model.rename(aside)
    try:
        result = run_snakemake(finished_run, "--dry-run")
    finally:
        aside.rename(model)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train" in _scheduled_rules(result.stdout + result.stderr)


def test_a_killed_forced_rerun_retrains_for_a_downstream_target(
    finished_run: Path, tmp_path: Path
) -> None:
    """``snakemake -R train <metrics.nc>`` killed mid-training leaves resume.pt without
    model.pt: the evaluation of the deleted model is removed and the same target retrains the
    cell (before, Snakemake found the target done and the old evaluation stood)."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)
    metrics = next((workdir / "results" / "evaluate").rglob("metrics.nc"))
    train = Path(str(metrics.parent).replace("/evaluate/", "/train/"))
    (train / "model.pt").rename(train / "resume.pt")  # a loadable checkpoint stands in
    target = str(metrics.relative_to(workdir))
    result = run_snakemake(workdir, "--dry-run", target)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"train", "evaluate"} <= _scheduled_rules(result.stdout + result.stderr)
    assert "its cell's training was interrupted" in result.stderr and not metrics.exists()


def test_a_grid_of_regularized_cells_alone_plans_no_method_figures(tmp_path: Path) -> None:
    """Log-det and divergence cells without reconstruction-trained nets or baselines (the dhat
    ablation): no method to compare, so no examples figure that would crash on none."""
    cfg = yaml.safe_load((ROOT / "config" / "dhat.yaml").read_text())
    path = tmp_path / "regularized.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = run_snakemake(tmp_path, "--dry-run", configfile=path)
    assert result.returncode == 0, result.stderr[-2000:]
    scheduled = _scheduled_rules(result.stdout + result.stderr)
    assert "train" in scheduled, scheduled
    planned = result.stdout + result.stderr
    assert "figures/examples_" not in planned and "figures/methods_vs_noise" not in planned


def test_figure_setting_change_reruns_only_figures(finished_run: Path) -> None:
    cfg = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    cfg["figures"] = {"dpi": 90}
    changed = finished_run / "figure_change.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    result = run_snakemake(finished_run, "--dry-run", configfile=changed)
    assert result.returncode == 0, result.stderr[-2000:]
    scheduled = _scheduled_rules(result.stdout + result.stderr) - {"all"}
    assert scheduled == {"figure"}, scheduled


def test_archive_target_verifies(finished_run: Path) -> None:
    result = run_snakemake(finished_run, "archive")
    assert result.returncode == 0, result.stderr[-2000:]
    (archive,) = (finished_run / "results" / "archive").glob("*.tar.gz")
    manifest = verify_archive(archive)
    assert "datasets/reconstruction.nc" in manifest["files"]
    assert "datasets/toy2d.nc" in manifest["files"]
    assert "datasets/toy_claims.csv" in manifest["files"]
    # The ci toy grid's bimodal cells (eps 0.1, delta 0.2) give one row of each bimodal claim.
    claims = pd.read_csv(finished_run / "results" / "datasets" / "toy_claims.csv")
    bimodal = claims[claims["prior"] == "bimodal"].set_index("claim")
    assert bimodal.loc["reconstruction_reaches_pm", "value"] > 0
    assert bimodal.loc["divergence_nearer_map", "noise_level"] == 0.2
    assert "figures/operators.png" in manifest["files"]


def test_a_restored_study_plans_nothing(finished_run: Path, tmp_path: Path) -> None:
    """Archive, results/ gone, restore: Snakemake plans nothing. Both archives (the archive
    rule's; `archive --results --checkpoints`, a study in parts), restored where neither
    results/ nor Snakemake's metadata exist (another machine) or where the metadata stayed."""
    assert run_snakemake(finished_run, "archive").returncode == 0
    (rule_archive,) = (finished_run / "results" / "archive").glob("*.tar.gz")
    cli = [sys.executable, "-m", "iresnet_inverse.cli"]
    parts = tmp_path / "parts.tar.gz"
    made = subprocess.run(
        [*cli, "archive", "--results", str(finished_run / "results"), "--checkpoints"]
        + ["--out", str(parts)],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    for name, archive, metadata in (("machine", rule_archive, False), ("wiped", parts, True)):
        workdir = tmp_path / name
        if metadata:
            shutil.copytree(
                finished_run / ".snakemake" / "metadata", workdir / ".snakemake" / "metadata"
            )
        restore = [*cli, "restore", str(archive), "--results", str(workdir / "results")]
        restored = subprocess.run(restore, capture_output=True, text=True)
        assert restored.returncode == 0, restored.stderr
        result = run_snakemake(workdir, "--dry-run")
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Nothing to be done" in result.stdout + result.stderr, (name, result.stdout)


def test_report_has_every_figure(finished_run: Path) -> None:
    report = finished_run / "results" / "report.zip"
    result = run_snakemake(finished_run, "--report", str(report))
    assert result.returncode == 0, result.stderr[-2000:]
    with zipfile.ZipFile(report) as z:
        names = "\n".join(z.namelist())
    figures = ["operators", "toy_grid", "toy_mse_vs_noise", "toy_noise_ablation"]
    figures += ["toy_estimators", *RECONSTRUCTION_FIGURES, *ANALYSIS_FIGURES, "examples_blur"]
    for item in [f"{name}.png" for name in figures] + ["methods.csv"]:
        assert item in names, item


def test_killed_run_resumes_without_redoing_finished_cells(tmp_path: Path) -> None:
    cmd = [
        str(SNAKEMAKE),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(ROOT / "config" / "ci.yaml"),
        "--cores",
        "1",
    ]
    process = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 600
    finished: list[Path] = []
    while not finished and time.time() < deadline and process.poll() is None:
        # A cell whose evaluation has started has a training job Snakemake recorded as done.
        evaluated = (tmp_path / "results" / "evaluate").rglob("metrics.nc")
        finished = [
            Path(str(m.parent).replace("/evaluate/", "/train/")) / "model.pt" for m in evaluated
        ]
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert finished, "no training cell finished before the kill"
    assert not (tmp_path / "results" / "datasets" / "reconstruction.nc").exists(), "killed too late"
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    assert run_snakemake(tmp_path, "--unlock").returncode == 0  # a SIGKILL leaves the lock
    result = run_snakemake(tmp_path, "--rerun-incomplete")
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    assert (tmp_path / "results" / "datasets" / "reconstruction.nc").exists()
