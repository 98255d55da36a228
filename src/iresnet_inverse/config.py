"""Config loading, schema validation with defaults, and expansion of the grid into cells."""

import functools
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from iresnet_inverse.archs import ARCHITECTURES, BASELINES
from iresnet_inverse.cells import ImageCell, ToyCell
from iresnet_inverse.errors import ConfigError
from iresnet_inverse.registry import (
    BASELINE_OBJECTIVES,
    BUILTIN_SMALLEST_SIDE,
    BUILTIN_TEST_IMAGES,
    INVERTIBLE_KINDS,
    STL10_SIDE,
)

# Inside the package: an installed package validates configs without a checkout.
SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
UNCONSTRAINED = float("inf")
# The smallest relative residual the training solver reaches with bf16 convolutions: the floor
# measured on the CPU was 1.3e-4 (paper width) to 6.6e-4 (demo net); below it every forward
# solve runs to max_iter.
BF16_TOL_FLOOR = 1e-3
# Objectives that differentiate derivatives (create_graph), which compiled code cannot serve.
SECOND_ORDER_OBJECTIVES = ("logdet", "divergence")


def _field(path: object) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


@functools.cache
def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate(config: dict[str, Any], definition: str | None = None) -> dict[str, Any]:
    """Validate ``config`` in place against the schema (or one of its ``$defs``), filling
    defaults; return it."""
    import jsonschema

    schema = _schema()
    if definition is not None:
        schema = {**schema["$defs"][definition], "$defs": schema["$defs"]}
    validator_class = jsonschema.validators.validator_for(schema)

    def set_defaults(validator, properties, instance, schema):  # noqa: ANN001
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, _copy(sub["default"]))
        yield from validator_class.VALIDATORS["properties"](validator, properties, instance, schema)

    filling = jsonschema.validators.extend(validator_class, {"properties": set_defaults})
    error = jsonschema.exceptions.best_match(filling(schema).iter_errors(config))
    if error is not None:
        field = _field(error.absolute_path) or "(top level)"
        raise ConfigError(f"config field {field}: {error.message}")
    return config


def _copy(value: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(value))


def load(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a mapping")
    return check(validate(config))


def check(config: dict[str, Any]) -> dict[str, Any]:
    """What the schema cannot express, checked before any job; each error names its field."""
    if not config["grid"] and not config["toy2d"]["grid"]:
        raise ConfigError("config field grid: empty, and so is toy2d.grid: nothing to run")
    data = config["data"]
    _check_data(data)
    _check_blur_kernel(config["operators"]["blur"]["kernel_size"], data)
    _check_grid(config)
    search_cells(config)  # a searched arch without a cell at the searched operator and delta
    low, high = config["search"]["learning_rate"]
    if not low < high:
        raise ConfigError(f"config field search.learning_rate: [{low:g}, {high:g}] is not low-high")
    if analysis_cells(config):
        _check_analysis(config["analysis"], data)
    if config["figures"]["cmap"] != "gray":  # matplotlib only when a colormap is asked for
        from matplotlib import colormaps

        if config["figures"]["cmap"] not in colormaps:
            raise ConfigError(
                f"config field figures.cmap: {config['figures']['cmap']!r} is not a matplotlib "
                "colormap"
            )
    for toy in toy_cells(config):
        _check_gpu_path(toy_train_settings(config, toy), toy, config["device"])
    for index, block in enumerate(config["toy2d"]["grid"]):
        name = _toy_block_arch(config, block)
        if architecture(config, name)["kind"] != "dense":
            field = f"toy2d.grid[{index}].arch" if "arch" in block else "toy2d.arch"
            raise ConfigError(f"config field {field}: {name!r} is not a dense architecture")
    return config


def _check_data(data: Mapping[str, Any]) -> None:
    """The data source exists and its images are no smaller than the patches asked for."""
    reads_files = data["source"] in ("stl10", "folder")
    if reads_files and not (data.get("path") and Path(data["path"]).exists()):
        raise ConfigError(f"config field data.path: {data.get('path')!r} does not exist")
    if data["source"] == "gaussian":
        for field in ("patch_size", "named_size"):
            if data[field] > data["gaussian"]["period"]:
                raise ConfigError(
                    f"config field data.gaussian.period: {data['gaussian']['period']} is smaller "
                    f"than data.{field} {data[field]}"
                )
    unknown = sorted(set(data.get("named_images") or ()) - set(BUILTIN_TEST_IMAGES))
    if data["source"] == "builtin" and unknown:
        raise ConfigError(
            f"config field data.named_images: {unknown} are not test images of the builtin "
            f"source {list(BUILTIN_TEST_IMAGES)}"
        )
    side = {"builtin": BUILTIN_SMALLEST_SIDE, "stl10": STL10_SIDE}.get(data["source"])
    for field in ("patch_size", "named_size"):
        if side is not None and data[field] > side // data["downscale"]:
            raise ConfigError(
                f"config field data.{field}: {data[field]} is larger than the smallest "
                f"{data['source']} image at downscale {data['downscale']:g} "
                f"({side // data['downscale']:g} pixels)"
            )


def _check_blur_kernel(kernel: int, data: Mapping[str, Any]) -> None:
    """An odd blur kernel whose half is below the image side (reflect padding)."""
    if kernel % 2 == 0:
        raise ConfigError(f"config field operators.blur.kernel_size: {kernel} is even (odd only)")
    for field in ("patch_size", "named_size"):
        if kernel // 2 >= data[field]:  # reflect padding needs a pad below the side
            raise ConfigError(
                f"config field operators.blur.kernel_size: {kernel} is too large for "
                f"data.{field} {data[field]} (its half must be below the image side)"
            )


def _check_grid(config: dict[str, Any]) -> None:
    """The image cells' archs, objectives, training settings and warm starts."""
    grid_cells = cells(config)
    for arch in {c.arch for c in grid_cells}:
        spec = architecture(config, arch)
        if spec["kind"] == "tv" and not spec["alpha_min"] < spec["alpha_max"]:
            raise ConfigError(f"config field archs.{arch}: alpha_min must be below alpha_max")
    for cell in grid_cells:  # objectives.logdet: log det of the map on X needs one channel
        spec = architecture(config, cell.arch)
        if cell.objective == "logdet" and spec["kind"] == "conv" and spec["channels"] > 1:
            raise ConfigError(
                f"config field grid: {cell.dir}: the log-det objective needs a net invertible "
                f"on X, but arch {cell.arch} lifts to {spec['channels']} channels; use a "
                "1-channel arch (e.g. iresnet_demo_unlifted)"
            )
    names = {c.path_values for c in grid_cells}
    for cell in grid_cells:
        _check_snapshots(train_settings(config, cell), cell)
        _check_gpu_path(train_settings(config, cell), cell, config["device"])
        source = train_settings(config, cell)["warm_start_from"]
        if source and source != cell.objective:
            sibling = ImageCell.of({**cell, "objective": source})
            if sibling.path_values not in names:
                raise ConfigError(
                    f"config field train.warm_start_from: {cell.dir} starts from {sibling.dir}, "
                    "which is not in the grid"
                )


def _check_analysis(analysis: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """What the probes would reject after training: crop, cluster counts, missing masks."""
    side = min(data["patch_size"], data["named_size"])
    if analysis["crop"] >= side:
        raise ConfigError(
            f"config field analysis.crop: {analysis['crop']} leaves no interior pixel in "
            f"{side}-pixel images (data.patch_size / data.named_size)"
        )
    for field in ("clusters", "k_max"):
        if analysis[field] >= analysis["pixels"]:
            raise ConfigError(
                f"config field analysis.{field}: {analysis[field]} is not below analysis.pixels "
                f"{analysis['pixels']}"
            )
    for name, path in analysis["masks"].items():
        if not Path(path).is_file():
            raise ConfigError(f"config field analysis.masks.{name}: {path} does not exist")


def _check_snapshots(settings: Mapping[str, Any], cell: ImageCell) -> None:
    """Snapshots are budget-trained nets only at a constant rate without early stopping (a
    cosine rate depends on the run's length; patience may stop before a snapshot)."""
    snapshots = settings["snapshots"]
    if not snapshots:
        return
    problem = (
        "needs lr_schedule constant"
        if settings["lr_schedule"] != "constant"
        else "needs patience null"
        if settings["patience"] is not None
        else f"lists epochs beyond epochs ({settings['epochs']})"
        if max(snapshots) > settings["epochs"]
        else None
    )
    if problem:
        raise ConfigError(f"config field train.snapshots of {cell.dir}: {problem}")


def _check_gpu_path(settings: Mapping[str, Any], cell: ImageCell | ToyCell, device: str) -> None:
    """What the GPU-path settings cannot serve: compiled residuals for second-order objectives
    (log-det, divergence), CUDA graphs on the CPU, bf16 with a tolerance below its residual
    floor."""
    if settings["compile"] == "cudagraphs" and device == "cpu":
        raise ConfigError(
            f"config field train.compile of {cell.dir}: cudagraphs needs a CUDA device, and "
            "device is cpu"
        )
    if settings["compile"] and cell.objective in SECOND_ORDER_OBJECTIVES:
        raise ConfigError(
            f"config field train.compile of {cell.dir}: the {cell.objective} objective "
            "differentiates derivatives, which torch.compile cannot; set compile: null for it"
        )
    tol = settings["solver"]["tol"]
    if settings["precision"] == "bf16" and tol < BF16_TOL_FLOOR:
        raise ConfigError(
            f"config field train.solver.tol of {cell.dir}: {tol:g} is below what bf16 "
            f"convolutions reach (set it to {BF16_TOL_FLOOR:g} or more with precision bf16)"
        )


def architecture(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The spec of architecture ``name``: from ``config.archs``, else built in."""
    spec = config.get("archs", {}).get(name) or ARCHITECTURES.get(name) or BASELINES.get(name)
    if spec is None:
        known = sorted({*config.get("archs", {}), *ARCHITECTURES, *BASELINES})
        raise ConfigError(f"config field grid: unknown arch {name!r}; known: {', '.join(known)}")
    return {k: v for k, v in spec.items() if k != "train"}


def block_of(config: Mapping[str, Any], cell: ImageCell | ToyCell) -> dict[str, Any]:
    """The first grid block (of ``toy2d.grid`` for a toy cell) whose product contains ``cell``
    (values compared as in paths)."""
    toy = isinstance(cell, ToyCell)
    grid = config["toy2d"]["grid"] if toy else config["grid"]
    for index, block in enumerate(grid):
        expanded = _toy_block_cells(block) if toy else _block_cells(config, block, index)
        if any(c.path_values == cell.path_values for c in expanded):
            return block
    raise ConfigError(
        f"config field {'toy2d.grid' if toy else 'grid'}: no block contains {cell.dir}"
    )


def train_settings(config: Mapping[str, Any], cell: ImageCell) -> dict[str, Any]:
    """Training settings of a cell: ``train``, then its arch's ``train`` overrides, then the
    ``train`` overrides of its grid block."""
    arch = cell["arch"]
    merged = _copy(dict(config["train"]))
    merged.update(config.get("archs", {}).get(arch, {}).get("train", {}))
    merged.update(block_of(config, cell).get("train", {}))
    try:
        return validate(merged, "train")
    except ConfigError as err:
        raise ConfigError(f"training settings of {cell.dir}: {err}") from None


def is_invertible(spec: Mapping[str, Any]) -> bool:
    """True for iResNet architectures (inverted to reconstruct), False for baselines."""
    return spec["kind"] in INVERTIBLE_KINDS


def _block_cells(
    config: Mapping[str, Any], block: Mapping[str, Any], index: int
) -> list[ImageCell]:
    """The cells of one grid block. Baselines take no L and no objective: theirs are fixed
    (``lipschitz`` inf = unconstrained; ``objective`` supervised, or variational for TV)."""
    out = []
    for arch in block["arch"]:
        kind = architecture(config, arch)["kind"]
        if kind in BASELINE_OBJECTIVES:
            lipschitz, objective = [UNCONSTRAINED], [BASELINE_OBJECTIVES[kind]]
        else:
            for key in ("lipschitz", "objective"):
                if key not in block:
                    raise ConfigError(f"config field grid[{index}].{key}: required by arch {arch}")
            lipschitz, objective = block["lipschitz"], block["objective"]
        values = [block["operator"], block["noise_level"], lipschitz, objective, [arch]]
        for combo in itertools.product(*values, block["seed"]):
            out.append(ImageCell(*combo))
    return out


def single_cell_block(config: Mapping[str, Any], cell: ImageCell) -> dict[str, Any]:
    """A grid block holding ``cell`` alone (baseline blocks leave out L and objective)."""
    fixed = architecture(config, cell["arch"])["kind"] in BASELINE_OBJECTIVES
    skip = ("lipschitz", "objective") if fixed else ()
    return {k: [cell[k]] for k in ImageCell.KEYS if k not in skip}


def cells(config: Mapping[str, Any]) -> list[ImageCell]:
    """Every training cell of the grid (the union of the blocks' products), in stable order."""
    seen: dict[tuple[str, ...], ImageCell] = {}
    for index, block in enumerate(config["grid"]):
        for cell in _block_cells(config, block, index):
            seen.setdefault(cell.path_values, cell)
    return list(seen.values())


def analysis_cells(config: Mapping[str, Any]) -> list[ImageCell]:
    """The reconstruction-trained iResNets whose forward map is probed (paper Sec. 4.3)."""
    if not config.get("analysis", {}).get("enabled", True):
        return []
    return [
        c
        for c in cells(config)
        if c["objective"] == "reconstruction" and is_invertible(architecture(config, c["arch"]))
    ]


def search_cells(config: Mapping[str, Any]) -> list[ImageCell]:
    """The cell searched per architecture (``search``): its first grid cell at the search's
    operator and noise level; none without trials."""
    search = config["search"]
    if not search["trials"]:
        return []
    grid = cells(config)
    operator = search["operator"] or grid[0].operator
    delta = grid[0].noise_level if search["noise_level"] is None else search["noise_level"]
    trained = [c.arch for c in grid if architecture(config, c.arch)["kind"] != "tv"]
    archs = search["archs"] if search["archs"] is not None else list(dict.fromkeys(trained))
    chosen = []
    for arch in archs:
        match = [c for c in grid if (c.operator, c.noise_level, c.arch) == (operator, delta, arch)]
        if not match or arch not in trained:
            raise ConfigError(
                f"config field search: no trained cell of arch {arch!r} at operator {operator}, "
                f"noise level {delta:g} in the grid"
            )
        chosen.append(match[0])
    return chosen


def toy_cells(config: Mapping[str, Any]) -> list[ToyCell]:
    """Every toy cell of ``toy2d.grid`` (union of block products), in stable order."""
    seen: dict[tuple[str, ...], ToyCell] = {}
    for block in config["toy2d"]["grid"]:
        for cell in _toy_block_cells(block):
            seen.setdefault(cell.path_values, cell)
    return list(seen.values())


def _toy_block_cells(block: Mapping[str, Any]) -> list[ToyCell]:
    return [ToyCell(*combo) for combo in itertools.product(*(block[k] for k in ToyCell.KEYS))]


def toy_arch(config: Mapping[str, Any], cell: ToyCell) -> str:
    """The dense architecture of a toy cell: its grid block's ``arch``, else ``toy2d.arch``."""
    return _toy_block_arch(config, block_of(config, cell))


def _toy_block_arch(config: Mapping[str, Any], block: Mapping[str, Any]) -> str:
    return block.get("arch", config["toy2d"]["arch"])


def toy_training_points(config: Mapping[str, Any], cell: ToyCell) -> int:
    """Prior samples a toy cell trains on: its block's, else ``toy2d.training_points``."""
    return block_of(config, cell).get("training_points", config["toy2d"]["training_points"])


def toy_train_settings(config: Mapping[str, Any], cell: ToyCell | None = None) -> dict[str, Any]:
    """Training settings of a toy cell: ``train``, then ``toy2d.train``, then the ``train``
    overrides of the cell's toy grid block."""
    merged = _copy(dict(config["train"]))
    merged.update(config["toy2d"]["train"])
    if cell is not None:
        merged.update(block_of(config, cell).get("train", {}))
    return validate(merged, "train")


def noise_levels(config: Mapping[str, Any]) -> dict[str, list[float]]:
    """Per operator, the sorted noise levels the grid uses."""
    levels: dict[str, set[float]] = {}
    for cell in cells(config):
        levels.setdefault(cell["operator"], set()).add(float(cell["noise_level"]))
    return {op: sorted(v) for op, v in sorted(levels.items())}
