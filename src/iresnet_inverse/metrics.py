"""Image quality metrics per image, for images in [0, 1] (data_range 1, as in the paper)."""

import numpy as np

# scikit-image is imported where SSIM is computed: training, the toy jobs and the figures score
# by PSNR only, and every job pays its imports (scikit-image's own PSNR lives beside its mutual
# information, whose import of scipy.stats costs about a second; ``psnr`` below is the same
# expression, equal to it bit for bit: tests/test_train.py).


def _pairs(reference: np.ndarray, estimate: np.ndarray) -> zip:
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    if reference.shape != estimate.shape:
        raise ValueError(f"shape mismatch {reference.shape} vs {estimate.shape}")
    return zip(
        reference.reshape(-1, *reference.shape[-2:]),
        estimate.reshape(-1, *estimate.shape[-2:]),
        strict=True,
    )


def psnr(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """PSNR in dB per image of stacks (..., h, w); data range 1 (scikit-image's formula)."""
    return np.array([10 * np.log10(1.0 / err) for err in mse(reference, estimate)])


def ssim(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """SSIM per image (scikit-image's structural_similarity, data range 1)."""
    from skimage.metrics import structural_similarity

    return np.array(
        [structural_similarity(r, e, data_range=1.0) for r, e in _pairs(reference, estimate)]
    )


def mse(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Mean squared error per image."""
    return np.array(
        [np.mean((r - e) ** 2, dtype=np.float64) for r, e in _pairs(reference, estimate)]
    )
