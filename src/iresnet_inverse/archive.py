"""Archives of a study: datasets, figures, resolved config, package lock and a manifest with the
sha256 of every file; ``verify_archive`` detects any altered, missing or added byte."""

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from iresnet_inverse.artifacts import git_commit

MANIFEST = "manifest.json"


class ArchiveError(ValueError):
    """An archive does not match its manifest."""


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
    manifest; written to a temporary name first."""
    payload = {name: Path(path).read_bytes() for name, path in files.items()}
    payload["config.yaml"] = yaml.safe_dump(dict(config), sort_keys=True).encode()
    payload["packages.lock"] = package_lock().encode()
    manifest = {
        "git_commit": git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {name: _sha256(data) for name, data in sorted(payload.items())},
    }
    payload[MANIFEST] = json.dumps(manifest, indent=2).encode()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for name, data in sorted(payload.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return out


def verify_archive(path: str | Path) -> dict[str, Any]:
    """Check every file against the manifest; return the manifest or raise ``ArchiveError``."""
    path = Path(path)
    try:
        with tarfile.open(path, "r:gz") as tar:
            contents = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    except (OSError, tarfile.TarError, EOFError) as err:
        raise ArchiveError(f"{path}: not a readable archive ({err})") from err
    if MANIFEST not in contents:
        raise ArchiveError(f"{path}: no {MANIFEST}")
    manifest = json.loads(contents.pop(MANIFEST))
    expected = manifest["files"]
    problems = [f"missing {n}" for n in sorted(set(expected) - set(contents))]
    problems += [f"unlisted {n}" for n in sorted(set(contents) - set(expected))]
    problems += [
        f"altered {n}"
        for n in sorted(set(expected) & set(contents))
        if _sha256(contents[n]) != expected[n]
    ]
    if problems:
        raise ArchiveError(f"{path}: " + "; ".join(problems))
    return manifest
