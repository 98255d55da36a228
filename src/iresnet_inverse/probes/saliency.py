"""Saliency maps: rows of the Jacobian of a map G: X -> X at one image, cropped around their pixel.

For a pixel p = (r, c) the Jacobian row J G(x0)|_p = d G(x0)_p / d x is the linear blurring kernel
that G applies at p to first order (Arndt & Nickel 2024, Sec. 4.3.2). A row is one vector-Jacobian
product with the one-hot cotangent e_p, so all rows of a pixel set come from one linearization
of G at x0 and VJPs vectorized over one-hot cotangents (``torch.func.vjp`` + ``vmap``) in chunks.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import vjp, vmap

CROP = 9


def crop_margin(crop: int = CROP) -> int:
    """Pixels kept free at each image border so that a ``crop`` x ``crop`` window fits."""
    if crop < 1 or crop % 2 != 1:
        raise ValueError(f"crop must be a positive odd integer, got {crop}")
    return crop // 2


def sample_pixels(
    shape: tuple[int, int], count: int | None = 1500, seed: int = 0, crop: int = CROP
) -> np.ndarray:
    """The fixed random pixel set P: ``count`` distinct interior pixels, (count, 2) (row, col).

    P depends on (shape, count, seed, crop) only, so the same pixels are analysed for every
    image, network and operator. Interior means at least ``crop // 2`` pixels from each border,
    so that the crop around a pixel never leaves the image. Rows are sorted by flat index.
    ``count=None`` takes every interior pixel; a larger count than there are interior pixels
    is an error (pass ``min(count, n)`` deliberately rather than silently analysing fewer).
    """
    h, w = shape
    m = crop_margin(crop)
    if h <= 2 * m or w <= 2 * m:
        raise ValueError(f"image {h}x{w} has no interior pixels for a {crop}x{crop} crop")
    rows, cols = np.mgrid[m : h - m, m : w - m]
    interior = np.stack([rows.ravel(), cols.ravel()], axis=1)
    if count is None:
        return interior
    if not 0 < count <= len(interior):
        raise ValueError(
            f"count must lie in [1, {len(interior)}] (interior pixels of {h}x{w}), got {count}"
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(interior), size=count, replace=False))
    return interior[chosen]


def normalize_kernels(kernels: np.ndarray) -> np.ndarray:
    """Divide each kernel by its largest absolute value: signs kept, values in [-1, 1].

    Clustering then compares shapes, not gains (a network that amplifies by 2 has the same
    kernels as one that does not). An all-zero kernel stays zero.
    """
    kernels = np.asarray(kernels)
    scale = np.abs(kernels).reshape(len(kernels), -1).max(axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    return kernels / scale.reshape(-1, *([1] * (kernels.ndim - 1)))


def _check_pixels(pixels: np.ndarray, shape: tuple[int, int], margin: int = 0) -> np.ndarray:
    """Pixels as an (n, 2) int array, each at least ``margin`` from the border of ``shape``."""
    pixels = np.asarray(pixels, dtype=np.int64).reshape(-1, 2)
    h, w = shape
    r, c = pixels[:, 0], pixels[:, 1]
    if len(pixels) and (
        r.min() < margin or c.min() < margin or r.max() >= h - margin or c.max() >= w - margin
    ):
        raise ValueError(f"pixels must lie in the {h}x{w} image, at least {margin} from its border")
    return pixels


def _row_chunks(
    G: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    pixels: np.ndarray,
    chunk_size: int,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Linearize G once at x0, then yield (pixel chunk, its Jacobian rows (n, H, W))."""
    if x0.ndim != 4 or x0.shape[:2] != (1, 1):
        raise ValueError(f"x0 must have shape (1, 1, H, W), got {tuple(x0.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    h, w = x0.shape[-2:]
    pixels = _check_pixels(pixels, (h, w))
    # torch.func differentiates w.r.t. x0 under no_grad too; no_grad keeps autograd from also
    # recording graphs through the parameters of a network.
    with torch.no_grad():
        out, vjp_fn = vjp(G, x0.detach())
    if out.shape != x0.shape:
        raise ValueError(f"G must map X to X: {tuple(x0.shape)} -> {tuple(out.shape)}")
    batched_vjp = vmap(lambda cotangent: vjp_fn(cotangent)[0])
    for start in range(0, len(pixels), chunk_size):
        chunk = pixels[start : start + chunk_size]
        flat = torch.as_tensor(chunk[:, 0] * w + chunk[:, 1], device=x0.device)
        onehot = torch.zeros(len(chunk), h * w, dtype=out.dtype, device=out.device)
        onehot[torch.arange(len(chunk), device=out.device), flat] = 1.0
        with torch.no_grad():
            rows = batched_vjp(onehot.view(len(chunk), *out.shape))
        yield chunk, rows.reshape(len(chunk), h, w).detach()


def jacobian_rows(
    G: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    pixels: np.ndarray,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Full Jacobian rows d G(x0)_p / d x, (n_pixels, H, W), by batched one-hot VJPs.

    G is linearized once at x0 (1, 1, H, W); the VJP is then vmapped over ``chunk_size``
    one-hot cotangents at a time, which caps memory at about ``chunk_size`` backward passes.
    """
    rows = [r for _, r in _row_chunks(G, x0, pixels, chunk_size)]
    return torch.cat(rows) if rows else x0.new_zeros(0, *x0.shape[-2:])


def crop_rows(rows: torch.Tensor, pixels: np.ndarray, crop: int = CROP) -> torch.Tensor:
    """The ``crop`` x ``crop`` window of each row centred on its own pixel, (n, crop, crop)."""
    m = crop_margin(crop)
    pixels = _check_pixels(pixels, tuple(rows.shape[-2:]), m)
    r, c = pixels[:, 0], pixels[:, 1]
    offsets = torch.arange(-m, m + 1, device=rows.device)
    ri = torch.as_tensor(r, device=rows.device)[:, None, None] + offsets[None, :, None]
    ci = torch.as_tensor(c, device=rows.device)[:, None, None] + offsets[None, None, :]
    n = torch.arange(len(pixels), device=rows.device)[:, None, None]
    return rows[n, ri, ci]


@dataclass
class SaliencyMaps:
    """Kernels (n, crop, crop) and the pixels (n, 2) (row, col) they belong to, same order."""

    kernels: np.ndarray
    pixels: np.ndarray


def saliency_kernels(
    G: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    pixels: np.ndarray | None = None,
    count: int | None = 1500,
    seed: int = 0,
    crop: int = CROP,
    chunk_size: int = 64,
    normalize: bool = True,
) -> SaliencyMaps:
    """Saliency maps of G at x0 (1, 1, H, W): cropped Jacobian rows, (n_pixels, crop, crop).

    ``pixels`` defaults to ``sample_pixels((H, W), count, seed, crop)``, the shared set P.
    Rows are computed chunk by chunk and cropped at once, so the full (n, H, W) rows of all
    pixels never exist together. With ``normalize`` each kernel is divided by its largest
    absolute value (``normalize_kernels``), as before clustering in the paper.
    Networks should be in ``eval()`` mode, so that no power-iteration step runs inside G.
    """
    if pixels is None:
        pixels = sample_pixels(tuple(x0.shape[-2:]), count, seed, crop)
    pixels = _check_pixels(pixels, tuple(x0.shape[-2:]), crop_margin(crop))  # before any work
    parts = [crop_rows(rows, chunk, crop) for chunk, rows in _row_chunks(G, x0, pixels, chunk_size)]
    if parts:
        kernels = torch.cat(parts).cpu().numpy()
    else:
        kernels = np.zeros((0, crop, crop), dtype=np.float64)
    return SaliencyMaps(normalize_kernels(kernels) if normalize else kernels, pixels)
