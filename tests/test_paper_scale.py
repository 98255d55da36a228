"""Each network of config/paper.yaml takes one training step and one evaluation at 96x96 on the
CPU (batch 1): a shape or memory bug shows here, not after a day in a GPU queue
(``benchmarks/paper_smoke.py`` times the same)."""

import math

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
