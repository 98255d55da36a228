"""Checks of tests/cluster/slurm.sh, from Snakemake's verbose logs (they hold each sbatch call).

check.py plan < dry-run output          prints how many jobs should go through sbatch
check.py runs N run1.log run2.log --done-before FILE --config CONFIG
check.py gpu gpu.log SLURM_LOG_DIR
"""

import argparse
import re
import shlex
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SBATCH = re.compile(r"^sbatch call: (sbatch .*)$", re.MULTILINE)
TRAINING_RULES = {"train", "search_trial"}
THREADED_RULES = TRAINING_RULES | {"evaluate", "evaluate_snapshots", "probe"}  # `threads` CPUs


def local_rules() -> set[str]:
    """Rules that run on the submitting node (``localrule: True``), and the target rule."""
    rules = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    blocks = re.split(r"^rule ", rules, flags=re.MULTILINE)[1:]
    return {b.split(":")[0] for b in blocks if "localrule: True" in b} | {"all"}


def planned_jobs(dry_run: str) -> Counter:
    """Jobs per rule of a dry run that the executor submits (its 'Job stats' table)."""
    table = dry_run.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = (line.split() for line in table.splitlines()[3:])
    counts = Counter({row[0]: int(row[1]) for row in rows if len(row) == 2 and row[0] != "total"})
    return Counter({rule: n for rule, n in counts.items() if rule not in local_rules()})


def sbatch_calls(log: Path) -> list[dict[str, str]]:
    """Each sbatch call of a log: its rule, job comment (rule and wildcards) and options."""
    calls = []
    for line in SBATCH.findall(log.read_text()):
        args = shlex.split(line.split(" --wrap=", 1)[0])
        options = {}
        for flag, value in zip(args, [*args[1:], ""], strict=True):
            if flag.startswith("-") and "=" in flag:
                options.update([flag.split("=", 1)])
            elif flag.startswith("-") and not value.startswith("-"):
                options[flag] = value
        comment = options["--comment"]
        options["rule"] = comment.removeprefix("rule_").split("_wildcards_")[0]
        calls.append(options)
    return calls


def finished_outputs(log: str) -> set[str]:
    """The declared outputs of the jobs a Snakemake log reports finished."""
    outputs = {}
    for block in re.split(r"^(?:local)?rule \w+:\n", log, flags=re.MULTILINE)[1:]:
        jobid = re.search(r"^\s+jobid: (\d+)$", block, re.MULTILINE)
        output = re.search(r"^\s+output: (.*)$", block, re.MULTILINE)
        if jobid and output:
            outputs[jobid.group(1)] = {f"/{path}" for path in output.group(1).split(", ")}
    done = re.findall(r"^Finished jobid: (\d+) ", log, re.MULTILINE)
    return set().union(*(outputs.get(jobid, set()) for jobid in done))


def check_runs(args: argparse.Namespace) -> None:
    cfg = yaml.safe_load(args.config.read_text())
    calls = [c for log in args.logs for c in sbatch_calls(log)]
    rules = Counter(c["rule"] for c in calls)
    local = set(rules) & local_rules()
    assert not local, f"local rules went through sbatch: {local}"
    jobs = {c["--comment"] for c in calls}
    print(f"sbatch calls: {len(calls)} for {len(jobs)} distinct jobs (planned {args.expected})")
    assert len(jobs) == args.expected, (
        f"{len(jobs)} jobs went through sbatch, {args.expected} planned"
    )
    for c in calls:
        training = c["rule"] in TRAINING_RULES
        runtime = 60 if training else cfg["cluster"]["runtime"]  # train.runtime's default
        mem_mb = 4000 if training else cfg["cluster"]["mem_mb"]
        threads = cfg["threads"] if c["rule"] in THREADED_RULES else 1
        assert c["-t"] == str(runtime) and c["--mem"] == str(mem_mb), c
        assert c.get("--cpus-per-task") == str(threads) and "--gpus" not in c, c
    print(f"every call asked for its rule's runtime, memory and CPUs; by rule: {dict(rules)}")
    before, after = (
        dict(line.rsplit(" ", 1) for line in path.read_text().splitlines())
        for path in (args.done_before, args.done_after)
    )
    # Only what the interrupted run finished must stay: a cancelled job's files are redone.
    finished = finished_outputs(args.logs[0].read_text())
    before = {path: m for path, m in before.items() if any(path.endswith(f) for f in finished)}
    redone = sorted(path for path, mtime in before.items() if after.get(path) != mtime)
    resumed = len(sbatch_calls(args.logs[-1]))
    print(
        f"resume: {len(before) - len(redone)} of the {len(before)} outputs of the jobs the "
        f"interrupted run finished kept, {len(redone)} redone; {resumed} jobs submitted after "
        "the interrupt"
    )
    assert not redone, f"the resumed run redid {redone}"


def check_gpu(args: argparse.Namespace) -> None:
    calls = [c for c in sbatch_calls(args.log) if c["rule"] == "train"]
    assert len(calls) == 1, calls
    line = SBATCH.findall(args.log.read_text())[0].split(" --wrap=", 1)[0]
    print(f"sbatch line of a train job with device cuda:\n  {line}")
    assert calls[0].get("--gpus") == "1" and calls[0].get("--cpus-per-gpu") == "1", calls[0]
    # the partition given with --default-resources, the cell's runtime and memory kept
    assert (calls[0]["-p"], calls[0]["-t"], calls[0]["--mem"]) == ("debug", "60", "4000"), calls[0]
    assert "--cpus-per-task" not in calls[0], calls[0]
    job_logs = list(args.slurm_logs.rglob("*.log"))
    text = "".join(p.read_text() for p in job_logs)
    assert "no CUDA device is available" in text, f"the job did not run on the GPU node: {text}"
    print(
        f"SLURM ran it on the node with the declared GPU ({job_logs[0].name}): it stopped at "
        "'device: cuda requested but no CUDA device is available', as it should without one"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("plan")
    runs = sub.add_parser("runs")
    runs.add_argument("expected", type=int)
    runs.add_argument("logs", type=Path, nargs="+")
    runs.add_argument("--done-before", type=Path, required=True)
    runs.add_argument("--done-after", type=Path, required=True)
    runs.add_argument("--config", type=Path, required=True)
    gpu = sub.add_parser("gpu")
    gpu.add_argument("log", type=Path)
    gpu.add_argument("slurm_logs", type=Path)
    args = parser.parse_args()
    if args.command == "plan":
        print(sum(planned_jobs(sys.stdin.read()).values()))
    elif args.command == "runs":
        check_runs(args)
    else:
        check_gpu(args)


if __name__ == "__main__":
    main()
