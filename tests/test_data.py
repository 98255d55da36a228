"""Image sources, splits, patches and observations."""

from pathlib import Path

import numpy as np
import pytest
from skimage import color, feature, io
from skimage import data as skdata

from iresnet_inverse import config
from iresnet_inverse.data import dead_leaves, sources
from iresnet_inverse.data.patches import sample_patches, split_by_image, split_of
from iresnet_inverse.errors import InputDataError
from iresnet_inverse.stages.data import image_dataset, observation_dataset

SMALL = {
    "source": "builtin",
    "downscale": 8,
    "patch_size": 16,
    "patches": {"train": 10, "val": 3, "test": 4},
    "named_images": None,
    "named_size": 32,
    "seed": 0,
}


def test_builtin_images_are_gray_unit_range_and_split_by_image() -> None:
    images = sources.builtin_images(8)
    splits = sources.BUILTIN_SPLITS
    names = [n for s in splits.values() for n in s]
    assert len(names) == len(set(names)) == len(images)
    for image in images.values():
        assert image.ndim == 2 and image.min() >= 0 and image.max() <= 1
    assert set(splits["test"]) == {"astronaut", "camera", "chelsea"}
    assert images["astronaut"].shape == (64, 64)


def test_image_dataset_is_seeded_and_disjoint_by_image() -> None:
    a, b = image_dataset(SMALL), image_dataset(SMALL)
    np.testing.assert_array_equal(a["x"].values, b["x"].values)
    other = image_dataset({**SMALL, "seed": 1})
    assert not np.array_equal(a["x"].values, other["x"].values)
    assert [int((a["split"] == s).sum()) for s in ("train", "val", "test")] == [10, 3, 4]
    sources_by_split = {s: set(split_of(a, s)["source"].values) for s in ("train", "val", "test")}
    assert not sources_by_split["train"] & sources_by_split["test"]
    assert not sources_by_split["val"] & sources_by_split["test"]
    assert list(a["name"].values) == ["astronaut", "camera", "chelsea"]
    assert a["named"].shape == (3, 32, 32)
    # Each patch is the image content at its recorded corner.
    full = sources.builtin_images(8)
    for i in range(3):
        s = a.isel(sample=i)
        r, c = s["corner"].values
        np.testing.assert_allclose(
            s["x"].values, full[str(s["source"].values)][r : r + 16, c : c + 16], atol=1e-6
        )


def test_named_image_must_be_a_test_image() -> None:
    with pytest.raises(ValueError, match="named_images"):
        image_dataset({**SMALL, "named_images": ["coffee"]})


def test_patch_larger_than_image_is_an_error() -> None:
    images = {"a": np.zeros((10, 10))}
    with pytest.raises(ValueError, match="'a'"):
        sample_patches(images, ["a"], 12, 1, np.random.default_rng(0))


def _write_stl10(path: Path, rgb: np.ndarray) -> None:
    """The STL-10 layout: per image, channel after channel, each column-major."""
    rgb.transpose(0, 3, 2, 1).astype(np.uint8).tofile(path)


def test_stl10_reader(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 96, 96, 3), dtype=np.uint8)
    rgb[0, :10, :, 0] = 255  # a red band in the top rows of image 0: rows must stay rows
    _write_stl10(tmp_path / "train_X.bin", rgb)
    got = sources.read_stl10(tmp_path / "train_X.bin")
    np.testing.assert_allclose(got, color.rgb2gray(rgb), atol=1e-12)
    images = sources.stl10_images(tmp_path)
    assert sorted(images)[:2] == ["train_000000", "train_000001"]
    (tmp_path / "bad_X.bin").write_bytes(b"123")
    with pytest.raises(ValueError, match="bad_X.bin"):
        sources.read_stl10(tmp_path / "bad_X.bin")


def test_stl10_whole_images_in_dataset(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, size=(12, 96, 96, 3), dtype=np.uint8)
    _write_stl10(tmp_path / "unlabeled_X.bin", rgb)
    data = {
        **SMALL,
        "source": "stl10",
        "path": str(tmp_path),
        "downscale": 1,
        "patch_size": 96,
        "patches": {"train": 5, "val": 2, "test": 3},
        "val_images": 2,
        "test_images": 3,
        "named_size": 96,
    }
    ds = image_dataset(data)
    test = split_of(ds, "test")
    assert len(set(test["source"].values)) == 3  # whole images, no repeats
    assert list(ds["name"].values) == list(test["source"].values)


def test_folder_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, size=(40, 50), dtype=np.uint8)
    rgb = rng.integers(0, 256, size=(30, 20, 3), dtype=np.uint8)
    io.imsave(tmp_path / "g.png", gray)
    io.imsave(tmp_path / "c.tif", rgb)
    (tmp_path / "notes.txt").write_text("not an image")
    images = sources.folder_images(tmp_path)
    assert sorted(images) == ["c", "g"]
    np.testing.assert_allclose(images["g"], gray / 255.0)
    np.testing.assert_allclose(images["c"], color.rgb2gray(rgb), atol=1e-12)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="no images"):
        sources.folder_images(tmp_path / "empty")


def test_split_by_image_needs_training_images() -> None:
    split = split_by_image([f"i{k}" for k in range(10)], 2, 3, seed=0)
    assert [len(split[s]) for s in ("train", "val", "test")] == [5, 2, 3]
    assert split == split_by_image([f"i{k}" for k in range(10)], 2, 3, seed=0)
    with pytest.raises(ValueError, match="training images"):
        split_by_image(["a", "b"], 1, 1, seed=0)


def test_observations_have_fixed_noise_of_the_right_level() -> None:
    images = image_dataset({**SMALL, "patches": {"train": 2, "val": 20, "test": 20}})
    params = {"kernel_size": 11, "sigma": 5 / 3}
    a = observation_dataset(images, "blur", params, 0.05, seed=0)
    b = observation_dataset(images, "blur", params, 0.05, seed=0)
    np.testing.assert_array_equal(a["data"].values, b["data"].values)
    noise = (a["data"] - a["clean_data"]).values
    assert noise.std() == pytest.approx(0.05, rel=0.05)
    assert set(a["split"].values) == {"val", "test"}
    c = observation_dataset(images, "blur", params, 0.01, seed=0)
    assert not np.allclose((c["data"] - c["clean_data"]).values * 5, noise)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_refused_naming_the_file(tmp_path: Path, bad: float) -> None:
    good = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    broken = good.copy()
    broken[5, 5] = bad
    io.imsave(tmp_path / "good.tif", good)
    io.imsave(tmp_path / "broken.tif", broken)
    with pytest.raises(ValueError, match=r"broken\.tif: .*1 non-finite pixel values"):
        sources.folder_images(tmp_path)


def test_two_images_with_one_name_are_refused(tmp_path: Path) -> None:
    image = (np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)
    io.imsave(tmp_path / "a.png", image)
    io.imsave(tmp_path / "a.jpg", image)
    io.imsave(tmp_path / "b.png", image)
    with pytest.raises(ValueError, match=r"share a name: .*a\.jpg, .*a\.png"):
        sources.folder_images(tmp_path)


def test_the_smallest_builtin_image_is_the_one_config_checks_against() -> None:
    from iresnet_inverse.registry import BUILTIN_SMALLEST_SIDE

    sides = [min(image.shape) for image in sources.builtin_images(1).values()]
    assert min(sides) == BUILTIN_SMALLEST_SIDE


def test_dead_leaves_radii_follow_the_power_law() -> None:
    """Density proportional to r^-3 on [1, 48]: CDF (1 - r^-2) / (1 - 48^-2)."""
    radii = dead_leaves.sample_radii(np.random.default_rng(0), 200_000, 1.0, 48.0)
    assert radii.min() >= 1.0 and radii.max() <= 48.0
    for r in (1.2, 2.0, 5.0, 20.0):
        expected = (1 - r**-2) / (1 - 48.0**-2)
        assert np.mean(radii <= r) == pytest.approx(expected, abs=4e-3)


def test_painting_behind_in_batches_equals_painting_on_top_back_to_front() -> None:
    """The dead-leaves image paints front to back, each batch behind the last; an independent
    painter lays the same disks back to front, each on top of everything before."""
    rng = np.random.default_rng(1)
    side, n = 24, 300
    radii = rng.uniform(1, 6, n)
    centres = rng.uniform(-4, side + 4, (n, 2))
    grays = rng.random(n)
    image, open_pixels = np.full(side * side, np.nan), np.arange(side * side)
    for batch in np.array_split(np.arange(n), 7):
        open_pixels = dead_leaves.paint_behind(
            image, open_pixels, radii[batch], centres[batch], grays[batch]
        )
    naive = np.full((side, side), np.nan)
    yy, xx = np.mgrid[0:side, 0:side] + 0.5
    for k in reversed(range(n)):
        naive[(yy - centres[k, 0]) ** 2 + (xx - centres[k, 1]) ** 2 <= radii[k] ** 2] = grays[k]
    np.testing.assert_array_equal(image.reshape(side, side), naive)
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(naive)), open_pixels)


def test_dead_leaves_patches_are_seeded_covered_and_have_edges() -> None:
    patches = dead_leaves.dead_leaves_patches(6, 32, seed=0)
    assert patches.shape == (6, 32, 32) and patches.dtype == np.float32
    assert np.isfinite(patches).all() and 0 <= patches.min() and patches.max() <= 1
    np.testing.assert_array_equal(patches, dead_leaves.dead_leaves_patches(6, 32, seed=0))
    assert not np.array_equal(patches, dead_leaves.dead_leaves_patches(6, 32, seed=1))
    edges = np.mean([feature.canny(p.astype(np.float64), sigma=1.0).mean() for p in patches])
    assert 0.02 < edges < 0.5  # occlusion boundaries, not noise and not a flat field


def test_synthetic_patches_join_the_training_split_only() -> None:
    data = config.validate(
        {"data": {"patches": {"train": 16, "val": 4, "test": 4}, "synthetic": {"patches": 8}}}
    )["data"]
    ds = image_dataset(data)
    source, split = ds["source"].values, ds["split"].values
    assert (source == "dead_leaves").sum() == 8
    assert set(split[source == "dead_leaves"]) == {"train"}
    assert (split == "train").sum() == 24 and (split == "val").sum() == 4
    plain = image_dataset({**data, "synthetic": {**data["synthetic"], "patches": 0}})
    for s in ("val", "test"):  # validation and test are unchanged photographs
        np.testing.assert_array_equal(
            ds["x"].values[split == s], plain["x"].values[plain["split"].values == s]
        )
    with pytest.raises(ValueError, match="data.synthetic"):
        image_dataset({**data, "synthetic": {"patches": 2, "r_min": 5.0, "r_max": 2.0}})


GRAY = np.array([[0.0, 0.25], [0.5, 1.0]])


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(np.uint8, 255), (np.uint16, 65535), (np.uint32, 2**32 - 1), (np.int16, 32767)],
)
def test_integer_images_are_scaled_by_their_dtype_range(dtype: type, scale: int) -> None:
    """A 16-bit photograph is not all white: every integer dtype maps its largest value to 1."""
    image = np.round(GRAY * scale).astype(dtype)
    np.testing.assert_allclose(sources.to_gray(image), GRAY, atol=1 / scale)
    rgb = np.stack([image] * 3, axis=-1)  # the color path scales the same way
    np.testing.assert_allclose(sources.to_gray(rgb), GRAY, atol=2 / scale)


def test_bool_and_unit_float_images_are_kept_and_other_floats_refused() -> None:
    np.testing.assert_array_equal(sources.to_gray(GRAY > 0.3), (GRAY > 0.3).astype(float))
    np.testing.assert_array_equal(sources.to_gray(GRAY.astype(np.float32)), GRAY)
    with pytest.raises(ValueError, match=r"values in \[0, 255\].*must lie in \[0, 1\]"):
        sources.to_gray(GRAY * 255)
    with pytest.raises(ValueError, match="negative values"):
        sources.to_gray(np.array([[-1, 5]], dtype=np.int16))


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64])
def test_8_bit_values_in_a_wide_integer_dtype_are_refused_not_blackened(dtype: type) -> None:
    """numpy's default integers hold a photograph's 0..255 as int64: scaled by 2^63 - 1 it
    would be black; gray and RGB alike are refused in one line."""
    image = np.round(GRAY * 255).astype(dtype)
    for array in (image, np.stack([image] * 3, axis=-1)):
        with pytest.raises(ValueError, match=r"values in \[0, 255\], all below 1/256"):
            sources.to_gray(array)
    assert sources.to_gray(np.zeros((2, 2), dtype)).max() == 0  # a black image stays one


def test_a_16_bit_photograph_in_a_folder_keeps_its_contrast(tmp_path: Path) -> None:
    eight = skdata.camera()
    io.imsave(tmp_path / "cam16.png", eight.astype(np.uint16) * 257, check_contrast=False)
    io.imsave(tmp_path / "cam8.png", eight, check_contrast=False)
    images = sources.folder_images(tmp_path)
    np.testing.assert_allclose(images["cam16"], images["cam8"], atol=1e-12)
    assert images["cam16"].std() > 0.2  # not all white
