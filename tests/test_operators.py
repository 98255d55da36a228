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


def _independent_blur(x: np.ndarray, pad_mode: str, size: int = 11, sigma: float = 5 / 3):
    """k * x from the formula: K_ij = exp(-(i^2 + j^2) / (2 sigma^2)) / sum, i, j in -5..5,
    applied as an explicit sum over the 121 shifts of the padded image (no package code)."""
    r = size // 2
    offsets = range(-r, r + 1)
    weights = {(i, j): np.exp(-(i**2 + j**2) / (2 * sigma**2)) for i in offsets for j in offsets}
    total = sum(weights.values())
    padded = np.pad(x, r, mode=pad_mode)
    out = np.zeros_like(x)
    h, w = x.shape
    for (i, j), weight in weights.items():
        out += weight / total * padded[r + i : r + i + h, r + j : r + j + w]
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_blur_equals_independent_gaussian_with_numpy_reflect(dtype: torch.dtype) -> None:
    """The operator pads with torch "reflect" = numpy "reflect" (mirror about the edge pixel,
    which is not repeated: [c b | a b c]), not numpy "symmetric" ([b a | a b c])."""
    x = np.random.default_rng(3).random((19, 26))
    expected = _independent_blur(x, "reflect")
    got = GaussianBlur()(torch.tensor(x, dtype=dtype)[None, None])[0, 0].double().numpy()
    np.testing.assert_allclose(
        got, expected, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-6
    )
    # The test tells the boundary rules apart: repeating the edge pixel changes the border.
    assert np.abs(_independent_blur(x, "symmetric") - expected).max() > 1e-2
    # ... and the kernel width: sigma 1.5 instead of 5/3 is visible too.
    assert np.abs(_independent_blur(x, "reflect", sigma=1.5) - expected).max() > 1e-3


def test_blur_adjoint_is_dense_transpose() -> None:
    """adjoint's matrix (columns: adjoint of unit vectors) = forward matrix transposed."""
    shape = (1, 1, 12, 13)  # small, but larger than the padding (5) in both directions
    n = shape[-1] * shape[-2]
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, *shape[-2:])
    op = GaussianBlur()
    forward = op(basis).reshape(n, n).T  # column k = A e_k
    adjoint = op.adjoint(basis).reshape(n, n).T
    np.testing.assert_allclose(adjoint.numpy(), forward.T.numpy(), rtol=0, atol=1e-15)
    # Reflect padding makes A non-symmetric near the border, so this is not a tautology.
    assert float((forward - forward.T).abs().max()) > 1e-3


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


def _edge_image(n: int = 32) -> np.ndarray:
    """A bright disk (contrast 0.8) on a dark background, plus weak texture and noise."""
    rng = np.random.default_rng(4)
    i, j = np.mgrid[:n, :n]
    disk = ((i - 13.5) ** 2 + (j - 17.0) ** 2 < 9.5**2).astype(float)
    texture = 0.03 * np.sin(0.7 * i + 0.3 * j) + 0.01 * rng.standard_normal((n, n))
    return 0.1 + 0.8 * disk + texture


def _pm_rate_numpy(u: np.ndarray, lam: float, conductivity: str = "link") -> np.ndarray:
    """sum over the 4 neighbours nb of g(s) (u_nb - u), g(s) = 1 / (1 + s^2 / lam^2).

    Boundary: ghost pixels equal to their inner neighbour ("edge" padding), so the difference,
    hence the flux, across the image border is zero (zero Neumann). ``conductivity="link"``:
    s = |u_nb - u|, the difference across that link (Perona & Malik 1990, eq. 8); ``"pixel"``:
    s = |grad u| from central differences at each pixel, averaged over the link's two pixels
    (a different, also common discretization, used only to show the test tells them apart).
    """
    g = lambda s: 1.0 / (1.0 + (s / lam) ** 2)  # noqa: E731
    p = np.pad(u, 1, mode="edge")
    h, w = u.shape
    gx, gy = (p[1:-1, 2:] - p[1:-1, :-2]) / 2, (p[2:, 1:-1] - p[:-2, 1:-1]) / 2
    g_pix = np.pad(g(np.hypot(gx, gy)), 1, mode="edge")
    rate = np.zeros_like(u)
    for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        diff = p[1 + di : 1 + di + h, 1 + dj : 1 + dj + w] - u
        if conductivity == "link":
            c = g(np.abs(diff))
        else:
            c = 0.5 * (g_pix[1:-1, 1:-1] + g_pix[1 + di : 1 + di + h, 1 + dj : 1 + dj + w])
        rate += c * diff
    return rate


def _pm_numpy(u: np.ndarray, lam: float = 0.1, steps: int = 5, dt: float = 0.15, **kw):
    """Heun: k1 = R(u), k2 = R(u + dt k1), u <- u + dt (k1 + k2) / 2."""
    for _ in range(steps):
        k1 = _pm_rate_numpy(u, lam, **kw)
        k2 = _pm_rate_numpy(u + dt * k1, lam, **kw)
        u = u + 0.5 * dt * (k1 + k2)
    return u


def test_diffusion_equals_independent_perona_malik_in_the_nonlinear_regime() -> None:
    """Paper setting (lambda 0.1, 5 Heun steps of 0.15, zero Neumann) against our own numpy
    four-neighbour scheme, on an image whose link conductivities span [0.01, 1].

    Reproduced discretization (read from diffusion.py): the conductivity of the link between
    neighbours p, q is g(|u_q - u_p|), the plain difference across that link (unit spacing),
    the flux is g(|d|) d, and a pixel's rate is the sum of its four incoming fluxes; links
    across the border carry nothing. This is Perona & Malik's (1990) scheme, the one described in
    docs/methods.md, "Forward operators", and in the module docstring.
    """
    x = _edge_image()
    d = np.concatenate([np.diff(x, axis=0).ravel(), np.diff(x, axis=1).ravel()])
    g = 1.0 / (1.0 + (d / 0.1) ** 2)
    assert g.min() < 0.02 and g.max() > 0.99  # strongly nonlinear: edges are kept
    assert (g < 0.2).sum() > 50 and (g > 0.9).sum() > 1000

    expected = _pm_numpy(x)
    got = PeronaMalik()(torch.tensor(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # Float32 (what training uses) agrees to single precision.
    got32 = PeronaMalik()(torch.tensor(x, dtype=torch.float32)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got32, expected, rtol=0, atol=1e-6)

    # The comparison is sensitive to what it checks: linear diffusion (g = 1), a pixel-centred
    # conductivity, a different lambda, or one explicit Euler step per step differ visibly.
    assert np.abs(_pm_numpy(x, lam=1e8) - expected).max() > 0.1
    assert np.abs(_pm_numpy(x, conductivity="pixel") - expected).max() > 1e-2
    assert np.abs(_pm_numpy(x, lam=0.12) - expected).max() > 1e-3
    euler = x.copy()
    for _ in range(5):
        euler = euler + 0.15 * _pm_rate_numpy(euler, 0.1)
    assert np.abs(euler - expected).max() > 1e-3


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


def test_diffusion_refuses_a_step_above_its_maximum_principle() -> None:
    """dt 5 was accepted and the data left [0, 1]; the scheme's bound is dt <= 1/4."""
    with pytest.raises(ValueError, match="dt <= 1/4"):
        get_operator("diffusion", dt=0.3)
    u = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    out = get_operator("diffusion", dt=0.25).double()(u)
    assert out.min() >= u.min() - 1e-12 and out.max() <= u.max() + 1e-12
