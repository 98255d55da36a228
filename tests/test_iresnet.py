"""iResNet core: operator norms, projection, certificates, inversion, implicit gradients, theory."""

import math

import numpy as np
import pytest
import scipy.optimize
import torch

from iresnet_inverse.nets import implicit
from iresnet_inverse.nets.examples import gaussian_residuals, random_residuals
from iresnet_inverse.nets.iresnet import (
    ARCHITECTURES,
    IResNet,
    build_iresnet,
)
from iresnet_inverse.nets.lipschitz import LipschitzConv2d, any_size_norm, block_lipschitz
from iresnet_inverse.nets.model import count_parameters
from iresnet_inverse.nets.operator_norms import conv_operator_norm, dense_matrix
from iresnet_inverse.nets.solvers import SolverConfig, _anderson_mix

TINY = {"kind": "conv", "blocks": 3, "channels": 2, "hidden": 4, "kernel_size": 3}
SMALL = {"kind": "conv", "blocks": 4, "channels": 4, "hidden": 8, "kernel_size": 5}
TIGHT = SolverConfig(method="anderson", tol=1e-13, max_iter=500)


def _inflate(net: IResNet, factor: float = 20.0) -> IResNet:
    """Random weights scaled up so that every projection is active, norms converged."""
    random_residuals(net, gain=factor)
    net.refresh_norms()
    return net


def test_block_lipschitz_composes_to_total() -> None:
    for total in (0.95, 0.99, 0.999):
        l_i = block_lipschitz(total, 12)
        assert 1 - (1 - l_i) ** 12 == pytest.approx(total, rel=1e-12)
    assert block_lipschitz(0.999, 12) == pytest.approx(0.438, abs=1e-3)  # paper Sec. 4.1


def test_training_norm_is_the_circular_convolutions() -> None:
    """G(W), the symbol's maximum on the 32 x 32 training grid, is the operator norm of the
    circular convolution on 32 x 32 images (dense SVD); the zero-padded one at 16 differs."""
    conv = LipschitzConv2d(3, 5, 5, bound=100.0).double()
    w = conv.weight.detach()

    def circular(u: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(torch.nn.functional.pad(u, (2, 2, 2, 2), "circular"), w)

    exact = float(torch.linalg.matrix_norm(dense_matrix(circular, (3, 32, 32)), ord=2))
    assert float(conv.sigma().detach()) == pytest.approx(exact, rel=1e-10)
    at_16 = conv_operator_norm(w, (3, 16, 16), 2)
    dense_16 = dense_matrix(lambda u: torch.nn.functional.conv2d(u, w, padding=2), (3, 16, 16))
    assert at_16 == pytest.approx(float(torch.linalg.matrix_norm(dense_16, ord=2)), rel=1e-3)
    assert at_16 < exact
    # The true operator norm differs from the kernel's matrix norm: we do not use the latter.
    assert abs(float(torch.linalg.matrix_norm(w.flatten(1), 2)) - exact) > 1e-3 * exact


def _symbol_norm(weight: np.ndarray, w: np.ndarray) -> float:
    """||sum_j weight[:, :, j] exp(-i w . j)||_2, evaluated directly (independent of the FFT)."""
    k = weight.shape[-1]
    j = np.arange(k)
    phase = np.exp(-1j * (w[0] * j[:, None] + w[1] * j[None, :]))
    return float(np.linalg.norm((weight * phase).sum(axis=(2, 3)), 2))


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_any_size_norm_bounds_every_size_and_is_tight(kernel_size: int) -> None:
    weight = torch.randn(4, 3, kernel_size, kernel_size, dtype=torch.float64)
    bound = any_size_norm(weight)
    p = kernel_size // 2
    norms = []
    for shape in [(3, 8, 8), (3, 16, 16), (3, 8, 24), (3, 32, 32)]:
        dense = dense_matrix(lambda u: torch.nn.functional.conv2d(u, weight, padding=p), shape)
        norms.append(float(torch.linalg.matrix_norm(dense, ord=2)))
    assert max(norms) <= bound
    assert norms[0] < norms[-1]  # the norm grows with the image size: 32 x 32 is no certificate
    # Tight: the symbol's maximum, found by local search from the best of a coarse direct
    # evaluation, lies within the stated grid error (2e-3) of the bound.
    w = weight.numpy()
    coarse = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    start = max(((a, b) for a in coarse for b in coarse), key=lambda f: _symbol_norm(w, f))
    peak = scipy.optimize.minimize(lambda f: -_symbol_norm(w, f), start, method="Nelder-Mead")
    assert -peak.fun <= bound <= -peak.fun * (1 + 2.5e-3)


def test_projection_holds_at_every_image_size() -> None:
    """After a refresh each projected convolution is within its bound at every size (dense
    operator norms at 8 to 24 pixels, growing towards the bound), and nearly reaches it."""
    net = _inflate(build_iresnet(SMALL, 0.99).double())
    for block in net.blocks:
        conv = block.residual.conv_in
        weight = conv.effective_weight().detach()
        norms = []
        for n in (8, 16, 24):
            matrix = dense_matrix(
                lambda u, w=weight, c=conv: torch.nn.functional.conv2d(u, w, padding=c.padding),
                (SMALL["channels"], n, n),
            )
            norms.append(float(torch.linalg.eigvalsh(matrix.T @ matrix)[-1].sqrt()))
        assert norms == sorted(norms) and norms[-1] <= conv.bound * (1 + 1e-9), norms
        assert norms[-1] >= 0.95 * conv.bound  # the projection is active, not vacuous


@pytest.mark.parametrize("total", [0.95, 0.99, 0.999])
def test_projection_is_certified(total: float) -> None:
    net = _inflate(build_iresnet(SMALL, total).double())
    l_i = block_lipschitz(total, SMALL["blocks"])
    certificate = net.lipschitz_certificate()
    assert len(certificate) == SMALL["blocks"]
    assert all(c <= l_i + 1e-6 for c in certificate), (certificate, l_i)
    assert max(certificate) > 0.99 * l_i  # the projection is active, not vacuous


def _evaluations_and_errors(net: IResNet, x: torch.Tensor) -> dict[str, tuple[int, float]]:
    z = net.core_forward(x)
    out = {}
    for method in ("fixed_point", "anderson"):
        result = net.core_inverse(z, SolverConfig(method=method, tol=1e-5, max_iter=1000))
        assert bool(result.converged.all())
        assert result.iterations.shape == (x.shape[0], len(net.blocks))
        error = float(((result.x - x).norm() / x.norm()).detach())
        out[method] = (int(result.iterations.sum()), error)
    return out


def test_anderson_mixing_survives_degenerate_histories() -> None:
    # Sample 0 repeats one residual: with Tikhonov at 1e-8 of the scale (below float32
    # roundoff) its mixing system was singular and the whole batch raised. The floored
    # regularization picks the least-norm weights, uniform here. Sample 2 carries a NaN: it
    # takes the plain step T(x). Sample 1, ordinary, still mixes as in float64.
    X = torch.randint(0, 8, (3, 3, 50)) / 8  # dyadic: the residuals repeat exactly
    F = X + torch.rand(3, 3, 50)
    F[0] = X[0] + torch.randint(1, 8, (50,)) / 8
    X[2, 0, 0] = float("nan")
    fx = F[:, 2]
    G = F - X
    step = _anderson_mix(G @ G.transpose(1, 2), F, fx, regularization=1e-8)
    assert torch.allclose(step[0], F[0].mean(dim=0), atol=1e-5)
    assert torch.equal(step[2], fx[2])
    ordinary = G[1].double()
    floor = 10 * torch.finfo(torch.float32).eps * (ordinary * ordinary).sum(1).mean()
    system = torch.ones(4, 4, dtype=torch.float64)
    system[0, 0] = 0
    system[1:, 1:] = ordinary @ ordinary.T + floor * torch.eye(3)
    alpha = torch.linalg.solve(system, torch.eye(4, dtype=torch.float64)[:, 0])[1:]
    assert torch.allclose(step[1].double(), alpha @ F[1].double(), atol=1e-4)


@pytest.mark.parametrize("total", [0.95, 0.99, 0.999])
def test_roundtrip_and_anderson_beats_plain(total: float) -> None:
    x = torch.rand(4, 1, 16, 16)
    random_net = _inflate(build_iresnet(SMALL, total))
    random = _evaluations_and_errors(random_net, random_net.lift(x))
    smoothing_net = gaussian_residuals(build_iresnet(SMALL, total))
    smoothing = _evaluations_and_errors(smoothing_net, smoothing_net.lift(x))
    assert all(error <= 1e-4 for _, error in random.values()), random
    # Aligned spectra are the worst case of error propagation: each block's error (at most
    # tol / (1 - L_i) relative) is amplified by the later inverses, in all by at most 1 / (1 - L).
    bound = SMALL["blocks"] * 1e-5 / (1 - total)
    assert all(error <= bound for _, error in smoothing.values()), (smoothing, bound)
    # Random nets contract much faster than their bound, so plain iteration is already quick
    # there; on nets with aligned spectra Anderson needs clearly fewer evaluations.
    assert random["anderson"][0] <= random["fixed_point"][0], random
    assert smoothing["anderson"][0] < 0.7 * smoothing["fixed_point"][0], smoothing


def test_dense_roundtrip_and_parameter_counts() -> None:
    net = _inflate(build_iresnet("toy", 0.99).double())
    x = torch.randn(16, 2, dtype=torch.float64)
    result = net.inverse(net(x), TIGHT)
    torch.testing.assert_close(result.x, x, rtol=1e-9, atol=1e-9)
    assert all(
        c <= block_lipschitz(0.99, ARCHITECTURES["toy"]["blocks"]) + 1e-9
        for c in net.lipschitz_certificate()
    )
    # Table 1: weights and biases of both convolutions plus one threshold per block.
    assert count_parameters(build_iresnet("iresnet_small", 0.99)) == 640_140


def test_non_convergence_is_reported() -> None:
    net = _inflate(build_iresnet(SMALL, 0.999))
    z = net.core_forward(net.lift(torch.rand(2, 1, 16, 16)))
    with pytest.warns(RuntimeWarning, match="did not reach rtol"):
        result = net.core_inverse(z, SolverConfig(method="fixed_point", tol=1e-12, max_iter=2))
    assert not bool(result.converged.any())
    assert bool((result.residual > 1e-12).any())
    assert bool((result.iterations == 2).all())


def _unrolled_inverse(net: IResNet, z: torch.Tensor, iterations: int = 200) -> torch.Tensor:
    """Autograd through a fully converged plain iteration, block by block."""
    x = net.lift(z)
    for block in reversed(net.blocks):
        target, y = x, x
        for _ in range(iterations):
            y = target + block.residual(y)
        x = y
    return net.project(x)


def test_implicit_gradients_equal_unrolled_autograd() -> None:
    torch.manual_seed(1)
    net = _inflate(build_iresnet(TINY, 0.99).double())
    net.eval()
    z = torch.rand(3, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    target = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    params = [p for p in net.parameters()]

    def grads(x: torch.Tensor) -> list[torch.Tensor]:
        loss = 0.5 * ((x - target) ** 2).sum()
        return torch.autograd.grad(loss, [z, *params])

    implicit = grads(net.inverse(z, TIGHT).x)
    unrolled = grads(_unrolled_inverse(net, z))
    for a, b in zip(implicit, unrolled, strict=True):
        assert float((a - b).norm() / b.norm().clamp_min(1e-300)) <= 1e-5


@pytest.mark.parametrize("adjoint_method", ["fixed_point", "anderson"])
def test_loose_adjoint_tolerance_bounds_the_gradient_error(
    adjoint_method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training solves the adjoint loosely: its gradient stays within that tolerance's reach
    of the unrolled truth, and the adjoint needs fewer evaluations than a tight one."""
    torch.manual_seed(2)
    net = _inflate(build_iresnet(TINY, 0.99).double())
    net.eval()
    z = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    target = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    weight = net.blocks[0].residual.conv_in.weight
    truth = torch.autograd.grad(0.5 * ((_unrolled_inverse(net, z) - target) ** 2).sum(), weight)[0]
    solves, solve = [], implicit.solve
    monkeypatch.setattr(
        implicit, "solve", lambda *a, **k: solves.append(solve(*a, **k)) or solves[-1]
    )
    evaluations = {}
    for tol in (1e-2, 1e-10):
        config = SolverConfig(
            method="anderson", tol=1e-10, max_iter=500, adjoint_method=adjoint_method,
            adjoint_tol=tol,
        )  # fmt: skip
        solves.clear()
        x = net.inverse(z, config).x
        (g,) = torch.autograd.grad(0.5 * ((x - target) ** 2).sum(), weight)
        evaluations[tol] = sum(r.evaluations for r in solves)
        error = float((g - truth).norm() / truth.norm())
        assert error <= (0.05 if tol == 1e-2 else 1e-6), (tol, error)
    assert evaluations[1e-2] < evaluations[1e-10], evaluations


@pytest.mark.parametrize("terms", [0, 1, 3])
def test_truncated_adjoint_is_the_neumann_series(terms: int) -> None:
    """adjoint_max_iter = k with plain iteration is the Neumann series of (I - J^T)^-1 v cut
    after k + 1 terms, checked against a dense Jacobian; its error against the exact adjoint (a
    dense solve) is within the series' tail bound ||J||^(k+1) / (1 - ||J||) ||v||."""
    torch.manual_seed(3)
    net = _inflate(build_iresnet({**TINY, "blocks": 1}, 0.9).double())
    net.eval()
    block = net.blocks[0]
    z = net.lift(torch.rand(1, 1, 5, 5, dtype=torch.float64)).contiguous().requires_grad_()
    v = torch.randn_like(z)
    config = SolverConfig(
        method="anderson", tol=1e-13, max_iter=500, adjoint_method="fixed_point",
        adjoint_tol=1e-300, adjoint_max_iter=terms,
    )  # fmt: skip
    x, _ = block.inverse(z, config)
    (u,) = torch.autograd.grad(x, z, v)
    jacobian = torch.autograd.functional.jacobian(block.residual, x.detach())
    J = jacobian.reshape(z.numel(), z.numel())
    partial, term = v.flatten().clone(), v.flatten()
    for _ in range(terms):
        term = J.T @ term
        partial = partial + term
    assert float((u.flatten() - partial).norm() / v.norm()) <= 1e-10
    exact = torch.linalg.solve(torch.eye(z.numel(), dtype=J.dtype) - J.T, v.flatten())
    norm = float(torch.linalg.matrix_norm(J, ord=2))
    assert norm < 0.9 + 1e-9
    tail = norm ** (terms + 1) / (1 - norm) * float(v.norm())
    assert float((partial - exact).norm()) <= tail
    assert float((partial - exact).norm()) > 1e-6 * float(v.norm())  # inexact, as documented


def test_warm_start_at_the_forward_states_is_the_fixed_point() -> None:
    """core_states(x) are the block solutions of core_inverse(core_forward(x)): started there
    every block stops after one evaluation, at the answer a cold start reaches with more."""
    torch.manual_seed(4)
    net = _inflate(build_iresnet(SMALL, 0.99).double())
    net.eval()
    h = net.lift(torch.rand(3, 1, 8, 8, dtype=torch.float64))
    with torch.no_grad():
        z = net.core_forward(h)
    config = SolverConfig(method="anderson", tol=1e-8, max_iter=500)
    with torch.no_grad():
        cold = net.core_inverse(z, config)
        warm = net.core_inverse(z, config, net.core_states(h))
    assert bool((warm.iterations == 1).all()), warm.iterations
    assert int(cold.iterations.min()) > 1
    for a, b in zip(warm.block_solutions, cold.block_solutions, strict=True):
        assert float((a - b).norm() / b.norm()) <= 1e-7
    assert float((warm.x - h).norm() / h.norm()) <= 1e-7


def test_gradcheck_of_inverse() -> None:
    net = _inflate(build_iresnet({**TINY, "blocks": 2}, 0.9).double())
    net.eval()
    z = torch.rand(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u: net.inverse(u, TIGHT).x, (z,))

    # The parameter path: gradients w.r.t. a weight by finite differences of the solve.
    w = net.blocks[1].residual.conv_in.weight
    loss = net.inverse(z.detach(), TIGHT).x.sum()
    (g,) = torch.autograd.grad(loss, w)
    direction = torch.randn_like(w)
    eps = 1e-6
    with torch.no_grad():
        w.add_(eps * direction)
        up = net.inverse(z.detach(), TIGHT).x.sum()
        w.sub_(2 * eps * direction)
        down = net.inverse(z.detach(), TIGHT).x.sum()
        w.add_(eps * direction)
    assert float((g * direction).sum()) == pytest.approx(float(up - down) / (2 * eps), rel=1e-5)


def _saved_bytes_of(reconstruct: object, x: torch.Tensor) -> int:
    """Bytes that autograd keeps for the backward pass of a reconstruction loss."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = 0.5 * ((reconstruct() - x) ** 2).sum()
    loss.backward()
    return total


def _saved_bytes(net: IResNet, z: torch.Tensor, x: torch.Tensor, max_iter: int) -> int:
    solver = SolverConfig(method="fixed_point", tol=1e-30, max_iter=max_iter)
    with pytest.warns(RuntimeWarning):
        return _saved_bytes_of(lambda: net.inverse(z, solver).x, x)


def test_training_step_memory_does_not_grow_with_iteration_cap() -> None:
    net = _inflate(build_iresnet(SMALL, 0.99))
    x, z = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    small, large = _saved_bytes(net, z, x, 10), _saved_bytes(net, z, x, 100)
    assert abs(large - small) <= 0.1 * small, (small, large)
    # The measure does see unrolling: backpropagating through the iterations grows with them.
    unrolled = [_saved_bytes_of(lambda n=n: _unrolled_inverse(net, z, n), x) for n in (10, 100)]
    assert unrolled[1] > 5 * unrolled[0] > 5 * small


@pytest.mark.parametrize("total", [0.95, 0.99, 0.999])
def test_inverse_lipschitz_bound_and_block_monotonicity(total: float) -> None:
    net = _inflate(build_iresnet(SMALL, total).double())
    z1 = torch.rand(6, 1, 16, 16, dtype=torch.float64)
    z2 = z1 + 0.1 * torch.randn_like(z1)
    x1, x2 = net.inverse(z1, TIGHT).x, net.inverse(z2, TIGHT).x
    lhs = (x1 - x2).flatten(1).norm(dim=1)
    rhs = (z1 - z2).flatten(1).norm(dim=1) / (1 - total)
    assert bool((lhs <= rhs).all())
    l_i = block_lipschitz(total, SMALL["blocks"])
    a, b = (
        torch.randn(6, 4, 16, 16, dtype=torch.float64),
        torch.randn(6, 4, 16, 16, dtype=torch.float64),
    )
    for block in net.blocks:
        inner = ((block(a) - block(b)) * (a - b)).flatten(1).sum(dim=1)
        assert bool((inner >= (1 - l_i) * ((a - b) ** 2).flatten(1).sum(dim=1) - 1e-9).all())


def test_projection_keeps_gradients() -> None:
    """With every projection active the gradient flows through G(W) to the raw weights."""
    net = _inflate(build_iresnet(SMALL, 0.99))
    net.train()
    out = net(torch.rand(2, 1, 16, 16))
    out.sum().backward()
    conv = net.blocks[0].residual.conv_in
    assert float(conv.size_sigma().detach()) > conv.bound  # active
    assert conv.weight.grad is not None and bool(torch.isfinite(conv.weight.grad).all())
    assert math.isfinite(float(net.blocks[0].residual.threshold.grad))


def test_training_steps_do_not_keep_their_graphs_alive() -> None:
    """The solver statistics an implicit layer returns hold no tensor with a graph: one did
    (the layer's output), which closed a cycle through the autograd graph that the garbage
    collector cannot see, and every training step's graph stayed in memory (9 MB a step for
    the demo net; 23 GB after 3,300 steps)."""
    import resource

    from iresnet_inverse.archs import ARCHITECTURES

    torch.manual_seed(0)
    config = SolverConfig(tol=1e-3)
    net = build_iresnet(ARCHITECTURES["iresnet_demo"], 0.999, config)
    z = torch.rand(16, 1, 32, 32)

    lifted = torch.rand(16, 8, 32, 32)
    x, stats = net.blocks[0].inverse(lifted, config)
    assert x.grad_fn is not None and stats.x.grad_fn is None

    def step() -> None:
        net.inverse(z, config).x.pow(2).sum().backward()

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    for _ in range(5):
        step()
    before = peak_mb()
    for _ in range(30):
        step()
    assert peak_mb() - before < 100  # the leak added about 270 MB here


@pytest.mark.parametrize("method", ["anderson", "fixed_point"])
def test_on_a_device_the_stopping_test_is_read_every_few_evaluations(
    monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """Reading whether a batch is done synchronizes an accelerator with the host: there the
    solvers read it every ``DEVICE_STOP_TEST_EVERY`` evaluations (emulated on the CPU). The
    per-sample counts and the convergence are those of a test at every evaluation, the
    solution at least as accurate."""
    from iresnet_inverse.nets import solvers

    torch.manual_seed(0)
    weight = 0.6 * torch.linalg.qr(torch.randn(6, 6))[0]
    z = torch.randn(5, 6)

    def T(x: torch.Tensor) -> torch.Tensor:
        return z + torch.tanh(x @ weight.T)

    config = SolverConfig(method=method, tol=1e-6, max_iter=200)
    every_time = solvers.solve(T, z, config)
    reads = []
    real_bool = torch.Tensor.__bool__

    def counted(self: torch.Tensor) -> bool:
        reads.append(1)
        return real_bool(self)

    monkeypatch.setattr(solvers, "stop_test_every", lambda device: solvers.DEVICE_STOP_TEST_EVERY)
    monkeypatch.setattr(torch.Tensor, "__bool__", counted)
    sparse = solvers.solve(T, z, config)
    monkeypatch.undo()
    every = solvers.DEVICE_STOP_TEST_EVERY
    assert every > 1 and every_time.converged.all() and sparse.converged.all()
    assert torch.equal(sparse.iterations, every_time.iterations)
    assert sparse.evaluations == every * math.ceil(every_time.evaluations / every)
    assert len(reads) == sparse.evaluations // every
    assert (sparse.residual <= config.tol).all()


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` stored channels-last (for one channel, with the strides that say so)."""
    return torch.empty_like(t, memory_format=torch.channels_last).copy_(t)


@pytest.mark.parametrize("method", ["anderson", "fixed_point"])
def test_the_solvers_keep_channels_last(method: str) -> None:
    """A channels-last start gives channels-last iterates and solution (Anderson's flattening
    made every iterate NCHW), with the values and counts of the NCHW solve."""
    from iresnet_inverse.nets.solvers import channels_last, solve

    torch.manual_seed(0)
    weight = 0.3 * torch.randn(4, 4, 3, 3) / 6
    z = torch.randn(2, 4, 10, 10)
    formats = []

    def T(x: torch.Tensor) -> torch.Tensor:
        formats.append(channels_last(x))
        return z_now + torch.tanh(torch.nn.functional.conv2d(x, weight, padding=1))

    config = SolverConfig(method=method, tol=1e-7, max_iter=100)
    z_now = z
    plain = solve(T, z, config)
    assert not any(formats)
    formats.clear()
    z_now = _channels_last(z)
    kept = solve(T, z_now, config)
    assert all(formats) and channels_last(kept.x)
    torch.testing.assert_close(kept.x, plain.x, atol=1e-6, rtol=0)
    assert torch.equal(kept.iterations, plain.iterations)


@pytest.mark.parametrize("precondition", [False, True, "channel_mean"])
def test_the_cpu_inverse_runs_channels_last(precondition: bool | str) -> None:
    """Without gradients on the CPU, IResNet.inverse solves every block channels-last with a
    float threshold (ConvResidual.for_solve), whatever the layout of z and of the weights,
    with the values of the gradient-enabled path (NCHW, the threshold a tensor)."""
    from iresnet_inverse.nets.solvers import channels_last

    net = random_residuals(build_iresnet(SMALL, 0.99))
    z = torch.rand(3, 1, 12, 12)
    config = SolverConfig(method="anderson", tol=1e-6, precondition=precondition)
    implicit = net.inverse(z, config)  # parameters require gradients: the implicit path
    assert implicit.x.requires_grad and not any(channels_last(x) for x in implicit.block_solutions)
    with torch.no_grad():
        plain = net.inverse(z, config)
        kept = net.inverse(_channels_last(z), config)
        net.to(memory_format=torch.channels_last)
        by_weights = net.inverse(z, config)
    for result in (plain, kept, by_weights):
        assert all(channels_last(x) for x in result.block_solutions)
        assert bool(result.converged.all())
        torch.testing.assert_close(result.x, implicit.x.detach(), atol=1e-6, rtol=0)


def test_a_wide_net_keeps_its_layout_in_cpu_solves() -> None:
    """Channels-last only pays for narrow residuals (kernels.CPU_CHANNELS_LAST_MAX_HIDDEN): a
    wider net's solve without gradients stays NCHW, with the same values."""
    from iresnet_inverse.nets.kernels import CPU_CHANNELS_LAST_MAX_HIDDEN
    from iresnet_inverse.nets.solvers import channels_last

    wide = {**SMALL, "hidden": 2 * CPU_CHANNELS_LAST_MAX_HIDDEN}
    net = random_residuals(build_iresnet(wide, 0.99))
    z = torch.rand(3, 1, 12, 12)
    config = SolverConfig(method="anderson", tol=1e-6)
    implicit = net.inverse(z, config)
    with torch.no_grad():
        plain = net.inverse(z, config)
    assert not any(channels_last(x) for x in plain.block_solutions)
    torch.testing.assert_close(plain.x, implicit.x.detach(), atol=1e-6, rtol=0)


def test_soft_shrink_with_a_float_threshold_is_the_same_function() -> None:
    """The fused kernel of CPU solves (a float threshold) against the differentiable form."""
    from iresnet_inverse.nets.kernels import soft_shrink

    x = torch.randn(4, 16, 9, 9)
    threshold = torch.tensor(0.3)
    fused = soft_shrink(x, float(threshold))
    assert torch.equal(fused, soft_shrink(x, threshold))
    assert torch.equal(fused, torch.sign(x) * torch.clamp(x.abs() - 0.3, min=0))
