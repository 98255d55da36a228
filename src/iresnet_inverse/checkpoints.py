"""Checkpoints: ``torch.save`` dicts of tensors and plain values, loaded with
``weights_only=True`` (a pickle that would run code is refused), written atomically."""

from pathlib import Path
from typing import Any

import torch

from iresnet_inverse.artifacts import ArtifactError, atomic_write


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` atomically (``artifacts.atomic_write``)."""
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


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
