"""Forward operators: adjointness, diffusion invariants, the factory."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from iresnet_inverse.operators import get_operator, is_linear
from iresnet_inverse.operators.blur import GaussianBlur, gaussian_kernel
from iresnet_inverse.operators.diffusion import PeronaMalik


def _inner(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum())


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (1, 1, 23, 17)])
def test_blur_adjoint(shape: tuple[int, ...]) -> None:
    op = GaussianBlur()
    x = torch.randn(shape, dtype=torch.float64)
    y = torch.randn(shape, dtype=torch.float64)
    assert _inner(op(x), y) == pytest.approx(_inner(x, op.adjoint(y)), rel=1e-12)


def test_blur_matches_scipy_reflection_and_kernel() -> None:
    # Torch "reflect" = scipy "mirror" (edge pixel not repeated).
    x = np.random.default_rng(0).random((20, 24))
    kernel = gaussian_kernel(11, 5 / 3).numpy()
    expected = ndimage.correlate(x, kernel, mode="mirror")
    got = GaussianBlur()(torch.tensor(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert kernel.sum() == pytest.approx(1.0)
    assert kernel.shape == (11, 11)


def test_blur_dtypes_and_gradients() -> None:
    op = GaussianBlur()
    x32 = torch.rand(3, 1, 12, 12)
    assert op(x32).dtype == torch.float32
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradcheck(op.adjoint, (x,))


def test_diffusion_conserves_mass_and_fixes_constants() -> None:
    op = PeronaMalik()
    x = torch.rand(4, 1, 24, 24, dtype=torch.float64)
    out = op(x)
    torch.testing.assert_close(out.sum(dim=(-1, -2)), x.sum(dim=(-1, -2)), rtol=1e-5, atol=0)
    c = torch.full((1, 1, 10, 10), 0.37, dtype=torch.float64)
    torch.testing.assert_close(op(c), c)


def test_diffusion_maximum_principle() -> None:
    op = PeronaMalik()
    x = torch.rand(8, 1, 20, 20, dtype=torch.float64) * 3 - 1
    out = op(x)
    lo = x.amin(dim=(-1, -2), keepdim=True)
    hi = x.amax(dim=(-1, -2), keepdim=True)
    assert bool((out >= lo - 1e-12).all()) and bool((out <= hi + 1e-12).all())


def test_diffusion_large_contrast_is_heat_equation() -> None:
    """g -> 1: Heun steps of u_t = Laplace(u) with zero-Neumann boundary (scipy's 'nearest')."""
    steps, dt = 5, 0.15
    x = np.random.default_rng(1).random((18, 21))
    u = x.copy()
    for _ in range(steps):
        k1 = ndimage.laplace(u, mode="nearest")
        k2 = ndimage.laplace(u + dt * k1, mode="nearest")
        u = u + 0.5 * dt * (k1 + k2)
    got = PeronaMalik(contrast=1e8, steps=steps, dt=dt)(torch.tensor(x)[None, None])[0, 0]
    np.testing.assert_allclose(got.numpy(), u, atol=1e-10)


def test_diffusion_is_differentiable() -> None:
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(PeronaMalik(steps=2), (x,))
    assert not is_linear(PeronaMalik())


def test_linear_operators() -> None:
    a = get_operator("linear2d", eps=0.1)
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(a(x), x * torch.tensor([1.0, 0.1], dtype=torch.float64))
    torch.testing.assert_close(get_operator("linear2d")(x), x)
    m = [[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [4.0, 0.0, 1.0]]
    b = get_operator("linear3d", matrix=m)
    x3, y3 = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(b(x3), x3 @ torch.tensor(m, dtype=torch.float64).T)
    assert _inner(b(x3), y3) == pytest.approx(_inner(x3, b.adjoint(y3)))
    assert is_linear(b)
    with pytest.raises(ValueError, match="3x3"):
        get_operator("linear3d", matrix=[[1.0, 0.0], [0.0, 1.0]])


def test_unknown_operator_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="blur, diffusion, linear2d, linear3d"):
        get_operator("radon")
