"""The SLURM profile: dry-run resources, and the sbatch line the executor plugin really builds.

The second kind of test puts stand-ins for the SLURM commands on PATH: ``sbatch`` records its
arguments and refuses the job, so the line is the plugin's own (from the rule's resources through
its CPU, GPU and memory logic), without a cluster. tests/cluster/slurm.sh runs a real one.
"""

import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest
import yaml

from tests.cluster.check import local_rules
from tests.conftest import ROOT, run_snakemake

pytestmark = pytest.mark.workflow
GPU_RULES = {"train", "search_trial", "evaluate", "evaluate_snapshots", "probe"}
PROFILE = str(ROOT / "workflow/profiles/slurm")
TRAIN_CELL = "operator~blur/noise_level~0.05/lipschitz~0.9/objective~reconstruction/arch~iresnet_ci"


def ci_config(tmp_path: Path, **changes: object) -> Path:
    cfg = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    cfg.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_slurm_profile_requests_gpus_for_training_jobs_only(tmp_path: Path) -> None:
    path = ci_config(tmp_path, device="cuda", threads=3, cluster={"runtime": 7, "mem_mb": 900})
    result = run_snakemake(tmp_path, "--dry-run", "--profile", PROFILE, configfile=path)
    assert result.returncode == 0, result.stderr[-3000:]
    blocks = re.split(r"^(localrule|rule) (\w+):\n", result.stdout, flags=re.MULTILINE)[1:]
    jobs = [
        (kind, name, re.search(r"^\s+resources: (.*)$", body, re.MULTILINE).group(1))
        for kind, name, body in zip(blocks[::3], blocks[1::3], blocks[2::3], strict=True)
    ]
    assert {name for _, name, _ in jobs} >= {"data", "observe", "train", "evaluate", "toy_train"}
    for _, name, line in jobs:
        resources = dict(item.split("=", 1) for item in line.split(", "))
        assert (resources.get("gpu") == "1") == (name in GPU_RULES), (name, line)
        assert (resources.get("cpus_per_gpu") == "3") == (name in GPU_RULES), (name, line)
        assert "cpus_per_task" not in resources, (name, line)
        if name not in local_rules() | {"train", "search_trial"}:
            assert resources["runtime"] == "7" and resources["mem_mb"] == "900", (name, line)


def test_device_auto_asks_for_no_gpu_when_jobs_run_here(tmp_path: Path) -> None:
    """Local runs (the demo) claim no GPU resource with device auto; on a cluster they do
    (``test_sbatch_line_of_a_training_job``)."""
    path = ci_config(tmp_path, device="auto")
    result = run_snakemake(tmp_path, "--dry-run", configfile=path)
    assert result.returncode == 0, result.stderr[-3000:]
    train = re.search(r"^rule train:\n(.*?)^\s+resources: (.*)$", result.stdout, re.M | re.S)
    assert re.search(r"\bgpu=0\b", train.group(2)), train.group(2)


def test_combine_figure_and_archive_rules_are_local() -> None:
    rules = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    names = set(re.findall(r"^rule (\w+):", rules, flags=re.MULTILINE))
    expected = {name for name in names if name.startswith(("combine_", "figure", "archive"))}
    assert expected and expected <= local_rules()
    assert not local_rules() & GPU_RULES


def fake_slurm(bin_dir: Path, log: Path) -> dict[str, str]:
    """Stand-ins for the SLURM commands the plugin calls; ``sbatch`` logs its argv and fails."""
    scripts = {
        "sbatch": f"import json, sys\nopen({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + "
        "'\\n')\nsys.exit('sbatch: error: refused by the test')",
        "sinfo": "print('debug*')",
        "squeue": "",
        "scontrol": "import sys\nsys.exit(1)",
        "sacct": "import sys\nsys.exit(1)",
        "sacctmgr": "print('proj')",
    }
    bin_dir.mkdir()
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize("device", ["cuda", "auto", "cpu"])
def test_sbatch_line_of_a_training_job(tmp_path: Path, device: str) -> None:
    """A GPU job (device cuda, or auto: on a cluster CUDA is present only if asked for) gets
    --gpus=1 and --cpus-per-gpu=threads, a CPU job --cpus-per-task=threads; both the cell's
    runtime and memory. The partition is the cluster's default unless one is given; giving it
    and the account on the command line keeps the rest."""
    path = ci_config(tmp_path, device=device, threads=2, search={"trials": 0})
    workdir = tmp_path / "run"
    for name in ("data/images.nc", "data/operator~blur/noise_level~0.05/observations.nc"):
        (workdir / "results" / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / "results" / name).touch()  # the inputs exist; only the train job is due
    log = tmp_path / "sbatch.jsonl"
    env = fake_slurm(tmp_path / "bin", log)
    target = f"results/train/{TRAIN_CELL}/seed~0/model.pt"
    site = ("--default-resources", "slurm_partition=gpu", "slurm_account=proj")
    result = run_snakemake(
        workdir,
        *("--profile", PROFILE, "--retries", "0", target),
        *("--slurm-init-seconds-before-status-checks", "1"),  # shut down without the 40 s wait
        *(site if device != "cpu" else ()),
        configfile=path,
        env=env,
    )
    assert result.returncode != 0  # the stand-in refused the job
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 1, calls
    line = " ".join(calls[0])
    assert "--comment rule_train_wildcards_" in line
    assert " -t 60 " in f"{line} " and " --mem 4000 " in f"{line} "
    if device != "cpu":
        assert "-A proj -p gpu" in line, line
        assert "--gpus=1" in calls[0] and "--cpus-per-gpu=2" in calls[0], line
        assert not any(arg.startswith("--cpus-per-task") for arg in calls[0]), line
    else:
        assert "-p debug" in line and " -A " not in line  # the default partition, from sinfo
        assert "--cpus-per-task=2" in calls[0], line
        assert not any(arg.startswith(("--gpus", "--cpus-per-gpu")) for arg in calls[0]), line
