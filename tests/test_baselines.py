"""Baselines: architectures, parameter counts (Table 1), identity start, supervised training, and
their cells in the grid."""

import subprocess
import sys
from collections.abc import Callable

import pytest
import torch

from iresnet_inverse import config as study_config
from iresnet_inverse import objectives
from iresnet_inverse.nets.baselines import BASELINES, ConvResNet, DiffNet, UNet, build_baseline
from iresnet_inverse.nets.iresnet import count_parameters
from iresnet_inverse.operators import get_operator
from tests.conftest import ROOT


def test_describe_prints_table1_parameter_counts() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "iresnet_inverse.cli",
            "describe",
            "--config",
            str(ROOT / "config" / "paper.yaml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:-1]}
    assert counts["iresnet"] == "4,263,700"
    assert counts["iresnet_small"] == "640,140"
    assert counts["convresnet"] == "4,263,873"
    assert counts["tv"] == "0"


@pytest.mark.parametrize("name", ["unet", "unet_demo", "convresnet_demo", "diffnet"])
def test_baselines_start_at_the_identity(name: str) -> None:
    net = build_baseline(BASELINES[name])
    z = torch.rand(3, 1, 20, 20)  # not a multiple of the U-Net's coarsest scale
    assert torch.allclose(net(z), z, atol=1e-5)


def test_diffnet_step_is_a_diffusion_stencil() -> None:
    u = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    diffs = DiffNet.neighbour_differences(u)
    assert diffs.shape == (2, 4, 8, 8)
    assert torch.allclose(diffs[0, 1, 0, 0], u[0, 0, 1, 0] - u[0, 0, 0, 0])  # south neighbour
    assert torch.all(diffs[:, 0, 0] == 0)  # no flux across the top border
    # constant images are fixed points whatever the predicted conductivities
    net = DiffNet(steps=2, hidden=4)
    for layer in net.nets:
        torch.nn.init.normal_(layer[-1].weight)
    c = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(net(c), c)


@pytest.mark.parametrize(
    "make_net",
    [
        lambda: UNet(scales=2, width=4, kernel_size=3),
        lambda: ConvResNet(2, 4, 8, 3),
        lambda: DiffNet(2, 8),
    ],
    ids=["unet", "convresnet", "diffnet"],
)
def test_supervised_training_improves_deblurring(make_net: Callable[[], torch.nn.Module]) -> None:
    # Built here, after the autouse seed: nets built at collection time took the RNG's state then.
    net = make_net()
    blur = get_operator("blur", kernel_size=5, sigma=1.0)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 4, 4, generator=gen).repeat_interleave(4, 2).repeat_interleave(4, 3)
    z = blur(x)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        value, inverse = objectives.loss("supervised", net, blur, x, z)
        value.backward()
        optimizer.step()
        losses.append(float(value.detach()))
    assert inverse is None
    assert losses[-1] < 0.7 * losses[0]


def _config(grid: list[dict]) -> dict:
    return study_config.validate({"grid": grid})


def test_baseline_cells_take_fixed_lipschitz_and_objective() -> None:
    cfg = _config(
        [
            {
                "operator": ["blur"],
                "noise_level": [0.01],
                "lipschitz": [0.99],
                "objective": ["reconstruction"],
                "arch": ["iresnet_demo", "tv", "unet_demo"],
            }
        ]
    )
    cells = {c["arch"]: c for c in study_config.cells(cfg)}
    assert cells["iresnet_demo"]["lipschitz"] == 0.99
    assert cells["tv"]["objective"] == "variational"
    assert cells["unet_demo"]["objective"] == "supervised"
    assert cells["unet_demo"]["lipschitz"] == float("inf")
    assert "lipschitz~inf/objective~supervised/arch~unet_demo" in study_config.cell_dir(
        cells["unet_demo"]
    )
    parsed = study_config.parse_cell(
        {k: study_config.format_value(v) for k, v in cells["tv"].items()}
    )
    assert study_config.block_of(cfg, parsed) is cfg["grid"][0]
    assert study_config.train_settings(cfg, parsed)["epochs"] == cfg["train"]["epochs"]


def test_iresnet_block_without_lipschitz_names_the_field() -> None:
    cfg = _config([{"operator": ["blur"], "noise_level": [0.01], "arch": ["tv", "iresnet_demo"]}])
    with pytest.raises(study_config.ConfigError, match=r"grid\[0\]\.lipschitz"):
        study_config.cells(cfg)


def test_convresnet_counts_match_table1_by_construction() -> None:
    spec = BASELINES["convresnet"]
    per_block = 64 * 128 * 25 + 128 + 128 * 64 + 64  # 5x5 conv + 1x1 conv, no threshold
    lifting = (64 + 64) + (64 + 1)  # learnable 1x1 convolutions in and out
    assert count_parameters(build_baseline(spec)) == 20 * per_block + lifting == 4_263_873
