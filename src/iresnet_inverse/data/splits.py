"""The aligned split a job reads: clean patches, noise-free and noisy data of one split.

Apart from the data rule (``stages/data.py``, which reads image files), every job reads its data
through here, so that training, evaluation and probe jobs need neither image readers nor their
imports (scikit-image's, about a second per job)."""

import numpy as np
import xarray as xr


def paired_split(
    images: xr.Dataset, observations: xr.Dataset | None, split: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Clean patches x, noise-free data F(x) and noisy data z of one split, aligned by sample
    (the observations only hold val/test; pass None for the training split)."""
    chosen = images["sample"].values[images["split"].values == split]
    x = images["x"].sel(sample=chosen).values.astype(np.float32)
    if observations is None:
        return x, None, None
    obs = observations.isel({d: 0 for d in ("operator", "noise_level") if d in observations.dims})
    obs = obs.sel(sample=chosen)
    return x, obs["clean_data"].values.astype(np.float32), obs["data"].values.astype(np.float32)
