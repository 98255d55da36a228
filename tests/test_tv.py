"""TV reconstruction baseline: discrete operators, agreement with scikit-image, optimality,
reconstruction quality on blur and diffusion, and the alpha search."""

import numpy as np
import pytest
import torch
from skimage.restoration import denoise_tv_chambolle

from iresnet_inverse.metrics import psnr
from iresnet_inverse.operators import get_operator
from iresnet_inverse.tv import (
    div,
    grad,
    search_alpha,
    total_variation,
    tv_fista,
    tv_objective,
    tv_pdhg,
    tv_prox,
    tv_reconstruct,
)


class Identity(torch.nn.Module):
    """A = I with an adjoint, so the generic linear path is exercised (denoising)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y


def phantoms(n: int, size: int, seed: int) -> torch.Tensor:
    """Piecewise-constant images in [0, 1]: a background, rectangles and a disk."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    images = np.empty((n, size, size))
    for img in images:
        img[:] = rng.uniform(0.0, 0.3)
        for _ in range(3):
            r0, r1 = np.sort(rng.integers(0, size, 2))
            c0, c1 = np.sort(rng.integers(0, size, 2))
            img[r0 : r1 + 1, c0 : c1 + 1] = rng.uniform(0.2, 1.0)
        cr, cc = rng.uniform(0.25 * size, 0.75 * size, 2)
        img[(rows - cr) ** 2 + (cols - cc) ** 2 < (size / 5) ** 2] = rng.uniform(0.0, 1.0)
    return torch.tensor(images)[:, None]


def noisy(clean: torch.Tensor, delta: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return clean + delta * torch.randn(clean.shape, generator=gen, dtype=clean.dtype)


def mean_psnr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    return float(np.mean(psnr(reference[:, 0].numpy(), estimate[:, 0].numpy())))


@pytest.mark.parametrize("shape", [(3, 1, 9, 7), (2, 1, 1, 5), (1, 1, 16, 16)])
def test_div_is_minus_grad_adjoint(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, dtype=torch.float64)
    p = torch.randn(shape[:-2] + (2,) + shape[-2:], dtype=torch.float64)
    lhs = float((grad(x) * p).sum())
    rhs = -float((x * div(p)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)
    # Neumann boundary: the last row (column) of the row (column) difference is zero.
    g = grad(x)
    assert bool((g[..., 0, -1, :] == 0).all()) and bool((g[..., 1, :, -1] == 0).all())


def test_total_variation_of_a_step_and_a_constant() -> None:
    # A vertical step of height 0.5 along 6 rows: TV = 0.5 * 6; constants have no variation.
    x = torch.zeros(2, 1, 6, 8, dtype=torch.float64)
    x[0, 0, :, 3:] = 0.5
    x[1] = 0.7
    torch.testing.assert_close(total_variation(x), torch.tensor([3.0, 0.0], dtype=torch.float64))


def test_denoising_matches_skimage() -> None:
    # skimage's denoise_tv_chambolle(f, weight=w) minimizes 1/2 ||u - f||^2 + w sum_ij |grad u|
    # (sum, not mean; Chambolle's fixed point u = f + w div(grad u / |grad u|)), with forward
    # differences and the same Neumann boundary, so weight = alpha exactly. Its stop rule
    # compares a dual energy to eps * E_0, so eps = 1e-12 with many iterations is needed.
    clean = phantoms(1, 24, seed=3)
    z = noisy(clean, 0.1, seed=4)
    alpha = 0.15
    reference = denoise_tv_chambolle(z[0, 0].numpy(), weight=alpha, eps=1e-12, max_num_iter=20000)
    ours = tv_pdhg(Identity(), z, alpha, tol=1e-8, max_iter=20000)
    assert ours.converged
    prox, _ = tv_prox(z, alpha, tol=1e-9, max_iter=20000)
    none_op = tv_pdhg(None, z, alpha, tol=1e-8, max_iter=20000)
    for u in (ours.x, prox, none_op.x):
        assert np.abs(u[0, 0].numpy() - reference).max() < 1e-3
    objective_ref = float(tv_objective(None, torch.tensor(reference)[None, None], z, alpha)[0])
    assert float(tv_objective(None, ours.x, z, alpha)[0]) <= objective_ref * (1 + 1e-6)


def test_pdhg_solution_minimizes_the_objective() -> None:
    op = get_operator("blur")
    clean = phantoms(2, 16, seed=5)
    z = noisy(op(clean), 0.05, seed=6)
    alpha = 0.02
    result = tv_pdhg(op, z, alpha, tol=1e-7, max_iter=20000)
    best = tv_objective(op, result.x, z, alpha)
    gen = torch.Generator().manual_seed(7)
    candidates = [z, clean, op(z), torch.full_like(z, float(z.mean()))]
    for scale in (1e-3, 1e-2, 1e-1):
        for _ in range(3):
            kick = torch.randn(z.shape, generator=gen, dtype=z.dtype)
            candidates.append(result.x + scale * kick)
    for c in candidates:
        assert bool((best <= tv_objective(op, c, z, alpha)).all())
    assert bool((best < 0.8 * tv_objective(op, z, z, alpha)).all())


@pytest.mark.parametrize("delta", [0.01, 0.05])
def test_blur_tv_with_searched_alpha_beats_the_data(delta: float) -> None:
    op = get_operator("blur")
    x_val, x_test = phantoms(4, 32, seed=10), phantoms(4, 32, seed=11)
    z_val, z_test = noisy(op(x_val), delta, seed=12), noisy(op(x_test), delta, seed=13)
    found = search_alpha(op, z_val, x_val, samples=6, low=1e-3, high=0.1, seed=0)
    x_hat = tv_reconstruct(op, z_test, found.alpha, tol=1e-4, max_iter=2000).x
    assert mean_psnr(x_test, x_hat) > mean_psnr(x_test, z_test) + 3.0


def test_fista_on_diffusion_decreases_objective_and_beats_the_data() -> None:
    op = get_operator("diffusion")
    clean = phantoms(4, 24, seed=20)
    z = noisy(op(clean), 0.05, seed=21)
    alpha = 0.03
    result = tv_reconstruct(op, z, alpha, tol=1e-3, max_iter=300)
    assert result.converged
    objective = tv_objective(op, result.x, z, alpha)
    assert bool((objective < 0.8 * tv_objective(op, z, z, alpha)).all())
    assert bool((objective < tv_objective(op, clean, z, alpha)).all())
    assert mean_psnr(clean, result.x) > mean_psnr(clean, z) + 3.0


def test_fista_agrees_with_pdhg_on_linear_operators() -> None:
    # Denoising is strongly convex: the minimizers agree. Deblurring is ill-conditioned (the
    # objective is flat along blurred-away directions), so compare objective values there.
    clean = phantoms(2, 16, seed=30)
    z = noisy(clean, 0.1, seed=31)
    a = tv_pdhg(None, z, 0.1, tol=1e-8, max_iter=20000).x
    b = tv_fista(Identity(), z, 0.1, tol=1e-8, max_iter=5000).x
    assert float((a - b).abs().max()) < 1e-4

    op = get_operator("blur")
    z = noisy(op(clean), 0.02, seed=32)
    a = tv_pdhg(op, z, 0.02, tol=1e-5, max_iter=20000).x
    b = tv_fista(op, z, 0.02, tol=1e-5, max_iter=20000).x
    fa, fb = tv_objective(op, a, z, 0.02), tv_objective(op, b, z, 0.02)
    torch.testing.assert_close(fa, fb, rtol=1e-4, atol=0)
    assert float((a - b).abs().max()) < 0.05


def test_invalid_arguments_are_rejected() -> None:
    z = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="linear"):
        tv_pdhg(get_operator("diffusion"), z, 0.1)
    with pytest.raises(ValueError, match="alpha"):
        tv_reconstruct(None, z, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        tv_fista(None, z, -1.0)
    with pytest.raises(ValueError, match="low"):
        search_alpha(None, z, z, low=0.1, high=0.01)


def test_search_alpha_is_reproducible_and_in_range(capsys: pytest.CaptureFixture[str]) -> None:
    clean = phantoms(2, 16, seed=40)
    z = noisy(clean, 0.1, seed=41)
    kwargs = {"samples": 5, "low": 1e-3, "high": 0.5, "tol": 1e-3, "max_iter": 300}
    first = search_alpha(None, z, clean, seed=1, progress=True, **kwargs)
    assert "TV alpha search" in capsys.readouterr().err
    second = search_alpha(None, z, clean, seed=1, **kwargs)
    other = search_alpha(None, z, clean, seed=2, **kwargs)
    assert first == second
    assert first.table != other.table
    assert 1e-3 <= first.alpha <= 0.5
    alphas = [a for a, _ in first.table]
    assert len(alphas) == 5 and alphas == sorted(alphas)
    assert all(1e-3 <= a <= 0.5 for a in alphas)
    assert (first.alpha, first.psnr) == max(first.table, key=lambda row: row[1])
    assert first.psnr > mean_psnr(clean, z)
