"""The environment files agree with each other; the package's imports form no cycle."""

import ast
import re
import tomllib
from pathlib import Path

import yaml

from tests.conftest import ROOT, run_snakemake


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_environment_yml_pins_match_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = project["dependencies"] + extras["dev"] + extras["slurm"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(declared) == _pins(pip_section)
    assert _pins(declared)["torch"] == "2.13.0"


PACKAGE = ROOT / "src" / "iresnet_inverse"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """The package modules a file imports at module level, and inside functions."""
    top, inner = set(), set()
    tree = ast.parse(path.read_text())
    nested = {
        id(node)
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(func)
    }
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        names = [n for n in names if n.startswith("iresnet_inverse")]
        (inner if id(node) in nested else top).update(names)
    return top, inner


def test_import_graph_has_no_cycle_and_no_hidden_imports() -> None:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        top, inner = _imports(path)
        # Only the command line imports lazily (a command loads torch only when it needs it).
        if name != "iresnet_inverse.cli":
            assert not inner, f"{name} imports {sorted(inner)} inside a function"
        graph[name] = {m for m in top | inner if m in modules and m != name}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


# The lints left on purpose, each explained where it arises (Snakefile, common.smk).
ACCEPTED_LINTS = {
    "Specify a conda environment or container for each rule",
    "Environment variable PATH used but not asserted with envvars directive",
}


def test_snakemake_lint_reports_only_the_explained_lints(tmp_path: Path) -> None:
    result = run_snakemake(tmp_path, "--lint", configfile=ROOT / "config" / "config.yaml")
    output = result.stdout + result.stderr
    titles = set(re.findall(r"^    \* (.+?)(?: in line \d+)?\.:$", output, flags=re.MULTILINE))
    assert titles, output[-2000:]  # the lints were found and parsed
    assert titles <= ACCEPTED_LINTS, titles - ACCEPTED_LINTS


def test_make_study_accepts_only_the_configs_and_lists_them() -> None:
    """``make study STUDY=...`` runs a config of config/ in studies/<name>/ and nothing else: a
    path outside config/ or a name with a space is refused before any directory is made."""
    import subprocess

    names = sorted(p.stem for p in (ROOT / "config").glob("*.yaml"))
    listed = subprocess.run(
        ["make", "-s", "studies"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert listed.stdout.split() == names
    planted = ROOT / "studies" / "planted"
    injection = f'x"; touch {planted}; echo "'
    for bad in ("../../x", "a b", "nonexistent", injection):
        for target in ("study", "study-archive", "study-restore"):
            result = subprocess.run(
                ["make", "-s", target, f"STUDY={bad}"], cwd=ROOT, capture_output=True, text=True
            )
            assert result.returncode == 2 and "is not a config in config/" in result.stderr, bad
            assert not (ROOT / "studies" / bad).exists()
    assert not planted.exists()  # the name never reached a shell
