"""Figure ``operators``: clean, noise-free and noisy data of the named test images."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from iresnet_inverse.artifacts import read_dataset
from iresnet_inverse.metrics import psnr
from iresnet_inverse.stages.figures.common import panels, save_figure


def plot_operators(
    images_path: str | Path,
    observation_paths: Sequence[str | Path],
    stem: str | Path,
    dpi: int = 150,
    cmap: str = "gray",
) -> list[Path]:
    """Rows: named images. Columns: clean, then per operator F(x) and F(x) + noise at the
    largest noise level, with PSNR against the clean image in each title."""
    images = read_dataset(images_path)
    observations = [read_dataset(p) for p in observation_paths]
    largest: dict[str, object] = {}
    for obs in observations:
        op, delta = str(obs["operator"].item()), float(obs["noise_level"].item())
        if op not in largest or delta > float(largest[op]["noise_level"].item()):
            largest[op] = obs
    columns = [("clean", None, None)]
    for op, obs in sorted(largest.items()):
        delta = float(obs["noise_level"].item())
        columns += [
            (f"{op}", obs, "named_clean_data"),
            (f"{op} + noise δ={delta:g}", obs, "named_data"),
        ]
    names = [str(n) for n in images["name"].values]
    fig, axes = panels(len(names), len(columns), 2.2, 2.4)
    for i, name in enumerate(names):
        clean = images["named"].sel(name=name).values
        for j, (label, obs, var) in enumerate(columns):
            ax = axes[i, j]
            shown = clean if obs is None else obs[var].squeeze().sel(name=name).values
            ax.imshow(np.clip(shown, 0, 1), cmap=cmap, vmin=0, vmax=1)
            title = label if obs is None else (f"{label}\nPSNR {psnr(clean, shown)[0]:.2f} dB")
            ax.set_title(f"{name}: {title}" if j == 0 else title, fontsize=8)
            ax.set_axis_off()
    fig.suptitle("Forward operators on the named test images", fontsize=10)
    return save_figure(fig, stem, dpi=dpi)
