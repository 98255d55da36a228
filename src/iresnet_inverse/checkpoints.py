"""Checkpoints: ``torch.save`` dicts of tensors and plain values, loaded with
``weights_only=True`` (a pickle that would run code is refused), written atomically."""

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from iresnet_inverse.artifacts import ArtifactError


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; a missing, corrupt or code-carrying file names itself."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: checkpoint not found (run the training rule that makes it)")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise ArtifactError(f"{path}: not a loadable checkpoint ({err})") from err
    if not isinstance(payload, dict):
        raise ArtifactError(f"{path}: checkpoint is not a dictionary")
    return payload
