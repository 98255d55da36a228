"""End-to-end: the workflow on config/ci.yaml in a scratch directory."""

import os
import re
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from iresnet_inverse.archive import verify_archive
from iresnet_inverse.artifacts import read_dataset
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
    for ext in ("png", "pdf"):
        assert (results / "figures" / f"operators.{ext}").stat().st_size > 1000
    assert (results / "logs" / "data.log").exists()


def test_second_run_has_nothing_to_do(finished_run: Path) -> None:
    result = run_snakemake(finished_run, "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_figure_setting_change_reruns_only_figures(finished_run: Path) -> None:
    cfg = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    cfg["figures"] = {"dpi": 90}
    changed = finished_run / "figure_change.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    result = run_snakemake(finished_run, "--dry-run", configfile=changed)
    assert result.returncode == 0, result.stderr[-2000:]
    scheduled = _scheduled_rules(result.stdout + result.stderr) - {"all"}
    assert scheduled and all(r.startswith("figure_") for r in scheduled), scheduled


def test_archive_target_verifies(finished_run: Path) -> None:
    result = run_snakemake(finished_run, "archive")
    assert result.returncode == 0, result.stderr[-2000:]
    (archive,) = (finished_run / "results" / "archive").glob("*.tar.gz")
    manifest = verify_archive(archive)
    assert "datasets/reconstruction.nc" in manifest["files"]
    assert "datasets/toy2d.nc" in manifest["files"]
    assert "figures/operators.png" in manifest["files"]


def test_report_has_every_figure(finished_run: Path) -> None:
    report = finished_run / "results" / "report.zip"
    result = run_snakemake(finished_run, "--report", str(report))
    assert result.returncode == 0, result.stderr[-2000:]
    with zipfile.ZipFile(report) as z:
        names = "\n".join(z.namelist())
    for figure in (
        "operators",
        "toy_grid",
        "toy_mse_vs_noise",
        "toy_noise_ablation",
        "toy_estimators",
    ):
        assert f"{figure}.png" in names, figure


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
