"""The probes of one trained cell on the named test images, as NetCDF-ready datasets.

phi is the network's forward map (the learned forward operator), F the true operator. Both
are probed at the same images, pixels and seeds, so the figures compare like with like:
directional derivatives (``directional_dataset``) and saliency kernels with their clusters
(``saliency_dataset``). The manual edge/smooth cluster means of Fig. 15 pool every image of the
test split (the paper clusters each test image); the named images are for the pictures.
"""

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from iresnet_inverse.artifacts import read_dataset, variable
from iresnet_inverse.data.splits import paired_split
from iresnet_inverse.jobs import Job
from iresnet_inverse.models import load_trained_cell
from iresnet_inverse.probes import directional, edges
from iresnet_inverse.probes.clustering import select_k, spectral_clusters
from iresnet_inverse.probes.saliency import saliency_kernels, sample_pixels
from iresnet_inverse.runtime import setup

ImageMap = Callable[[torch.Tensor], torch.Tensor]
MAPS = ("operator", "network")
REGIONS = ("image", "subject")


def _image(named: np.ndarray, i: int, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(named[i], dtype=torch.float32, device=device)[None, None]


def subject_masks(named: np.ndarray, names: list[str], settings: Mapping[str, Any]) -> np.ndarray:
    """One boolean mask per named image: the user's file where given, else the rule."""
    masks = settings.get("masks", {})
    return np.stack(
        [
            directional.load_mask(masks[name], img.shape)
            if name in masks
            else directional.subject_mask(img, settings.get("subject", "otsu"))
            for name, img in zip(names, named, strict=True)
        ]
    )


def _strongest_direction(
    phi: ImageMap,
    operator: ImageMap,
    x0: torch.Tensor,
    mask: np.ndarray | None,
    settings: Mapping[str, Any],
) -> directional.DirectionalResult:
    """``max_regularization_direction`` at x0 with the probe's settings."""
    return directional.max_regularization_direction(
        phi,
        operator,
        x0,
        mask=mask,
        restarts=settings["restarts"],
        steps=settings["steps"],
        step_size=settings["step_size"],
        seed=settings["seed"],
    )


class Probed(NamedTuple):
    """What a probe looks at: the net's map phi against the operator F, at the named images
    (N, H, W) with their names, computed on ``device``."""

    phi: ImageMap
    operator: ImageMap
    named: np.ndarray
    names: list[str]
    device: torch.device | str = "cpu"


def directional_dataset(probed: Probed, settings: Mapping[str, Any]) -> xr.Dataset:
    """Directions h maximizing ||D phi h||^2 - ||D F h||^2 at every named image, over the whole
    image and restricted to its subject, with both norms and the ascent traces.

    For an iResNet phi = mean o Phi o c also ``lifted_norm`` = ||D Phi(c x0)(c h)|| / sqrt(M) on
    the same h: the quantity that the Lipschitz constraint bounds below by 1 - L (see
    ``analysis.directional``); ``phi_norm`` has no such bound when M > 1. NaN for other nets."""
    phi, operator, named, names = probed[:4]
    device = torch.device(probed.device)
    masks = subject_masks(named, names, settings)
    steps = settings["steps"]
    shape = (len(names), len(REGIONS))
    direction = np.zeros((*shape, *named.shape[1:]), dtype=np.float32)
    phi_norm, operator_norm, gain = (np.zeros(shape) for _ in range(3))
    lifted_norm = np.full(shape, np.nan)
    lifted = directional.lifted_core(phi) is not None
    trace = np.full((*shape, steps + 1), np.nan)
    jobs = [(i, r) for i in range(len(names)) for r in range(len(REGIONS))]
    for i, r in tqdm(jobs, desc="directional derivatives", mininterval=5):
        mask = masks[i] if REGIONS[r] == "subject" else None
        result = _strongest_direction(phi, operator, _image(named, i, device), mask, settings)
        direction[i, r] = result.direction[0, 0].cpu().numpy()
        if lifted:
            lifted_norm[i, r] = float(
                directional.lifted_directional_norms(
                    phi, _image(named, i, device), result.direction
                )[0]
            )
        phi_norm[i, r], operator_norm[i, r] = result.phi_norm, result.operator_norm
        gain[i, r] = result.objective
        trace[i, r, : len(result.trace)] = result.trace
    dims = ("name", "region")
    return xr.Dataset(
        {
            "direction": variable((*dims, "ny", "nx"), direction, "unit direction h"),
            "phi_norm": variable(dims, phi_norm, "||D phi(x0) h|| (no lower bound guaranteed)"),
            "lifted_norm": variable(
                dims, lifted_norm, "||D Phi(c x0)(c h)|| / sqrt(M) on X^M (>= 1 - L guaranteed)"
            ),
            "operator_norm": variable(dims, operator_norm, "||D F(x0) h||"),
            "regularization": variable(dims, gain, "||D phi h||^2 - ||D F h||^2"),
            "trace": variable((*dims, "step"), trace, "objective along the best ascent"),
            "subject_mask": variable(
                ("name", "ny", "nx"), masks.astype(np.int8), "subject of the image"
            ),
            "image": variable(("name", "ny", "nx"), named.astype(np.float32), "x0"),
        },
        coords={"name": names, "region": list(REGIONS), "step": np.arange(steps + 1)},
    )


def _spectral_clusters(
    maps: Mapping[str, ImageMap],
    named: np.ndarray,
    pixels: np.ndarray,
    settings: Mapping[str, Any],
    device: torch.device,
) -> xr.Dataset:
    """Per map and named image: the saliency kernels at P, their spectral clusters and each
    cluster's mean kernel and share of weak and strong Canny edge pixels."""
    crop, k, seed = settings["crop"], settings["clusters"], settings["seed"]
    n_img, n_px = len(named), len(pixels)
    kernel = np.zeros((len(MAPS), n_img, n_px, crop, crop), dtype=np.float32)
    label = np.zeros((len(MAPS), n_img, n_px), dtype=np.int8)
    cluster_kernel = np.zeros((len(MAPS), n_img, k, crop, crop))
    count, weak_share, strong_share = (np.zeros((len(MAPS), n_img, k)) for _ in range(3))
    edge_cluster = np.zeros((len(MAPS), n_img), dtype=np.int8)
    seconds = np.zeros(len(MAPS))
    edge_maps = [edges.canny_edges(image) for image in named]
    jobs = [(m, i) for m in range(len(MAPS)) for i in range(n_img)]
    for m, i in tqdm(jobs, desc="saliency maps", mininterval=5):
        start = time.perf_counter()
        result = saliency_kernels(maps[MAPS[m]], _image(named, i, device), pixels, crop=crop)
        seconds[m] += time.perf_counter() - start
        kernel[m, i] = result.kernels
        label[m, i] = spectral_clusters(result.kernels, k, seed)
        stats = edges.cluster_edge_stats(result.kernels, label[m, i], pixels, edge_maps[i])
        found = len(stats.counts)  # spectral clustering may leave a cluster empty
        cluster_kernel[m, i, :found] = stats.mean_kernels
        count[m, i, :found], edge_cluster[m, i] = stats.counts, stats.edge_cluster
        weak_share[m, i, :found] = stats.weak_share
        strong_share[m, i, :found] = stats.strong_share
    per_cluster, img = ("map", "name", "cluster"), ("name", "ny", "nx")
    canny = {kind: np.stack([getattr(e, kind) for e in edge_maps]) for kind in ("weak", "strong")}
    return xr.Dataset(
        {
            "kernel": variable(
                ("map", "name", "pixel", "ky", "kx"), kernel, "normalized saliency kernel"
            ),
            "label": variable(("map", "name", "pixel"), label, "spectral cluster"),
            "cluster_kernel": variable(
                (*per_cluster, "ky", "kx"), cluster_kernel, "mean kernel of the cluster"
            ),
            "cluster_count": variable(per_cluster, count, "pixels in the cluster"),
            "weak_share": variable(per_cluster, weak_share, "share of the cluster on weak edges"),
            "strong_share": variable(
                per_cluster, strong_share, "share of the cluster on strong edges"
            ),
            "edge_cluster": variable(
                ("map", "name"), edge_cluster, "cluster with the most edge pixels"
            ),
            "weak_edge": variable(img, canny["weak"].astype(np.int8), "weak Canny edge"),
            "strong_edge": variable(img, canny["strong"].astype(np.int8), "strong Canny edge"),
            "saliency_seconds": variable(
                ("map",), seconds, "time for the saliency kernels of all named images", "s"
            ),
        }
    )


def _cluster_selection(kernel: np.ndarray, settings: Mapping[str, Any]) -> xr.Dataset:
    """Elbow, gap and gap* curves and their choices of k, per map, on the first named image."""
    k_max = min(settings["k_max"], kernel.shape[2])
    descriptions = {
        "dispersion": "k-means dispersion W_k (first named image)",
        "gap": "gap statistic",
        "gap_se": "standard error of the gap statistic",
        "gap_star": "gap* statistic",
        "gap_star_se": "standard error of gap*",
    }
    selections = [
        select_k(kernel[m, 0], k_max, settings["references"], settings["seed"])
        for m in range(len(MAPS))
    ]
    curves = {
        c: variable(("map", "k"), np.stack([getattr(s, c) for s in selections]), text)
        for c, text in descriptions.items()
    }
    chosen = {
        c: variable(("map",), np.array([getattr(s, c) for s in selections]), f"k chosen by {c[2:]}")
        for c in ("k_elbow", "k_gap", "k_gap_star")
    }
    return xr.Dataset({**curves, **chosen}, coords={"k": np.arange(1, k_max + 1)})


def _manual_clusters(
    maps: Mapping[str, ImageMap],
    images: np.ndarray,
    settings: Mapping[str, Any],
    device: torch.device,
    source: str,
) -> xr.Dataset:
    """Fig. 15: the mean kernels of edge and smooth pixels pooled over ``images``."""
    manual = np.zeros((len(MAPS), 2, settings["crop"], settings["crop"]))
    pixels = np.zeros(2, dtype=np.int64)
    for m, name in enumerate(MAPS):
        means = edges.manual_cluster_means(
            maps[name],
            (_image(images, i, device) for i in range(len(images))),
            settings["per_cluster"],
            settings["crop"],
        )
        manual[m] = means.edge, means.smooth
        pixels[:] = means.edge_count, means.smooth_count  # the same pixels for both maps
    return xr.Dataset(
        {
            "manual_kernel": variable(
                ("map", "manual", "ky", "kx"),
                manual,
                f"mean kernel of the manual cluster over the {source}",
            ),
            "manual_images": variable(
                (), np.int64(len(images)), f"images in the manual cluster means ({source})"
            ),
            "manual_pixels": variable(
                ("manual",), pixels, "pixels in the manual cluster mean, all images"
            ),
        },
        coords={"manual": ["edge", "smooth"]},
    )


def saliency_dataset(
    probed: Probed, settings: Mapping[str, Any], test: np.ndarray | None = None
) -> xr.Dataset:
    """Saliency kernels of F and phi at one fixed pixel set P on every named image, their
    spectral clusters with edge statistics, the elbow/gap/gap* curves (first image) and the
    manual edge/smooth cluster means (Fig. 15).

    The manual means pool the ``per_cluster`` edge and smooth pixels of every image of ``test``
    (n, H, W), the test split, so that every sampled pixel weighs the same; ``test=None`` falls
    back to the named images. How many images and pixels went in is recorded."""
    phi, operator, named, names = probed[:4]
    device = torch.device(probed.device)
    manual_source = named if test is None else np.asarray(test, dtype=np.float32)
    if manual_source.ndim != 3 or not len(manual_source):
        raise ValueError(f"need a stack (n, H, W) of test images, got {manual_source.shape}")
    crop = settings["crop"]
    size = named.shape[1:]
    interior = (size[0] - crop + 1) * (size[1] - crop + 1)
    pixels = sample_pixels(size, min(settings["pixels"], interior), settings["seed"], crop)
    maps = {"operator": operator, "network": phi}
    spectral = _spectral_clusters(maps, named, pixels, settings, device)
    source = "named images" if test is None else "test images"
    ds = xr.merge(
        [
            spectral,
            _cluster_selection(spectral["kernel"].values, settings),
            _manual_clusters(maps, manual_source, settings, device, source),
        ]
    )
    ds["image"] = variable(("name", "ny", "nx"), named.astype(np.float32), "x0")
    return ds.assign_coords(
        map=list(MAPS),
        name=names,
        pixel=np.arange(len(pixels)),
        pixel_row=("pixel", pixels[:, 0]),
        pixel_col=("pixel", pixels[:, 1]),
        cluster=np.arange(settings["clusters"]),
    )


PROBES = {"directional": directional_dataset, "saliency": saliency_dataset}


def probe_model_file(probe: str, model_path: str, images_path: str, job: Job) -> xr.Dataset:
    """Load a trained cell and run one probe ("directional" or "saliency") on the named
    test images against the cell's true operator; the saliency probe's manual cluster means
    run over the whole test split."""
    device = setup(job.device, job.deterministic)
    trained = load_trained_cell(model_path, device, expect=job.cell)
    net, operator = trained.net, trained.operator
    images = read_dataset(images_path)
    named = images["named"].values.astype(np.float32)
    names = [str(n) for n in images["name"].values]
    extra = {}
    if probe == "saliency":
        extra["test"] = paired_split(images, None, "test")[0]
    probed = Probed(net, operator.eval(), named, names, device)
    return PROBES[probe](probed, job.section("analysis"), **extra)
