"""Each network of config/paper.yaml takes one training step and one evaluation at 96x96 on the
CPU (batch 1): a shape or memory bug shows here, not after a day in a GPU queue
(``benchmarks/paper_smoke.py`` times the same)."""

import math
from pathlib import Path

import pytest
import torch

from benchmarks.paper_smoke import paper_networks, step_and_evaluate

NETS = paper_networks()


def test_the_paper_config_has_every_network_of_table_1() -> None:
    assert set(NETS) == {"iresnet", "iresnet_small", "tv", "unet", "convresnet", "diffnet"}


@pytest.mark.parametrize("arch", sorted(NETS))
def test_a_paper_network_trains_a_step_and_evaluates_at_96_pixels(arch: str) -> None:
    out = step_and_evaluate(NETS[arch])
    assert out["x_hat"].shape == (1, 1, 96, 96)
    assert torch.isfinite(out["x_hat"]).all()
    assert math.isfinite(out["loss"]) or NETS[arch]["spec"]["kind"] == "tv"


def test_the_gpu_benchmark_pairs_bf16_with_a_reachable_tolerance_and_counts_evaluations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gpu_epoch.py's rows carry the evaluations per block and whether the solves converged;
    its bf16 variant solves to a tolerance bf16 reaches (quick sizes, on the CPU)."""
    from iresnet_inverse.config import BF16_TOL_FLOOR

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    from benchmarks import gpu_epoch

    strict = {"solver": {**NETS["iresnet"]["settings"]["solver"], "tol": 1e-5}}
    assert gpu_epoch.variant_solver(strict, {"precision": "bf16"}).tol == BF16_TOL_FLOOR
    assert gpu_epoch.variant_solver(strict, {}).tol == 1e-5
    timing = gpu_epoch.step_seconds("iresnet", {"precision": "bf16"}, torch.device("cpu"), True)
    assert timing.tol >= BF16_TOL_FLOOR and timing.reached is True
    assert 1 <= timing.evaluations <= NETS["iresnet"]["settings"]["solver"]["max_iter"]
    supervised = gpu_epoch.step_seconds("convresnet", {}, torch.device("cpu"), True)
    assert supervised.reached is None and math.isnan(supervised.evaluations)
