"""Figures a reader trusts at a glance: one colour per method and per L in every figure, L axes
that keep 0.95, 0.99 and 0.999 apart and never tick past 1, and no overlapping labels."""

import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import to_hex

from iresnet_inverse.stages.figures import methods
from iresnet_inverse.stages.figures.common import lipschitz_color, method_color, plt
from iresnet_inverse.stages.figures.training import draw_learning_curves
from iresnet_inverse.stages.tables import last_fifth_gain, training_curves

OPERATORS = ["blur", "diffusion"]
DELTAS = [0.01, 0.05]
LIPS = [0.95, 0.99, 0.999, np.inf]
OBJECTIVES = ["reconstruction", "supervised", "variational"]
ARCHS = ["iresnet_demo", "unet_demo", "tv"]
CELL = ("operator", "noise_level", "lipschitz", "objective", "arch", "seed")
IMAGES, SIZE = 3, 8
SCORES = ("psnr", "ssim", "data_psnr", "data_ssim")
IRESNET_ONLY = ("inversion_error", "forward_mse", "forward_ssim")
NAMED = ("truth", "data", "clean_data", "reconstruction", "forward")


def _cells() -> list[tuple[str, float, float, str, str]]:
    """(operator, delta, L, objective, arch) of every cell run: the iResNet at all three L on
    blur but only at L = 0.999 on diffusion (one L in a panel), baselines unconstrained."""
    out = [("blur", d, lip, "reconstruction", "iresnet_demo") for d in DELTAS for lip in LIPS[:3]]
    out += [("diffusion", d, 0.999, "reconstruction", "iresnet_demo") for d in DELTAS]
    for op in OPERATORS:
        out += [(op, d, np.inf, "supervised", "unet_demo") for d in DELTAS]
        out += [(op, d, np.inf, "variational", "tv") for d in DELTAS]
    return out


@pytest.fixture(scope="module")
def study() -> xr.Dataset:
    return build_study()


def build_study() -> xr.Dataset:
    """A hand-built reconstruction.nc cube with the dims and coords ``combine_cells`` gives
    ``evaluate_cell``'s per-cell datasets; NaN where no cell was run."""
    rng = np.random.default_rng(0)
    shape = (len(OPERATORS), len(DELTAS), len(LIPS), len(OBJECTIVES), len(ARCHS), 1)
    data = {v: np.full((*shape, IMAGES), np.nan) for v in SCORES + IRESNET_ONLY}
    named = {v: np.full((*shape, 1, SIZE, SIZE), np.nan, np.float32) for v in NAMED}
    for op, delta, lip, objective, arch in _cells():
        at = (OPERATORS.index(op), DELTAS.index(delta), LIPS.index(lip))
        at += (OBJECTIVES.index(objective), ARCHS.index(arch), 0)
        for var in SCORES + (IRESNET_ONLY if arch.startswith("iresnet") else ()):
            data[var][at] = rng.uniform(0.2, 30.0, IMAGES)
        for var in NAMED:
            named[var][at] = rng.random((1, SIZE, SIZE))
    coords = dict(zip(CELL, (OPERATORS, DELTAS, LIPS, OBJECTIVES, ARCHS, [0]), strict=True))
    variables = {v: ((*CELL, "image"), a) for v, a in data.items()}
    variables |= {f"named_{v}": ((*CELL, "name", "ny", "nx"), a) for v, a in named.items()}
    return xr.Dataset(variables, coords={**coords, "image": range(IMAGES), "name": ["a"]})


def _line_colors(fig: plt.Figure, gid: str) -> set[str]:
    """The colours of every line tagged ``gid`` (a method or ``L=<value>``) in ``fig``."""
    return {
        to_hex(line.get_color()) for ax in fig.axes for line in ax.lines if line.get_gid() == gid
    }


def test_lipschitz_axes_are_categorical_within_0_1(study: xr.Dataset) -> None:
    fig = methods.draw_psnr_vs_lipschitz(study)
    fig.canvas.draw()
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == ["0.95", "0.99", "0.999"], labels
        assert all(0 < float(text) <= 1 for text in labels)
        assert list(ax.get_xticks()) == [0, 1, 2]
        assert ax.get_xlim() == pytest.approx((-0.5, 2.5))
    # The diffusion panel's only L sits at the 0.999 category, not mid-axis.
    diffusion = [ax for ax in fig.axes if ax.get_title() == "diffusion"][0]
    lines = [line for line in diffusion.lines if line.get_gid() == "iresnet_demo"]
    assert lines and all(list(line.get_xdata()) == [2] for line in lines)
    plt.close(fig)


def test_a_method_and_an_l_keep_their_colour_across_figures(study: xr.Dataset) -> None:
    by_l = methods.draw_psnr_vs_lipschitz(study)
    by_noise = methods.draw_methods_vs_noise(study)
    iresnet = _line_colors(by_l, "iresnet_demo")
    assert iresnet == _line_colors(by_noise, "iresnet_demo") == {method_color("iresnet")}
    shown = [_line_colors(by_noise, m) for m in ("iresnet_demo", "unet_demo", "tv", "data")]
    assert all(len(c) == 1 for c in shown) and len(set().union(*shown)) == 4
    inversion = methods.draw_inversion_error(study)
    forward = methods.draw_forward_approximation(study)
    per_l = [_line_colors(inversion, f"L={lip:g}") for lip in LIPS[:3]]
    assert per_l == [_line_colors(forward, f"L={lip:g}") for lip in LIPS[:3]]
    assert per_l == [{to_hex(lipschitz_color(lip))} for lip in LIPS[:3]]
    assert len(set().union(*per_l)) == 3
    for fig in (by_l, by_noise, inversion, forward):
        plt.close(fig)


def test_fallback_colours_are_deterministic() -> None:
    assert method_color("unet_demo") == method_color("unet") != method_color("convresnet")
    assert method_color("iresnet_ci") == method_color("iresnet") != method_color("iresnet_small")
    assert method_color("newnet") == method_color("newnet")
    assert lipschitz_color(0.9) == lipschitz_color(0.9)
    assert to_hex(lipschitz_color(0.9)) not in {to_hex(lipschitz_color(v)) for v in LIPS[:3]}


def test_inversion_error_axes_and_legend_do_not_overlap(study: xr.Dataset) -> None:
    fig = methods.draw_inversion_error(study)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]
    assert len(boxes) == len(OPERATORS) and fig.legends
    for a, b in combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    for legend in fig.legends:  # outside the data: beside no axes, not on top of one
        frame = legend.get_window_extent(renderer)
        assert not any(frame.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    plt.close(fig)


def test_reconstruction_figures_write_png_and_pdf(study: xr.Dataset, tmp_path: Path) -> None:
    path = tmp_path / "reconstruction.nc"
    study.to_netcdf(path, engine="netcdf4")
    for name in ("psnr_vs_lipschitz", "methods_vs_noise", "inversion_error"):
        written = getattr(methods, f"plot_{name}")(path, tmp_path / name, dpi=40)
        assert [p.suffix for p in written] == [".png", ".pdf"]
    for name in ("forward_approximation", "learned_operator"):
        getattr(methods, f"plot_{name}")(path, tmp_path / name, dpi=40)
    methods.plot_examples(path, tmp_path / "examples_blur", "blur", dpi=40)
    assert all(p.stat().st_size > 1000 for p in tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    ("curve", "gain"),
    [
        ([20.0], 0.0),
        ([20.0, 21.0, 21.5, 21.6, 21.65], 0.05),  # 5 epochs: the last one is the last fifth
        ([20.0, 22.0, 21.0, 21.5, 21.9], 0.0),  # below the earlier best: no gain
        ([20, 21, 22, 23, 24, 25, 26, 27, 28, 29], 2.0),  # 10 epochs: the last two
        ([20.0, np.nan, 21.0], 1.0),  # epochs without a score are left out
    ],
)
def test_last_fifth_gain_is_the_rise_of_the_best_score(curve: list[float], gain: float) -> None:
    assert last_fifth_gain(curve) == pytest.approx(gain)


def _history(tmp_path: Path, cell: tuple, val: list[float], plateau: int = 0) -> Path:
    from iresnet_inverse.artifacts import write_dataset

    epochs = np.arange(1, len(val) + 1)
    ds = xr.Dataset(
        {
            "val_psnr": ("epoch", np.array(val)),
            "epoch_seconds": ("epoch", np.full(len(val), 2.0)),
            "loss": ("step", np.ones(3)),
            "plateau_epoch": ((), plateau),
        },
        coords={"epoch": epochs, "step": np.arange(3)},
    )
    path = tmp_path / ("_".join(map(str, cell)) + ".nc")
    return write_dataset(ds, path, title="t", cell=dict(zip(CELL, cell, strict=True)))


def test_learning_curves_of_every_trained_cell(tmp_path: Path) -> None:
    """Curves of different lengths join in one cube (NaN past a curve's end); the figure has
    a row per (operator, delta), a line per cell in both columns, and hollow end markers for
    the curves that have not plateaued."""
    histories = [
        _history(
            tmp_path, ("blur", 0.01, 0.999, "reconstruction", "iresnet_demo", 0), [20, 21, 23]
        ),
        _history(
            tmp_path, ("blur", 0.01, np.inf, "supervised", "unet_demo", 0), [20, 22, 22, 22, 22], 3
        ),
        _history(tmp_path, ("diffusion", 0.05, np.inf, "supervised", "unet_demo", 0), [25, 26]),
    ]
    ds = training_curves(histories)
    iresnet = dict(operator="blur", noise_level=0.01, lipschitz=0.999, arch="iresnet_demo")
    curve = ds["val_psnr"].sel(**iresnet, objective="reconstruction", seed=0)
    np.testing.assert_array_equal(curve, [20, 21, 23, np.nan, np.nan])  # NaN past its end
    unet = dict(operator="blur", noise_level=0.01, lipschitz=np.inf, arch="unet_demo")
    elapsed = ds["elapsed"].sel(**unet, objective="supervised", seed=0)
    np.testing.assert_array_equal(elapsed, [2, 4, 6, 8, 10])
    fig = draw_learning_curves(ds)
    assert len(fig.axes) == 4  # two rows of two
    blur_epoch = fig.axes[0]
    assert len([line for line in blur_epoch.lines if line.get_label().startswith("iResNet")]) == 1
    markers = [line for line in blur_epoch.lines if line.get_marker() == "o"]
    faces = sorted(to_hex(m.get_markerfacecolor()) for m in markers)
    assert "#ffffff" in faces  # the iResNet rose 2 dB in its last epoch: not plateaued
    assert len(faces) == 2 and faces.count("#ffffff") == 1  # U-Net flat: plateaued
    ticks = [line for line in blur_epoch.lines if line.get_marker() == "|"]
    assert len(ticks) == 1 and list(ticks[0].get_xdata()) == [3]  # the rule's plateau
    plt.close(fig)


def test_figure_jobs_import_neither_torch_nor_scipy_stats():
    """A figure job is mostly start-up (about 5 s of 9 with torch, 20 jobs in the demo)."""
    code = (
        "import sys\n"
        "import iresnet_inverse.cli as cli\n"
        "import iresnet_inverse.stages.figures\n"
        "args = cli.parser().parse_args(['figure', 'operators', 'a.nc', '--out-stem', 's'])\n"
        "assert args.threads is None, args.threads\n"
        "heavy = {'torch', 'scipy.stats'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
