"""Edges of an image and how kernel clusters relate to them (Arndt & Nickel 2024, Sec. 4.3.2).

Two uses: (1) describe the spectral clusters of saliency kernels by the share of their pixels
on weak and strong Canny edges, and name the "edge cluster" (drawn green in the figures);
(2) the manual clustering of the paper's Fig. 15: edge pixels versus smooth pixels, a fixed
number of equidistant pixels of each per image, and the mean kernel of each pooled over many
images (the probes pass the whole test split, as the paper clusters every test image).

Weak/strong rule (``canny_edges``): Canny runs on the image smoothed by a Gaussian of
``sigma``; its intermediate image is the Sobel gradient magnitude of that smoothed image
(skimage's own computation, reproduced here). A Canny edge pixel is *strong* if its
magnitude is >= ``strong_fraction`` (0.2) times the largest magnitude on any Canny edge pixel,
else *weak*. The largest magnitude on the edges is the maximum of Canny's non-maximum-
suppressed, thresholded image (that maximum always survives hysteresis), so this is the
paper's "20 % of the maximum of the intermediate edge image".
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from skimage.feature import canny
from skimage.filters import gaussian
from skimage.morphology import dilation, footprint_rectangle

from iresnet_inverse.probes.clustering import cluster_means
from iresnet_inverse.probes.saliency import CROP, crop_margin, saliency_kernels


def _image2d(image: np.ndarray | torch.Tensor) -> np.ndarray:
    img = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    img = np.squeeze(img).astype(np.float64)
    if img.ndim != 2:
        raise ValueError(f"need one 2D image, got shape {img.shape}")
    return img


def gradient_magnitude(image: np.ndarray, sigma: float = 1.0, mode: str = "nearest") -> np.ndarray:
    """Sobel gradient magnitude of the Gaussian-smoothed image, exactly as skimage's Canny."""
    img = _image2d(image)
    smoothed = gaussian(img, sigma=sigma, mode=mode, cval=0.0, preserve_range=False)
    if mode == "constant":  # skimage rescales by the smoothed all-ones image (no mask given)
        ones = gaussian(np.ones_like(img), sigma=sigma, mode=mode, cval=0.0, preserve_range=False)
        smoothed = smoothed / (ones + np.finfo(np.float64).eps)
    return np.hypot(ndimage.sobel(smoothed, axis=0), ndimage.sobel(smoothed, axis=1))


@dataclass
class EdgeMap:
    """Boolean (H, W) maps: ``edges`` = ``weak`` | ``strong`` (disjoint); the magnitude used."""

    edges: np.ndarray
    weak: np.ndarray
    strong: np.ndarray
    magnitude: np.ndarray
    threshold: float  # strong_fraction * largest magnitude on an edge


def canny_edges(
    image: np.ndarray | torch.Tensor,
    sigma: float = 1.0,
    strong_fraction: float = 0.2,
    low_threshold: float | None = None,
    high_threshold: float | None = None,
    mode: str = "nearest",
) -> EdgeMap:
    """Canny edges (``skimage.feature.canny``) split into weak and strong (module docstring).

    ``low_threshold``/``high_threshold`` go to skimage (None: its defaults, 0.1 and 0.2 in
    Sobel-magnitude units of an image in [0, 1]); ``mode`` is the border handling of the
    Gaussian smoothing ("nearest": no artificial edge at the image border).
    """
    img = _image2d(image)
    edges = canny(
        img, sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold, mode=mode
    )
    magnitude = gradient_magnitude(img, sigma, mode)
    threshold = strong_fraction * float(magnitude[edges].max()) if edges.any() else np.inf
    strong = edges & (magnitude >= threshold)
    return EdgeMap(edges, edges & ~strong, strong, magnitude, threshold)


@dataclass
class ClusterEdgeStats:
    """Per cluster c = 0..k-1: size, mean kernel, shares of its pixels on weak/strong edges."""

    counts: np.ndarray  # (k,)
    mean_kernels: np.ndarray  # (k, crop, crop)
    weak_share: np.ndarray  # (k,) fraction of the cluster's pixels on weak edges
    strong_share: np.ndarray  # (k,)
    edge_counts: np.ndarray  # (k,) pixels on any edge
    edge_cluster: int  # the cluster with the most edge pixels (drawn green)

    @property
    def edge_share(self) -> np.ndarray:
        return self.weak_share + self.strong_share


def cluster_edge_stats(
    kernels: np.ndarray, labels: np.ndarray, pixels: np.ndarray, edge_map: EdgeMap
) -> ClusterEdgeStats:
    """Relate clusters of kernels at ``pixels`` (n, 2) to the edges of their image.

    The edge cluster is the one with the largest *number* of pixels on (weak or strong) edges,
    as in the paper; ties go to the lower cluster id.
    """
    kernels, labels = np.asarray(kernels, dtype=np.float64), np.asarray(labels)
    pixels = np.asarray(pixels, dtype=np.int64).reshape(-1, 2)
    if not len(kernels) == len(labels) == len(pixels):
        raise ValueError("kernels, labels and pixels must have the same length")
    k = int(labels.max()) + 1
    weak = edge_map.weak[pixels[:, 0], pixels[:, 1]]
    strong = edge_map.strong[pixels[:, 0], pixels[:, 1]]
    counts = np.bincount(labels, minlength=k)
    weak_n = np.bincount(labels, weights=weak, minlength=k)
    strong_n = np.bincount(labels, weights=strong, minlength=k)
    safe = np.maximum(counts, 1)
    edge_counts = (weak_n + strong_n).astype(np.int64)
    return ClusterEdgeStats(
        counts=counts,
        mean_kernels=cluster_means(kernels, labels),
        weak_share=weak_n / safe,
        strong_share=strong_n / safe,
        edge_counts=edge_counts,
        edge_cluster=int(np.argmax(edge_counts)),
    )


# --- manual clustering (paper Fig. 15) ---------------------------------------------------------


def equidistant(indices: np.ndarray, count: int) -> np.ndarray:
    """``count`` entries evenly spaced through ``indices`` (positions floor(i * n / count));
    all of them when there are at most ``count``."""
    indices = np.asarray(indices)
    n = len(indices)
    if n <= count:
        return indices
    return indices[(np.arange(count) * n) // count]


@dataclass
class ManualClusters:
    """Pixels (n, 2) (row, col) of the edge and smooth clusters, and the masks they came from."""

    edge: np.ndarray
    smooth: np.ndarray
    edge_mask: np.ndarray  # all eligible edge pixels (before equidistant sampling)
    smooth_mask: np.ndarray


def manual_clusters(
    image: np.ndarray | torch.Tensor,
    per_cluster: int = 250,
    crop: int = CROP,
    smooth_distance: float = 2.0,
    sigma: float = 1.0,
    dilated_edge_cluster: bool = False,
) -> ManualClusters:
    """Edge and smooth pixels of one image, ``per_cluster`` equidistant pixels of each.

    Rule: E = Canny edges (``canny_edges``); D = E dilated by a 3x3 square. Edge cluster: the
    pixels of E (of D with ``dilated_edge_cluster``). Smooth cluster: pixels whose Euclidean
    distance to D is at least ``smooth_distance`` (2), so a band of pixels next to every edge
    belongs to neither cluster. Pixels closer than ``crop // 2`` to the image border are in
    neither, so every crop fits. Each cluster's eligible pixels are taken in row-major order
    and ``per_cluster`` of them picked evenly spaced (``equidistant``); fewer if there are not
    enough.
    """
    img = _image2d(image)
    m = crop_margin(crop)
    edges = canny_edges(img, sigma=sigma).edges
    dilated = dilation(edges, footprint_rectangle((3, 3)))
    distance = (
        ndimage.distance_transform_edt(~dilated) if dilated.any() else np.full(img.shape, np.inf)
    )
    interior = np.zeros(img.shape, dtype=bool)
    interior[m : img.shape[0] - m, m : img.shape[1] - m] = True
    edge_mask = (dilated if dilated_edge_cluster else edges) & interior
    smooth_mask = (distance >= smooth_distance) & interior
    width = img.shape[1]

    def pick(mask: np.ndarray) -> np.ndarray:
        flat = equidistant(np.flatnonzero(mask), per_cluster)
        return np.stack([flat // width, flat % width], axis=1).astype(np.int64)

    return ManualClusters(pick(edge_mask), pick(smooth_mask), edge_mask, smooth_mask)


@dataclass
class ManualMeans:
    """Mean kernels over all sampled pixels of all images, and how many pixels went in."""

    edge: np.ndarray  # (crop, crop)
    smooth: np.ndarray
    edge_count: int
    smooth_count: int


def manual_cluster_means(
    G: Callable[[torch.Tensor], torch.Tensor],
    images: Iterable[torch.Tensor],
    per_cluster: int = 250,
    crop: int = CROP,
    chunk_size: int = 64,
    normalize: bool = True,
    **cluster_kwargs: object,
) -> ManualMeans:
    """Mean saliency kernel of G over the edge and smooth clusters of every image (Fig. 15).

    ``images`` yields single images (1, 1, H, W) (or (H, W)/(1, H, W)); kernels are computed
    at each image's own manual clusters and pooled, so every sampled pixel weighs the same.
    ``normalize`` is that of ``saliency_kernels``. NaN kernels mean no pixel in a cluster.
    """
    sums = {"edge": np.zeros((crop, crop)), "smooth": np.zeros((crop, crop))}
    counts = {"edge": 0, "smooth": 0}
    for image in images:
        x0 = torch.as_tensor(image)
        x0 = x0.reshape(1, 1, *x0.shape[-2:])
        clusters = manual_clusters(x0, per_cluster, crop, **cluster_kwargs)
        for name in sums:
            pixels = getattr(clusters, name)
            if len(pixels):
                maps = saliency_kernels(
                    G, x0, pixels, crop=crop, chunk_size=chunk_size, normalize=normalize
                )
                sums[name] += maps.kernels.sum(axis=0)
                counts[name] += len(pixels)

    def mean(name: str) -> np.ndarray:
        return sums[name] / counts[name] if counts[name] else np.full((crop, crop), np.nan)

    return ManualMeans(mean("edge"), mean("smooth"), counts["edge"], counts["smooth"])
