"""The model protocol: what training, evaluation, the probes and the tools ask of a model, so
that none of them branches on its kind. Every kind (the iResNet, the learned baselines, TV)
derives from ``Model``; the defaults are those of a feed-forward map from data to image."""

from collections.abc import Callable
from typing import Any

import torch

from iresnet_inverse.nets.solvers import SolverConfig

ImageMap = Callable[[torch.Tensor], torch.Tensor]


class Model(torch.nn.Module):
    """A reconstruction model. Subclasses override what their kind does differently."""

    #: Trained by gradient steps (TV is not: its one weight is searched on the validation split).
    trained_by_gradient: bool = True
    #: Learns a forward map phi ~ F that it inverts (the iResNet), rather than data -> image.
    learns_forward_map: bool = False

    def invert(self, data: torch.Tensor, solver: SolverConfig) -> tuple[torch.Tensor, Any]:
        """The reconstruction from the objective's reconstruction input, and the solver's
        statistics (None for a feed-forward model: it maps data to the image directly)."""
        return self(data), None

    def refresh(self) -> None:
        """Bring size-dependent Lipschitz bounds up to date (before training, after each
        epoch, before certifying)."""

    def certificate(self) -> list[float]:
        """Per block, a Lipschitz bound that holds at every image size ([] without blocks)."""
        return []

    def after_step(self, rescale_weights: bool) -> None:
        """Called after every optimizer step (an iResNet may pull its raw weights back inside
        their bounds)."""

    def compile_residuals(self, backend: str) -> None:
        """torch.compile the solver's inner loop, where a model has one (``train.compile``)."""

    def lifted_core(self) -> tuple[ImageMap, int] | None:
        """(x -> Phi(c x), M) for a model that acts on M stacked copies of the image, else None."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the model is, for logs and datasets: its class and its trainable parameters."""
        return {"kind": type(self).__name__, "parameters": count_parameters(self)}


def count_parameters(module: torch.nn.Module) -> int:
    """Trainable parameters (buffers such as power vectors excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
