"""The environment files agree with each other; the package's imports form no cycle."""

import ast
import re
import tomllib
from pathlib import Path

import numpy as np
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


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


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
            subs = [f"{node.module}.{a.name}" for a in node.names]
            # ``from package import submodule`` imports the submodule, not the package's names.
            names = subs if all(_is_module(n) for n in subs) else [node.module, *subs]
        names = [n for n in names if n.startswith("iresnet_inverse")]
        (inner if id(node) in nested else top).update(names)
    return top, inner


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (a package's ``__init__`` counts as a module)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        top, inner = _imports(path)
        # Only the command line imports lazily (a command loads torch only when it needs it).
        if name != "iresnet_inverse.cli":
            assert not inner, f"{name} imports {sorted(inner)} inside a function"
        graph[name] = {m for m in top | inner if m in modules and m != name}
    return graph


def test_import_graph_has_no_cycle_and_no_hidden_imports() -> None:
    graph = _graph()
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


STAGES = "iresnet_inverse.stages"


def test_layout_mirrors_the_pipeline() -> None:
    """Stages (one module per kind of rule) sit above the primitives, which never import a
    stage, and the structure drawing (imports as arrows) has at most 7 floors."""
    graph = _graph()
    for name, deps in graph.items():
        if not name.startswith(STAGES) and name != "iresnet_inverse.cli":
            upward = sorted(d for d in deps if d.startswith(STAGES))
            assert not upward, f"primitive {name} imports the stage(s) {upward}"
    floor: dict[str, int] = {}

    def height(name: str) -> int:
        if name not in floor:
            floor[name] = 1 + max((height(d) for d in graph[name]), default=0)
        return floor[name]

    assert max(height(name) for name in graph) <= 7, floor


def test_functions_and_modules_stay_short() -> None:
    """No function over 60 lines and no module over 400: each reads in one screen or a few."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{path.name}:{node.lineno} {node.name}: {length} lines")
    assert not long, long


def test_rules_type_each_path_once() -> None:
    """A results path is written out once, in the rule that makes it: every other rule and
    function names it as ``rules.X.output`` (filled per cell by ``Cell.fill``), and every rule
    passes its own name as ``--rule {rule}``."""
    sources = {p.name: p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk")}
    paths = [m for text in sources.values() for m in re.findall(r'f"\{RESULTS\}/[^"]*"', text)]
    assert len(paths) > 20, paths  # the rules were found
    assert len(paths) == len(set(paths)), sorted(p for p in paths if paths.count(p) > 1)
    in_functions = re.findall(r'f"\{RESULTS\}/[^"]*"', sources["common.smk"])
    assert in_functions == ['f"{RESULTS}/data/{Observations.pattern()}/observations.nc"']
    rule_arguments = re.findall(r"--rule (\S+)", "\n".join(sources.values()))
    assert rule_arguments and set(rule_arguments) == {"{rule}"}, rule_arguments


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
    for padded in ("ci ", " ci", "ci\t"):  # blanks around a name are not part of it
        plan = subprocess.run(
            ["make", "-n", "-o", ".venv/.installed", "study", f"STUDY={padded}"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "--directory studies/ci --configfile config/ci.yaml" in plan.stdout, plan.stdout


def test_the_installed_package_works_without_the_checkout(tmp_path: Path) -> None:
    """``pip install .`` (a wheel, not editable) into a fresh venv: ``--help``, a config check
    and ``reconstruct`` on a trained model, run away from the checkout, with the schema read
    from inside the package. The venv borrows this environment's dependencies (a .pth file)
    rather than installing torch afresh; the package itself is only the wheel's copy."""
    import shutil
    import subprocess
    import sys
    import sysconfig

    from iresnet_inverse.models import ModelMeta, save_model
    from iresnet_inverse.nets.iresnet import build_iresnet

    source = tmp_path / "source"  # built from a copy: nothing is written into the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    wheels, env = tmp_path / "wheels", tmp_path / "venv"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)]
    subprocess.run(build, check=True, cwd=tmp_path)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    install = [*pip, "--python", str(python), "install", "--no-deps", "--no-index"]
    subprocess.run([*install, *map(str, wheels.glob("*.whl"))], check=True)
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([python, "-c", query], capture_output=True, text=True, check=True)
    borrowed = sysconfig.get_paths()["purelib"]
    (Path(site.stdout.strip()) / "borrowed_dependencies.pth").write_text(borrowed + "\n")

    def run(*args: str) -> str:
        result = subprocess.run(
            [str(env / "bin" / "iresnet-inverse"), *args],
            capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    where = subprocess.run(
        [python, "-c", "import iresnet_inverse; print(iresnet_inverse.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert where.stdout.startswith(str(env)), where.stdout  # the wheel's copy, not the checkout
    assert "reconstruct" in run("--help")
    assert "iresnet" in run("describe", "--config", str(ROOT / "config" / "ci.yaml"))
    tiny = {"kind": "conv", "blocks": 2, "channels": 2, "hidden": 4, "kernel_size": 3}
    net = build_iresnet(tiny, 0.9)
    net.refresh_norms()
    cell = {"operator": "blur", "noise_level": 0.02, "lipschitz": 0.9,
            "objective": "reconstruction", "arch": "tiny", "seed": 0}  # fmt: skip
    model = save_model(net, tiny, ModelMeta(cell, 0.9, {}, {}), tmp_path / "model.pt")
    image = tmp_path / "image.npy"
    np.save(image, np.linspace(0, 1, 32 * 32).reshape(32, 32))
    out = tmp_path / "x.png"
    run("reconstruct", "--model", str(model), "--image", str(image), "--out", str(out))
    assert out.stat().st_size > 0
