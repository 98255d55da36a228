"""Training levers: a learning-rate warmup and the moving average of the weights (``train.ema``)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from iresnet_inverse import config
from iresnet_inverse.averaging import WeightAverage
from iresnet_inverse.cells import ImageCell
from iresnet_inverse.history import History
from iresnet_inverse.nets.iresnet import build_iresnet
from iresnet_inverse.operators import get_operator
from iresnet_inverse.schedules import rate_factor
from iresnet_inverse.training import Run, Task, TrainSettings, fit
from tests.test_train import CELL

SPEC = {"kind": "conv", "blocks": 2, "channels": 2, "hidden": 4, "kernel_size": 3}


def _settings(**train: object) -> TrainSettings:
    cfg = config.validate(
        {
            "device": "cpu",
            "archs": {"tiny": SPEC},
            "train": {"epochs": 3, "batch_size": 8, "solver": {"method": "fixed_point"}, **train},
            "grid": [{k: [v] for k, v in CELL.items()}],
        }
    )
    return TrainSettings.of(config.train_settings(cfg, ImageCell.of(CELL)))


def test_warmup_rises_linearly_then_follows_the_schedule() -> None:
    factor = rate_factor("cosine", 4, 1, 5, History())
    for step in range(20):
        cosine = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / 20))
        assert factor(step) == pytest.approx(min(1.0, (step + 1) / 5) * cosine, rel=1e-12)
    assert rate_factor("constant", 4, 0, 5, History())(0) == 1.0  # no warmup: the schedule


def test_absent_levers_leave_the_settings_as_before() -> None:
    settings = _settings()
    assert settings.warmup_epochs == 0 and settings.ema == 0.0
    assert _settings(warmup_epochs=2, ema=0.99).ema == 0.99
    with pytest.raises(config.ConfigError, match="ema"):
        _settings(ema=1.0)


def test_weight_average_follows_its_recursion() -> None:
    """a_t = d_t a_(t-1) + (1 - d_t) p_t with d_t = min(d, (1 + t) / (10 + t)), computed in
    float64 numpy from the same sequence of live weights."""
    torch.manual_seed(0)
    net = build_iresnet(SPEC, 0.9)
    average = WeightAverage(net, 0.5)
    expected = [p.detach().double().numpy().copy() for p in net.parameters()]
    for t in range(1, 8):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        average.update(net)
        d = min(0.5, (1 + t) / (10 + t))
        expected = [
            d * a + (1 - d) * p.detach().double().numpy()
            for a, p in zip(expected, net.parameters(), strict=True)
        ]
    for a, e in zip(average.net.parameters(), expected, strict=True):
        np.testing.assert_allclose(a.detach().numpy(), e, rtol=1e-5, atol=1e-6)


def _fit(out: Path, settings: TrainSettings, seed: int = 0, stop_at: int | None = None) -> tuple:
    """Train the tiny net on random patches; validation records the net it was given."""
    seen: list[torch.nn.Module] = []

    class Interrupt(Exception):
        pass

    def validate(model: torch.nn.Module) -> float:
        seen.append(model)
        if len(seen) == stop_at:
            raise Interrupt
        return float(len(seen))

    torch.manual_seed(seed)
    net = build_iresnet(SPEC, 0.9)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    task = Task("reconstruction", get_operator("blur"), x, x.clone(), 0.05, 0)
    try:
        history = fit(net, task, settings, Run(out, "run", "cell", validate, lambda m: None))
    except Interrupt:
        return None, None, seen
    return net, history, seen


def test_ema_validates_and_keeps_the_average_and_resumes_bit_for_bit(tmp_path: Path) -> None:
    settings = _settings(ema=0.9)
    net, history, seen = _fit(tmp_path / "whole", settings)
    assert all(model is not net for model in seen)  # the average is validated, not the live net
    kept = seen[-1].state_dict()
    assert all(torch.equal(net.state_dict()[k], kept[k]) for k in kept)
    plain, _, _ = _fit(tmp_path / "plain", _settings())
    assert not torch.equal(
        plain.state_dict()["blocks.0.residual.conv_in.weight"],
        net.state_dict()["blocks.0.residual.conv_in.weight"],
    )
    _fit(tmp_path / "stopped", settings, stop_at=2)
    resumed, resumed_history, _ = _fit(tmp_path / "stopped", settings, seed=1)
    assert resumed_history.loss == history.loss
    for key, value in net.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_the_averaged_net_keeps_each_block_within_its_lipschitz_bound(tmp_path: Path) -> None:
    """The largest singular value of each residual's dense Jacobian at random points, an
    independent lower bound of its Lipschitz constant, stays below L_i = 1 - (1 - 0.9)^(1/2)."""
    net, _, _ = _fit(tmp_path, _settings(ema=0.9, learning_rate=0.05))
    bound = 1 - (1 - 0.9) ** 0.5
    g = torch.Generator().manual_seed(3)
    for block in net.blocks:
        for _ in range(4):
            x = torch.randn(1, SPEC["channels"], 8, 8, generator=g)
            jacobian = torch.autograd.functional.jacobian(block.residual, x).reshape(x.numel(), -1)
            assert torch.linalg.matrix_norm(jacobian, ord=2) <= bound * (1 + 1e-5)


def _split_net() -> torch.nn.Module:
    torch.manual_seed(1)
    net = build_iresnet({**SPEC, "blocks": 3, "split": "learned"}, 0.99)
    with torch.no_grad():
        net.budget.logits.copy_(torch.tensor([1.5, -0.5, 0.0]))
        for block in net.blocks:  # raw weights far outside their bounds: every projection active
            for layer in block.residual.layers():
                layer.weight.mul_(20.0)
    net.refresh()
    return net


def test_a_learned_split_keeps_the_budget_and_each_block_within_its_share() -> None:
    """prod(1 - L_i) = 1 - L for any logits; each residual's dense Jacobian at random points
    stays within its own L_i, and the unequal shares are reached (the projection is active)."""
    net = _split_net()
    shares = [block.lipschitz for block in net.blocks]
    assert math.prod(1 - s for s in shares) == pytest.approx(1 - 0.99, rel=1e-12)
    assert max(shares) - min(shares) > 0.1  # unequal: the logits differ
    g = torch.Generator().manual_seed(4)
    for block, share in zip(net.blocks, shares, strict=True):
        norms = []
        for _ in range(4):
            x = torch.randn(1, SPEC["channels"], 8, 8, generator=g)
            jacobian = torch.autograd.functional.jacobian(block.residual, x).reshape(x.numel(), -1)
            norms.append(float(torch.linalg.matrix_norm(jacobian, ord=2)))
        assert max(norms) <= share * (1 + 1e-5)
        assert max(block.residual.lipschitz_certificate(), 0) <= share * (1 + 1e-6)


def test_a_learned_split_trains_its_logits_and_survives_copies_and_loads() -> None:
    net = _split_net()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    net(x).square().sum().backward()
    assert net.budget.logits.grad is not None and net.budget.logits.grad.abs().sum() > 0
    # a fresh net of the same spec loads the logits; a deep copy (the moving average) has its
    # own budget, which its layers read
    other = build_iresnet({**SPEC, "blocks": 3, "split": "learned"}, 0.99)
    other.load_state_dict(net.state_dict())
    torch.testing.assert_close(other(x), net(x), rtol=0, atol=0)
    copy = WeightAverage(net, 0.9).net
    assert copy.blocks[1].residual.conv_in.budget[0] is copy.budget is not net.budget
    # zero logits: the paper's equal split
    equal = build_iresnet({**SPEC, "blocks": 3, "split": "learned"}, 0.99)
    assert [b.lipschitz for b in equal.blocks] == pytest.approx([1 - 0.01 ** (1 / 3)] * 3)
