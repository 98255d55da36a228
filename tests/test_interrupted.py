"""The results of cells whose training was interrupted (``interrupted.py``)."""

from pathlib import Path

from iresnet_inverse.interrupted import remove_stale_results, stale_results

CELL, TOY = "operator~blur/cell", "prior~bimodal/cell"


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_only_the_results_of_an_interrupted_cell_are_stale(tmp_path: Path) -> None:
    metrics = _touch(tmp_path / "evaluate" / CELL / "metrics.nc")
    probe = _touch(tmp_path / "analysis" / CELL / "saliency.nc")
    combined = _touch(tmp_path / "datasets" / "toy2d.nc")
    model = _touch(tmp_path / "train" / CELL / "model.pt")
    _touch(tmp_path / "toy2d" / "cells" / TOY / "results.nc")
    assert stale_results(tmp_path, [CELL], [TOY]) == []  # finished cells
    model.unlink()
    assert stale_results(tmp_path, [CELL], [TOY]) == []  # never trained: nothing of it exists
    _touch(tmp_path / "train" / CELL / "resume.pt")  # a killed rerun
    _touch(tmp_path / "toy2d" / "cells" / "other" / "resume.pt")
    assert stale_results(tmp_path, [CELL], [TOY]) == [metrics, probe]
    assert remove_stale_results(tmp_path, [CELL], [TOY, "other"]) == [metrics, probe, combined]
    assert not metrics.exists() and not probe.exists() and not combined.exists()
