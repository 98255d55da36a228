"""Evaluation of one cell: the forward approximation is measured against the training target."""

import numpy as np
import pytest
import torch
import xarray as xr

from iresnet_inverse import objectives
from iresnet_inverse.nets.iresnet import build_iresnet
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.operators import get_operator
from iresnet_inverse.stages.evaluate import evaluate_cell, forward_target

SIZE = 12


pytestmark = pytest.mark.usefixtures("one_thread")


class Scaling(torch.nn.Module):
    """F(x) = c x, a linear operator with adjoint F* = c: F*F = c^2."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c * x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.c * y


def _scaling_net() -> tuple[torch.nn.Module, float]:
    """A one-block iResNet phi(x) = s x (f = w^2 x by centre taps) and its gain s."""
    spec = {"kind": "conv", "blocks": 1, "channels": 1, "hidden": 1, "kernel_size": 3}
    net = build_iresnet(spec, 0.5)
    with torch.no_grad():
        res = net.blocks[0].residual
        res.conv_in.weight.zero_()
        res.conv_in.weight[0, 0, 1, 1] = 0.6
        res.conv_out.weight.fill_(0.6)
        res.conv_in.bias.zero_(), res.conv_out.bias.zero_(), res.threshold.zero_()
    net.eval().refresh_norms()
    with torch.no_grad():
        s = float(net(torch.ones(1, 1, SIZE, SIZE))[0, 0, SIZE // 2, SIZE // 2])
    assert 0.5 < s < 0.9  # phi = s * Id, neither 0 nor the identity
    return net, s


def _datasets(operator: torch.nn.Module) -> tuple[xr.Dataset, xr.Dataset]:
    rng = np.random.default_rng(0)
    x = rng.random((6, SIZE, SIZE)).astype(np.float32)
    split = np.array(["train", "test", "test", "val", "test", "test"])
    named = rng.random((2, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        clean = operator(torch.as_tensor(x)[:, None])[:, 0].numpy()
        named_clean = operator(torch.as_tensor(named)[:, None])[:, 0].numpy()
    noise = 0.01 * rng.standard_normal(x.shape).astype(np.float32)
    cube = ("sample", "ny", "nx")
    images = xr.Dataset(
        {"x": (cube, x), "split": ("sample", split), "named": (("name", "ny", "nx"), named)},
        coords={"sample": np.arange(6), "name": ["a", "b"]},
    )
    observations = xr.Dataset(
        {
            "clean_data": (cube, clean),
            "data": (cube, clean + noise),
            "named_clean_data": (("name", "ny", "nx"), named_clean),
            "named_data": (("name", "ny", "nx"), named_clean),
        },
        coords={"sample": np.arange(6), "name": ["a", "b"]},
    )
    return images, observations


@pytest.mark.parametrize("objective", ["divergence", "reconstruction", "logdet"])
def test_forward_fidelity_is_measured_against_the_training_target(objective):
    """phi = F*F exactly: a divergence cell (trained towards F*F x) has forward_mse 0; the
    other objectives fit F(x) = c x, which phi misses."""
    net, s = _scaling_net()
    operator = Scaling(float(np.sqrt(s)))
    images, observations = _datasets(operator)
    cell = {"objective": objective}
    ds = evaluate_cell(net, cell, operator, images, observations, SolverConfig(), batch_size=3)
    x = images["x"].values[images["split"].values == "test"].astype(np.float64)
    mse = ds["forward_mse"].values
    if objective == "divergence":
        assert mse.max() < 1e-10 and ds["forward_ssim"].values.min() > 0.9999
        assert ds["forward_mse"].attrs["forward_target"] == "normal"
        assert "F*F(x)" in ds["forward_mse"].attrs["long_name"]
        assert "training target" in ds["forward_ssim"].attrs["long_name"]
    else:
        expected = (((s - np.sqrt(s)) * x) ** 2).mean(axis=(1, 2))
        np.testing.assert_allclose(mse, expected, rtol=1e-4)
        assert ds["forward_mse"].attrs["forward_target"] == "forward"
        assert ds["forward_mse"].attrs["long_name"] == "MSE of phi(x) against F(x)"


@pytest.mark.parametrize("name", ["blur", "diffusion"])
def test_forward_target_is_the_normal_data_of_the_clean_data(name):
    """For divergence cells the target is normal_data(F, F(x)) (DF(F x)^T F x for the nonlinear
    diffusion), batch by batch; for all others F(x) itself."""
    operator = get_operator(name)
    x = torch.rand(5, 1, SIZE, SIZE, dtype=torch.float64)
    with torch.no_grad():
        clean = operator(x)
    target = forward_target("divergence", operator, clean, batch_size=2)
    torch.testing.assert_close(target, objectives.normal_data(operator, clean))
    if name == "blur":
        torch.testing.assert_close(target, operator.adjoint(operator(x)))
    assert forward_target("approximation", operator, clean) is clean
