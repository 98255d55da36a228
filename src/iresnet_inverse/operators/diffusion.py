"""Perona-Malik diffusion du/dt = div(g(|grad u|) grad u), g(s) = 1 / (1 + s^2 / lambda^2).

Discretization (Perona & Malik 1990, four-neighbour scheme): the flux across each edge
between neighbouring pixels is g(|d|) d with d the difference across that edge, and the
update is the sum of the fluxes into a pixel. Edges across the image border carry no flux
(zero Neumann), so the scheme conserves mass exactly. Time stepping: Heun's method, which
equals the mean of u and two explicit Euler steps; with 4 dt max(g) <= 1 every Euler step
is a convex combination of neighbours, so a maximum principle holds.
"""

import torch
import torch.nn.functional as F

from iresnet_inverse.errors import ConfigError


class PeronaMalik(torch.nn.Module):
    """F(u0) = u(T) after ``steps`` Heun steps of size ``dt`` (paper: lambda 0.1, 5 x 0.15)."""

    def __init__(self, contrast: float = 0.1, steps: int = 5, dt: float = 0.15) -> None:
        super().__init__()
        if contrast <= 0 or steps < 1 or not 0 < dt <= 0.25:
            raise ConfigError(
                "diffusion needs contrast > 0, steps >= 1 and 0 < dt <= 1/4 (above 1/4 the "
                "maximum principle fails and data leave [0, 1])"
            )
        self.contrast = contrast
        self.steps = steps
        self.dt = dt

    def _conductivity(self, d: torch.Tensor) -> torch.Tensor:
        return 1.0 / (1.0 + (d / self.contrast) ** 2)

    def rate(self, u: torch.Tensor) -> torch.Tensor:
        """The right-hand side div(g(|grad u|) grad u) on the pixel grid."""
        dx = u[..., :, 1:] - u[..., :, :-1]
        dy = u[..., 1:, :] - u[..., :-1, :]
        fx = self._conductivity(dx) * dx
        fy = self._conductivity(dy) * dy
        return (
            F.pad(fx, (0, 1))
            - F.pad(fx, (1, 0))
            + F.pad(fy, (0, 0, 0, 1))
            - F.pad(fy, (0, 0, 1, 0))
        )

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        for _ in range(self.steps):
            k1 = self.rate(u)
            k2 = self.rate(u + self.dt * k1)
            u = u + 0.5 * self.dt * (k1 + k2)
        return u

    def extra_repr(self) -> str:
        return f"contrast={self.contrast}, steps={self.steps}, dt={self.dt}, boundary=zero-Neumann"
