"""Archives verify byte for byte and restore only when they do; checkpoints refuse pickles
that would run code."""

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path

import pytest
import torch

from iresnet_inverse import training
from iresnet_inverse.artifacts import ArtifactError
from iresnet_inverse.checkpoints import load_checkpoint, save_checkpoint
from iresnet_inverse.stages.archive import (
    RESUME_FILE,
    ArchiveError,
    build_archive,
    restore_archive,
    results_files,
    verify_archive,
)


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
    with pytest.raises(ArtifactError, match="evil.pt") as refused:
        load_checkpoint(bad)
    assert "weights_only=False" not in str(refused.value)  # never advise running its code
    assert "delete it" in str(refused.value)
    good = save_checkpoint({"model": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "good.pt")
    assert load_checkpoint(good)["epoch"] == 3
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="corrupt.pt"):
        load_checkpoint(tmp_path / "corrupt.pt")
    with pytest.raises(ArtifactError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def _tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _manifest_for(files: dict[str, bytes]) -> list[tuple[tarfile.TarInfo, bytes]]:
    """manifest.json listing ``files`` and manifest.sha256 with its own digest."""
    return _manifest_members({n: hashlib.sha256(d).hexdigest() for n, d in files.items()})


def _manifest_members(digests: dict[str, str]) -> list[tuple[tarfile.TarInfo, bytes]]:
    manifest = json.dumps({"files": digests}).encode()
    own = f"{hashlib.sha256(manifest).hexdigest()}  manifest.json\n".encode()
    return [_file("manifest.json", manifest), _file("manifest.sha256", own)]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (_special("passwd", tarfile.SYMTYPE, "/etc/passwd"), "passwd is not a regular file"),
        (_special("hard", tarfile.LNKTYPE, "a.nc"), "hard is not a regular file (hard link)"),
        (_special("tty", tarfile.CHRTYPE), "tty is not a regular file (device or special"),
        (_special("dir", tarfile.DIRTYPE), "dir is not a regular file (directory)"),
        (_file("/etc/cron.d/x", b"x"), "unsafe member name '/etc/cron.d/x'"),
        (_file("../escape.nc", b"x"), "unsafe member name '../escape.nc'"),
        (_file("a.nc", b"data"), "duplicate member a.nc"),
    ],
)
def test_only_regular_files_listed_once_with_safe_names_pass(
    tmp_path: Path, extra: tuple, problem: str
) -> None:
    files = {"a.nc": b"data"}
    listed = {**files, extra[0].name: b"x"} if extra[1] is not None else files
    path = _tar_with(
        tmp_path / "t.tar.gz",
        [
            _file("a.nc", b"data"),
            extra,
            *_manifest_for(listed if "duplicate" not in problem else files),
        ],
    )
    with pytest.raises(ArchiveError, match=re.escape(problem)):
        verify_archive(path)


@pytest.mark.parametrize("alias", ["./a.nc", "sub//b.nc", "sub/./b.nc"])
def test_two_names_for_one_path_are_refused(tmp_path: Path, alias: str) -> None:
    """ "a.nc" and "./a.nc" would extract to one file: the second is an unsafe name."""
    files = {"a.nc": b"data", "sub/b.nc": b"more", alias: b"other"}
    path = _tar_with(
        tmp_path / "t.tar.gz", [*(_file(n, d) for n, d in files.items()), *_manifest_for(files)]
    )
    with pytest.raises(ArchiveError, match=re.escape(f"unsafe member name {alias!r}")):
        verify_archive(path)


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (["a.nc", "A.nc"], "members 'A.nc' and 'a.nc' differ only in case"),
        (["\u00e9.csv", "e\u0301.csv"], "members 'e\\u0301.csv' and '\\xe9.csv' differ only"),
        (["d", "d/x.nc"], "member d is also a directory of other members"),
    ],
)
def test_members_that_land_on_one_path_are_refused(
    tmp_path: Path, names: list[str], problem: str
) -> None:
    """Safe names each, but one path when extracted (on a case-insensitive file system, or a
    file where a directory must go)."""
    files = {name: name.encode() for name in names}
    path = _tar_with(
        tmp_path / "t.tar.gz", [*(_file(n, d) for n, d in files.items()), *_manifest_for(files)]
    )
    with pytest.raises(ArchiveError, match=re.escape(problem)):
        verify_archive(path)


def test_an_edited_manifest_is_caught(tmp_path: Path) -> None:
    """A forged git_commit changes no listed file, but the manifest's own digest."""
    path = _archive(tmp_path)
    with tarfile.open(path) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    manifest["git_commit"] = "0" * 40
    _rewrite(path, {"manifest.json": json.dumps(manifest, indent=2).encode()})
    with pytest.raises(ArchiveError, match="manifest.json does not match manifest.sha256"):
        verify_archive(path)
    _rewrite(path, {"manifest.sha256": b""})
    with pytest.raises(ArchiveError, match="does not match manifest.sha256"):
        verify_archive(path)


class _Zeros(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        buffer[:] = bytes(len(buffer))
        return len(buffer)


def test_a_gzip_bomb_is_read_in_bounded_memory_and_stopped(tmp_path: Path) -> None:
    size = 256 * 2**20  # 256 MB of zeros: about 250 kB compressed
    info = tarfile.TarInfo("zeros.bin")
    info.size = size
    digest = hashlib.sha256(bytes(size)).hexdigest()
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(info, io.BufferedReader(_Zeros()))
        for member, data in _manifest_members({"zeros.bin": digest}):
            tar.addfile(member, io.BytesIO(data))
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    verify_archive(path)  # listed with its digest: passes, reading chunk by chunk
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20  # a quarter of the member: never read whole
    with pytest.raises(ArchiveError, match="more than 1048576 bytes unpacked"):
        verify_archive(path, max_bytes=2**20)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b"{}", "not a manifest ('files')"),
        (b"[1, 2]", "not a manifest"),
        (b"not json", "not a manifest"),
        (b'{"files": ["a.nc"]}', "'files' must map names to sha256 hex digests"),
    ],
)
def test_a_malformed_manifest_is_one_clear_error(
    tmp_path: Path, manifest: bytes, message: str
) -> None:
    path = _tar_with(tmp_path / "m.tar.gz", [_file("manifest.json", manifest)])
    with pytest.raises(ArchiveError, match=re.escape(message)):
        verify_archive(path)
    result = subprocess.run(
        [sys.executable, "-m", "iresnet_inverse.cli", "verify-archive", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "iresnet_inverse.cli", *args], capture_output=True, text=True
    )


def _study(tmp_path: Path) -> Path:
    """A small results directory: an older input, a newer output, an unfinished cell's
    checkpoint, an earlier archive and a temporary file."""
    results = tmp_path / "study" / "results"
    files = {
        "data/images.nc": b"images",
        "train/cell/model.pt": b"weights",
        "train/open/resume.pt": b"checkpoint",
        "archive/old.tar.gz": b"old archive",
        "datasets/.methods.csv.tmp": b"half written",
    }
    for i, (name, data) in enumerate(files.items()):
        (results / name).parent.mkdir(parents=True, exist_ok=True)
        (results / name).write_bytes(data)
        os.utime(results / name, (1_700_000_000.25 + i, 1_700_000_000.25 + i))
    return results


def test_results_files_leave_out_archives_temporaries_and_unasked_checkpoints(
    tmp_path: Path,
) -> None:
    assert RESUME_FILE == training.RESUME_FILE  # the name training writes
    results = _study(tmp_path)
    assert set(results_files(results)) == {"data/images.nc", "train/cell/model.pt"}
    assert set(results_files(results, checkpoints=True)) == {
        "data/images.nc",
        "train/cell/model.pt",
        "train/open/resume.pt",
    }


def test_restore_lays_results_back_with_their_mtimes_and_refuses_to_overwrite(
    tmp_path: Path,
) -> None:
    source = _study(tmp_path)
    archive = tmp_path / "study.tar.gz"
    made = _cli("archive", "--results", str(source), "--checkpoints", "--out", str(archive))
    assert made.returncode == 0, made.stderr
    target = tmp_path / "elsewhere" / "results"
    result = _cli("restore", str(archive), "--results", str(target))
    assert result.returncode == 0, result.stderr
    restored = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert restored == ["data/images.nc", "train/cell/model.pt", "train/open/resume.pt"]
    for name in restored:  # Snakemake compares mtimes: the source's order is kept exactly
        assert (target / name).read_bytes() == (source / name).read_bytes()
        assert (target / name).stat().st_mtime_ns == (source / name).stat().st_mtime_ns, name
    assert restore_archive(archive, target) == {"written": 0, "in_place": 3}

    (target / "train/cell/model.pt").write_bytes(b"other weights")
    (target / "data/images.nc").unlink()
    refused = _cli("restore", str(archive), "--results", str(target))
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1
    assert "would overwrite 1 file(s)" in refused.stderr
    assert "train/cell/model.pt" in refused.stderr and "--force" in refused.stderr
    assert not (target / "data/images.nc").exists()  # nothing written
    assert (target / "train/cell/model.pt").read_bytes() == b"other weights"
    assert restore_archive(archive, target, force=True) == {"written": 2, "in_place": 1}
    assert (target / "train/cell/model.pt").read_bytes() == b"weights"
    (target / "data/images.nc").unlink()
    (target / "data/images.nc").mkdir()  # a directory in the way: refused even with --force
    with pytest.raises(ArchiveError, match=r"cannot write .* \(data/images.nc\); nothing"):
        restore_archive(archive, target, force=True)


def test_a_damaged_or_foreign_archive_is_refused_and_nothing_written(tmp_path: Path) -> None:
    damaged = _archive(tmp_path)
    _rewrite(damaged, {"datasets/a.nc": b"dataset bytez"})
    foreign = _tar_with(tmp_path / "foreign.tar.gz", [_file("datasets/a.nc", b"data")])
    for path, problem in ((damaged, "altered datasets/a.nc"), (foreign, "no manifest.json")):
        target = tmp_path / "restored" / "results"
        result = _cli("restore", str(path), "--results", str(target))
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith("iresnet-inverse restore: error: ")
        assert problem in result.stderr and len(result.stderr.splitlines()) == 1
        assert not (tmp_path / "restored").exists()
