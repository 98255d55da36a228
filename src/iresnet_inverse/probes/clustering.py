"""Clustering of saliency kernels and the choice of the number of clusters k.

The kernels (n, 9, 9) are flattened to vectors in R^81. Labels come from spectral clustering
(paper Sec. 4.3.2). The k-selection curves (elbow, gap, gap*) measure the within-cluster
dispersion W_k of a k-means partition, as Tibshirani, Walther & Hastie (2001) define the gap
statistic; spectral clustering has no dispersion of its own to minimize, so k-means is the
standard companion for these curves.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans, SpectralClustering


def _flatten(kernels: np.ndarray) -> np.ndarray:
    data = np.asarray(kernels, dtype=np.float64)
    return data.reshape(len(data), -1)


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters by decreasing size (ties: by first occurrence), 0 the largest.

    Cluster ids of sklearn are arbitrary; this makes them reproducible and comparable.
    """
    labels = np.asarray(labels)
    ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    mapping = np.empty(ids.max() + 1, dtype=np.int64)
    mapping[ids[order]] = np.arange(len(ids))
    return mapping[labels]


def spectral_clusters(
    kernels: np.ndarray,
    k: int = 2,
    seed: int = 0,
    affinity: str = "nearest_neighbors",
    n_neighbors: int = 10,
) -> np.ndarray:
    """Spectral clustering of flattened kernels into ``k`` clusters, labels 0..k-1 by size.

    The default affinity is the symmetrized k-nearest-neighbour graph (``n_neighbors``): it
    needs no length scale, unlike ``"rbf"`` whose gamma would have to match the spread of
    normalized kernels, and it follows non-convex clusters, the reason for spectral clustering.
    The embedding is clustered by k-means with ``random_state=seed``.
    """
    data = _flatten(kernels)
    if not 1 <= k <= len(data):
        raise ValueError(f"k must lie in [1, {len(data)}], got {k}")
    if k == 1:
        return np.zeros(len(data), dtype=np.int64)
    model = SpectralClustering(
        n_clusters=k,
        affinity=affinity,
        n_neighbors=min(n_neighbors, len(data) - 1),
        assign_labels="kmeans",
        random_state=seed,
        n_init=10,
    )
    return relabel_by_size(model.fit_predict(data))


def within_dispersion(data: np.ndarray, k: int, seed: int = 0, n_init: int = 4) -> float:
    """W_k: the sum over clusters of squared distances to the cluster mean, for k-means.

    This equals Tibshirani's W_k = sum_r D_r / (2 n_r) (D_r the sum of pairwise squared
    distances in cluster r); it is the k-means inertia (best of ``n_init`` starts).
    """
    data = _flatten(data)
    if k == 1:
        return float(((data - data.mean(axis=0)) ** 2).sum())
    model = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(data)
    return float(model.inertia_)


def _reference_sampler(
    data: np.ndarray, reference: str
) -> Callable[[np.random.Generator], np.ndarray]:
    """Uniform samples in the data's bounding box, or in the box of its principal axes."""
    if reference == "box":
        lo, hi = data.min(axis=0), data.max(axis=0)
        return lambda rng: rng.uniform(lo, hi, size=data.shape)
    if reference == "pca":
        mean = data.mean(axis=0)
        _, _, vt = np.linalg.svd(data - mean, full_matrices=False)
        rotated = (data - mean) @ vt.T
        lo, hi = rotated.min(axis=0), rotated.max(axis=0)
        return lambda rng: rng.uniform(lo, hi, size=rotated.shape) @ vt + mean
    raise ValueError(f"unknown reference {reference!r}; valid: box, pca")


@dataclass
class KSelection:
    """k-selection curves for k = 1..K and the k each rule picks.

    dispersion: W_k; gap: E*[log W_k] - log W_k with standard error gap_se (s_k);
    gap_star: E*[W_k] - W_k with standard error gap_star_se (s*_k).
    """

    ks: np.ndarray
    dispersion: np.ndarray
    reference_log_dispersion: np.ndarray  # mean over references of log W*_k
    reference_dispersion: np.ndarray  # mean over references of W*_k
    gap: np.ndarray
    gap_se: np.ndarray
    gap_star: np.ndarray
    gap_star_se: np.ndarray
    k_elbow: int
    k_gap: int
    k_gap_star: int


def _first_k(ks: np.ndarray, gap: np.ndarray, se: np.ndarray) -> int:
    """The smallest k with gap_k >= gap_{k+1} - s_{k+1}; the largest k when none qualifies."""
    for i in range(len(ks) - 1):
        if gap[i] >= gap[i + 1] - se[i + 1]:
            return int(ks[i])
    return int(ks[-1])


def elbow_k(ks: np.ndarray, dispersion: np.ndarray) -> int:
    """The elbow of the W_k curve: the k farthest below the chord from (1, W_1) to (K, W_K).

    Both axes are scaled to [0, 1] first (the "kneedle" rule), so the choice does not depend
    on units; with fewer than three ks, or a straight curve, the smallest k is returned.
    """
    ks, w = np.asarray(ks, dtype=np.float64), np.asarray(dispersion, dtype=np.float64)
    if len(ks) < 3 or w[0] == w[-1]:
        return int(ks[0])
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    y = (w - w[-1]) / (w[0] - w[-1])
    below = (1.0 - x) - y  # the chord from (0, 1) to (1, 0) minus the curve
    return int(ks[int(np.argmax(below))])


def select_k(
    kernels: np.ndarray,
    k_max: int = 10,
    references: int = 20,
    seed: int = 0,
    reference: str = "box",
    n_init: int = 4,
) -> KSelection:
    """Elbow, gap and gap* curves for k = 1..k_max and the k each one chooses.

    Gap statistic (Tibshirani, Walther & Hastie 2001): ``references`` data sets drawn
    uniformly in the bounding box of the data (``reference="box"``) or in the box aligned with
    its principal components (``"pca"``), gap_k = mean_b log W*_kb - log W_k,
    s_k = sd_b(log W*_kb) sqrt(1 + 1/B); k_gap is the smallest k with
    gap_k >= gap_{k+1} - s_{k+1}. Gap* (Mohajer, Englmeier & Schmid 2010) replaces log W_k by
    W_k: gap*_k = mean_b W*_kb - W_k, s*_k = sd_b(W*_kb) sqrt(1 + 1/B), and k_gap_star uses the
    same "smallest k" rule on gap* and s*. k_elbow is ``elbow_k`` of W_k. W_k is the k-means
    dispersion (``within_dispersion``). Everything is seeded by ``seed``.
    """
    data = _flatten(kernels)
    k_max = min(k_max, len(data))
    if k_max < 1 or references < 1:
        raise ValueError("need k_max >= 1, references >= 1 and at least one sample")
    ks = np.arange(1, k_max + 1)
    dispersion = np.array([within_dispersion(data, k, seed, n_init) for k in ks])
    sample = _reference_sampler(data, reference)
    rng = np.random.default_rng(seed)
    ref = np.array(
        [[within_dispersion(sample(rng), k, seed, n_init) for k in ks] for _ in range(references)]
    )
    tiny = np.finfo(np.float64).tiny
    log_w, log_ref = np.log(np.maximum(dispersion, tiny)), np.log(np.maximum(ref, tiny))
    factor = np.sqrt(1.0 + 1.0 / references)
    gap = log_ref.mean(axis=0) - log_w
    gap_se = log_ref.std(axis=0) * factor
    gap_star = ref.mean(axis=0) - dispersion
    gap_star_se = ref.std(axis=0) * factor
    return KSelection(
        ks=ks,
        dispersion=dispersion,
        reference_log_dispersion=log_ref.mean(axis=0),
        reference_dispersion=ref.mean(axis=0),
        gap=gap,
        gap_se=gap_se,
        gap_star=gap_star,
        gap_star_se=gap_star_se,
        k_elbow=elbow_k(ks, dispersion),
        k_gap=_first_k(ks, gap, gap_se),
        k_gap_star=_first_k(ks, gap_star, gap_star_se),
    )


def cluster_means(kernels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean kernel of every cluster 0..max(label), (k, *kernel shape); NaN for an empty one."""
    kernels, labels = np.asarray(kernels, dtype=np.float64), np.asarray(labels)
    k = int(labels.max()) + 1 if len(labels) else 0
    out = np.full((k, *kernels.shape[1:]), np.nan)
    for c in range(k):
        if (labels == c).any():
            out[c] = kernels[labels == c].mean(axis=0)
    return out
