"""Results that outlived their model: the evaluations of a cell whose retraining was killed.

A forced rerun (``snakemake -R train``, ``--forcerun``) starts by deleting the cell's model.pt;
killed mid-training it leaves resume.pt but no model, while the cell's evaluation and probes of
the old model remain. Snakemake does not rerun a job whose input is missing while its outputs
exist, so a run that targets those outputs (a metrics.nc, a figure) would find them "done". The
workflow removes them when it starts, so that any target that needs them retrains the cell first
(resuming from resume.pt).
"""

from collections.abc import Iterable
from pathlib import Path

RESUME_FILE = "resume.pt"  # train.RESUME_FILE, without importing torch into the Snakefile


def interrupted(cell_dir: Path, product: str) -> bool:
    """A training directory with a resume checkpoint and without its finished ``product``."""
    return (cell_dir / RESUME_FILE).is_file() and not (cell_dir / product).exists()


def stale_results(
    results: Path, image_cells: Iterable[str], toy_cells: Iterable[str]
) -> list[Path]:
    """The files derived from interrupted cells: an image cell's evaluations and probes (every
    file under evaluate/<cell>/ and analysis/<cell>/), and the combined toy dataset when a toy
    cell is interrupted (the per-cell directories are ``ImageCell.dir`` / ``ToyCell.dir``)."""
    stale = []
    for cell in image_cells:
        if interrupted(results / "train" / cell, "model.pt"):
            for stage in ("evaluate", "analysis"):
                stale += sorted(p for p in (results / stage / cell).rglob("*") if p.is_file())
    if any(interrupted(results / "toy2d" / "cells" / cell, "results.nc") for cell in toy_cells):
        combined = results / "datasets" / "toy2d.nc"
        stale += [combined] if combined.is_file() else []
    return stale


def remove_stale_results(
    results: Path, image_cells: Iterable[str], toy_cells: Iterable[str]
) -> list[Path]:
    """Delete ``stale_results`` and return them."""
    stale = stale_results(results, image_cells, toy_cells)
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
