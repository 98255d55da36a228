"""Networks with known structure, for tests and benchmarks.

Random networks contract much faster than their Lipschitz bound (the singular vectors of their
layers are not aligned), so they understate the cost of inversion. A network whose residual
functions are L_i times a normalized Gaussian blur has aligned spectra: its smooth components
contract at rate L_i, the worst case for plain fixed-point iteration and the structure of a
network fitted to a smoothing operator.
"""

import math

import torch

from iresnet_inverse.nets.iresnet import IResNet


def random_residuals(net: IResNet, gain: float = 1.0) -> IResNet:
    """Give every weight PyTorch's default random initialization times ``gain`` (the output
    layers start at zero otherwise), then converge the layer norms. A large ``gain`` makes
    every projection active."""
    with torch.no_grad():
        for block in net.blocks:
            for layer in block.residual.layers():
                torch.nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
                layer.weight.mul_(gain)
    net.refresh_norms()
    return net


def gaussian_residuals(net: IResNet, width: float = 1.0) -> IResNet:
    """Set every convolutional residual to L_i * (channel-wise Gaussian blur of ``width``)."""
    k = net.blocks[0].residual.conv_in.weight.shape[-1]
    r = torch.arange(k) - k // 2
    g = torch.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2.0 * width**2))
    with torch.no_grad():
        for block in net.blocks:
            res = block.residual
            res.conv_in.weight.zero_()
            res.conv_out.weight.zero_()
            for c in range(res.conv_out.weight.shape[0]):
                res.conv_in.weight[c, c] = g
                res.conv_out.weight[c, c] = 1.0
            res.conv_in.bias.zero_()
            res.conv_out.bias.zero_()
            res.threshold.zero_()
    net.refresh_norms()
    return net
