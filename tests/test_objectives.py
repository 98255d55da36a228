"""Objectives: Hutchinson estimators against exact traces and log-determinants, loss values."""

import pytest
import torch

from iresnet_inverse import objectives
from iresnet_inverse.nets.iresnet import IResNet, build_iresnet
from iresnet_inverse.operators import get_operator

NO_LIFT = {"kind": "conv", "blocks": 3, "channels": 1, "hidden": 4, "kernel_size": 3}


def _net() -> IResNet:
    torch.manual_seed(0)
    net = build_iresnet(NO_LIFT, 0.9, image_size=8).double()
    with torch.no_grad():  # leave the zero initialization: a nontrivial Jacobian
        for block in net.blocks:
            block.residual.conv_out.weight.normal_()
            block.residual.conv_in.bias.normal_(0, 0.1)
    net.refresh_norms()
    return net.eval()


def _dense_jacobian(fn: object, x: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.jacobian(
        lambda u: fn(u.view(1, 1, 8, 8)).flatten(), x.flatten()
    )


def test_block_logdets_sum_to_the_composition() -> None:
    net, x = _net(), torch.rand(1, 1, 8, 8, dtype=torch.float64)
    total = torch.linalg.slogdet(_dense_jacobian(net, x))
    assert total.sign > 0  # monotone blocks: det > 0
    h, parts = x, []
    for block in net.blocks:
        parts.append(torch.linalg.slogdet(_dense_jacobian(block, h)).logabsdet)
        h = block(h)
    assert float(total.logabsdet) == pytest.approx(float(sum(parts)), rel=1e-10)


def test_hutchinson_matches_exact_trace_and_logdet() -> None:
    net, x = _net(), torch.rand(1, 1, 8, 8, dtype=torch.float64)
    jac = _dense_jacobian(net, x)
    exact_trace, exact_logdet = float(jac.trace()), float(torch.linalg.slogdet(jac).logabsdet)
    g = torch.Generator().manual_seed(0)
    probes = 200
    est = objectives.Estimators(probes=1, terms=12)
    divs = torch.stack([objectives.divergence(net, x, est, g)[1] for _ in range(probes)])
    lds = torch.stack([objectives.logdet(net, x, est, g)[1] for _ in range(probes)])
    for samples, exact in ((divs, exact_trace), (lds, exact_logdet)):
        samples = samples.detach()
        mean, stderr = float(samples.mean()), float(samples.std() / probes**0.5)
        assert abs(mean - exact) <= 4 * stderr + 1e-9, (mean, exact, stderr)
        assert stderr < 0.2  # tight enough to tell a wrong series (e.g. without 1/k) apart
    # Many probes in one call average the same way.
    many = objectives.Estimators(probes=probes, terms=12)
    many_estimate = float(objectives.divergence(net, x, many, g)[1].detach())
    assert many_estimate == pytest.approx(exact_trace, abs=0.5)


def test_exact_low_dimensional_terms() -> None:
    torch.manual_seed(0)
    net = build_iresnet("toy", 0.9).double()
    with torch.no_grad():
        for block in net.blocks:
            block.residual.linears[-1].weight.normal_()
    x = torch.randn(5, 2, dtype=torch.float64)
    jac = torch.stack(
        [torch.autograd.functional.jacobian(lambda u: net(u[None])[0], xi) for xi in x]
    )
    y, div = objectives.divergence(net, x, objectives.Estimators())
    torch.testing.assert_close(div, jac.diagonal(dim1=1, dim2=2).sum(-1))
    torch.testing.assert_close(y, net(x))
    _, ld = objectives.logdet(net, x, objectives.Estimators())
    torch.testing.assert_close(ld, torch.linalg.slogdet(jac).logabsdet)


def test_losses_and_normal_data() -> None:
    net, blur = _net(), get_operator("blur").double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    z = blur(x)
    approx, _ = objectives.loss("approximation", net, blur, x, z)
    expected = float(0.5 * ((net(x) - z) ** 2).sum().detach() / 2)
    assert float(approx.detach()) == pytest.approx(expected)
    recon, result = objectives.loss("reconstruction", net, blur, x, z)
    assert result is not None and float(recon.detach()) >= 0
    torch.testing.assert_close(objectives.normal_data(blur, z), blur.adjoint(z))
    diffusion = get_operator("diffusion").double()
    vjp = objectives.normal_data(diffusion, z)
    jac = torch.autograd.functional.jacobian(lambda u: diffusion(u), z)
    torch.testing.assert_close(vjp, torch.einsum("abcdijkl,abcd->ijkl", jac, z))
    with pytest.raises(ValueError, match="unknown objective"):
        objectives.loss("adversarial", net, blur, x, z)
    for name in ("logdet", "divergence"):
        value, _ = objectives.loss(name, net, blur, x, z, noise_hat=0.1)
        value.backward()
        assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
        net.zero_grad()
