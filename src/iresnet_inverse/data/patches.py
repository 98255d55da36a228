"""By-image splits and seeded patch sampling into one xarray dataset."""

from collections.abc import Mapping

import numpy as np
import xarray as xr

from iresnet_inverse.data.sources import BUILTIN_SPLITS
from iresnet_inverse.errors import ConfigError

SPLITS = ("train", "val", "test")


def split_by_image(
    names: list[str], val_images: int, test_images: int, seed: int
) -> dict[str, list[str]]:
    """Seeded assignment of whole images to train/val/test (for STL-10 and image folders)."""
    if val_images + test_images >= len(names):
        raise ConfigError(
            f"data: {len(names)} images cannot give {val_images} val and {test_images} test "
            "images and still leave training images"
        )
    order = np.random.default_rng(seed).permutation(sorted(names))
    test = sorted(order[:test_images])
    val = sorted(order[test_images : test_images + val_images])
    train = sorted(order[test_images + val_images :])
    return {"train": list(train), "val": list(val), "test": list(test)}


def builtin_split() -> dict[str, list[str]]:
    """The fixed, documented split of the built-in photographs."""
    return {k: list(v) for k, v in BUILTIN_SPLITS.items()}


def sample_patches(
    images: Mapping[str, np.ndarray],
    names: list[str],
    size: int,
    count: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``count`` patches of ``size`` x ``size`` from the images ``names``.

    When every image is exactly ``size`` x ``size`` (STL-10 at 96), the first ``count`` images are
    taken whole, without repetition. Otherwise an image is drawn with probability proportional
    to its number of patch positions, then a uniform position in it.
    Returns patches (count, size, size), source names and top-left corners (count, 2).
    """
    for n in names:
        h, w = images[n].shape
        if h < size or w < size:
            raise ConfigError(f"image {n!r} ({h}x{w}) is smaller than patch_size {size}")
    if all(images[n].shape == (size, size) for n in names):
        if count > len(names):
            raise ConfigError(f"asked for {count} whole images but the split has {len(names)}")
        chosen = names[:count]
        corners = np.zeros((count, 2), dtype=np.int64)
        return np.stack([images[n] for n in chosen]), chosen, corners
    positions = np.array(
        [(h - size + 1) * (w - size + 1) for h, w in (images[n].shape for n in names)]
    )
    picks = rng.choice(len(names), size=count, p=positions / positions.sum())
    patches, sources, corners = [], [], []
    for i in picks:
        image = images[names[i]]
        r = rng.integers(0, image.shape[0] - size + 1)
        c = rng.integers(0, image.shape[1] - size + 1)
        patches.append(image[r : r + size, c : c + size])
        sources.append(names[i])
        corners.append((r, c))
    return np.stack(patches), sources, np.array(corners, dtype=np.int64)


def center_crop(image: np.ndarray, size: int, name: str) -> np.ndarray:
    h, w = image.shape
    if h < size or w < size:
        raise ConfigError(f"named image {name!r} ({h}x{w}) is smaller than named_size {size}")
    r, c = (h - size) // 2, (w - size) // 2
    return image[r : r + size, c : c + size]


def build_image_dataset(
    images: Mapping[str, np.ndarray],
    split: Mapping[str, list[str]],
    patch_size: int,
    counts: Mapping[str, int],
    named: list[str],
    named_size: int,
    seed: int,
    synthetic: tuple[str, np.ndarray] | None = None,
) -> xr.Dataset:
    """Patches of every split (dimension ``sample``, coordinate ``split``) and the named images;
    ``synthetic`` (a source name and patches) is added to the training split, with corners
    (-1, -1): those patches were cut from no image."""
    rng = np.random.default_rng(seed)
    blocks, splits, sources, corners = [], [], [], []
    for s in SPLITS:
        if not split[s]:
            raise ConfigError(f"data: the {s} split has no images")
        p, src, cor = sample_patches(images, split[s], patch_size, counts[s], rng)
        blocks.append(p)
        splits += [s] * len(p)
        sources += src
        corners.append(cor)
        if s == "train" and synthetic is not None:
            name, extra = synthetic
            blocks.append(extra)
            splits += ["train"] * len(extra)
            sources += [name] * len(extra)
            corners.append(np.full((len(extra), 2), -1))
    missing = [n for n in named if n not in split["test"]]
    if missing:
        raise ConfigError(f"data.named_images: {missing} are not test images {split['test']}")
    named_images = {n: center_crop(images[n], named_size, n) for n in named}
    return assemble_dataset(
        np.concatenate(blocks), splits, sources, np.concatenate(corners), named_images
    )


def assemble_dataset(
    patches: np.ndarray,
    splits: list[str],
    sources: list[str],
    corners: np.ndarray,
    named: Mapping[str, np.ndarray],
) -> xr.Dataset:
    """The image dataset every source gives (what ``observe``, ``train`` and ``evaluate``
    read): patches (sample, y, x) with their split, source image and top-left corner in it,
    and the named test images (name, ny, nx), all float32."""
    return xr.Dataset(
        {
            "x": (
                ("sample", "y", "x"),
                np.asarray(patches, dtype=np.float32),
                {"long_name": "clean image patch", "units": "1"},
            ),
            "named": (
                ("name", "ny", "nx"),
                np.stack(list(named.values())).astype(np.float32),
                {"long_name": "named test image (center crop)", "units": "1"},
            ),
            "corner": (
                ("sample", "corner_axis"),
                corners,
                {"long_name": "top-left pixel of the patch in its source image", "units": "1"},
            ),
        },
        coords={
            "sample": np.arange(len(patches)),
            "split": ("sample", np.array(splits)),
            "source": ("sample", np.array(sources)),
            "name": np.array(list(named)),
            "corner_axis": np.array(["row", "column"]),
        },
    )


def split_of(ds: xr.Dataset, split: str) -> xr.Dataset:
    """The samples of one split."""
    return ds.isel(sample=np.flatnonzero(ds["split"].values == split))
