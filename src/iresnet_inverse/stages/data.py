"""Building the study's data: the image dataset and the noisy observations per operator and delta.

Noise of the validation and test sets is fixed (seeded by the data seed, the operator and the
noise level), so every cell is evaluated on the same data. Training noise is not stored: the
training loop draws it fresh every epoch from a generator seeded by the cell's seed.
"""

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from iresnet_inverse.data import sources
from iresnet_inverse.data.dead_leaves import dead_leaves_patches
from iresnet_inverse.data.gaussian_field import gaussian_dataset
from iresnet_inverse.data.patches import build_image_dataset, builtin_split, split_by_image
from iresnet_inverse.errors import ConfigError
from iresnet_inverse.operators import get_operator

EVAL_SPLITS = ("val", "test")


def load_images(data: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """The gray images of ``data.source`` and their by-image split."""
    source, factor = data["source"], data["downscale"]
    if source == "builtin":
        return sources.builtin_images(factor), builtin_split()
    if source == "gaussian":
        raise ConfigError("data.source gaussian draws its patches (image_dataset), not images")
    if not data.get("path"):
        raise ConfigError(f"data.path is required for data.source {source!r}")
    read = sources.stl10_images if source == "stl10" else sources.folder_images
    images = read(data["path"], factor)
    split = split_by_image(list(images), data["val_images"], data["test_images"], data["seed"])
    return images, split


def image_dataset(data: Mapping[str, Any]) -> xr.Dataset:
    """Patches of all splits plus the named test images, as configured in ``data``."""
    if data["source"] == "gaussian":  # drawn from the prior itself, not cut from images
        if (data.get("synthetic") or {}).get("patches"):
            raise ConfigError("data.synthetic: dead leaves would break the gaussian source's prior")
        return gaussian_dataset(data)
    images, split = load_images(data)
    named = data.get("named_images") or (
        ["astronaut", "camera", "chelsea"] if data["source"] == "builtin" else split["test"][:3]
    )
    return build_image_dataset(
        images,
        split,
        data["patch_size"],
        data["patches"],
        list(named),
        data["named_size"],
        data["seed"],
        synthetic_patches(data),
    )


def synthetic_patches(data: Mapping[str, Any]) -> tuple[str, np.ndarray] | None:
    """The dead-leaves training patches of ``data.synthetic``, or None when it asks for none."""
    synthetic = data.get("synthetic") or {}
    if not synthetic.get("patches"):
        return None
    if synthetic["r_min"] >= synthetic["r_max"]:
        raise ConfigError("data.synthetic: r_min must be below r_max")
    size, seed = data["patch_size"], data["seed"]
    leaves = dead_leaves_patches(
        synthetic["patches"], size, seed, synthetic["r_min"], synthetic["r_max"]
    )
    return "dead_leaves", leaves


def noise_seed(seed: int, operator: str, noise_level: float) -> int:
    """A stable seed for the evaluation noise of one (operator, delta)."""
    return int(
        np.random.SeedSequence(
            [seed, zlib.crc32(f"{operator}:{noise_level:g}".encode())]
        ).generate_state(1)[0]
    )


def apply_operator(operator: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """F applied to a stack of images (n, h, w) in float64."""
    with torch.no_grad():
        out = operator(torch.as_tensor(images, dtype=torch.float64)[:, None])
    return out[:, 0].numpy()


def observation_dataset(
    images: xr.Dataset, operator: str, params: Mapping[str, Any], noise_level: float, seed: int
) -> xr.Dataset:
    """F(x) and F(x) + delta * noise for the val/test patches and the named images."""
    op = get_operator(operator, **params)
    rng = np.random.default_rng(noise_seed(seed, operator, noise_level))
    evaluated = images.isel(sample=np.isin(images["split"].values, EVAL_SPLITS))
    variables = {}
    for name, var, dims in (
        ("", evaluated["x"].values, ("sample", "y", "x")),
        ("named_", images["named"].values, ("name", "ny", "nx")),
    ):
        clean = apply_operator(op, var)
        noisy = clean + noise_level * rng.standard_normal(clean.shape)
        variables[f"{name}clean_data"] = (
            dims,
            clean.astype(np.float32),
            {"long_name": "noise-free data F(x)", "units": "1"},
        )
        variables[f"{name}data"] = (
            dims,
            noisy.astype(np.float32),
            {"long_name": "noisy data F(x) + noise", "units": "1"},
        )
    coords = {k: evaluated.coords[k] for k in ("sample", "split", "source")}
    coords["name"] = images["name"]
    return xr.Dataset(variables, coords=coords)
