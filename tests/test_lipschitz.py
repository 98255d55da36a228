"""The tracked training norm of wide convolutions (``symbol_norm`` "power"): the power step
against symbols summed directly from the taps, the estimate against the exact grid maximum,
its tracking over training steps, the certificate, resumption and host reads."""

import copy
import traceback

import numpy as np
import pytest
import torch

from iresnet_inverse import config
from iresnet_inverse.nets import lipschitz, symbol_power
from iresnet_inverse.nets.examples import random_residuals
from iresnet_inverse.nets.iresnet import ARCHITECTURES, build_iresnet
from iresnet_inverse.nets.lipschitz import TRAIN_GRID, LipschitzConv2d, symbol_grid_max
from iresnet_inverse.nets.symbol_power import power_step, symbol_gain, tap_phases, track_step

SMALL = {"kind": "conv", "blocks": 3, "channels": 4, "hidden": 8, "kernel_size": 5}


def _symbols(weight: torch.Tensor, grid: int = TRAIN_GRID) -> np.ndarray:
    """W^(w) at every half-plane grid frequency (a-major), summed directly from the taps."""
    w = weight.detach().double().numpy()
    p = np.arange(w.shape[-1])
    out = []
    for a in range(grid):
        for b in range(grid // 2 + 1):
            phase = np.exp(-2j * np.pi * (a * p[:, None] + b * p[None, :]) / grid)
            out.append((w * phase).sum(axis=(2, 3)))
    return np.stack(out)


def _exact_norms(weight: torch.Tensor) -> np.ndarray:
    return np.linalg.norm(_symbols(weight), ord=2, axis=(1, 2))


@pytest.mark.parametrize(("c_in", "c_out"), [(3, 5), (5, 3)])
def test_a_power_step_is_the_symbols_power_iteration(c_in: int, c_out: int) -> None:
    """power_step equals one step of power iteration on the directly summed symbols, and its
    estimates never exceed the symbols' norms (dense SVD per frequency)."""
    weight = torch.randn(c_out, c_in, 5, 5, dtype=torch.float64)
    phases = tap_phases(5, TRAIN_GRID, torch.complex128, "cpu")
    v = torch.randn(phases.shape[0], c_in, dtype=torch.complex128)
    v = v / v.norm(dim=1, keepdim=True)
    estimate, following, left = power_step(weight, phases, v)
    symbols = _symbols(weight)
    u = np.einsum("foi,fi->fo", symbols, v.numpy())
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    x = np.einsum("foi,fo->fi", symbols.conj(), u)
    np.testing.assert_allclose(left.numpy(), u, atol=1e-12)
    np.testing.assert_allclose(estimate.numpy(), np.linalg.norm(x, axis=1), rtol=1e-12)
    np.testing.assert_allclose(
        following.numpy(), x / np.linalg.norm(x, axis=1, keepdims=True), atol=1e-12
    )
    assert (estimate.numpy() <= _exact_norms(weight) * (1 + 1e-12)).all()
    assert (estimate.numpy() < 0.999 * _exact_norms(weight)).any()  # random v: not yet there


def test_a_tracking_step_refines_the_highest_estimates() -> None:
    """track_step: one power step everywhere, REFINE_STEPS more at the REFINED frequencies
    with the highest estimates (the same as power steps on those rows alone)."""
    weight = torch.randn(5, 3, 5, 5, dtype=torch.float64)
    phases = tap_phases(5, TRAIN_GRID, torch.complex128, "cpu")
    v = torch.randn(phases.shape[0], 3, dtype=torch.complex128)
    v = v / v.norm(dim=1, keepdim=True)
    once = power_step(weight, phases, v)
    tracked = track_step(weight, phases, v)
    top = once[0].topk(symbol_power.REFINED).indices
    rest = torch.ones(len(v), dtype=torch.bool)
    rest[top] = False
    for a, b in zip(tracked, once, strict=True):
        assert torch.equal(a[rest], b[rest])
    refined = (phases[top], once[1][top])
    for _ in range(symbol_power.REFINE_STEPS):
        estimate, vectors, left = power_step(weight, refined[0], refined[1])
        refined = (refined[0], vectors)
    for a, b in zip(tracked, (estimate, vectors, left), strict=True):
        torch.testing.assert_close(a[top], b, rtol=1e-12, atol=1e-12)
    assert (tracked[0][top] >= once[0][top] * (1 - 1e-12)).all()  # refining only raises them


def test_the_tracked_norms_gradient_is_its_finite_differences() -> None:
    weight = torch.randn(5, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    phases = tap_phases(5, TRAIN_GRID, torch.complex128, "cpu")[77]
    left = torch.randn(5, dtype=torch.complex128)
    left = left / left.norm()
    assert torch.autograd.gradcheck(lambda w: symbol_gain(w, phases, left), (weight,))


@pytest.mark.parametrize(("c_in", "c_out"), [(3, 5), (5, 3)])
def test_after_a_refresh_the_tracked_norm_is_the_grid_maximum(c_in: int, c_out: int) -> None:
    conv = LipschitzConv2d(c_in, c_out, 5, bound=100.0, symbol_norm="power").double()
    assert conv.tracked
    conv.refresh()
    conv.eval()
    tracked = float(conv.sigma().detach())
    assert tracked == pytest.approx(_exact_norms(conv.weight).max(), rel=1e-12)
    assert tracked == pytest.approx(symbol_grid_max(conv.weight.detach(), TRAIN_GRID)[0], rel=1e-12)


def test_power_steps_converge_to_the_grid_maximum_of_changed_weights() -> None:
    """From the exact vectors of W, power steps on W + dW rise to G(W + dW) from below."""
    conv = LipschitzConv2d(4, 6, 5, bound=100.0, symbol_norm="power").double()
    conv.refresh()
    with torch.no_grad():
        conv.weight.add_(0.3 * conv.weight.abs().mean() * torch.randn_like(conv.weight))
    exact = _exact_norms(conv.weight).max()
    phases = tap_phases(5, TRAIN_GRID, torch.complex128, "cpu")
    vectors = torch.view_as_complex(conv.power_vectors)
    estimates = []
    for _ in range(60):
        estimate, vectors, _ = power_step(conv.weight.detach(), phases, vectors)
        estimates.append(float(estimate.max()))
    assert max(estimates) <= exact * (1 + 1e-12)
    assert estimates[0] < exact * (1 - 1e-6)  # the change moved the vectors
    assert estimates[-1] == pytest.approx(exact, rel=1e-9)


def _train(net: torch.nn.Module, steps: int, lr: float) -> list[tuple[float, float]]:
    """(tracked estimate, exact grid maximum) of the first 5x5 layer at every training step."""
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(1)
    conv = net.blocks[0].residual.conv_in
    pairs = []
    for _ in range(steps):
        x = torch.rand(4, 1, 12, 12, generator=generator, dtype=torch.float64)
        optimizer.zero_grad()
        (net(x) - x.flip(-1)).pow(2).sum().backward()
        tracked = float(conv.sigma().detach())  # the forward's own value (cached)
        pairs.append((tracked, symbol_grid_max(conv.weight.detach(), TRAIN_GRID)[0]))
        optimizer.step()
    return pairs


def test_training_steps_track_the_grid_maximum(one_thread: None) -> None:
    """Adam at rate 1e-3 (1 % of the largest initial weight per step): the tracked estimate
    never exceeds the grid maximum and lags it by less than 1e-4 (measured: 3e-5)."""
    net = random_residuals(build_iresnet({**SMALL, "symbol_norm": "power"}, 0.99).double())
    pairs = _train(net, 25, lr=1e-3)
    lags = [1 - tracked / exact for tracked, exact in pairs]
    assert min(lags) > -1e-12, lags
    assert max(lags) < 1e-4, lags
    assert max(lags) > 1e-9  # the weights moved: a real lag was measured


def test_the_first_steps_after_a_refresh_are_solved_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first optimizer step can raise a top singular direction that the tracked vector
    barely meets (here a rank-one change of the DC symbol orthogonal to its top vector): one
    power step then stays far below G, so the first ``EXACT_STEPS`` steps are solved."""
    torch.manual_seed(0)
    base = LipschitzConv2d(6, 8, 5, bound=100.0, symbol_norm="power").double()
    base.refresh()
    dc = base.weight.detach().sum(dim=(2, 3))  # the symbol at frequency (0, 0)
    top = torch.linalg.svd(dc).Vh[0]
    direction = torch.randn(6, dtype=torch.float64)
    direction -= (top @ direction) * top
    change = torch.outer(torch.randn(8, dtype=torch.float64), direction)
    change *= 2 * torch.linalg.matrix_norm(dc, 2) / torch.linalg.matrix_norm(change, 2)
    lags = {}
    for exact_steps in (0, lipschitz.EXACT_STEPS):
        monkeypatch.setattr(lipschitz, "EXACT_STEPS", exact_steps)
        conv = copy.deepcopy(base)
        conv.train()
        conv.sigma()  # the first step, at the refreshed weights
        with torch.no_grad():
            conv.weight.add_(change[:, :, None, None] / 25)
        grid = symbol_grid_max(conv.weight.detach(), TRAIN_GRID)[0]
        lags[exact_steps] = 1 - float(conv.sigma().detach()) / grid
    assert lags[0] > 0.01, lags
    assert abs(lags[lipschitz.EXACT_STEPS]) < 1e-12, lags


@pytest.mark.parametrize("total", [0.95, 0.999])
def test_the_certificate_is_the_grid_projections(total: float) -> None:
    """After a refresh the tracked projection's certificate is the exact grid's (the same
    any-size norm times the same scale) and within the bound."""
    grid = random_residuals(build_iresnet({**SMALL, "symbol_norm": "grid"}, total).double(), 20)
    power = build_iresnet({**SMALL, "symbol_norm": "power"}, total).double()
    power.load_state_dict(grid.state_dict())
    power.refresh_norms()
    assert power.blocks[0].residual.conv_in.tracked
    assert not grid.blocks[0].residual.conv_in.tracked
    np.testing.assert_allclose(power.lipschitz_certificate(), grid.lipschitz_certificate(), 1e-12)
    assert max(power.lipschitz_certificate()) <= power.blocks[0].lipschitz * (1 + 1e-9)
    assert max(power.lipschitz_certificate()) > 0.99 * power.blocks[0].lipschitz  # active


def test_a_loaded_layer_continues_bit_for_bit() -> None:
    """The vectors are not saved: a layer loaded from a refreshed state continues exactly as
    the layer that was refreshed, and reading its norm (evaluation) changes nothing."""
    torch.manual_seed(0)
    first = LipschitzConv2d(6, 5, 5, bound=0.5, symbol_norm="power")
    changes = [0.01 * torch.randn_like(first.weight) for _ in range(8)]

    def steps(conv: LipschitzConv2d, deltas: list[torch.Tensor], read: bool) -> list[float]:
        values = []
        for delta in deltas:
            conv.train()
            values.append(float(conv.sigma().detach()))
            if read:  # a validation in between
                conv.eval()
                conv.sigma()
            with torch.no_grad():
                conv.weight.add_(delta)
        return values

    steps(first, changes[:4], read=True)
    first.refresh()
    saved = copy.deepcopy(first.state_dict())
    assert not any("power" in key for key in saved)
    second = LipschitzConv2d(6, 5, 5, bound=0.5, symbol_norm="power")
    second.load_state_dict(saved)
    assert steps(first, changes[4:], read=True) == steps(second, changes[4:], read=False)


def _host_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Reads of tensor values to the host made in lipschitz.py (synchronizations on a GPU)."""
    reads: list[str] = []
    for name in ("item", "__float__", "__int__", "__bool__", "tolist"):
        real = getattr(torch.Tensor, name)

        def read(self: torch.Tensor, *args: object, _real=real, _name=name) -> object:
            if traceback.extract_stack()[-2].filename == lipschitz.__file__:
                reads.append(_name)
            return _real(self, *args)

        monkeypatch.setattr(torch.Tensor, name, read)
    return reads


@pytest.mark.parametrize("symbol_norm", ["grid", "power"])
def test_a_tracked_training_norm_reads_nothing_to_the_host(
    monkeypatch: pytest.MonkeyPatch, symbol_norm: str
) -> None:
    """The tracked norm finds its frequency on the device; the exact grid reads it."""
    conv = LipschitzConv2d(4, 6, 5, bound=0.5, symbol_norm=symbol_norm)
    conv.refresh()
    conv.train()
    for _ in range(lipschitz.EXACT_STEPS):  # past the exactly solved steps
        conv.sigma()
        with torch.no_grad():
            conv.weight.mul_(1.01)
    reads = _host_reads(monkeypatch)
    conv.sigma().backward()
    monkeypatch.undo()
    assert (len(reads) == 0) == (symbol_norm == "power"), reads


def test_wide_layers_track_their_norm_and_the_choice_is_a_setting() -> None:
    """The rule: the paper's iresnet (64 -> 128 channels) tracks, iresnet_small (32 -> 64)
    and the demo net keep the exact grid; an architecture's symbol_norm overrides it."""
    tracked = {
        arch: build_iresnet({**ARCHITECTURES[arch], "blocks": 1}, 0.99)
        .blocks[0]
        .residual.conv_in.tracked
        for arch in ("iresnet", "iresnet_small", "iresnet_demo")
    }
    assert tracked == {"iresnet": True, "iresnet_small": False, "iresnet_demo": False}
    spec = {**ARCHITECTURES["iresnet_demo"], "symbol_norm": "power"}
    assert build_iresnet(spec, 0.99).blocks[0].residual.conv_in.tracked
    config.validate({"archs": {"wide": {**spec, "symbol_norm": "grid"}}})
    with pytest.raises(config.ConfigError, match="symbol_norm"):
        config.validate({"archs": {"wide": {**spec, "symbol_norm": "lanczos"}}})
    with pytest.raises(ValueError, match="symbol_norm"):
        LipschitzConv2d(4, 6, 5, bound=0.5, symbol_norm="lanczos")


def test_the_projection_benchmark_runs(monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    """benchmarks/projection.py's pieces, at quick sizes on the demo net and a narrow block."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    from benchmarks import projection

    device = torch.device("cpu")
    for norm in ("grid", "power"):
        project, step, refresh = projection.block_costs("iresnet_demo", norm, device, True, 3)
        assert min(project, step, refresh) > 0
    lags = projection.lags(4, device, quick=True)
    assert len(lags) == 4 and max(abs(lag) for lag in lags) < 1e-3
