"""Checkpoints: ``torch.save`` dicts of tensors and plain values, loaded with
``weights_only=True`` (a pickle that would run code is refused), written atomically."""

from pathlib import Path
from typing import Any

import torch

from iresnet_inverse.artifacts import atomic_write
from iresnet_inverse.errors import ArtifactError


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` atomically (``artifacts.atomic_write``)."""
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely, its tensors on the CPU; a missing, corrupt or code-carrying
    file names itself. Callers move what they use (``load_state_dict`` copies onto the
    parameters' device), so a checkpoint written on one device loads on any other and a
    generator state stays the CPU ByteTensor that ``Generator.set_state`` takes."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: checkpoint not found (run the training rule that makes it)")
    try:
        with path.open("rb"):  # unreadable (permissions): the file may be fine, say so
            pass
    except OSError as err:
        raise ArtifactError(f"{path}: cannot read the checkpoint ({err.strerror})") from err
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        # torch's message suggests weights_only=False, i.e. running the file's code: never.
        raise ArtifactError(
            f"{path}: not a loadable checkpoint ({type(err).__name__}: corrupt, truncated, or a "
            "pickle that would run code, which is never loaded); delete it and rerun the rule "
            "that makes it"
        ) from err
    if not isinstance(payload, dict):
        raise ArtifactError(f"{path}: checkpoint is not a dictionary")
    return payload
