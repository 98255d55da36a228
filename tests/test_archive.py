"""Archives verify byte for byte; checkpoints refuse pickles that would run code."""

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from iresnet_inverse.archive import ArchiveError, build_archive, verify_archive
from iresnet_inverse.artifacts import ArtifactError
from iresnet_inverse.checkpoints import load_checkpoint, save_checkpoint


def _archive(tmp_path: Path) -> Path:
    (tmp_path / "a.nc").write_bytes(b"dataset bytes")
    (tmp_path / "fig.png").write_bytes(b"\x89PNG figure")
    files = {"datasets/a.nc": tmp_path / "a.nc", "figures/fig.png": tmp_path / "fig.png"}
    return build_archive(files, {"seed": 1}, tmp_path / "out" / "study.tar.gz")


def test_archive_round_trip(tmp_path: Path) -> None:
    manifest = verify_archive(_archive(tmp_path))
    assert set(manifest["files"]) == {
        "datasets/a.nc",
        "figures/fig.png",
        "config.yaml",
        "packages.lock",
    }
    with tarfile.open(tmp_path / "out" / "study.tar.gz") as tar:
        lock = tar.extractfile("packages.lock").read().decode()
    assert "torch==2.13.0" in lock


def _rewrite(path: Path, change: dict[str, bytes]) -> None:
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    members.update(change)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_any_altered_byte_fails_verification(tmp_path: Path) -> None:
    path = _archive(tmp_path)
    _rewrite(path, {"datasets/a.nc": b"dataset bytez"})
    with pytest.raises(ArchiveError, match="altered datasets/a.nc"):
        verify_archive(path)
    result = subprocess.run(
        [sys.executable, "-m", "iresnet_inverse.cli", "verify-archive", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "altered datasets/a.nc" in result.stderr
    _rewrite(path, {"extra.txt": b"x"})
    with pytest.raises(ArchiveError, match="unlisted extra.txt"):
        verify_archive(path)


class _RunsCode:
    def __reduce__(self) -> tuple:
        return (print, ("this pickle ran code",))


def test_checkpoint_refuses_code(tmp_path: Path) -> None:
    bad = tmp_path / "evil.pt"
    torch.save({"model": _RunsCode()}, bad)
    with pytest.raises(ArtifactError, match="evil.pt"):
        load_checkpoint(bad)
    good = save_checkpoint({"model": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "good.pt")
    assert load_checkpoint(good)["epoch"] == 3
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="corrupt.pt"):
        load_checkpoint(tmp_path / "corrupt.pt")
    with pytest.raises(ArtifactError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
