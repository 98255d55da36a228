"""Learned reconstruction baselines: U-Net, ConvResNet and DiffNet (paper 002, Sec. 4.2).

Each maps data z directly to a reconstruction x (trained supervised on (z, x) pairs), in
contrast to an iResNet, which learns the forward operator and is inverted. All start close to
the identity map (zero-initialized last layer), so training begins at the data's quality.
"""

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from iresnet_inverse.archs import BASELINES  # noqa: F401  (re-exported)
from iresnet_inverse.nets.model import Model

NETWORK_KINDS = ("unet", "convresnet", "diffnet")


def _zero(conv: torch.nn.Conv2d) -> torch.nn.Conv2d:
    torch.nn.init.zeros_(conv.weight)
    torch.nn.init.zeros_(conv.bias)
    return conv


class UNet(Model):
    """Ronneberger's U-Net, learning the residual x - z: two convolutions per scale, max-pool
    down, transposed 2x2 convolution up, skip connections by concatenation."""

    def __init__(self, scales: int = 5, width: int = 16, kernel_size: int = 5) -> None:
        super().__init__()
        pad = kernel_size // 2
        widths = [width * 2**s for s in range(scales)]

        def double(c_in: int, c_out: int) -> torch.nn.Sequential:
            return torch.nn.Sequential(
                torch.nn.Conv2d(c_in, c_out, kernel_size, padding=pad),
                torch.nn.ReLU(),
                torch.nn.Conv2d(c_out, c_out, kernel_size, padding=pad),
                torch.nn.ReLU(),
            )

        self.down = torch.nn.ModuleList(
            double(c_in, c) for c_in, c in zip([1, *widths[:-1]], widths, strict=True)
        )
        self.up = torch.nn.ModuleList(
            torch.nn.ConvTranspose2d(widths[s + 1], widths[s], 2, stride=2)
            for s in reversed(range(scales - 1))
        )
        self.merge = torch.nn.ModuleList(
            double(2 * widths[s], widths[s]) for s in reversed(range(scales - 1))
        )
        self.out = _zero(torch.nn.Conv2d(width, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        size = z.shape[-2:]
        factor = 2 ** (len(self.down) - 1)
        padded = [(-s) % factor for s in size]
        h = F.pad(z, (0, padded[1], 0, padded[0]), mode="reflect") if any(padded) else z
        skips = []
        for k, level in enumerate(self.down):
            h = level(h if k == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            h = merge(torch.cat([up(h), skip], dim=1))
        return z + self.out(h)[..., : size[0], : size[1]]


class ConvResNet(Model):
    """The iResNet architecture without Lipschitz constraints (residuals conv-ReLU-1x1 conv) and
    with learnable 1x1 convolutions into and out of the channel space instead of lifting."""

    def __init__(
        self, blocks: int = 20, channels: int = 64, hidden: int = 128, kernel_size: int = 5
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv_in = torch.nn.Conv2d(1, channels, 1)
        self.residuals = torch.nn.ModuleList(
            torch.nn.Sequential(
                torch.nn.Conv2d(channels, hidden, kernel_size, padding=pad),
                torch.nn.ReLU(),
                _zero(torch.nn.Conv2d(hidden, channels, 1)),
            )
            for _ in range(blocks)
        )
        self.conv_out = torch.nn.Conv2d(channels, 1, 1)
        with torch.no_grad():  # start at the identity: out(in(z)) = z
            self.conv_in.weight.fill_(1.0)
            self.conv_in.bias.zero_()
            self.conv_out.weight.fill_(1.0 / channels)
            self.conv_out.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for residual in self.residuals:
            h = h + residual(h)
        return self.conv_out(h)


class DiffNet(Model):
    """Learned nonlinear diffusion, as in Arridge & Hauptmann 2020 (their ``DiffNet_nonlin.py``):
    per step a CNN (``layers`` 3x3 convolutions with ``hidden`` channels and ReLU, then a 3x3
    convolution to 5 channels) reads the current image and predicts a five-point stencil per
    pixel, coefficients k_0 for the centre and k_n for the north, south, west and east
    neighbours; an explicit step u + tau * (sum_n k_n u_n - k_0 u) follows, with a learnable
    step size tau per step (initially 0.2). The stencil is free (a non-stationary filter): with
    k_0 = sum_n k_n it is a diffusion step with link conductivities k_n, which may be negative
    (backward diffusion, sharpening). Neighbours across the border are the pixel itself."""

    def __init__(self, steps: int = 5, hidden: int = 32, layers: int = 3) -> None:
        super().__init__()

        def estimator() -> torch.nn.Sequential:
            body: list[torch.nn.Module] = []
            for c_in in [1] + [hidden] * (layers - 1):
                body += [
                    torch.nn.Conv2d(c_in, hidden, 3, padding=1, padding_mode="replicate"),
                    torch.nn.ReLU(),
                ]
            last = torch.nn.Conv2d(hidden, 5, 3, padding=1, padding_mode="replicate")
            return torch.nn.Sequential(*body, _zero(last))

        self.nets = torch.nn.ModuleList(estimator() for _ in range(steps))
        self.step_sizes = torch.nn.Parameter(torch.full((steps,), 0.2))

    @staticmethod
    def neighbours(u: torch.Tensor) -> torch.Tensor:
        """The north, south, west and east neighbours u_n (the pixel itself across the border)."""
        p = F.pad(u, (1, 1, 1, 1), mode="replicate")
        return torch.cat(
            [p[..., :-2, 1:-1], p[..., 2:, 1:-1], p[..., 1:-1, :-2], p[..., 1:-1, 2:]], dim=1
        )

    @classmethod
    def neighbour_differences(cls, u: torch.Tensor) -> torch.Tensor:
        """u_n - u for the four neighbours (zero across the border)."""
        return cls.neighbours(u) - u

    @classmethod
    def stencil_step(cls, u: torch.Tensor, k: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """u + tau * (sum_n k_n u_n - k_0 u) for coefficients k = (k_0, k_N, k_S, k_W, k_E)."""
        return u + tau * ((k[:, 1:] * cls.neighbours(u)).sum(dim=1, keepdim=True) - k[:, :1] * u)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        u = z
        for net, tau in zip(self.nets, self.step_sizes, strict=True):
            u = self.stencil_step(u, net(u), tau)
        return u


def build_baseline(spec: Mapping[str, Any]) -> torch.nn.Module:
    """A learned baseline network from its spec (``kind`` unet, convresnet or diffnet)."""
    kind = spec["kind"]
    if kind == "unet":
        return UNet(spec["scales"], spec["width"], spec["kernel_size"])
    if kind == "convresnet":
        return ConvResNet(spec["blocks"], spec["channels"], spec["hidden"], spec["kernel_size"])
    if kind == "diffnet":
        return DiffNet(spec["steps"], spec["hidden"])
    raise ValueError(f"{kind!r} is not a learned baseline; valid: {', '.join(NETWORK_KINDS)}")
