"""Invertible residual networks phi = phi_N o ... o phi_1, phi_i = Id - f_i, Lip(f_i) <= L_i < 1.

Each block is inverted by solving x = z + f_i(x) to a relative tolerance (Banach fixed point;
Anderson acceleration by default). With gradients enabled the inverse is differentiated
implicitly (``implicit.py``). Image networks lift X to X^M (the input copied to M channels,
the output the channel mean, paper Sec. 4.1); the core Phi is invertible on X^M (not
phi = mean o Phi o copy on X), and the inverse used for reconstruction is mean o Phi^-1 o copy,
which inverts phi on the data because training stacks the targets (``objectives.py``).
"""

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from iresnet_inverse.archs import ARCHITECTURES
from iresnet_inverse.nets.implicit import implicit_fixed_point
from iresnet_inverse.nets.kernels import (
    as_given,
    compiled,
    conv_residual,
    conv_solve_layout,
    dense_residual,
)
from iresnet_inverse.nets.lipschitz import (
    LipschitzBudget,
    LipschitzConv2d,
    LipschitzLinear,
    block_lipschitz,
)
from iresnet_inverse.nets.model import Model
from iresnet_inverse.nets.preconditioner import PRECONDITIONERS
from iresnet_inverse.nets.solvers import (
    InverseResult,
    Map,
    SolverConfig,
    SolverResult,
    channels_last,
    solve,
)

# Output convolutions start at N(0, (gain / sqrt(hidden))^2), not at zero: with a zero start every
# lifted channel gets the same gradient, the symmetry between channels is never broken and an
# M-channel net stays a 1-channel net (all states on the diagonal). The paper does not prescribe
# a zero start; 0.2 gives std 0.05 for 16 hidden channels, f_i small against the identity.
OUT_INIT_GAIN = 0.2

# Pixels per axis between the pre-activations that estimate each hidden channel's activity for
# the Fourier preconditioner: the estimate costs 1/16 of an evaluation.
ACTIVITY_STRIDE = 4


class ConvResidual(torch.nn.Module):
    """f(x) = conv1x1(softshrink(conv_k(x))) with Lip(f) <= bound (sqrt(bound) per conv);
    ``symbol_norm`` as in ``LipschitzConv2d``."""

    kernel = staticmethod(conv_residual)  # ``IResNet.compile_residuals`` replaces it

    def __init__(
        self,
        channels: int,
        hidden: int,
        kernel_size: int,
        bound: float,
        out_init_gain: float = OUT_INIT_GAIN,
        symbol_norm: str | None = None,
    ) -> None:
        super().__init__()
        per_layer = math.sqrt(bound)
        self.conv_in = LipschitzConv2d(
            channels, hidden, kernel_size, per_layer, symbol_norm=symbol_norm
        )
        self.conv_out = LipschitzConv2d(hidden, channels, 1, per_layer)
        self.threshold = torch.nn.Parameter(torch.tensor(0.01))
        self.padding = kernel_size // 2
        with torch.no_grad():  # f small at the start; gain 0: phi begins as the identity
            self.conv_out.weight.normal_(0.0, out_init_gain / math.sqrt(hidden))
            self.conv_out.bias.zero_()

    def weights(self) -> tuple[torch.Tensor, ...]:
        """The effective (projected) parameters; computed once per network call."""
        return (
            self.conv_in.effective_weight(),
            self.conv_in.bias,
            self.threshold.abs(),
            self.conv_out.effective_weight(),
            self.conv_out.bias,
        )

    def call(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.kernel(x, self.padding, *weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.call(x, self.weights())

    for_solve = staticmethod(conv_solve_layout)  # channels-last on the CPU (kernels.py)

    @torch.no_grad()
    def preconditioner(self, z: torch.Tensor, weights: Sequence[torch.Tensor], kind: str) -> Map:
        """The Fourier preconditioner ``kind`` of x = z + f(x) (``preconditioner.py``), its
        activities estimated from the pre-activations at z on every ``ACTIVITY_STRIDE``-th pixel."""
        w_in, b_in, threshold, w_out, _ = weights
        u = F.conv2d(z, w_in, b_in, padding=self.padding, stride=ACTIVITY_STRIDE)
        activity = (u.abs() > threshold).float().mean(dim=(0, 2, 3))
        return PRECONDITIONERS[kind](w_in, w_out, activity, tuple(z.shape[-2:]))

    def lipschitz_certificate(self) -> float:
        return self.conv_in.certified_norm() * self.conv_out.certified_norm()

    def layers(self) -> list[LipschitzConv2d]:
        return [self.conv_in, self.conv_out]


class DenseResidual(torch.nn.Module):
    """f(x) = W_n act(... act(W_1 x + b_1) ...) + b_n for vectors, Lip(f) <= bound."""

    kernel = staticmethod(dense_residual)  # ``IResNet.compile_residuals`` replaces it

    def __init__(
        self, dim: int, hidden: int, layers: int, bound: float, activation: str = "elu"
    ) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError("a dense residual function needs at least 2 layers")
        sizes = [dim] + [hidden] * (layers - 1) + [dim]
        per_layer = bound ** (1.0 / layers)
        self.linears = torch.nn.ModuleList(
            LipschitzLinear(a, b, per_layer) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.activation = activation
        self.threshold = torch.nn.Parameter(torch.tensor(0.01))

    def weights(self) -> tuple[torch.Tensor, ...]:
        out: list[torch.Tensor] = [self.threshold.abs()]
        for lin in self.linears:
            out += [lin.effective_weight(), lin.bias]
        return tuple(out)

    def call(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.kernel(x, self.activation, *weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.call(x, self.weights())

    for_solve = staticmethod(as_given)  # vectors have no memory format to choose

    def preconditioner(self, z: torch.Tensor, weights: Sequence[torch.Tensor], kind: str) -> None:
        """None: dense blocks (dimension <= 3 in the toy problems) are solved unpreconditioned."""
        return None

    def lipschitz_certificate(self) -> float:
        return math.prod(lin.certified_norm() for lin in self.linears)

    def layers(self) -> list[LipschitzLinear]:
        return list(self.linears)


class InvertibleBlock(torch.nn.Module):
    """phi_i(x) = x - f_i(x); the inverse solves x = z + f_i(x)."""

    def __init__(self, residual: ConvResidual | DenseResidual, lipschitz: float) -> None:
        super().__init__()
        self.residual = residual
        self.fixed_lipschitz = lipschitz

    @property
    def lipschitz(self) -> float:
        """L_i: fixed, or the block's current share of a learned budget (its layers' bounds)."""
        layers = self.residual.layers()
        if layers[0].budget is None:
            return self.fixed_lipschitz
        return math.prod(layer.bound for layer in layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.residual(x)

    def inverse(
        self, z: torch.Tensor, config: SolverConfig, x0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, SolverResult]:
        weights = self.residual.weights()
        differentiable = torch.is_grad_enabled() and (
            z.requires_grad or any(w.requires_grad for w in weights)
        )
        kind = config.precondition
        precondition = self.residual.preconditioner(z, weights, kind) if kind else None
        if differentiable:
            x, info = implicit_fixed_point(self.residual.call, z, weights, config, x0, precondition)
            return x, info["forward"]
        with torch.no_grad():
            z, start, weights = self.residual.for_solve(z, z if x0 is None else x0, weights)
            residual = self.residual.call
            result = solve(lambda x: z + residual(x, weights), start, config, precondition)
        return result.x, result


class IResNet(Model):
    """A chain of invertible blocks with optional channel lifting (``lift`` > 0 for images)."""

    def __init__(
        self,
        blocks: Sequence[InvertibleBlock],
        lipschitz: float,
        lift: int = 0,
        solver: SolverConfig | None = None,
    ) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)
        self.lipschitz = lipschitz
        self.lift_channels = lift
        self.solver = solver or SolverConfig()

    # --- lifting X <-> X^M ------------------------------------------------------------------
    def lift(self, x: torch.Tensor) -> torch.Tensor:
        """x copied to M channels; channels-last when x or the weights are (``net.to(
        memory_format=torch.channels_last)``), so that the solvers' iterates stay in it."""
        if not self.lift_channels:
            return x
        lifted = x.expand(-1, self.lift_channels, -1, -1)
        kernel = next((w for w in self.parameters() if w.dim() == 4), None)  # any conv weight
        if channels_last(x) or (kernel is not None and channels_last(kernel)):
            return lifted.contiguous(memory_format=torch.channels_last)
        return lifted

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True) if self.lift_channels else x

    # --- the invertible core on X^M ---------------------------------------------------------
    def core_forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    @torch.no_grad()
    def core_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input of every block on the forward pass of x, in inversion order (last block
        first): the block solutions of core_inverse(core_forward(x)), hence its warm start."""
        states = []
        for block in self.blocks:
            states.append(x)
            x = block(x)
        return states[::-1]

    def core_inverse(
        self,
        z: torch.Tensor,
        solver: SolverConfig | None = None,
        warm_start: Sequence[torch.Tensor] | None = None,
    ) -> InverseResult:
        config = solver or self.solver
        iterations, residuals, solutions = [], [], []
        for k, block in enumerate(reversed(self.blocks)):
            x0 = warm_start[k] if warm_start is not None else None
            z, result = block.inverse(z, config, x0)
            iterations.append(result.iterations)
            residuals.append(result.residual)
            solutions.append(z.detach())
        residual = torch.stack(residuals, dim=1)
        converged = (residual <= config.tol).all(dim=1)
        if not bool(converged.all()):
            warnings.warn(
                f"iResNet inverse: {int((~converged).sum())} of {len(converged)} samples did not "
                f"reach rtol {config.tol:g} within {config.max_iter} iterations in some block "
                f"(largest residual {float(residual.max()):.3g})",
                RuntimeWarning,
                stacklevel=2,
            )
        return InverseResult(z, torch.stack(iterations, dim=1), residual, converged, solutions)

    # --- phi and its inverse on X -------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.core_forward(self.lift(x)))

    def inverse(
        self,
        z: torch.Tensor,
        solver: SolverConfig | None = None,
        warm_start: Sequence[torch.Tensor] | None = None,
    ) -> InverseResult:
        result = self.core_inverse(self.lift(z), solver, warm_start)
        result.x = self.project(result.x)
        return result

    learns_forward_map = True

    def invert(
        self, data: torch.Tensor, solver: SolverConfig
    ) -> tuple[torch.Tensor, InverseResult]:
        """phi^-1(data) with the solver's statistics (``inverse``)."""
        result = self.inverse(data, solver)
        return result.x, result

    def refresh(self) -> None:
        self.refresh_norms()

    def certificate(self) -> list[float]:
        return self.lipschitz_certificate()

    def after_step(self, rescale_weights: bool) -> None:
        if rescale_weights:
            self.rescale_raw_weights()

    def lifted_core(self) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
        """(x -> Phi(c x), M), M = 1 when the net does not lift."""
        return (lambda x: self.core_forward(self.lift(x))), max(int(self.lift_channels), 1)

    def describe(self) -> dict[str, Any]:
        block_bound = float(self.blocks[0].lipschitz) if len(self.blocks) else float("nan")
        return {**super().describe(), "blocks": len(self.blocks), "block_bound": block_bound}

    def compile_residuals(self, backend: str = "inductor") -> None:
        """torch.compile every residual function (the solvers' inner loop), all blocks
        sharing one compiled function; the parameters and state dict are unchanged. Not for
        the log-det and divergence objectives (``config.check``): their derivatives of
        derivatives (create_graph) fail in compiled code."""
        for block in self.blocks:
            block.residual.kernel = compiled(type(block.residual).kernel, backend)

    # --- Lipschitz control --------------------------------------------------------------------
    def refresh_norms(self) -> None:
        """Refresh every convolution's size ratio: afterwards each bound holds at every image
        size (training calls it after every epoch; ``lipschitz.py``)."""
        for block in self.blocks:
            for layer in block.residual.layers():
                if isinstance(layer, LipschitzConv2d):
                    layer.refresh()

    def rescale_raw_weights(self) -> None:
        """Keep every raw weight inside its bound (call after each optimizer step)."""
        for block in self.blocks:
            for layer in block.residual.layers():
                layer.rescale_raw()

    def lipschitz_certificate(self) -> list[float]:
        """Per block, an upper bound on Lip(f_i) at every image size (``any_size_norm``)."""
        return [block.residual.lipschitz_certificate() for block in self.blocks]


def build_iresnet(
    spec: Mapping[str, Any] | str,
    lipschitz: float,
    solver: SolverConfig | None = None,
) -> IResNet:
    """An iResNet from an architecture spec (or the name of one in ``ARCHITECTURES``)."""
    if isinstance(spec, str):
        if spec not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {spec!r}; valid: {', '.join(ARCHITECTURES)}")
        spec = ARCHITECTURES[spec]
    net = _build(spec, lipschitz, solver)
    if spec.get("split", "equal") == "learned":
        net.budget = LipschitzBudget(lipschitz, len(net.blocks))
        for i, block in enumerate(net.blocks):
            layers = block.residual.layers()
            for layer in layers:
                layer.budget = (net.budget, i, 1.0 / len(layers))
    return net


def _build(spec: Mapping[str, Any], lipschitz: float, solver: SolverConfig | None) -> IResNet:
    n = int(spec["blocks"])
    l_i = block_lipschitz(lipschitz, n)
    if spec["kind"] == "conv":
        blocks = [
            InvertibleBlock(
                ConvResidual(
                    spec["channels"],
                    spec["hidden"],
                    spec["kernel_size"],
                    l_i,
                    spec.get("out_init_gain", OUT_INIT_GAIN),
                    spec.get("symbol_norm"),
                ),
                l_i,
            )
            for _ in range(n)
        ]
        return IResNet(blocks, lipschitz, lift=int(spec["channels"]), solver=solver)
    if spec["kind"] == "dense":
        blocks = [
            InvertibleBlock(
                DenseResidual(
                    spec["dim"],
                    spec["hidden"],
                    spec.get("layers", 2),
                    l_i,
                    spec.get("activation", "elu"),
                ),
                l_i,
            )
            for _ in range(n)
        ]
        return IResNet(blocks, lipschitz, lift=0, solver=solver)
    raise ValueError(f"unknown architecture kind {spec['kind']!r}; valid: conv, dense")
