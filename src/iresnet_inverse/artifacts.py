"""The one place that writes and reads NetCDF.

Written datasets carry CF attributes (``Conventions``, ``title``, ``history``), provenance as
string attributes (``config_json``, ``git_commit``, ``package_versions_json``, ``created``,
``snakemake_rule``), zlib compression, and the cell keys as length-1 dimension coordinates so
that ``xr.combine_by_coords`` assembles the study cube. Writes go to a temporary file in the
same directory that is renamed into place, so a killed job never leaves a partial file.
"""

import errno
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr

from iresnet_inverse.cells import format_value
from iresnet_inverse.errors import ArtifactError, InputDataError

# Every key a cell may have, in coordinate order: image cells (cells.ImageCell) and toy cells
# (cells.ToyCell).
# Below this much free space a failed write is reported as a full disk.
LOW_DISK_BYTES = 1 << 20

ALL_KEYS = (
    "prior",
    "operator",
    "eps",
    "noise_level",
    "lipschitz",
    "objective",
    "noise_factor",
    "arch",
    "seed",
)
PROVENANCE_PACKAGES = (
    "iresnet-inverse",
    "torch",
    "numpy",
    "xarray",
    "netcdf4",
    "scikit-image",
    "scikit-learn",
    "snakemake",
)


def git_commit() -> str:
    """The commit of the source tree this package runs from, with ``-dirty`` appended when
    tracked files differ from it (as ``git describe --dirty`` does), or "unknown"."""
    try:
        commit = _git("rev-parse", "HEAD")
        return (
            f"{commit}-dirty" if _git("status", "--porcelain", "--untracked-files=no") else commit
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _git(*args: str) -> str:
    out = subprocess.run(
        ["git", *args],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return out.stdout.strip()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def variable(
    dims: str | tuple[str, ...], values: object, long_name: str, units: str = "1"
) -> tuple[object, object, dict[str, str]]:
    """A data variable with its CF ``long_name`` and ``units``, for ``xr.Dataset``."""
    return dims, values, {"long_name": long_name, "units": units}


def with_cell(ds: xr.Dataset, cell: Mapping[str, object]) -> xr.Dataset:
    """Add each cell key as a length-1 dimension coordinate (in ``ALL_KEYS`` order)."""
    unknown = set(cell) - set(ALL_KEYS)
    if unknown:
        raise ValueError(f"unknown cell keys {sorted(unknown)}; valid: {ALL_KEYS}")
    keys = [k for k in ALL_KEYS if k in cell]
    ds = ds.expand_dims({k: [cell[k]] for k in keys})
    for k in keys:
        ds[k].attrs.setdefault("long_name", k.replace("_", " "))
        ds[k].attrs.setdefault("units", "1")
    return ds


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, object]]:
    return {
        name: {"zlib": True, "complevel": 4}
        for name, var in ds.variables.items()
        if np.issubdtype(var.dtype, np.number) and var.ndim > 0
    }


def refuse_overwriting(outputs: dict[str, str | None], inputs: dict[str, str | None]) -> None:
    """Refuse, before any work, an output path that is one of the inputs or another output
    (the same file by any spelling or link): no command writes over what it reads."""
    seen = {Path(path).resolve(): flag for flag, path in inputs.items() if path is not None}
    for flag, path in outputs.items():
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            raise InputDataError(
                f"{flag} {path} is the file of {seen[key]}: it would be overwritten"
            )
        seen[key] = flag


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it into place: a killed
    job never leaves a partial file (the one place that does this). The file gets the mode a
    plain ``open`` would give (0666 less the umask), not the temporary file's 0600, so that a
    group sharing the results can read them."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path}: is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The temporary name keeps the suffix, for writers that choose the format by it.
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}"
        )
    except OSError as err:  # e.g. no permission: name the file asked for, not a temporary one
        raise ArtifactError(f"{path}: cannot write ({err.strerror})") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        # A full disk surfaces as an OSError, an "HDF error" or torch's "enforce fail": name the
        # file asked for; other runtime errors keep their traceback.
        free = shutil.disk_usage(path.parent).free
        if getattr(err, "errno", None) == errno.ENOSPC or free < LOW_DISK_BYTES:
            raise ArtifactError(
                f"{path}: cannot write: the disk is full ({free:,} bytes free)"
            ) from err
        if isinstance(err, OSError):
            raise ArtifactError(f"{path}: cannot write ({err.strerror or err})") from err
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)  # reading the umask sets it; set it back at once
    os.umask(mask)
    return mask


def write_dataset(
    ds: xr.Dataset,
    path: str | Path,
    *,
    title: str,
    config: Mapping[str, object] | None = None,
    rule: str = "",
    cell: Mapping[str, object] | None = None,
) -> Path:
    """Write ``ds`` atomically to ``path`` with CF attributes and provenance."""
    path = Path(path)
    if cell:
        ds = with_cell(ds, cell)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    ds = ds.copy()
    ds.attrs.update(
        {
            "Conventions": "CF-1.10",
            "title": title,
            "history": f"{created} written by iresnet-inverse ({rule or 'library call'})",
            "config_json": json.dumps(config or {}, sort_keys=True),
            "git_commit": git_commit(),
            "package_versions_json": json.dumps(package_versions(), sort_keys=True),
            "created": created,
            "snakemake_rule": rule,
        }
    )
    encoding = _encoding(ds)
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding))


def read_dataset(path: str | Path, cell: Mapping[str, object] | None = None) -> xr.Dataset:
    """Read a whole NetCDF artifact into memory; a missing or corrupt file names itself. With
    ``cell``, the file's own cell coordinates must be the cell's (a file copied over another's
    is refused, naming both)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: NetCDF artifact not found (run the rule that makes it)")
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except Exception as err:
        raise ArtifactError(f"{path}: not a readable NetCDF artifact ({err})") from err
    if cell is not None:
        held = {k: ds[k].values.ravel()[0].item() for k in cell if k in ds.coords}
        if any(format_value(held[k]) != format_value(cell[k]) for k in held):
            raise ArtifactError(f"{path}: holds {_keys(held)}, but this job is {_keys(cell)}")
    return ds


def _keys(values: Mapping[str, object]) -> str:
    return "/".join(f"{k}~{format_value(v)}" for k, v in values.items())


def combine_datasets(parts: list[xr.Dataset]) -> xr.Dataset:
    """Per-cell datasets (cell keys as length-1 dimensions) as one cube, outer join."""
    # Fixed-width strings would be cut to the first file's width when concatenated.
    parts = [
        part.assign_coords(
            {
                k: part[k].astype(object)
                for k in ALL_KEYS
                if k in part.coords and part[k].dtype.kind == "U"
            }
        )
        for part in parts
    ]
    return xr.combine_by_coords(
        parts, join="outer", compat="no_conflicts", combine_attrs="drop_conflicts"
    )


def combine_cells(paths: list[str | Path], *more: list[str | Path]) -> xr.Dataset:
    """One dataset from per-cell files: their length-1 cell coordinates become the study cube's
    dimensions (outer join, so a sparse grid leaves NaN where no cell was run). Each input's
    config is kept, by file, in the attribute ``cell_configs_json``."""
    parts, configs = [], {}
    for path in paths:
        part = read_dataset(path)
        configs[str(path)] = json.loads(part.attrs.get("config_json", "{}"))
        for key in ("config_json", "history", "created", "snakemake_rule", "title"):
            part.attrs.pop(key, None)
        parts.append(part)
    combined = combine_datasets(parts)
    if more:
        # Further groups (e.g. per-reference data beside per-cell results) are combined each
        # on its own, then merged.
        groups = [combine_cells(group) for group in more]
        for group in groups:
            configs.update(json.loads(group.attrs.pop("cell_configs_json")))
        combined = xr.merge(
            [combined, *groups], join="outer", compat="no_conflicts", combine_attrs="drop_conflicts"
        )
    combined.attrs["cell_configs_json"] = json.dumps(configs, sort_keys=True)
    return combined
