"""Synthetic training images with natural-image statistics: the dead-leaves model.

Lee, Mumford & Huang (2001) model an image as opaque "leaves" (here disks) fallen on top of each
other: uniform random centres, uniform random gray levels, and radii with density proportional
to r^-3 on [r_min, r_max] (the power law that makes the images scale invariant, as photographs
are). Achddou, Gousseau & Ladjal (2021) train restoration networks on them. We paint front to
back: each new disk lies *behind* those drawn so far and fills only what is still uncovered,
until the image is covered; that is the law of painting back to front forever. Only disks that
can touch the image are drawn (a radius is kept with probability proportional to the area of
centres from which it touches, (size + 2 r)^2: the same law, without the disks that miss). Disks
are drawn at twice the resolution and averaged down in 2x2 blocks, so that edges are
anti-aliased as in a photograph.
"""

import numpy as np


def sample_radii(rng: np.random.Generator, n: int, r_min: float, r_max: float) -> np.ndarray:
    """``n`` radii with density proportional to r^-3 on [r_min, r_max] (inverse CDF)."""
    a, b = r_min**-2.0, r_max**-2.0
    return (a - rng.random(n) * (a - b)) ** -0.5


def _touching_disks(
    rng: np.random.Generator, side: float, r_min: float, r_max: float, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radii, centres and gray levels of the disks among ``n`` proposals whose centres fall
    within reach of the [0, side]^2 image."""
    radii = sample_radii(rng, n, r_min, r_max)
    keep = rng.random(n) < ((side + 2 * radii) / (side + 2 * r_max)) ** 2
    radii = radii[keep]
    centres = rng.random((len(radii), 2)) * (side + 2 * radii[:, None]) - radii[:, None]
    return radii, centres, rng.random(len(radii))


def paint_behind(
    image: np.ndarray,
    open_pixels: np.ndarray,
    radii: np.ndarray,
    centres: np.ndarray,
    grays: np.ndarray,
) -> np.ndarray:
    """Paint disks (in front-to-back order) behind what ``image`` (side x side, flattened)
    already shows: each open pixel (flat index) takes the gray of the first disk covering it.
    Returns the pixels still open."""
    side = int(round(np.sqrt(image.size)))
    y, x = np.divmod(open_pixels, side)
    dy = y[:, None] + 0.5 - centres[:, 0]
    dx = x[:, None] + 0.5 - centres[:, 1]
    inside = dy * dy + dx * dx <= radii * radii  # (open pixels, disks)
    hit = inside.any(axis=1)
    image[open_pixels[hit]] = grays[inside[hit].argmax(axis=1)]
    return open_pixels[~hit]


def dead_leaves_image(
    rng: np.random.Generator,
    size: int,
    r_min: float = 1.0,
    r_max: float = 48.0,
    supersample: int = 2,
) -> np.ndarray:
    """One ``size`` x ``size`` dead-leaves image in [0, 1] (radii in output pixels)."""
    side = size * supersample
    r_min, r_max = r_min * supersample, r_max * supersample
    image = np.empty(side * side)
    open_pixels = np.arange(side * side)
    while open_pixels.size:
        disks = _touching_disks(rng, side, r_min, r_max, 1024)
        open_pixels = paint_behind(image, open_pixels, *disks)
    return image.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def dead_leaves_patches(
    count: int, size: int, seed: int, r_min: float = 1.0, r_max: float = 48.0
) -> np.ndarray:
    """``count`` independent dead-leaves images (count, size, size), float32, from ``seed``."""
    rng = np.random.default_rng([seed, 0xDEAD1EAF])
    images = [dead_leaves_image(rng, size, r_min, r_max) for _ in range(count)]
    return np.stack(images).astype(np.float32)
