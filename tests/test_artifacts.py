"""NetCDF artifacts: attributes, provenance, cell coordinates, atomic writes, clear errors."""

import errno
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from iresnet_inverse import artifacts
from iresnet_inverse.artifacts import ArtifactError, read_dataset, write_dataset


def _dataset(value: float) -> xr.Dataset:
    return xr.Dataset(
        {"psnr": (("image",), np.full(3, value), {"long_name": "PSNR", "units": "dB"})},
        coords={"image": np.arange(3)},
    )


def test_round_trip_with_provenance_and_cell(tmp_path: Path) -> None:
    cell = {"operator": "blur", "noise_level": 0.01, "lipschitz": 0.999}
    path = write_dataset(
        _dataset(20.0), tmp_path / "a.nc", title="t", config={"k": 1}, rule="evaluate", cell=cell
    )
    ds = read_dataset(path)
    assert ds["psnr"].dims == ("operator", "noise_level", "lipschitz", "image")
    assert ds["psnr"].attrs["units"] == "dB"
    for key in ("Conventions", "title", "history", "git_commit", "created"):
        assert ds.attrs[key]
    assert json.loads(ds.attrs["config_json"]) == {"k": 1}
    assert "torch" in json.loads(ds.attrs["package_versions_json"])
    assert ds.attrs["snakemake_rule"] == "evaluate"
    assert ds["noise_level"].attrs["units"] == "1"
    assert ds.encoding.get("source")
    assert ds["psnr"].encoding.get("zlib") is True


def test_cells_combine_by_coords(tmp_path: Path) -> None:
    parts = []
    for op in ("blur", "diffusion"):
        for d in (0.01, 0.05):
            p = write_dataset(
                _dataset(d),
                tmp_path / f"{op}{d}.nc",
                title="t",
                config={"grid": [{"operator": [op], "noise_level": [d]}]},
                cell={"operator": op, "noise_level": d},
            )
            parts.append(read_dataset(p))
    cube = artifacts.combine_cells(sorted(tmp_path.glob("*.nc")))
    configs = json.loads(cube.attrs["cell_configs_json"])  # each cell's own provenance
    assert configs[str(tmp_path / "blur0.05.nc")]["grid"] == [
        {"operator": ["blur"], "noise_level": [0.05]}
    ]
    assert dict(cube.sizes) == {"operator": 2, "noise_level": 2, "image": 3}
    assert float(cube["psnr"].sel(operator="diffusion", noise_level=0.05, image=0)) == 0.05
    assert sorted(cube["operator"].values) == ["blur", "diffusion"]  # no truncated names
    # A sparse grid combines too, with NaN where no cell was run.
    (tmp_path / "diffusion0.05.nc").unlink()
    sparse = artifacts.combine_cells(sorted(tmp_path.glob("*.nc")))
    assert int(sparse["psnr"].isnull().sum()) == 3


def test_unknown_cell_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown cell keys"):
        write_dataset(_dataset(1.0), tmp_path / "a.nc", title="t", cell={"colour": "red"})


def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="missing.nc"):
        read_dataset(tmp_path / "missing.nc")
    bad = tmp_path / "corrupt.nc"
    bad.write_bytes(b"not netcdf at all")
    with pytest.raises(ArtifactError, match="corrupt.nc"):
        read_dataset(bad)


def test_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def killed(self: xr.Dataset, path: str, **kwargs: object) -> None:
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.Dataset, "to_netcdf", killed)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(_dataset(1.0), tmp_path / "out.nc", title="t")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("error", "free", "message"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 10**9, "the disk is full"),
        (RuntimeError("NetCDF: HDF error"), 0, "the disk is full (0 bytes free)"),
        (RuntimeError("[enforce fail at inline_container.cc:603]"), 100, "the disk is full"),
        (PermissionError(errno.EACCES, "Permission denied"), 10**9, "(Permission denied)"),
    ],
)
def test_a_full_disk_or_a_refused_write_names_the_file_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, free: int, message: str
) -> None:
    """netCDF's "HDF error" and torch's "enforce fail" name no file: the write names the file
    asked for, says why, and leaves neither it nor a temporary file behind."""

    def fails(tmp: str) -> None:
        Path(tmp).write_bytes(b"half a file")
        raise error

    usage = shutil.disk_usage(tmp_path)._replace(free=free)
    monkeypatch.setattr(artifacts.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(ArtifactError, match=f"out.nc: cannot write.*{re.escape(message)}"):
        artifacts.atomic_write(tmp_path / "out.nc", fails)
    assert list(tmp_path.iterdir()) == []


def test_other_runtime_errors_keep_their_traceback(tmp_path: Path) -> None:
    def bug(tmp: str) -> None:
        raise RuntimeError("a bug, not the disk")

    with pytest.raises(RuntimeError, match="a bug, not the disk"):
        artifacts.atomic_write(tmp_path / "out.nc", bug)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "a.nc"
    write_dataset(_dataset(1.0), path, title="first")
    write_dataset(_dataset(2.0), path, title="second")
    assert read_dataset(path).attrs["title"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["a.nc"]


def test_git_commit_is_recorded_and_marks_a_dirty_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = artifacts.git_commit()
    assert commit == "unknown" or len(commit.removesuffix("-dirty")) == 40
    # A repository of our own: clean, then with an edited tracked file.
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    module = repo / "pkg" / "artifacts.py"
    module.write_text("x = 1\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    monkeypatch.setattr(artifacts, "__file__", str(module))
    clean = artifacts.git_commit()
    assert len(clean) == 40
    (repo / "untracked.txt").write_text("ignored")  # untracked files do not count
    assert artifacts.git_commit() == clean
    module.write_text("x = 2\n")
    assert artifacts.git_commit() == f"{clean}-dirty"


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_outputs_respect_the_umask(tmp_path: Path, umask: int) -> None:
    """Datasets and checkpoints get 0666 less the umask, as files written by `open` do (a
    shared cluster group can read a study)."""
    from iresnet_inverse.checkpoints import save_checkpoint

    previous = os.umask(umask)
    try:
        write_dataset(_dataset(1.0), tmp_path / "a.nc", title="t")
        save_checkpoint({"x": 1}, tmp_path / "model.pt")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(previous)
    for name in ("a.nc", "model.pt", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
