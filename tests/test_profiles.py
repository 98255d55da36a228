"""The SLURM profile, checked without a cluster by a dry run through the executor plugin."""

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_snakemake

pytestmark = pytest.mark.workflow
GPU_RULES = {"train", "search_trial", "evaluate", "evaluate_snapshots", "probe"}


def test_slurm_profile_requests_gpus_for_training_jobs_only(tmp_path: Path) -> None:
    cfg = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    cfg["device"] = "cuda"
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = run_snakemake(
        tmp_path, "--dry-run", "--profile", str(ROOT / "workflow/profiles/slurm"), configfile=path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = re.findall(
        r"^(?:local)?rule (\w+):\n(?:.*\n)*?\s+resources: (.*)$", result.stdout, flags=re.MULTILINE
    )
    assert {name for name, _ in jobs} >= {"data", "observe", "train", "evaluate", "toy_train"}
    for name, resources in jobs:
        asks_gpu = "gpu=1" in resources.split(", ")
        assert asks_gpu == (name in GPU_RULES), (name, resources)
        assert "slurm_partition=" in resources and "runtime=" in resources


def test_combine_figure_and_archive_rules_are_local() -> None:
    rules = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    blocks = re.split(r"^rule ", rules, flags=re.MULTILINE)[1:]
    local = {b.split(":")[0] for b in blocks if "localrule: True" in b}
    expected = {b.split(":")[0] for b in blocks if b.startswith(("combine_", "figure_", "archive"))}
    assert expected and expected <= local
    assert not local & GPU_RULES
