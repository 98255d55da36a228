"""The config schema: defaults, every kind of bad value rejected with the field named."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from iresnet_inverse import config, registry
from iresnet_inverse.jobs import toy_job
from tests.conftest import ROOT, run_snakemake

GOOD_BLOCK = {
    "operator": ["blur"],
    "noise_level": [0.01],
    "lipschitz": [0.99],
    "objective": ["reconstruction"],
}


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "config").glob("*.yaml")))
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = config.load(ROOT / "config" / f"{name}.yaml")
    assert config.cells(cfg) or config.toy_cells(cfg)


def test_defaults_are_filled() -> None:
    cfg = config.validate({})
    assert cfg["data"]["patch_size"] == 32
    assert cfg["operators"]["diffusion"] == {"contrast": 0.1, "steps": 5, "dt": 0.15}
    assert cfg["grid"][0]["arch"] == ["iresnet_small"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lipschitz": [1.0]}, "grid[0].lipschitz[0]"),
        ({"lipschitz": [0.0]}, "grid[0].lipschitz[0]"),
        ({"noise_level": [0.0]}, "grid[0].noise_level[0]"),
        ({"noise_level": [-0.1]}, "grid[0].noise_level[0]"),
        ({"operator": ["radon"]}, "grid[0].operator[0]"),
        ({"objective": ["adversarial"]}, "grid[0].objective[0]"),
        ({"seed": ["zero"]}, "grid[0].seed[0]"),
        ({"colour": ["red"]}, "grid[0]"),
    ],
)
def test_bad_grid_values_name_the_field(change: dict, field: str) -> None:
    cfg = {"grid": [{**GOOD_BLOCK, **change}]}
    with pytest.raises(config.ConfigError) as info:
        config.validate(cfg)
    assert f"config field {field}:" in str(info.value)


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"data": {"patch_size": "big"}}, "data.patch_size"),
        ({"data": {"source": "imagenet"}}, "data.source"),
        ({"data": {"patches": {"train": 0}}}, "data.patches.train"),
        ({"data": {"downscale": 0.5}}, "data.downscale"),
        ({"operators": {"blur": {"sigma": -1}}}, "operators.blur.sigma"),
        ({"operators": {"radon": {}}}, "operators"),
        ({"threads": 0}, "threads"),
        ({"unknown_section": 1}, "(top level)"),
    ],
)
def test_bad_values_name_the_field(cfg: dict, field: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.validate(copy.deepcopy(cfg))
    assert f"config field {field}:" in str(info.value)


DEMO_BLOCK = {**GOOD_BLOCK, "lipschitz": [0.99], "arch": ["iresnet_demo"]}
DIVERGENCE_BLOCK = {**DEMO_BLOCK, "objective": ["divergence"]}
TOY_LOGDET = {
    "prior": ["bimodal"],
    "eps": [1.0],
    "noise_level": [0.1],
    "lipschitz": [0.9],
    "objective": ["logdet"],
}


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"archs": {"net": {"kind": "conv", "channels": 4}}}, "archs.net"),  # no blocks
        ({"archs": {"my-net": {"kind": "diffnet", "steps": 2, "hidden": 4}}}, "archs"),
        ({"grid": [{**DEMO_BLOCK, "arch": ["my-net"]}]}, "grid[0].arch[0]"),
        ({"analysis": {"crop": 4}}, "analysis.crop"),
        ({"toy2d": {"arch": "iresnet_demo", "grid": [{"prior": ["bimodal"], "eps": [1.0],
          "noise_level": [0.1], "lipschitz": [0.9], "objective": ["logdet"]}]}}, "toy2d.arch"),
        ({"toy2d": {"grid": [{"prior": ["bimodal"], "eps": [1.0], "noise_level": [0.1],
          "lipschitz": [0.9], "objective": ["logdet"], "arch": "iresnet_demo"}]}},
         "toy2d.grid[0].arch"),
        ({"archs": {"tv": {"kind": "tv", "samples": 2, "alpha_min": 0.5, "alpha_max": 0.1,
          "tol": 1e-3, "max_iter": 5}}, "grid": [{**DEMO_BLOCK, "arch": ["tv"]}]}, "archs.tv"),
        ({"grid": [{**DEMO_BLOCK, "train": {"warm_start_from": "approximation"}}]},
         "train.warm_start_from"),
        ({"data": {"patch_size": 96}}, "data.patch_size"),  # chelsea is 75 px at downscale 4
        ({"data": {"named_size": 80}}, "data.named_size"),
        ({"data": {"source": "folder", "path": "/no/such/folder"}}, "data.path"),
        ({"data": {"source": "stl10", "path": "/no/such/stl10_binary"}}, "data.path"),
        ({"grid": []}, "grid"),  # and no toy grid: nothing to run
        ({"operators": {"blur": {"kernel_size": 10}}}, "operators.blur.kernel_size"),
        ({"operators": {"blur": {"kernel_size": 65}}}, "operators.blur.kernel_size"),
        ({"operators": {"diffusion": {"dt": 5}}}, "operators.diffusion.dt"),
        ({"grid": [{**DEMO_BLOCK, "seed": [2**70]}]}, "grid[0].seed[0]"),
        ({"grid": [{**DEMO_BLOCK, "objective": ["logdet"]}]}, "grid"),  # lifted: refused
        ({"analysis": {"crop": 41}}, "analysis.crop"),
        ({"analysis": {"clusters": 500, "pixels": 300}}, "analysis.clusters"),
        ({"analysis": {"masks": {"camera": "/no/such/mask.png"}}}, "analysis.masks.camera"),
        ({"figures": {"cmap": "no_such_map"}}, "figures.cmap"),
        ({"train": {"compile": "bogus"}}, "train.compile"),
        ({"toy2d": {"grid": [{**TOY_LOGDET, "training_points": 8}]}},
         "toy2d.grid[0].training_points"),
        # compiled code cannot differentiate derivatives; bf16 cannot reach 1e-5
        ({"train": {"compile": "aot_eager"}, "grid": [DIVERGENCE_BLOCK]}, "train.compile"),
        ({"train": {"compile": "inductor"}, "toy2d": {"grid": [TOY_LOGDET]}}, "train.compile"),
        ({"train": {"precision": "bf16"}}, "train.solver.tol"),
        ({"search": {"learning_rate": [1e-2, 1e-4]}}, "search.learning_rate"),
        ({"data": {"named_images": ["camera", "nope"]}}, "data.named_images"),
        ({"device": "cpu", "train": {"compile": "cudagraphs"}}, "train.compile"),
    ],
)  # fmt: skip
def test_what_would_fail_in_a_job_fails_at_config_time(cfg: dict, field: str) -> None:
    with pytest.raises(config.ConfigError, match=re.escape(f"config field {field}")) as error:
        config.check(config.validate(copy.deepcopy({"grid": [DEMO_BLOCK], **cfg})))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "train",
    [
        {"compile": "aot_eager"},  # reconstruction and approximation: compiled
        {"precision": "bf16", "solver": {"tol": 1e-3}},  # a tolerance bf16 reaches
    ],
)
def test_the_gpu_path_settings_it_can_serve_pass(train: dict) -> None:
    block = {**DEMO_BLOCK, "objective": ["reconstruction", "approximation"]}
    config.check(config.validate({"grid": [block], "train": train}))


def test_a_toy_block_chooses_its_architecture() -> None:
    block = {"prior": ["bimodal"], "eps": [1.0], "noise_level": [0.1], "lipschitz": [0.9]}
    cfg = config.validate(
        {
            "archs": {"wide": {"kind": "dense", "blocks": 2, "dim": 2, "hidden": 8}},
            "toy2d": {
                "grid": [
                    {**block, "objective": ["reconstruction"], "arch": "wide"},
                    {**block, "objective": ["logdet"]},
                ]
            },
        }
    )
    config.check(cfg)
    reconstruction, logdet = (toy_job(cfg, cell) for cell in config.toy_cells(cfg))
    assert reconstruction.spec["hidden"] == 8
    assert logdet.spec == config.architecture(cfg, "toy")


def test_cells_are_the_union_of_block_products() -> None:
    cfg = config.validate(
        {
            "grid": [
                {**GOOD_BLOCK, "noise_level": [0.01, 0.05], "lipschitz": [0.9, 0.99]},
                {**GOOD_BLOCK, "objective": ["reconstruction", "logdet"]},
            ]
        }
    )
    cells = config.cells(cfg)
    assert len(cells) == 4 + 1  # the second block repeats one cell of the first
    assert cells[0].dir == (
        "operator~blur/noise_level~0.01/lipschitz~0.9/objective~reconstruction/"
        "arch~iresnet_small/seed~0"
    )
    assert config.noise_levels(cfg) == {"blur": [0.01, 0.05]}


@pytest.mark.workflow
def test_snakemake_rejects_bad_config_before_any_job(tmp_path: Path) -> None:
    bad = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    bad["grid"][0]["lipschitz"] = [1.5]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = run_snakemake(tmp_path, configfile=path)
    assert result.returncode != 0
    assert "grid[0].lipschitz[0]" in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", ["x; touch owned; echo", "../../../escape", "$(touch owned)"])
def test_an_archive_name_cannot_run_a_command_or_leave_results(tmp_path: Path, name: str) -> None:
    """An archive name becomes a path and a shell argument: only plain file names pass, and
    Snakemake stops before any job."""
    cfg = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    cfg["archive"] = {"name": name}
    path = tmp_path / "attack.yaml"
    path.write_text(yaml.safe_dump(cfg))
    workdir = tmp_path / "a" / "b" / "c"
    workdir.mkdir(parents=True)
    result = run_snakemake(workdir, "archive", configfile=path)
    assert result.returncode != 0
    assert "config field archive.name" in result.stderr + result.stdout
    written = {p.name for p in tmp_path.rglob("*")}
    assert not written & {"owned", "escape", "results", "archive"}, written
    with pytest.raises(config.ConfigError, match="archive.name"):
        config.validate({"archive": {"name": name}})


def test_expanding_the_grid_imports_no_torch() -> None:
    """The workflow expands the grid while parsing; importing torch there would cost seconds
    on every snakemake call (a no-op run should take a few seconds)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from iresnet_inverse import config\n"
        "cfg = config.load('config/paper.yaml')\n"
        "assert config.cells(cfg) and config.analysis_cells(cfg)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_schema_enums_and_tables_agree_with_the_registry() -> None:
    from iresnet_inverse import registry
    from iresnet_inverse.data.priors import get_prior
    from iresnet_inverse.operators import OPERATORS
    from iresnet_inverse.stages.figures import ANALYSIS_FIGURES, DATASET_FIGURES, PAIR_FIGURES
    from iresnet_inverse.stages.probe import PROBES

    schema = config._schema()
    props = schema["properties"]
    grid = props["grid"]["items"]["properties"]
    toy = props["toy2d"]["properties"]["grid"]["items"]["properties"]
    kinds = props["archs"]["additionalProperties"]["properties"]["kind"]["enum"]
    warm = schema["$defs"]["train"]["properties"]["warm_start_from"]["enum"]
    assert tuple(grid["objective"]["items"]["enum"]) == registry.OBJECTIVES
    assert tuple(toy["objective"]["items"]["enum"]) == registry.OBJECTIVES
    assert [w for w in warm if w is not None] == list(registry.OBJECTIVES)
    assert tuple(kinds) == registry.ARCH_KINDS
    assert tuple(grid["operator"]["items"]["enum"]) == registry.OPERATORS
    assert set(registry.OPERATORS) <= set(OPERATORS)
    assert tuple(toy["prior"]["items"]["enum"]) == registry.PRIORS
    for prior in registry.PRIORS:
        get_prior(prior)
    assert tuple(PROBES) == registry.PROBES
    assert tuple(ANALYSIS_FIGURES) == registry.ANALYSIS_FIGURES
    figures = {*registry.RECONSTRUCTION_FIGURES, *registry.TOY_FIGURES, *registry.TRAINING_FIGURES}
    assert set(DATASET_FIGURES) == figures | set(registry.SEARCH_FIGURES)
    assert set(PAIR_FIGURES) == {*registry.ANALYSIS_FIGURES, *registry.SCALING_FIGURES}


@pytest.mark.parametrize(
    ("blocks", "figures"),
    [
        ([("bimodal", ["reconstruction", "logdet"], [1.0])], list(registry.TOY_FIGURES)),
        ([("gaussian", ["divergence"], [1.0])], ["toy_estimators"]),
        ([("bimodal", ["reconstruction"], [1.0])], ["toy_grid", "toy_mse_vs_noise"]),
        ([("trimodal", ["reconstruction"], [1.0])], []),
    ],
)
def test_the_workflow_draws_only_the_toy_figures_a_grid_can_fill(
    tmp_path: Path, blocks: list, figures: list[str]
) -> None:
    """Without the bimodal prior, or without log-det/divergence cells, the figures that need
    them are not asked for (they failed at the very end before)."""
    cfg = yaml.safe_load((ROOT / "config" / "ci.yaml").read_text())
    cfg["toy2d"]["grid"] = [
        {"prior": [p], "eps": [1.0], "noise_level": [0.1], "lipschitz": [0.9], "objective": o,
         "noise_factor": f}
        for p, o, f in blocks
    ]  # fmt: skip
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert registry.toy_figures(config.toy_cells(config.load(path))) == figures
    result = run_snakemake(tmp_path, "--dry-run", configfile=path)
    assert result.returncode == 0, result.stderr[-2000:]
    drawn = len(re.findall(r"figures/toy_\w+\.png", result.stdout + result.stderr))
    assert (drawn > 0) == bool(figures)
