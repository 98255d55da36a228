"""Baselines: architectures, parameter counts (Table 1), identity start, supervised training, and
their cells in the grid."""

import subprocess
import sys
from collections.abc import Callable

import pytest
import torch

from iresnet_inverse import config as study_config
from iresnet_inverse import objectives
from iresnet_inverse.cells import ImageCell
from iresnet_inverse.nets.baselines import BASELINES, ConvResNet, DiffNet, UNet, build_baseline
from iresnet_inverse.nets.model import count_parameters
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
    rows = {line.split()[0]: line.split()[2:] for line in out.splitlines()[1:-1]}
    # ours, then Table 1's
    assert rows["iresnet"] == ["4,263,700", "4,263,700"]
    assert rows["iresnet_small"] == ["640,140", "640,140"]
    assert rows["convresnet"] == ["4,263,873", "4,263,873"]
    assert rows["diffnet"] == ["101,310", "101,310"]
    # Ronneberger's U-Net at Table 1's sizes; the paper's has 390,096 more (docs/methods.md,
    # "Baselines")
    assert rows["unet"] == ["5,078,609", "5,468,705"]
    assert rows["tv"] == ["0"]


def test_describe_without_a_config_says_it_describes_the_defaults() -> None:
    command = [sys.executable, "-m", "iresnet_inverse.cli", "describe"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == (
        "config: the schema's defaults (the demo is --config config/config.yaml)"
    )


@pytest.mark.parametrize("name", ["unet", "unet_demo", "convresnet_demo", "diffnet"])
def test_baselines_start_at_the_identity(name: str) -> None:
    net = build_baseline(BASELINES[name])
    z = torch.rand(3, 1, 20, 20)  # not a multiple of the U-Net's coarsest scale
    assert torch.allclose(net(z), z, atol=1e-5)


def test_diffnet_step_is_a_five_point_stencil() -> None:
    u = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    diffs = DiffNet.neighbour_differences(u)
    assert diffs.shape == (2, 4, 8, 8)
    assert torch.allclose(diffs[0, 1, 0, 0], u[0, 0, 1, 0] - u[0, 0, 0, 0])  # south neighbour
    assert torch.all(diffs[:, 0, 0] == 0)  # no flux across the top border
    # u + tau (sum_n k_n u_n - k_0 u), here at an inner pixel
    k = torch.rand(2, 5, 8, 8, dtype=torch.float64)
    step = DiffNet.stencil_step(u, k, torch.tensor(0.2, dtype=torch.float64))
    i, j = 3, 4
    neighbours = [u[0, 0, i - 1, j], u[0, 0, i + 1, j], u[0, 0, i, j - 1], u[0, 0, i, j + 1]]
    centre = u[0, 0, i, j]
    flux = sum(k[0, n + 1, i, j] * v for n, v in enumerate(neighbours)) - k[0, 0, i, j] * centre
    assert torch.allclose(step[0, 0, i, j], centre + 0.2 * flux)
    # with a zero row sum (k_0 = sum_n k_n) it is a diffusion step: constants are fixed points
    k[:, 0] = k[:, 1:].sum(dim=1)
    c = torch.full((2, 1, 8, 8), 0.3, dtype=torch.float64)
    assert torch.allclose(DiffNet.stencil_step(c, k, torch.tensor(0.2)), c)


def test_diffnet_matches_arridge_hauptmann_counts() -> None:
    # per step: 3x3 convolutions 1 -> 32 -> 32 -> 32 -> 5 with biases, and the step size
    per_step = (9 * 32 + 32) + 2 * (9 * 32 * 32 + 32) + (9 * 32 * 5 + 5) + 1
    net = build_baseline(BASELINES["diffnet"])
    assert count_parameters(net) == 5 * per_step == 101_310


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
    assert "lipschitz~inf/objective~supervised/arch~unet_demo" in cells["unet_demo"].dir
    parsed = ImageCell.of(dict(zip(ImageCell.KEYS, cells["tv"].path_values, strict=True)))
    assert parsed == cells["tv"]
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
