"""Archives of a study: its results, resolved config, package lock and a manifest with the
sha256 of every file; ``verify_archive`` detects any altered, missing or added byte, and
``restore_archive`` lays a verified archive back into a results directory."""

import hashlib
import io
import json
import os
import tarfile
import time
import unicodedata
import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import yaml

from iresnet_inverse.artifacts import atomic_write, git_commit
from iresnet_inverse.errors import ArchiveError, InputDataError
from iresnet_inverse.interrupted import RESUME_FILE  # an unfinished cell's checkpoint

MANIFEST = "manifest.json"
# The manifest's own sha256 (``sha256sum`` format), so that an edit of the manifest itself (a
# forged git_commit, say) is caught as an edit of any other member is.
MANIFEST_DIGEST = "manifest.sha256"
MAX_MANIFEST = 2**24  # bytes
# Members that describe the archive, not results: restore leaves them in the archive.
ABOUT_ARCHIVE = frozenset({MANIFEST, MANIFEST_DIGEST, "config.yaml", "packages.lock"})


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package_lock() -> str:
    """``name==version`` of every installed distribution, sorted."""
    names = {d.metadata["Name"]: d.version for d in metadata.distributions() if d.metadata["Name"]}
    return "".join(f"{n}=={v}\n" for n, v in sorted(names.items(), key=lambda kv: kv[0].lower()))


def default_name(config: Mapping[str, Any]) -> str:
    """Date plus a short hash of the resolved config."""
    digest = _sha256(json.dumps(config, sort_keys=True, default=str).encode())[:10]
    return f"{datetime.now(UTC):%Y%m%d}-{digest}"


def build_archive(
    files: Mapping[str, str | Path], config: Mapping[str, Any], out: str | Path
) -> Path:
    """Write a tar.gz with ``files`` (archive name -> path), config.yaml, packages.lock and the
    manifest; written to a temporary name first. Members keep their files' mtimes, which
    ``restore_archive`` sets back (Snakemake's order of inputs and outputs)."""
    clash = sorted(set(files) & ABOUT_ARCHIVE)
    if clash:
        raise ArchiveError(f"{', '.join(clash)}: reserved for the archive's own description")
    payload = {name: Path(path).read_bytes() for name, path in files.items()}
    mtimes = {name: Path(path).stat().st_mtime for name, path in files.items()}
    payload["config.yaml"] = yaml.safe_dump(dict(config), sort_keys=True).encode()
    payload["packages.lock"] = package_lock().encode()
    manifest = {
        "git_commit": git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {name: _sha256(data) for name, data in sorted(payload.items())},
    }
    payload[MANIFEST] = json.dumps(manifest, indent=2).encode()
    payload[MANIFEST_DIGEST] = f"{_sha256(payload[MANIFEST])}  {MANIFEST}\n".encode()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for name, data in sorted(payload.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtimes.get(name, time.time())  # a float: kept exactly in a pax header
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return out


def results_files(results: str | Path, checkpoints: bool = False) -> dict[str, Path]:
    """Every file of a results directory by its name relative to it (an unfinished study
    included): not earlier archives (``archive/``) nor temporary files (names starting with
    '.'); resume checkpoints of unfinished cells only with ``checkpoints``."""
    results = Path(results)
    if not results.is_dir():
        raise ArchiveError(f"{results}: not a results directory")
    files = {}
    for path in sorted(results.rglob("*")):
        name = path.relative_to(results).as_posix()
        hidden = any(part.startswith(".") for part in path.relative_to(results).parts)
        skipped = name.startswith("archive/") or hidden or path.is_symlink()
        if skipped or not path.is_file() or (path.name == RESUME_FILE and not checkpoints):
            continue
        files[name] = path
    return files


def archive_files(
    inputs: Iterable[str], results: str | None, checkpoints: bool = False
) -> dict[str, Path]:
    """What ``iresnet-inverse archive`` archives, by archive name: the given files (named by
    their path below ``results/``), or every file of a results directory."""
    inputs = list(inputs)
    if bool(inputs) == bool(results):
        raise InputDataError("give the files to archive or --results DIR, not both or neither")
    if checkpoints and not results:
        raise InputDataError("--checkpoints needs --results (checkpoints of unfinished cells)")
    if results:
        return results_files(results, checkpoints)
    files = {}
    for path in inputs:
        p = Path(path)
        parts = p.parts
        name = "/".join(parts[parts.index("results") + 1 :]) if "results" in parts else p.name
        files[name] = p
    return files


def verify_archive(path: str | Path, max_bytes: int = 64 * 2**30) -> dict[str, Any]:
    """Check every member against the manifest; return the manifest or raise ``ArchiveError``.

    Every member must be a regular file with a safe relative name (no absolute path, no ``..``),
    present once and listed in the manifest with its sha256. Links, devices and directories
    fail, as do duplicates. Members are hashed in chunks (memory stays small whatever a member
    unpacks to) and reading stops past ``max_bytes`` unpacked (a gzip bomb)."""
    path = Path(path)
    try:
        with tarfile.open(path, "r:gz") as tar:
            digests, problems = _member_digests(tar, max_bytes)
    except (OSError, tarfile.TarError, EOFError, zlib.error) as err:
        raise ArchiveError(f"{path}: not a readable archive ({err})") from err
    problems += _clashes(digests)
    if problems:
        raise ArchiveError(f"{path}: " + "; ".join(problems))
    raw = digests.pop(MANIFEST, None)
    manifest = _manifest(path, raw)
    if digests.pop(MANIFEST_DIGEST, None) != f"{_sha256(raw)}  {MANIFEST}\n".encode():
        raise ArchiveError(f"{path}: {MANIFEST} does not match {MANIFEST_DIGEST} (altered)")
    expected = manifest["files"]
    problems = [f"missing {n}" for n in sorted(set(expected) - set(digests))]
    problems += [f"unlisted {n}" for n in sorted(set(digests) - set(expected))]
    problems += [
        f"altered {n}" for n in sorted(set(expected) & set(digests)) if digests[n] != expected[n]
    ]
    if problems:
        raise ArchiveError(f"{path}: " + "; ".join(problems))
    return manifest


def _member_digests(
    tar: tarfile.TarFile, max_bytes: int
) -> tuple[dict[str, str | bytes], list[str]]:
    """sha256 of every member (the manifest's bytes themselves), and what is wrong with them."""
    digests: dict[str, str | bytes] = {}
    problems, unpacked = [], 0
    for member in tar:
        name = member.name
        if not member.isfile():
            problems.append(f"{name} is not a regular file ({_kind(member)})")
            continue
        parts = PurePosixPath(name).parts
        unsafe = PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name or not parts
        if unsafe or str(PurePosixPath(name)) != name:  # "./a", "a//b": aliases of "a", "a/b"
            problems.append(f"unsafe member name {name!r}")
            continue
        if name in digests:
            problems.append(f"duplicate member {name}")
            continue
        unpacked += member.size
        if unpacked > max_bytes:
            problems.append(f"more than {max_bytes} bytes unpacked; not read further")
            break
        if name in (MANIFEST, MANIFEST_DIGEST):
            digests[name] = tar.extractfile(member).read(MAX_MANIFEST + 1)
            continue
        digests[name] = _digest(tar.extractfile(member))
    return digests, problems


def _clashes(names: Iterable[str]) -> list[str]:
    """Names that would land on one path when extracted: equal but for case or Unicode
    normalization (one file on case-insensitive or normalizing file systems, e.g. macOS), or a
    file that is also another member's directory."""
    problems, folded = [], {}
    for name in sorted(names):
        first = folded.setdefault(unicodedata.normalize("NFC", name).casefold(), name)
        if first != name:
            problems.append(f"members {first!a} and {name!a} differ only in case or normalization")
    folders = {str(p) for name in names for p in PurePosixPath(name).parents if str(p) != "."}
    problems += [f"member {n} is also a directory of other members" for n in sorted(folders)
                 if n in names]  # fmt: skip
    return problems


def _digest(stream: BinaryIO, copy_to: BinaryIO | None = None) -> str:
    """sha256 of a stream read in 1 MB chunks (memory stays small), copied on the way."""
    digest = hashlib.sha256()
    while chunk := stream.read(2**20):
        digest.update(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return digest.hexdigest()


def _kind(member: tarfile.TarInfo) -> str:
    kinds = {
        "symbolic link": member.issym(),
        "hard link": member.islnk(),
        "directory": member.isdir(),
    }
    return next((k for k, is_kind in kinds.items() if is_kind), "device or special file")


def _manifest(path: Path, data: bytes | None) -> dict[str, Any]:
    """The manifest, if it is one: a JSON object whose ``files`` maps names to sha256 digests."""
    if data is None:
        raise ArchiveError(f"{path}: no {MANIFEST}")
    try:
        if len(data) > MAX_MANIFEST:
            raise ValueError(f"larger than {MAX_MANIFEST} bytes")
        manifest = json.loads(data)
        files = manifest["files"]
        if not isinstance(files, dict) or not all(
            isinstance(v, str) and len(v) == 64 for v in files.values()
        ):
            raise ValueError("'files' must map names to sha256 hex digests")
    except (ValueError, KeyError, TypeError) as err:
        raise ArchiveError(f"{path}: {MANIFEST} is not a manifest ({err})") from None
    return manifest


def restore_archive(path: str | Path, results: str | Path, force: bool = False) -> dict[str, int]:
    """Lay a verified archive's results back into ``results`` with their archived mtimes, so
    that Snakemake, which reruns a job only when an output is missing or an input is newer
    than an output (restored files carry no metadata for its other triggers), treats them as
    done. Refuses, before writing anything, a damaged or foreign archive and existing files
    that differ (unless ``force``). Returns counts of files written and already in place."""
    manifest = verify_archive(path)
    results = Path(results)
    expected = {n: d for n, d in manifest["files"].items() if n not in ABOUT_ARCHIVE}
    in_place, differing, blocked = _existing(results, expected)
    refused = blocked + ([] if force else differing)
    if refused:
        shown = ", ".join(refused[:3]) + (f" and {len(refused) - 3} more" if refused[3:] else "")
        what = "would overwrite" if not blocked else "cannot write (a directory or link in the way)"
        raise ArchiveError(
            f"{path}: {what} {len(refused)} file(s) in {results} ({shown}); nothing written"
            + ("" if blocked else " (--force overwrites them)")
        )
    now = time.time()  # archives written before mtimes were kept hold 0: one common time
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.name not in expected:
                continue
            target = results / member.name
            if member.name not in in_place:
                atomic_write(target, lambda tmp, m=member: _extract(tar, m, tmp, expected))
            mtime = member.mtime or now
            os.utime(target, (mtime, mtime))
    return {"written": len(expected) - len(in_place), "in_place": len(in_place)}


def _existing(results: Path, expected: Mapping[str, str]) -> tuple[set[str], list[str], list[str]]:
    """Members whose file is already there with the same bytes, those whose file differs, and
    those a restore cannot write (a directory or a link there, a file where a directory goes)."""
    in_place, differing, blocked = set(), [], []
    for name, digest in sorted(expected.items()):
        target = results / name
        if any((results / p).is_file() for p in PurePosixPath(name).parents) or (
            target.is_symlink() or (target.exists() and not target.is_file())
        ):
            blocked.append(name)
        elif target.exists():
            with target.open("rb") as stream:
                same = _digest(stream) == digest
            (in_place.add if same else differing.append)(name)
    return in_place, differing, blocked


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, tmp: str, expected: dict) -> None:
    """Copy a member to ``tmp``, checking its sha256 again (the archive may have changed
    since it was verified)."""
    with open(tmp, "wb") as out:
        digest = _digest(tar.extractfile(member), out)
    if digest != expected[member.name]:
        raise ArchiveError(f"{member.name}: changed since the archive was verified")
