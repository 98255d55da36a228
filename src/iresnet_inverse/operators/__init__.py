"""Forward operators F: X -> X as batched, differentiable ``torch.nn.Module``s.

Images are tensors of shape (batch, 1, height, width); vectors of the toy problems are
(batch, dim). Linear operators also provide ``adjoint``.
"""

from collections.abc import Callable

import torch

from iresnet_inverse.errors import ConfigError
from iresnet_inverse.operators.blur import GaussianBlur
from iresnet_inverse.operators.diffusion import PeronaMalik
from iresnet_inverse.operators.linear import MatrixOperator, is_linear, linear2d, linear3d

OPERATORS: dict[str, Callable[..., torch.nn.Module]] = {
    "blur": GaussianBlur,
    "diffusion": PeronaMalik,
    "linear2d": linear2d,
    "linear3d": linear3d,
}


def get_operator(name: str, **params: object) -> torch.nn.Module:
    """Build the operator called ``name`` with keyword ``params``."""
    try:
        factory = OPERATORS[name]
    except KeyError:
        valid = ", ".join(sorted(OPERATORS))
        raise ConfigError(f"unknown operator {name!r}; valid operators: {valid}") from None
    return factory(**params)


__all__ = [
    "GaussianBlur",
    "MatrixOperator",
    "OPERATORS",
    "PeronaMalik",
    "get_operator",
    "is_linear",
    "linear2d",
    "linear3d",
]
