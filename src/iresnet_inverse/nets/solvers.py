"""Fixed-point solvers for x = T(x), batched, stopping on a per-sample relative residual.

The relative residual of an iterate x is ||T(x) - x|| / ||T(x)|| per sample. Both solvers count
evaluations of T (for an iResNet block, evaluations of the residual function f) and report,
per sample, the evaluations needed to reach the tolerance, the final residual and whether it
was reached. A sample that misses the tolerance is reported, never silently accepted.
Iterates keep the memory format of the start: a channels-last start gives channels-last
iterates and solution (what convolutions with channels-last weights run fastest on).
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

Map = Callable[[torch.Tensor], torch.Tensor]

# The Fourier preconditioners a solve may use (``preconditioner.py``); None: none.
PRECONDITIONER_KINDS = (None, "full", "channel_mean")


@dataclass(frozen=True)
class SolverConfig:
    """How to solve a fixed point: ``method`` "anderson" or "fixed_point". The adjoint
    (backward) fixed point of implicit gradients may use its own ``adjoint_method`` and
    ``adjoint_tol`` (None: the forward's): a gradient needs far less accuracy than a
    reconstruction, and the adjoint is linear, where Anderson acceleration is at its best.

    ``adjoint_max_iter`` caps the adjoint evaluations (None: ``max_iter``). With
    ``adjoint_method="fixed_point"`` a cap of k gives the Neumann series of (I - J^T)^-1 v
    truncated after k + 1 terms (the phantom gradient); 0 is Jacobian-free backpropagation
    (u = v). Inexact by design: the gradient error is measured in ``tests/test_iresnet.py``.

    ``precondition``: step x + P(T(x) - x) with one of the block's Fourier preconditioners P
    (``preconditioner.py``): "full" (true) or "channel_mean"; None (false) for none.
    Convolutional blocks only, ignored by dense ones and by the adjoint. The stopping test and
    the returned T(x) are those of the plain solve.

    ``warm_start`` (reconstruction training only): each block's inverse starts at the block's
    input on the forward pass of the clean image, which is the solution once phi^-1(z) = x; the
    fixed point is unique, so the start changes the evaluations, not the answer."""

    method: str = "anderson"
    tol: float = 1e-5
    max_iter: int = 100
    memory: int = 5
    regularization: float = 1e-8
    adjoint_method: str | None = None
    adjoint_tol: float | None = None
    adjoint_max_iter: int | None = None
    warm_start: bool = False
    precondition: str | bool | None = None

    def __post_init__(self) -> None:
        kind = {True: "full", False: None}.get(self.precondition, self.precondition)  # type: ignore[call-overload]
        if kind not in PRECONDITIONER_KINDS:
            raise ValueError(
                f"unknown precondition {self.precondition!r}; valid: false, "
                + ", ".join(k for k in PRECONDITIONER_KINDS if k)
            )
        object.__setattr__(self, "precondition", kind)
        for method in (self.method, self.adjoint_method or self.method):
            if method not in SOLVERS:
                raise ValueError(f"unknown solver {method!r}; valid: {', '.join(SOLVERS)}")
        if min(self.tol, self.adjoint_tol or self.tol) <= 0 or self.max_iter < 1 or self.memory < 1:
            raise ValueError("solver needs tol > 0, max_iter >= 1 and memory >= 1")
        if self.adjoint_max_iter is not None and self.adjoint_max_iter < 0:
            raise ValueError("solver needs adjoint_max_iter >= 0 (or null)")

    def adjoint(self) -> "SolverConfig":
        """The settings of the adjoint fixed point."""
        return replace(
            self,
            method=self.adjoint_method or self.method,
            tol=self.adjoint_tol or self.tol,
            max_iter=self.max_iter if self.adjoint_max_iter is None else self.adjoint_max_iter,
            adjoint_method=None,
            adjoint_tol=None,
            adjoint_max_iter=None,
            precondition=None,
        )


@dataclass
class SolverResult:
    """The solution and, per sample, evaluations used, final relative residual, success."""

    x: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor
    evaluations: int


def channels_last(t: torch.Tensor) -> bool:
    """Whether a batch of images is stored channels-last (with one channel: with the strides
    ``torch.empty(..., memory_format=torch.channels_last)`` gives)."""
    return t.dim() == 4 and t.stride(1) == 1 and t.is_contiguous(memory_format=torch.channels_last)


class _Layout:
    """Per-sample flattening in the memory order of the start, and its inverse: flattening a
    channels-last batch in NCHW order would copy every iterate into NCHW."""

    def __init__(self, x0: torch.Tensor) -> None:
        self.shape = x0.shape
        self.last = channels_last(x0)

    def flat(self, t: torch.Tensor) -> torch.Tensor:
        """(batch, -1) in the start's element order (a view where ``t`` has its layout)."""
        return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1) if self.last else t.flatten(1)

    def image(self, flat: torch.Tensor) -> torch.Tensor:
        """The inverse of ``flat``, a view in the start's layout."""
        if not self.last:
            return flat.view(self.shape)
        n, c, h, w = self.shape
        return flat.view(n, h, w, c).permute(0, 3, 1, 2)

    def keep(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` in the start's layout (a no-op where it is)."""
        return t.contiguous(memory_format=torch.channels_last) if self.last else t


def _relative(fx: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """||T(x) - x|| / ||T(x)|| per sample, from T(x) and the step T(x) - x."""
    norm = fx.flatten(1).norm(dim=1).clamp_min(torch.finfo(fx.dtype).tiny)
    return step.flatten(1).norm(dim=1) / norm


# On an accelerator the host reads whether every sample is done (a synchronization, which
# stalls the queue of kernels) only every this many evaluations; the per-sample counts are kept
# on the device at every one. On the CPU a read costs nothing and the test runs every time.
DEVICE_STOP_TEST_EVERY = 4


def stop_test_every(device: torch.device) -> int:
    """How many evaluations apart the solvers read their stopping test on ``device``."""
    return 1 if device.type == "cpu" else DEVICE_STOP_TEST_EVERY


class _Tracker:
    """Per-sample bookkeeping of when the tolerance was first reached; the batch stops once
    every sample has, tested every ``stop_test_every`` evaluations (a solve may run up to that
    many minus one past the last sample's convergence; its per-sample counts stay exact)."""

    def __init__(self, batch: int, tol: float, device: torch.device) -> None:
        self.tol = tol
        self.every = stop_test_every(device)
        self.iterations = torch.zeros(batch, dtype=torch.long, device=device)
        self.done = torch.zeros(batch, dtype=torch.bool, device=device)
        self.residual = torch.full((batch,), float("inf"), device=device)

    def update(self, residual: torch.Tensor, evaluations: int) -> bool:
        self.residual = residual.detach().float()
        newly = (self.residual <= self.tol) & ~self.done
        self.iterations[newly] = evaluations
        self.done |= newly
        return evaluations % self.every == 0 and bool(self.done.all())

    def result(self, x: torch.Tensor, evaluations: int) -> SolverResult:
        iterations = torch.where(
            self.done, self.iterations, torch.full_like(self.iterations, evaluations)
        )
        return SolverResult(x, iterations, self.residual, self.done.clone(), evaluations)


def fixed_point(
    T: Map, x0: torch.Tensor, config: SolverConfig, precondition: Map | None = None
) -> SolverResult:
    """Plain (Banach) iteration x <- T(x), or x <- x + P(T(x) - x) with a preconditioner P."""
    tracker = _Tracker(x0.shape[0], config.tol, x0.device)
    layout = _Layout(x0)
    x = x0
    for k in range(1, config.max_iter + 1):
        fx = layout.keep(T(x))
        step = fx - x
        if tracker.update(_relative(layout.flat(fx), layout.flat(step)), k):
            return tracker.result(fx, k)
        x = fx if precondition is None else layout.keep(x + precondition(step))
    return tracker.result(fx, config.max_iter)


def anderson(
    T: Map, x0: torch.Tensor, config: SolverConfig, precondition: Map | None = None
) -> SolverResult:
    """Anderson acceleration (type II, full mixing) with memory ``config.memory``, of
    x <- T(x), or of x <- x + P(T(x) - x) with a preconditioner P (the stopping test stays on
    the residual of T).

    Each step takes the affine combination of the last m values T(x_j) whose residual
    combination sum_j alpha_j (T(x_j) - x_j) has least norm (a bordered least-squares system,
    Tikhonov-regularized relative to its own scale). A sample whose system is still singular
    (a history of identical residuals) takes the plain step T(x) instead of failing the batch.
    Residuals and their Gram matrix are kept across steps: each step adds one residual and one
    Gram row instead of recomputing the whole history.
    """
    batch, layout = x0.shape[0], _Layout(x0)
    m = config.memory
    F = x0.new_zeros(batch, m, x0[0].numel())
    G = torch.zeros_like(F)
    gram = x0.new_zeros(batch, m, m)
    tracker = _Tracker(batch, config.tol, x0.device)
    x = layout.flat(x0)
    for k in range(1, config.max_iter + 1):
        tx = layout.flat(T(layout.image(x)))
        g = tx - x
        if tracker.update(_relative(tx, g), k):
            return tracker.result(layout.image(tx), k)
        if precondition is None:
            fx = tx
        else:
            g = layout.flat(precondition(layout.image(g)))
            fx = x + g
        slot, n = (k - 1) % m, min(k, m)
        F[:, slot], G[:, slot] = fx, g
        with torch.autocast(x.device.type, enabled=False):  # mixing in float32 under autocast
            row = (G[:, slot, None] @ G[:, :n].transpose(1, 2))[:, 0]  # row-vector form: fastest
            gram[:, slot, :n], gram[:, :n, slot] = row, row
            x = _anderson_mix(gram[:, :n, :n], F[:, :n], F[:, slot], config.regularization)
    return tracker.result(layout.image(tx), config.max_iter)


def _anderson_mix(
    gram: torch.Tensor, F: torch.Tensor, fx: torch.Tensor, regularization: float
) -> torch.Tensor:
    """The next Anderson iterate from the images F (batch, n, N) of the last n iterates and the
    Gram matrix of their residuals; ``fx`` is the newest image (the plain step, taken where
    the mixing system is singular).

    The regularization is floored at a few float roundoffs of the Gram scale: below that,
    nearly collinear residual histories make the system singular in the working precision.
    """
    batch, n = gram.shape[0], gram.shape[-1]
    regularization = max(regularization, 10 * torch.finfo(fx.dtype).eps)
    scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a solved sample: any alpha
    system = fx.new_zeros(batch, n + 1, n + 1)
    system[:, 0, 1:] = 1
    system[:, 1:, 0] = 1
    eye = torch.eye(n, dtype=fx.dtype, device=fx.device)
    system[:, 1:, 1:] = gram + regularization * scale[:, None, None] * eye
    rhs = fx.new_zeros(batch, n + 1, 1)
    rhs[:, 0] = 1
    solution, info = torch.linalg.solve_ex(system, rhs)
    alpha = solution[:, 1:, 0]
    solved = (info == 0) & alpha.isfinite().all(dim=1)
    return torch.where(solved[:, None], (alpha[:, None] @ F)[:, 0], fx)


SOLVERS: dict[str, Callable[[Map, torch.Tensor, SolverConfig, Map | None], SolverResult]] = {
    "anderson": anderson,
    "fixed_point": fixed_point,
}


def solve(
    T: Map, x0: torch.Tensor, config: SolverConfig, precondition: Map | None = None
) -> SolverResult:
    """Solve x = T(x) from ``x0`` with the configured method (preconditioned by P if given)."""
    return SOLVERS[config.method](T, x0, config, precondition)


@dataclass
class InverseResult:
    """phi^-1(z) with solver statistics: per sample and block (blocks in inversion order)."""

    x: torch.Tensor
    iterations: torch.Tensor  # (batch, blocks) residual evaluations
    residual: torch.Tensor  # (batch, blocks) final relative residuals
    converged: torch.Tensor  # (batch,) every block reached the tolerance
    block_solutions: list[torch.Tensor]  # each block's solution, usable as a warm start

    @property
    def evaluations(self) -> torch.Tensor:
        """Residual-function evaluations per sample, summed over blocks."""
        return self.iterations.sum(dim=1)
