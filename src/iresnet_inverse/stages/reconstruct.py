"""Apply a trained cell to a user's own image: ``iresnet-inverse reconstruct``.

A ``model.pt`` carries its cell, operator parameters and solver (``models.ModelMeta``), so any
trained method (iResNet, learned baseline, TV) reconstructs new data without the config that
trained it. The data are either given (a noisy image of the same shape) or simulated from the
image with the cell's operator, z = F(x) + delta * noise, from a seeded torch generator.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from PIL import Image
from skimage import io

from iresnet_inverse.artifacts import atomic_write, refuse_overwriting, variable, write_dataset
from iresnet_inverse.cells import ImageCell
from iresnet_inverse.config import validate
from iresnet_inverse.data.sources import check_finite, to_gray
from iresnet_inverse.errors import ArtifactError, InputDataError
from iresnet_inverse.metrics import psnr, ssim
from iresnet_inverse.models import TrainedCell, load_trained_cell, reconstruct
from iresnet_inverse.nets.solvers import SolverConfig
from iresnet_inverse.runtime import generator, setup

# The image sizes reconstruct takes: the blur's reflect padding and the saliency crops need some
# pixels; the inversion's memory grows with the pixel count (an outside review saw a 3000 x 3000
# image ask for 8.7 GB), so larger images are refused up front rather than after minutes of work.
MIN_SIDE = 16
MAX_PIXELS = 2048 * 2048


@dataclass
class Applied:
    """What the tool produced: the clean image (None when only data were given), the data z,
    the reconstruction, the noise level used to simulate z (None for given data), the cell
    and the PSNR/SSIM of the data and of the reconstruction (empty without a clean image)."""

    x: np.ndarray | None
    z: np.ndarray
    x_hat: np.ndarray
    noise_level: float | None
    cell: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    converged: bool | None = None


def read_image(path: str | Path, exact: bool = False) -> np.ndarray:
    """A 2-D float64 image from a file, scaled by its dtype's range like every image the
    workflow reads (``data.sources.to_gray``: integers by their largest value, floats kept if
    they lie in [0, 1]). With ``exact`` (the data z, which noise takes outside [0, 1]) a float
    ``.npy`` array is taken as stored."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: image not found")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{path}: not a readable image (the file is empty)")
    try:
        image = _load_npy(path, exact) if path.suffix == ".npy" else to_gray(io.imread(path))
        check_finite(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ArtifactError(f"{path}: not a readable image ({err})") from err
    if image.ndim != 2:
        raise InputDataError(f"{path}: expected a 2-D (gray) array, got shape {image.shape}")
    if image.size > MAX_PIXELS:
        raise InputDataError(
            f"{path}: {image.shape[0]}x{image.shape[1]} is larger than {MAX_PIXELS:,} pixels "
            "(memory of the inversion); crop or downscale it"
        )
    return np.asarray(image, dtype=np.float64)


def _load_npy(path: Path, exact: bool) -> np.ndarray:
    """An array stored with ``np.save`` (never a pickle, nor an .npz archive named .npy): real
    floats as stored when ``exact``, anything else through ``to_gray``."""
    loaded = np.load(path, allow_pickle=False)
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise InputDataError("an .npz archive, not an .npy array")
    if np.iscomplexobj(loaded):
        raise InputDataError(f"a {loaded.dtype} array: expected real intensities")
    if exact and np.issubdtype(loaded.dtype, np.floating):
        return loaded
    return to_gray(loaded)


def check_size(image: np.ndarray, operator: torch.nn.Module, path: str | Path) -> None:
    """Refuse, before any work, an image smaller than the operator and the nets can take."""
    smallest = max(MIN_SIDE, getattr(operator, "kernel_size", 1) // 2 + 1)
    if min(image.shape) < smallest:
        raise InputDataError(
            f"{path}: a {image.shape[0]}x{image.shape[1]} image is too small; the operator and "
            f"the nets need at least {smallest}x{smallest} pixels"
        )


def evaluation_solver() -> SolverConfig:
    """The workflow's ``evaluate.solver`` defaults (from the schema), so that the tool
    reconstructs exactly as the study's evaluation did."""
    return SolverConfig(**validate({}, "solver"))


def simulate_data(
    operator: torch.nn.Module, x: np.ndarray, noise_level: float, seed: int
) -> np.ndarray:
    """z = F(x) + delta * noise in float64, the noise standard normal from a torch generator
    seeded by ``seed`` (the same image, level and seed give the same data)."""
    device = next((b.device for b in operator.buffers()), torch.device("cpu"))
    with torch.no_grad():
        x_t = torch.as_tensor(x, dtype=torch.float64, device=device)[None, None]
        clean = operator(x_t)[0, 0].cpu()
    noise = torch.randn(clean.shape, generator=generator(seed), dtype=torch.float64)
    return (clean + noise_level * noise).numpy()


def reconstruct_image(
    trained: TrainedCell, z: np.ndarray, solver: SolverConfig, device: torch.device
) -> tuple[np.ndarray, bool | None]:
    """The cell's reconstruction of one image z (float32 on ``device``, as in evaluation) and
    whether the inversion reached the solver's tolerance (None for baselines)."""
    z_t = torch.as_tensor(z, dtype=torch.float32)[None, None].to(device)
    try:
        x_hat, stats = reconstruct(
            trained.net, trained.cell["objective"], trained.operator, z_t, solver
        )
    except RuntimeError as err:
        raise InputDataError(
            f"cannot reconstruct a {z.shape[0]}x{z.shape[1]} image: {err}"
        ) from err
    converged = None if stats is None else bool(stats.converged.all())
    return x_hat[0, 0].double().cpu().numpy(), converged


def quality(x: np.ndarray, z: np.ndarray, x_hat: np.ndarray) -> dict[str, float]:
    """PSNR/SSIM (data range 1) of the data and of the reconstruction against the image."""
    return {
        "data_psnr": float(psnr(x, z)[0]),
        "data_ssim": float(ssim(x, z)[0]),
        "psnr": float(psnr(x, x_hat)[0]),
        "ssim": float(ssim(x, x_hat)[0]),
    }


def _observed(
    trained: TrainedCell,
    image_path: str | Path | None,
    data_path: str | Path | None,
    noise_level: float | None,
    seed: int,
) -> tuple[np.ndarray | None, np.ndarray, float | None]:
    """The clean image (if given), the data z and the noise level used to simulate z."""
    if image_path is None and data_path is None:
        raise InputDataError("give an image (--image) to simulate data from, or data (--data)")
    x = None if image_path is None else read_image(image_path)
    if x is not None:
        check_size(x, trained.operator, image_path)
    if data_path is None:
        delta = float(trained.cell["noise_level"] if noise_level is None else noise_level)
        return x, simulate_data(trained.operator, x, delta, seed), delta
    z = read_image(data_path, exact=True)
    check_size(z, trained.operator, data_path)
    if x is not None and x.shape != z.shape:
        raise InputDataError(
            f"{data_path}: data of shape {z.shape} do not match the image {image_path} "
            f"of shape {x.shape}"
        )
    return x, z, None


def apply_model(
    model_path: str | Path,
    image_path: str | Path | None = None,
    data_path: str | Path | None = None,
    noise_level: float | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> Applied:
    """Reconstruct a user's image with a trained cell: data given, or simulated from the
    image; metrics whenever the clean image is known."""
    if noise_level is not None and data_path is not None:
        raise InputDataError("--noise-level simulates data; it cannot be combined with --data")
    where = setup(device)
    trained = load_trained_cell(model_path, where)
    x, z, delta = _observed(trained, image_path, data_path, noise_level, seed)
    x_hat, converged = reconstruct_image(trained, z, evaluation_solver(), where)
    metrics = {} if x is None else quality(x, z, x_hat)
    return Applied(x, z, x_hat, delta, dict(trained.cell), metrics, converged)


def png_path(path: str | Path) -> Path:
    """``path`` if it names a PNG file (checked before any work), else a one-line error."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputDataError(f"--out {path}: the reconstruction is written as PNG; name it *.png")
    return path


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """An 8-bit gray PNG of ``image`` clipped to [0, 1], written atomically (no truncated file
    is left behind); any other suffix is refused rather than silently changing the format."""
    path = png_path(path)
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    # PIL directly: imageio's plugin reports a full disk a second time, as a traceback from
    # its destructor, after atomic_write's one line.
    return atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))


def write_result(result: Applied, path: str | Path, model_path: str | Path) -> Path:
    """A NetCDF file with x (if known), z and x_hat, and the model, cell, noise level and
    metrics as attributes (float32 data: they are images, as in the study's files)."""
    dims = ("ny", "nx")
    data = {
        "z": variable(dims, result.z.astype(np.float32), "data z"),
        "x_hat": variable(dims, result.x_hat.astype(np.float32), "reconstruction"),
    }
    if result.x is not None:
        data["x"] = variable(dims, result.x.astype(np.float32), "ground truth x")
    ds = xr.Dataset(data)
    ds.attrs.update({"model": str(model_path), "cell_json": json.dumps(result.cell)})
    ds.attrs["data"] = "given" if result.noise_level is None else "simulated from x"
    if result.noise_level is not None:
        ds.attrs["noise_level"] = result.noise_level
    if result.converged is not None:
        ds.attrs["converged"] = int(result.converged)
    ds.attrs.update(result.metrics)
    title = "reconstruction of a user image (iresnet-inverse reconstruct)"
    return write_dataset(ds, path, title=title)


def check_outputs(out: str, nc: str | None, inputs: dict[str, str | None]) -> None:
    """Refuse, before any work, outputs that would overwrite an input or each other, a PNG
    named otherwise than *.png and a NetCDF file named otherwise than *.nc."""
    refuse_overwriting({"--out": out, "--nc": nc}, inputs)
    png_path(out)
    if nc and (Path(nc).suffix != ".nc" or Path(nc).is_dir()):
        raise InputDataError(f"--nc {nc}: name a NetCDF file, ending in .nc")


def write_outputs(
    result: Applied, out: str | Path, nc: str | Path | None, model_path: str | Path
) -> list[Path]:
    """The PNG and the NetCDF file, or neither: the NetCDF file (the one a full disk would
    stop) is staged beside its place and moved there once the PNG is written."""
    if not nc:
        return [write_png(result.x_hat, out)]
    nc = Path(nc)
    staging = nc.with_name(f".{nc.name}.staged.nc")
    try:
        staged = write_result(result, staging, model_path)
    except ArtifactError as err:  # name the file asked for, not the staging one
        raise ArtifactError(str(err).replace(str(staging), str(nc))) from None
    try:
        png = write_png(result.x_hat, out)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    os.replace(staged, nc)
    return [png, nc]


def reconstruct_files(
    model_path: str,
    image_path: str | None,
    data_path: str | None,
    noise_level: float | None,
    seed: int,
    device: str,
    out: str,
    nc: str | None,
) -> tuple[Applied, list[Path]]:
    """The tool: check the outputs, reconstruct, write the PNG (and the NetCDF file)."""
    check_outputs(out, nc, {"--model": model_path, "--image": image_path, "--data": data_path})
    result = apply_model(model_path, image_path, data_path, noise_level, seed, device)
    return result, write_outputs(result, out, nc, model_path)


def report(result: Applied, model_path: str, data_path: str | None, seed: int) -> str:
    """What the tool tells its user: the model, the cell, where the data came from and the
    PSNR/SSIM of the data and of the reconstruction (when the clean image is known)."""
    simulated = result.noise_level is not None
    source = f"F(x) + {result.noise_level:g} * noise (seed {seed})" if simulated else data_path
    lines = [
        f"model           {model_path}",
        f"cell            {ImageCell.of(result.cell).dir}",
        f"data            {source}",
    ]
    if result.metrics:
        m = result.metrics
        lines.append(
            f"PSNR / SSIM     data {m['data_psnr']:.2f} dB / {m['data_ssim']:.4f}   "
            f"reconstruction {m['psnr']:.2f} dB / {m['ssim']:.4f}"
        )
    else:
        lines.append("PSNR / SSIM     need the clean image (--image)")
    return "\n".join(lines)
