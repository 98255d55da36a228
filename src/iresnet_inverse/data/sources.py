"""Where the images come from: photographs shipped in wheels, STL-10 binaries, an image folder.

Every reader returns ``{name: gray image}`` with float64 values in [0, 1], sorted by name.
"""

from pathlib import Path

import numpy as np
from skimage import color, io
from skimage import data as skdata
from skimage.transform import rescale

from iresnet_inverse.errors import InputDataError
from iresnet_inverse.registry import BUILTIN_TEST_IMAGES, STL10_SIDE

# Natural photographs and textures that scikit-image and scikit-learn ship inside their wheels.
# The split is by image and fixed: the three test images are the named images of the analyses
# (the paper used "Balloon", "Boat" and "Dog" from STL-10 in the same role).
BUILTIN_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "brick",
        "cell",
        "china",
        "coffee",
        "flower",
        "grass",
        "gravel",
        "hubble_deep_field",
        "immunohistochemistry",
        "moon",
        "rocket",
    ),
    "val": ("coins", "motorcycle"),
    "test": BUILTIN_TEST_IMAGES,
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


# Float images may overshoot [0, 1] by rounding (e.g. after a color conversion); more is a
# scale the reader cannot guess (0..255 floats, say), which is refused, not clipped.
FLOAT_RANGE_TOLERANCE = 1e-6


def to_gray(image: np.ndarray) -> np.ndarray:
    """Gray float image in [0, 1] from gray/RGB/RGBA input, scaled by its dtype's range:
    integers by their largest value (uint8 by 255, uint16 by 65535, ...; negative values are
    refused), booleans as 0/1, floats as they are if they lie in [0, 1] (refused otherwise)."""
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.integer) and image.size:
        _check_integer_range(image)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = color.rgba2rgb(image)  # scales integers by their dtype's range
    if image.ndim == 3:
        image = color.rgb2gray(image)  # likewise
    if image.ndim != 2:
        raise InputDataError(f"expected a gray or RGB image, got shape {image.shape}")
    if image.dtype == bool:
        image = image.astype(np.float64)
    elif np.issubdtype(image.dtype, np.integer):
        image = image / float(np.iinfo(image.dtype).max)
    check_finite(image)
    low, high = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
    if low < -FLOAT_RANGE_TOLERANCE or high > 1 + FLOAT_RANGE_TOLERANCE:
        raise InputDataError(
            f"{image.dtype} image with values in [{low:.6g}, {high:.6g}]: float images must lie "
            "in [0, 1] (scale it, or save it as an integer image)"
        )
    return np.clip(image.astype(np.float64), 0.0, 1.0)


def _check_integer_range(image: np.ndarray) -> None:
    """Integers are scaled by their dtype's largest value; refuse what that would turn into a
    black image without a word: negative values, and values all below 1/256 of that largest
    value (8-bit data stored as uint16, int32 or int64, as numpy's default integers make it)."""
    low, high, top = int(image.min()), int(image.max()), np.iinfo(image.dtype).max
    if low < 0:
        raise InputDataError(f"{image.dtype} image with negative values: expected intensities")
    if 0 < high < top / 256:
        raise InputDataError(
            f"{image.dtype} image with values in [{low}, {high}], all below 1/256 of its dtype's "
            f"largest value {top}, by which integer images are scaled: it would be nearly black "
            "(save it as uint8, or as floats in [0, 1])"
        )


def check_finite(image: np.ndarray) -> None:
    """Refuse NaN and +-Inf pixels: NaN would spread through every reconstruction, and
    clipping Inf to [0, 1] would hide a broken file."""
    bad = int(np.size(image) - np.isfinite(image).sum())
    if bad:
        raise InputDataError(f"{bad} non-finite pixel values (NaN or Inf)")


def _load_builtin(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    if name == "motorcycle":
        return skdata.stereo_motorcycle()[0]
    return getattr(skdata, name)()


def builtin_images(downscale: float) -> dict[str, np.ndarray]:
    """All built-in photographs, gray, downscaled by ``downscale`` (anti-aliased)."""
    names = sorted(n for split in BUILTIN_SPLITS.values() for n in split)
    return {n: _downscale(to_gray(_load_builtin(n)), downscale) for n in names}


def _downscale(image: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1:
        return image
    return np.clip(rescale(image, 1.0 / factor, anti_aliasing=True), 0.0, 1.0)


def read_stl10(path: str | Path) -> np.ndarray:
    """Gray images (n, 96, 96) from an STL-10 ``*_X.bin`` file (uint8, 3x96x96, column-major)."""
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    per_image = 3 * STL10_SIDE * STL10_SIDE
    if raw.size == 0 or raw.size % per_image:
        raise InputDataError(
            f"{path}: size {raw.size} bytes is not a multiple of {per_image} (STL-10)"
        )
    # Column-major per channel: reshape to (n, channel, column, row), then swap to rows first.
    rgb = raw.reshape(-1, 3, STL10_SIDE, STL10_SIDE).transpose(0, 3, 2, 1)
    return color.rgb2gray(rgb)


def stl10_images(directory: str | Path, downscale: float = 1.0) -> dict[str, np.ndarray]:
    """Every image of every ``*_X.bin`` in ``directory``, named ``<file stem>_<index>``."""
    files = sorted(Path(directory).glob("*_X.bin"))
    if not files:
        raise InputDataError(f"{directory}: no STL-10 files (*_X.bin) found")
    images = {}
    for f in files:
        stem = f.name.removesuffix("_X.bin")
        for i, image in enumerate(read_stl10(f)):
            images[f"{stem}_{i:06d}"] = _downscale(image, downscale)
    return images


def folder_images(directory: str | Path, downscale: float = 1.0) -> dict[str, np.ndarray]:
    """Every png/jpg/tif image in ``directory`` (not recursive), named by file stem."""
    if not Path(directory).is_dir():
        raise InputDataError(f"data.path: {directory} is not a folder")
    files = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputDataError(f"{directory}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    stems = [f.stem for f in files]
    clashes = sorted({str(f) for f in files if stems.count(f.stem) > 1})
    if clashes:  # images are named by stem: one would silently replace the other
        raise InputDataError(f"{directory}: images share a name: {', '.join(clashes)}")
    images = {}
    for f in files:
        try:
            images[f.stem] = _downscale(to_gray(io.imread(f)), downscale)
        except Exception as err:
            raise InputDataError(f"{f}: cannot read image ({err})") from err
    return images
