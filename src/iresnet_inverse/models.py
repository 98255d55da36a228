"""Trained models on disk: how a cell's network is built, saved to ``model.pt`` and loaded.

A model file holds the state dict, the architecture spec and a ``ModelMeta`` record: the cell,
the operator's parameters and the solver travel with the weights, so that a model can be applied
to new data without the config that trained it (``iresnet-inverse reconstruct``). Evaluation,
the probes and the user tools load through ``load_trained_cell``.
"""

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from iresnet_inverse import objectives
from iresnet_inverse.cells import ImageCell, format_value
from iresnet_inverse.checkpoints import load_checkpoint, save_checkpoint
from iresnet_inverse.config import is_invertible
from iresnet_inverse.errors import ArtifactError
from iresnet_inverse.nets.baselines import build_baseline
from iresnet_inverse.nets.iresnet import InverseResult, build_iresnet
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.operators import get_operator
from iresnet_inverse.tv.model import TotalVariation

MODEL_FILE = "model.pt"


def snapshot_file(train_dir: str | Path, epoch: int) -> Path:
    """Where a cell's net after ``epoch`` epochs is kept (``train.snapshots``)."""
    return Path(train_dir) / "snapshots" / f"epoch~{epoch}.pt"


@dataclass(frozen=True)
class ModelMeta:
    """What a model needs besides its weights: its cell, the Lipschitz parameter, the training
    solver, the operator's parameters, the training patch size and (iResNets) the per-block
    Lipschitz certificate at every image size."""

    cell: dict[str, Any]
    lipschitz: float
    solver: dict[str, Any]
    operator_params: dict[str, Any]
    patch_size: int | None = None
    certificate: list[float] = field(default_factory=list)

    def operator(self) -> torch.nn.Module:
        """The cell's forward operator, with the parameters it was trained with."""
        return get_operator(self.cell["operator"], **self.operator_params)


@dataclass
class TrainedCell:
    """A loaded model ready to apply: the net (eval mode), its record and its operator."""

    net: torch.nn.Module
    meta: ModelMeta
    operator: torch.nn.Module

    @property
    def cell(self) -> dict[str, Any]:
        return self.meta.cell


def build_network(spec: dict[str, Any], meta: ModelMeta) -> torch.nn.Module:
    """The untrained network of a cell: an iResNet, a learned baseline, or TV (whose one
    "weight" is alpha)."""
    if is_invertible(spec):
        return build_iresnet(spec, meta.lipschitz, SolverConfig(**meta.solver))
    if spec["kind"] == "tv":
        return TotalVariation(meta.operator(), 0.0, spec["tol"], spec["max_iter"])
    return build_baseline(spec)


def save_model(
    net: torch.nn.Module, spec: dict[str, Any], meta: ModelMeta, path: str | Path
) -> Path:
    """Write ``model.pt`` atomically (state dict, spec and meta as JSON)."""
    payload = {
        "model": net.state_dict(),
        "spec": json.dumps(dict(spec)),
        "meta": json.dumps(asdict(meta)),
    }
    return save_checkpoint(payload, path)


def load_model(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, ModelMeta]:
    """A trained network (eval mode, on ``device``) and its record from ``model.pt``."""
    payload = load_checkpoint(path)
    try:
        spec, meta = json.loads(payload["spec"]), ModelMeta(**json.loads(payload["meta"]))
        net = build_network(spec, meta)
        net.load_state_dict(payload["model"])
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise ArtifactError(f"{path}: not an iresnet-inverse model ({err})") from err
    return net.to(device).eval(), meta


def load_trained_cell(
    path: str | Path,
    device: torch.device | str = "cpu",
    expect: Mapping[str, Any] | None = None,
    ignore: tuple[str, ...] = (),
) -> TrainedCell:
    """A model with its operator, both on ``device``: what evaluation, probes and tools use.
    With ``expect`` (a cell), the model must have been trained for that cell (keys in ``ignore``
    aside): a model copied over another cell's is refused, naming both."""
    net, meta = load_model(path, device)
    if expect is not None:
        held, wanted = ImageCell.of(meta.cell), ImageCell.of(expect)
        if any(format_value(held[k]) != format_value(wanted[k]) for k in held if k not in ignore):
            raise ArtifactError(f"{path}: a model of {held.dir}, but this job is {wanted.dir}")
    return TrainedCell(net, meta, meta.operator().to(device).eval())


def reconstruct(
    net: torch.nn.Module,
    objective: str,
    operator: torch.nn.Module,
    z: torch.Tensor,
    solver: SolverConfig,
    batch_size: int = 64,
) -> tuple[torch.Tensor, InverseResult | None]:
    """phi^-1 of the objective's reconstruction input (z, or F*z for divergence), in batches,
    without gradients. Returns the reconstructions and the concatenated solver statistics.
    The model's ``invert`` does the work (a feed-forward model maps its input to x directly,
    with no statistics)."""
    outs, results = [], []
    for chunk in torch.split(z, batch_size):
        with torch.no_grad():
            inp = objectives.reconstruction_input(objective, operator, chunk)
            x, result = net.invert(inp, solver)
        outs.append(x)
        results.append(result)
    if results[0] is None:  # a feed-forward model: no solver statistics
        return torch.cat(outs), None
    merged = InverseResult(
        torch.cat(outs),
        torch.cat([r.iterations for r in results]),
        torch.cat([r.residual for r in results]),
        torch.cat([r.converged for r in results]),
        [],
    )
    return merged.x, merged
