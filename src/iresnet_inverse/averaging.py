"""An exponential moving average of a net's weights (``train.ema``): the averaged net is the one
training validates, keeps and saves, while the optimizer steps the live one.

Averaging iterates lowers the noise of the last steps at a constant rate without decaying it.
For an iResNet the averaged weights get their own Lipschitz refresh before every use, so its
certificate is that of the weights it holds (the projection inside the forward pass is a
function of the weights; the average of projected layers is not needed).
"""

import copy
from typing import Any

import torch


class WeightAverage:
    """Polyak averaging with the usual start-up: decay min(d, (1 + t) / (10 + t)) at step t, so
    that the first steps are not averaged with the random start."""

    def __init__(self, net: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.net = copy.deepcopy(net)
        self.net.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        """Move the average towards the live net's parameters after an optimizer step."""
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for average, live in zip(self.net.parameters(), net.parameters(), strict=True):
            average.lerp_(live.detach(), 1 - decay)

    def averaged(self) -> torch.nn.Module:
        """The averaged net, its Lipschitz ratios refreshed for the weights it holds."""
        self.net.refresh()
        self.net.eval()
        return self.net

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "model": self.net.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.net.load_state_dict(state["model"])
