"""Lipschitz-constrained layers: operator norms, projection inside the forward pass, certificates.

A convolution's Lipschitz constant is the operator norm of the linear map it defines with zero
padding, not the norm of its kernel, and it grows with the image size. Its supremum over all
sizes is the supremum S of the symbol, sup_w ||W^(w)|| over frequencies w in [0, 2 pi)^2
(``any_size_norm``): the zero-padded convolution on N x N images is a restriction of the
convolution on l2(Z^2), a Fourier multiplier with norm S, and tends to S as N grows.

Training evaluates, at every step, G(W): the symbol's maximum on a coarse grid of frequencies
(``TRAIN_GRID`` per axis; exactly the norm of the circular convolution at that size), and uses
the weight W * min(1, c / (rho G(W))) in the forward pass, where rho = S / G >= 1 is refreshed
before the first epoch and after each (``refresh``): autograd differentiates through G, so
optimizer steps cannot leave the constraint set, and after a refresh the bound c holds at every
image size. Between refreshes rho can go stale by at most the coarse grid's error bound; the
uncapped per-epoch certificate in history.nc shows by how much it did. (With power iteration at
the patch size, used before, the demo's headline net ended an epoch 7.8 % above its bound.)
1x1 convolutions and dense layers have exact, size-independent norms (their channel matrix's).
Operator norms at one image size (``operator_norms``) are the tests' independent truth.

Wide layers (``symbol_norm`` "power", the default where input and output channels both exceed
``EXACT_MAX_CHANNELS``) replace G by a tracked estimate g <= G: power iteration on
W^(w)^H W^(w), one step at every grid frequency per optimizer step and a few more at the
highest (``symbol_power.py``), warm-started from the previous step's vectors. Each refresh
resets them to the exact top singular vectors (so g = G there, and rho = S / G as above), and
so do the first training steps after it (``EXACT_STEPS``). A step costs a few real matrix
products instead of one eigenproblem per frequency (on CUDA, batched eigensolvers above
32 x 32 run one matrix at a time) and, past those first steps, reads nothing to the host. g is
a Rayleigh-type lower bound of G, so it can only lag: the lag adds to rho's staleness between
refreshes, the same uncapped per-epoch certificate records what of it remains at the epoch's
end, and the same refresh removes it.
"""

import math
from collections.abc import Callable
from typing import Any

import torch

from iresnet_inverse.nets.symbol_power import complex_dtype, symbol_gain, tap_phases, track_step


def _as_float(value: float | torch.Tensor) -> float:
    """A bound as a plain number (a learned bound is a tensor)."""
    return float(value.detach()) if isinstance(value, torch.Tensor) else value


def _project(
    weight: torch.Tensor, sigma: torch.Tensor, bound: float | torch.Tensor
) -> torch.Tensor:
    """W * min(1, bound / sigma). Inside the bound W is returned as is, so that no gradient
    flows through sigma there (its gradient is undefined at W = 0, the zero initialization).
    A learned bound (a tensor) gets its gradient where the layer sits at it."""
    if float(sigma.detach()) <= _as_float(bound):
        return weight
    return weight * (bound / sigma)


# Frequencies per axis of the symbol grid that the projection evaluates at every training step:
# exact each step (no lagging estimate), about 5 ms for a 16 x 8 x 5 x 5 kernel on one core;
# the per-epoch size ratio rho accounts for the grid's coarseness.
TRAIN_GRID = 32

# Layers with more input and output channels than this track their training norm by power
# iteration (module docstring) unless told otherwise: the exact grid costs one eigenproblem of
# that size per frequency and step, which CUDA solves one matrix at a time above 32 x 32. The
# demo's layers (8 and 16 channels) and the small paper net's (32 and 64) keep the exact grid.
EXACT_MAX_CHANNELS = 32
SYMBOL_NORMS = ("grid", "power")

# Training steps after each refresh whose tracked vectors are solved exactly before the power
# step. A run's first optimizer step moves every weight by about the learning rate (Adam's
# normalized first step) and can raise a new top singular direction that the tracked vector
# barely meets: on the paper layer at rate 1e-3 the DC symbol's norm rose 36 % along a direction
# at overlap 0.04, and one power step stayed 8.8 % below G (8 steps: 0.9 %). Later steps move
# the spectrum little per step, which the tracking follows.
EXACT_STEPS = 2


def block_lipschitz(total: float, blocks: int) -> float:
    """Per-block L_i with prod_i (1 - L_i) = 1 - L (paper eq. 2.3), equal for all blocks."""
    if not 0 < total < 1:
        raise ValueError(f"Lipschitz parameter L must lie in (0, 1), got {total}")
    return 1.0 - (1.0 - total) ** (1.0 / blocks)


class LipschitzBudget(torch.nn.Module):
    """A learned split of the budget (an arch's ``split: learned``; ours, the paper fixes equal
    L_i): 1 - L_i = (1 - L)^(s_i) with s = softmax(logits), so prod_i (1 - L_i) = 1 - L holds
    exactly for any logits; zero logits give the paper's equal split."""

    def __init__(self, total: float, blocks: int) -> None:
        super().__init__()
        block_lipschitz(total, blocks)  # checks L
        self.total = total
        self.logits = torch.nn.Parameter(torch.zeros(blocks))

    def block_bound(self, block: int) -> torch.Tensor:
        share = torch.softmax(self.logits.double(), 0)[block]  # float64: the product holds
        return 1.0 - (1.0 - self.total) ** share


class _Bounded:
    """A layer's bound: fixed, or a root of its block's share of a learned budget (``budget``
    = (LipschitzBudget, block, 1 / layers per residual), set by ``build_iresnet``; kept out of
    the module tree so that the budget's logits are the net's parameters once)."""

    fixed_bound: float
    budget: "tuple[LipschitzBudget, int, float] | None" = None

    def bound_value(self) -> float | torch.Tensor:
        """The bound as the projection uses it (a tensor when learned: it gets a gradient)."""
        if self.budget is None:
            return self.fixed_bound
        budget, block, power = self.budget
        return budget.block_bound(block) ** power

    @property
    def bound(self) -> float:
        return _as_float(self.bound_value())


@torch.no_grad()
def symbol_grid_max(
    weight: torch.Tensor, grid: int, chunk: int = 2**22
) -> tuple[float, tuple[int, int]]:
    """max ||W^(w)||_2 over the frequencies w = 2 pi (a, b) / grid, and the maximizing (a, b):
    the operator norm of the circular convolution on grid x grid images. Evaluated through
    the smaller Gram matrix, in row chunks of at most ``chunk`` entries (the paper's 128 x 64
    kernels on fine grids fit in memory); not differentiable (``symbol_norm_at`` is)."""
    c_out, c_in = weight.shape[:2]
    columns, phases = _symbol_factors(weight, grid)
    rows = max(1, chunk // (c_out * c_in * columns.shape[-1]))
    best, where = -1.0, (0, 0)
    for start in range(0, grid, rows):
        symbol = torch.einsum("fa,oiab->fboi", phases[start : start + rows], columns)
        small = symbol if c_out >= c_in else symbol.mH
        top = torch.linalg.eigvalsh(small.mH @ small)[..., -1]
        value, index = top.flatten().max(dim=0)
        if float(value) > best:
            best = float(value)
            where = (start + int(index) // top.shape[1], int(index) % top.shape[1])
    return math.sqrt(max(best, 0.0)), where


def _symbol_factors(weight: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's rfft along its last axis (c_out, c_in, k, grid // 2 + 1) and the phases
    (grid, k) of the first axis: the symbol at (a, b) is sum_p phases[a, p] columns[..., p, b].
    Real kernels have W^(-w) = conj(W^(w)): half the plane (rfft on the last axis) suffices."""
    k = weight.shape[-1]
    columns = torch.fft.rfft(weight, n=grid, dim=-1)
    angles = torch.outer(torch.arange(grid), torch.arange(k)).to(columns.real.dtype) / grid
    phases = torch.polar(torch.ones_like(angles), -2 * math.pi * angles).to(weight.device)
    return columns, phases


@torch.no_grad()
def grid_top_vectors(weight: torch.Tensor, grid: int) -> torch.Tensor:
    """The top right singular vector of W^(w) at every frequency of the half-plane grid
    (F, c_in), from the eigenproblems of W^(w)^H W^(w), solved on the CPU (on CUDA, batches
    above 32 x 32 run one matrix at a time) and returned on the weight's device."""
    columns, phases = _symbol_factors(weight.detach().cpu(), grid)
    symbol = torch.einsum("fa,oiab->fboi", phases, columns).flatten(0, 1)
    return torch.linalg.eigh(symbol.mH @ symbol)[1][..., -1].to(weight.device)


def symbol_norm_at(weight: torch.Tensor, a: int, b: int, grid: int) -> torch.Tensor:
    """||W^(w)||_2 at w = 2 pi (a, b) / grid, differentiable w.r.t. the weight."""
    k = weight.shape[-1]
    j = torch.arange(k, device=weight.device, dtype=weight.dtype)
    phase_a = torch.polar(torch.ones_like(j), -2 * math.pi * a * j / grid)
    phase_b = torch.polar(torch.ones_like(j), -2 * math.pi * b * j / grid)
    symbol = torch.einsum("oiab,a,b->oi", weight.to(phase_a.dtype), phase_a, phase_b)
    return torch.linalg.matrix_norm(symbol, ord=2)


def any_size_norm(weight: torch.Tensor, slack: float = 2e-3) -> float:
    """An upper bound on the operator norm of u -> conv2d(u, weight, padding=k // 2) on images
    of every size: the symbol's maximum G on a grid of spacing h, inflated by the grid error.

    Grid error: let S = ||W^(w*)|| with singular vectors u, v, and t(w) = Re(u^H W^(w) v) with
    the kernel centred, a trigonometric polynomial of degree r = k // 2 per axis, t <= S
    everywhere and t(w*) = S. Along the segment from w* to the nearest grid point (per-axis
    offsets <= h / 2) t is of exponential type <= r h and bounded by S, so by Bernstein's
    inequality |t''| <= (r h)^2 S and G >= S (1 - r^2 h^2 / 2). The grid is chosen so that
    r^2 h^2 / 2 <= ``slack``; returned is G / (1 - r^2 h^2 / 2).
    """
    w = weight.detach().double()
    r = w.shape[-1] // 2
    if r == 0:
        return float(torch.linalg.matrix_norm(w.flatten(1), ord=2))
    grid = math.ceil(2 * math.pi * r / math.sqrt(2 * slack))
    h = 2 * math.pi / grid
    return symbol_grid_max(w, grid)[0] / (1 - (r * h) ** 2 / 2)


class LipschitzConv2d(_Bounded, torch.nn.Module):
    """A "same"-padded convolution whose operator norm at every image size is kept at most
    ``bound`` (module docstring). ``symbol_norm``: "grid" (the exact grid maximum at every
    step) or "power" (the tracked estimate); None: "power" where input and output channels
    both exceed ``EXACT_MAX_CHANNELS``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bound: float,
        grid: int = TRAIN_GRID,
        symbol_norm: str | None = None,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd for same padding")
        if symbol_norm is None:
            wide = min(in_channels, out_channels) > EXACT_MAX_CHANNELS
            symbol_norm = "power" if wide else "grid"
        if symbol_norm not in SYMBOL_NORMS:
            valid = ", ".join(SYMBOL_NORMS)
            raise ValueError(f"unknown symbol_norm {symbol_norm!r}; valid: {valid}")
        conv = torch.nn.Conv2d(in_channels, out_channels, kernel_size)  # PyTorch's default init
        self.weight = torch.nn.Parameter(conv.weight.detach().clone())
        self.bias = torch.nn.Parameter(conv.bias.detach().clone())
        self.padding = kernel_size // 2
        self.fixed_bound = bound
        self.grid = grid
        self.exact = kernel_size == 1
        # rho = S / G (module docstring); set by ``refresh``, which training calls before the
        # first epoch and after each (not here: for the paper's 128 x 64 kernels it costs
        # seconds, and loaded nets carry theirs in the state dict).
        self.register_buffer("size_ratio", torch.tensor(1.0))
        self._cache: dict[str, tuple[tuple, object]] = {}
        self.tracked = symbol_norm == "power" and not self.exact
        if self.tracked:
            # The power iteration's unit vectors per grid frequency (complex, stored as real
            # pairs so that dtype casts keep them). Not in the state dict: each refresh and the
            # first use after construction or a load set them from the weight alone, so a
            # resumed run continues bit for bit.
            frequencies = grid * (grid // 2 + 1)
            vectors = torch.zeros(frequencies, in_channels, 2)
            self.register_buffer("power_vectors", vectors, persistent=False)
        self._seeded = False
        self._seeds = 0  # resets of the vectors
        self._writes = 0  # writes of the vectors
        self._advances = 0  # training steps since the last reset

    def _cached(self, name: str, compute: Callable[[], object], extra: object = None) -> object:
        """``compute()`` once per state of the raw weight (optimizer steps and loads bump its
        version; ``.to`` changes its storage) and of ``extra``: evaluation and probes call the
        net thousands of times, and the per-epoch certificate and refresh need the same
        any-size norm."""
        w = self.weight
        key = (w._version, w.data_ptr(), w.dtype, w.device, extra)
        if name not in self._cache or self._cache[name][0] != key:
            self._cache[name] = (key, compute())
        return self._cache[name][1]

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._seeded = False  # new weights: exact vectors on first use

    @torch.no_grad()
    def _solve_vectors(self) -> None:
        """Exact top singular vectors at every grid frequency: the tracked estimate is G."""
        self.power_vectors.copy_(torch.view_as_real(grid_top_vectors(self.weight, self.grid)))
        self._writes += 1

    def _seed(self) -> None:
        self._solve_vectors()
        self._seeded, self._seeds, self._advances = True, self._seeds + 1, 0

    @torch.no_grad()
    def _power(self, advance: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``track_step`` at every grid frequency from the stored vectors: the tap phases of
        the frequency where the estimate peaks and the left vector there; with ``advance``
        the vectors move on to the step's (solved exactly first in the first
        ``EXACT_STEPS`` after a reset)."""
        if advance and self._advances < EXACT_STEPS:
            self._solve_vectors()
        w = self.weight.detach()
        phases = tap_phases(w.shape[-1], self.grid, complex_dtype(w.dtype), w.device)
        estimate, following, left = track_step(w, phases, torch.view_as_complex(self.power_vectors))
        if advance:
            self.power_vectors.copy_(torch.view_as_real(following))
            self._writes, self._advances = self._writes + 1, self._advances + 1
        top = estimate.argmax()[None]  # on the device: no synchronization
        return phases.index_select(0, top)[0], left.index_select(0, top)[0]

    def _tracked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``_power``: a training forward (train mode, gradients on) advances the iteration
        once per state of the weight; other calls read it without changing it, so evaluation,
        validation and the refresh see one value per state of weight and vectors."""
        if not self._seeded:
            self._seed()
        if self.training and torch.is_grad_enabled():
            return self._cached("advance", lambda: self._power(True), extra=self._seeds)
        return self._cached("read", lambda: self._power(False), extra=self._writes)

    def sigma(self) -> torch.Tensor:
        """G(W): the exact norm of a 1x1 convolution, else the symbol's maximum on the training
        grid (tracked layers: its estimate g <= G), differentiable w.r.t. the weight (the
        maximum's gradient is that of the symbol's norm at the maximizing frequency, found
        without gradients first)."""
        if self.exact:
            return torch.linalg.matrix_norm(self.weight.flatten(1), ord=2)
        if self.tracked:
            return symbol_gain(self.weight, *self._tracked())
        a, b = self._cached("argmax", lambda: symbol_grid_max(self.weight.detach(), self.grid)[1])
        return symbol_norm_at(self.weight, a, b, self.grid)

    @torch.no_grad()
    def refresh(self) -> None:
        """rho = S(W) / G(W), so that after it the projection bounds the norm at every size."""
        if self.exact:
            return
        if self.tracked:
            self._seed()
        sigma = float(self.sigma())
        if sigma > 0:
            self.size_ratio.fill_(max(1.0, self._any_size() / sigma))

    def _any_size(self) -> float:
        return self._cached("any_size", lambda: any_size_norm(self.weight))

    def size_sigma(self) -> torch.Tensor:
        """rho G(W): the any-size norm as the projection sees it (exact right after a refresh)."""
        return self.size_ratio * self.sigma()

    def effective_weight(self) -> torch.Tensor:
        """W * min(1, bound / (rho G(W)))."""
        return _project(self.weight, self.size_sigma(), self.bound_value())

    @torch.no_grad()
    def rescale_raw(self) -> None:
        """Replace the raw weight by its projection (after an optimizer step), so the raw norm
        stays at the bound and the projection's scale invariance does not shrink the steps."""
        sigma = float(self.size_sigma())
        if sigma > self.bound:
            self.weight.mul_(self.bound / sigma)

    def certified_norm(self) -> float:
        """An upper bound on the effective weight's operator norm at every image size
        (``any_size_norm`` of the raw weight times the current projection scale). Not capped:
        it exceeds the bound when the size ratio is stale; ``refresh`` makes it hold."""
        with torch.no_grad():
            scale = min(1.0, self.bound / max(float(self.size_sigma()), 1e-300))
            return self._any_size() * scale

    def extra_repr(self) -> str:
        c_out, c_in, k, _ = self.weight.shape
        norm = ", power" if self.tracked else ""
        return f"{c_in}->{c_out}, kernel={k}, bound={self.bound:.4g}{norm}"


class LipschitzLinear(_Bounded, torch.nn.Module):
    """A dense layer with exact spectral-norm projection to ``bound`` (for the toy problems)."""

    def __init__(self, in_features: int, out_features: int, bound: float) -> None:
        super().__init__()
        linear = torch.nn.Linear(in_features, out_features)
        self.weight = torch.nn.Parameter(linear.weight.detach().clone())
        self.bias = torch.nn.Parameter(linear.bias.detach().clone())
        self.fixed_bound = bound

    def sigma(self) -> torch.Tensor:
        return torch.linalg.matrix_norm(self.weight, ord=2)

    def effective_weight(self) -> torch.Tensor:
        return _project(self.weight, self.sigma(), self.bound_value())

    @torch.no_grad()
    def rescale_raw(self) -> None:
        """See ``LipschitzConv2d.rescale_raw``."""
        sigma = float(self.sigma())
        if sigma > self.bound:
            self.weight.mul_(self.bound / sigma)

    def certified_norm(self) -> float:
        with torch.no_grad():
            return float(torch.linalg.matrix_norm(self.effective_weight().double(), ord=2))

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}->{self.weight.shape[0]}, bound={self.bound:.4g}"
