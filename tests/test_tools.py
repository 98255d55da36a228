"""The user tools ``iresnet-inverse reconstruct`` and ``iresnet-inverse summary``, on a tiny
iResNet and a TV model saved without the workflow, and a hand-built study dataset."""

import io
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from skimage import io as skio

from iresnet_inverse.archs import label
from iresnet_inverse.artifacts import ArtifactError, combine_cells, read_dataset, write_dataset
from iresnet_inverse.cli import main
from iresnet_inverse.metrics import psnr
from iresnet_inverse.models import ModelMeta, load_trained_cell, reconstruct, save_model
from iresnet_inverse.nets.iresnet import build_iresnet
from iresnet_inverse.operators import get_operator
from iresnet_inverse.stages.reconstruct import apply_model, evaluation_solver
from iresnet_inverse.stages.tables import summary_table
from iresnet_inverse.tv import TotalVariation

SIDE = 40
TINY = {"kind": "conv", "blocks": 2, "channels": 2, "hidden": 4, "kernel_size": 3}


def _cell(arch: str, lipschitz: float, objective: str) -> dict:
    return {
        "operator": "blur",
        "noise_level": 0.02,
        "lipschitz": lipschitz,
        "objective": objective,
        "arch": arch,
        "seed": 0,
    }


@pytest.fixture
def iresnet_model(tmp_path: Path) -> Path:
    net = build_iresnet(TINY, 0.9)
    net.refresh_norms()
    meta = ModelMeta(_cell("tiny", 0.9, "reconstruction"), 0.9, {}, {})
    return save_model(net, TINY, meta, tmp_path / "iresnet" / "model.pt")


@pytest.fixture
def tv_model(tmp_path: Path) -> Path:
    spec = {"kind": "tv", "tol": 1e-4, "max_iter": 100}
    net = TotalVariation(get_operator("blur"), 0.01, spec["tol"], spec["max_iter"])
    meta = ModelMeta(_cell("tv", math.inf, "variational"), math.inf, {}, {})
    return save_model(net, spec, meta, tmp_path / "tv" / "model.pt")


def _shapes() -> np.ndarray:
    """A piecewise-constant gray image in [0, 1]: a square and a disk on a background."""
    yy, xx = np.mgrid[:SIDE, :SIDE]
    image = np.full((SIDE, SIDE), 0.2)
    image[8:22, 6:20] = 0.8
    image[(yy - 26) ** 2 + (xx - 26) ** 2 < 64] = 0.5
    return image


def _png(image: np.ndarray, path: Path, rgb: bool = False) -> Path:
    pixels = np.round(image * 255).astype(np.uint8)
    skio.imsave(path, np.stack([pixels] * 3, axis=-1) if rgb else pixels, check_contrast=False)
    return path


def _printed_psnr(out: str, name: str) -> float:
    return float(re.search(rf"^PSNR / SSIM .*{name} ([-\d.]+) dB", out, re.MULTILINE).group(1))


def test_reconstruct_cli_matches_library(iresnet_model, tmp_path, capsys) -> None:
    """Given exact data F(x) and an RGB image: the PNG has the image's shape, the NetCDF
    holds x, z and x_hat, and x_hat is reconstruct() applied to the same z."""
    image = _png(_shapes(), tmp_path / "x.png", rgb=True)
    x = skio.imread(image)[..., 0] / 255.0
    with torch.no_grad():
        clean = get_operator("blur")(torch.as_tensor(x)[None, None])[0, 0].numpy()
    np.save(tmp_path / "z.npy", clean)
    args = ["--model", str(iresnet_model), "--image", str(image), "--data", str(tmp_path / "z.npy")]
    out, nc = tmp_path / "rec.png", tmp_path / "rec.nc"
    assert main(["reconstruct", *args, "--out", str(out), "--nc", str(nc)]) == 0
    printed = capsys.readouterr().out
    assert skio.imread(out).shape == (SIDE, SIDE)
    ds = xr.open_dataset(nc).load()
    assert {"x", "z", "x_hat"} <= set(ds.data_vars) and ds.attrs["model"] == str(iresnet_model)
    trained = load_trained_cell(iresnet_model)
    z_t = torch.as_tensor(clean, dtype=torch.float32)[None, None]
    direct, _ = reconstruct(
        trained.net, "reconstruction", trained.operator, z_t, evaluation_solver()
    )
    np.testing.assert_allclose(ds["x_hat"].values, direct[0, 0].numpy(), atol=1e-6)
    assert _printed_psnr(printed, "data") == pytest.approx(psnr(x, clean)[0], abs=0.01)
    assert ds.attrs["psnr"] == pytest.approx(_printed_psnr(printed, "reconstruction"), abs=0.01)


def test_reconstruct_from_data_alone(iresnet_model, tmp_path, capsys) -> None:
    """Data without the clean image: a reconstruction, no metrics, no x in the NetCDF."""
    data = _png(_shapes(), tmp_path / "z.png")
    out, nc = tmp_path / "rec.png", tmp_path / "rec.nc"
    args = ["--model", str(iresnet_model), "--data", str(data), "--out", str(out), "--nc", str(nc)]
    assert main(["reconstruct", *args]) == 0
    assert "PSNR / SSIM     need the clean image (--image)" in capsys.readouterr().out
    ds = xr.open_dataset(nc).load()
    assert set(ds.data_vars) == {"z", "x_hat"} and ds.attrs["data"] == "given"
    assert "psnr" not in ds.attrs and skio.imread(out).shape == (SIDE, SIDE)


def test_simulated_data_follow_the_seed(iresnet_model, tmp_path) -> None:
    """Without --data, z = F(x) + delta * noise with the cell's delta and a seeded generator."""
    image = _png(_shapes(), tmp_path / "x.png")
    result = apply_model(iresnet_model, image, seed=3)
    x = torch.as_tensor(skio.imread(image) / 255.0)[None, None]
    noise = torch.randn((SIDE, SIDE), generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    with torch.no_grad():
        expected = get_operator("blur")(x)[0, 0] + 0.02 * noise
    np.testing.assert_allclose(result.z, expected.numpy(), atol=1e-12)
    assert result.noise_level == 0.02
    assert set(result.metrics) == {"psnr", "ssim", "data_psnr", "data_ssim"}
    other = apply_model(iresnet_model, image, noise_level=0.05, seed=3)
    np.testing.assert_allclose(other.z - result.z, 0.03 * noise.numpy(), atol=1e-12)


def test_tv_model_beats_the_data(tv_model, tmp_path, capsys) -> None:
    """A baseline through the same tool: TV on blurred shapes at delta 0.02 gains PSNR."""
    image = _png(_shapes(), tmp_path / "x.png")
    args = ["--model", str(tv_model), "--image", str(image), "--out", str(tmp_path / "r.png")]
    assert main(["reconstruct", *args, "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "data            F(x) + 0.02 * noise (seed 0)" in printed
    assert _printed_psnr(printed, "reconstruction") > _printed_psnr(printed, "data") + 1


def test_reconstruct_errors_name_the_file(iresnet_model, tmp_path, capsys) -> None:
    """Missing files, mismatched shapes and no input at all end with exit code 1 and a
    message, not a traceback."""
    image = _png(_shapes(), tmp_path / "x.png")
    np.save(tmp_path / "small.npy", np.zeros((SIDE, SIDE - 2)))
    out = ["--out", str(tmp_path / "r.png")]
    cases = {
        "nothing.pt: checkpoint not found": ["--model", str(tmp_path / "nothing.pt")],
        "nothing.png: image not found": ["--image", str(tmp_path / "nothing.png")],
        "small.npy: data of shape (40, 38) do not match": [
            "--image",
            str(image),
            "--data",
            str(tmp_path / "small.npy"),
        ],
        "give an image (--image)": [],
    }
    for message, args in cases.items():
        model = [] if "--model" in args else ["--model", str(iresnet_model)]
        assert main(["reconstruct", *model, *args, *out]) == 1
        err = capsys.readouterr().err
        assert err.startswith("iresnet-inverse reconstruct: error:") and message in err
    assert not (tmp_path / "r.png").exists()


def test_reconstruct_never_writes_over_its_inputs(iresnet_model, tmp_path, capsys) -> None:
    """--out or --nc naming the image, the data, the model or each other is refused before
    any work; every file keeps its bytes."""
    image = _png(_shapes(), tmp_path / "x.png")
    np.save(tmp_path / "z.npy", _shapes())
    before = {p: p.read_bytes() for p in (image, tmp_path / "z.npy", iresnet_model)}
    same_dir = tmp_path / "sub" / ".." / "x.png"  # another spelling of the image's path
    (tmp_path / "sub").mkdir()
    out = ["--out", str(tmp_path / "r.png")]
    cases = [  # (the output flag, the input it names, the arguments)
        ("--out", "--image", ["--out", str(image)]),
        ("--out", "--image", ["--out", str(same_dir)]),
        ("--nc", "--model", [*out, "--nc", str(iresnet_model)]),
        ("--out", "--data", ["--data", str(tmp_path / "z.npy"), "--out", str(tmp_path / "z.npy")]),
        ("--nc", "--out", [*out, "--nc", str(tmp_path / "r.png")]),
    ]
    for output, source, args in cases:
        argv = ["reconstruct", "--model", str(iresnet_model), "--image", str(image), *args]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"iresnet-inverse reconstruct: error: {output} "), err
        assert f"is the file of {source}: it would be overwritten" in err, err
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "r.png").exists()


# ------------------------------------------------------------------------------------------
# summary

STUDY_CELLS = [
    ("blur", 0.01, 0.99, "reconstruction", "iresnet_demo", 0),
    ("blur", 0.01, 0.99, "reconstruction", "iresnet_demo", 1),
    ("blur", 0.01, 0.999, "reconstruction", "iresnet_demo", 0),
    ("blur", 0.01, 0.999, "logdet", "iresnet_demo", 0),
    ("blur", 0.01, math.inf, "variational", "tv", 0),
    ("diffusion", 0.05, math.inf, "supervised", "unet_demo", 0),
]


@pytest.fixture
def study(tmp_path: Path) -> tuple[Path, dict]:
    """A reconstruction dataset built like the workflow's (per-cell files, combine_cells) and
    the expected rows, computed from the numbers that went in."""
    rng = np.random.default_rng(1)
    data = {op: rng.uniform(20, 30, (2, 3)) for op in ("blur", "diffusion")}
    paths, values = [], {}
    for i, cell in enumerate(STUDY_CELLS):
        metrics = rng.uniform(25, 35, 3), rng.uniform(0.5, 0.9, 3)
        psnr_values, ssim_values = metrics
        ds = xr.Dataset(
            {
                "psnr": ("image", psnr_values),
                "ssim": ("image", ssim_values),
                "data_psnr": ("image", data[cell[0]][0]),
                "data_ssim": ("image", data[cell[0]][1] / 40),
            },
            coords={"image": np.arange(3)},
        )
        keys = dict(
            zip(
                ("operator", "noise_level", "lipschitz", "objective", "arch", "seed"),
                cell,
                strict=True,
            )
        )
        paths.append(write_dataset(ds, tmp_path / f"cell{i}.nc", title="cell", cell=keys))
        values.setdefault(cell[:5], []).append(metrics)
    path = write_dataset(combine_cells(paths), tmp_path / "reconstruction.nc", title="study")
    expected = {
        (op, delta, "noisy data", "", ""): (data[op][0].mean(), data[op][1].mean() / 40)
        for op, delta in (("blur", 0.01), ("diffusion", 0.05))
    }
    for (op, delta, lip, objective, arch), runs in values.items():
        key = (op, delta, label(arch), "" if math.isinf(lip) else f"{lip:g}", objective)
        expected[key] = tuple(float(np.mean([run[j] for run in runs])) for j in (0, 1))
    return path, expected


def test_summary_table_means(study) -> None:
    """Means over images and seeds per cell, L and objective kept apart, the data row first."""
    path, expected = study
    table = summary_table(path)
    assert len(table) == len(expected) == 7
    assert table["method"].iloc[0] == "noisy data" and table["operator"].iloc[-1] == "diffusion"
    for row in table.itertuples(index=False):
        lip = "" if pd.isna(row.lipschitz) else f"{row.lipschitz:g}"
        key = (row.operator, row.noise_level, row.method, lip, row.objective)
        assert (row.psnr, row.ssim) == pytest.approx(expected[key], abs=1e-9)


def test_summary_formats(study, capsys) -> None:
    """The three outputs carry the same numbers: CSV to 6 digits, text and markdown rounded."""
    path, expected = study
    assert main(["summary", str(path), "--csv"]) == 0
    csv = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert main(["summary", str(path), "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "| --- | --- | --- | --- | --- | ---: | ---: |"
    markdown = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert main(["summary", str(path)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert len(text) == len(expected) + 2 and len({len(line) for line in text}) == 1
    for row, cells, line in zip(csv.itertuples(index=False), markdown, text[2:], strict=True):
        lip = "" if row.lipschitz == "" else f"{float(row.lipschitz):g}"
        key = (row.operator, row.noise_level, row.method, lip, row.objective)
        want_psnr, want_ssim = expected[key]
        assert (row.psnr, row.ssim) == pytest.approx((want_psnr, want_ssim), rel=1e-5)
        rounded = [f"{want_psnr:.2f}", f"{want_ssim:.4f}"]
        assert cells[:5] == [row.operator, f"{row.noise_level:g}", row.method, lip, row.objective]
        assert cells[5:] == rounded
        assert line.split()[-2:] == rounded and row.method in line


def test_reconstruct_refuses_what_it_cannot_handle_before_working(
    iresnet_model, tmp_path, capsys, monkeypatch
) -> None:
    """Images too small for the operator, too large for memory (limit lowered here), empty,
    an .npz named .npy, a decompression bomb, and devices that are not there: one line each,
    naming the culprit, and no output."""
    from PIL import Image

    from iresnet_inverse.stages import reconstruct as apply

    image = _png(_shapes(), tmp_path / "x.png")
    np.save(tmp_path / "tiny.npy", np.zeros((5, 5)))
    np.save(tmp_path / "empty.npy", np.zeros((0, 0)))
    np.savez(tmp_path / "packed.npz", a=np.zeros((SIDE, SIDE)))
    (tmp_path / "packed.npz").rename(tmp_path / "packed.npy")
    cases = {
        "tiny.npy: a 5x5 image is too small; the operator and the nets need at least 16x16": [
            "--image", str(tmp_path / "tiny.npy")
        ],
        "empty.npy: a 0x0 image is too small": ["--image", str(tmp_path / "empty.npy")],
        "packed.npy: not a readable image (an .npz archive, not an .npy array)": [
            "--image", str(tmp_path / "packed.npy")
        ],
        "device: 'bogus' is not a device": ["--image", str(image), "--device", "bogus"],
        "device: cuda:7 requested but": ["--image", str(image), "--device", "cuda:7"],
    }  # fmt: skip
    out = ["--model", str(iresnet_model), "--out", str(tmp_path / "r.png")]
    for message, args in cases.items():
        assert main(["reconstruct", *out, *args]) == 1, message
        err = capsys.readouterr().err
        assert err.startswith("iresnet-inverse reconstruct: error:") and message in err, err
    monkeypatch.setattr(apply, "MAX_PIXELS", 1000)
    assert main(["reconstruct", *out, "--image", str(image)]) == 1
    assert "40x40 is larger than 1,000 pixels" in capsys.readouterr().err
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 40 x 40 is a bomb at this limit
    assert main(["reconstruct", *out, "--image", str(image)]) == 1
    assert "x.png: not a readable image" in capsys.readouterr().err
    assert not (tmp_path / "r.png").exists()


def test_reconstruct_writes_png_only(iresnet_model, tmp_path, capsys) -> None:
    """docs/tools.md promises an 8-bit PNG: another suffix is refused before any work."""
    image = _png(_shapes(), tmp_path / "x.png")
    argv = ["reconstruct", "--model", str(iresnet_model), "--image", str(image)]
    assert main([*argv, "--out", str(tmp_path / "r.jpg")]) == 1
    assert "name it *.png" in capsys.readouterr().err
    assert not (tmp_path / "r.jpg").exists()
    assert main([*argv, "--out", str(tmp_path / "r.png")]) == 0
    assert skio.imread(tmp_path / "r.png").dtype == np.uint8
    assert not list(tmp_path.glob(".r.png.*"))  # no temporary left


def test_summary_refuses_budget_curves(study, tmp_path, capsys) -> None:
    """scaling.nc has a curve per cell (dimension samples): averaging it would mix budgets."""
    path, _ = study
    curves = read_dataset(path).expand_dims(samples=[512, 1024])
    write_dataset(curves, tmp_path / "scaling.nc", title="t")
    assert main(["summary", str(tmp_path / "scaling.nc")]) == 1
    assert "it varies over ['samples']" in capsys.readouterr().err


def test_summary_into_a_closed_pipe_is_quiet(study) -> None:
    """``summary | head``: a reader that stops early is not an error (no "Broken pipe")."""
    path, _ = study
    cmd = [sys.executable, "-m", "iresnet_inverse.cli", "summary", str(path)]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # closed before the table is written
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0 and err == b"", err


def test_summary_of_a_missing_file(tmp_path, capsys) -> None:
    assert main(["summary", str(tmp_path / "none.nc")]) == 1
    assert "none.nc: NetCDF artifact not found" in capsys.readouterr().err


def test_npy_images_are_scaled_by_their_dtype_like_image_files(iresnet_model, tmp_path) -> None:
    """A clean image stored as .npy follows the rules of image files: integers scaled by their
    dtype's range, floats in [0, 1]; only the data z may leave [0, 1] (noise does)."""
    shapes = _shapes()
    pixels = np.round(shapes * 255).astype(np.uint8)
    np.save(tmp_path / "u8.npy", pixels)
    np.save(tmp_path / "u16.npy", pixels.astype(np.uint16) * 257)
    np.save(tmp_path / "f.npy", pixels / 255.0)
    as_png = apply_model(iresnet_model, _png(shapes, tmp_path / "x.png"), seed=3)
    for name in ("u8", "u16", "f"):
        result = apply_model(iresnet_model, tmp_path / f"{name}.npy", seed=3)
        np.testing.assert_allclose(result.x, as_png.x, rtol=0, atol=1e-12)
    for name, array, message in [
        ("f255", pixels.astype(np.float64), "float images must lie in [0, 1]"),
        ("neg", pixels.astype(np.int32) - 100, "int32 image with negative values"),
        ("cplx", pixels + 0j, "expected real intensities"),
    ]:
        np.save(tmp_path / f"{name}.npy", array)
        with pytest.raises(ArtifactError, match=re.escape(message)):
            apply_model(iresnet_model, tmp_path / f"{name}.npy")
    z = as_png.z.copy()
    z[0, 0] = -0.2  # data outside [0, 1] are data, kept as stored
    np.save(tmp_path / "z.npy", z)
    given = apply_model(iresnet_model, data_path=tmp_path / "z.npy")
    assert given.z[0, 0] == -0.2


def test_reconstruct_writes_both_outputs_or_neither(
    iresnet_model, tmp_path, capsys, monkeypatch
) -> None:
    """A NetCDF file that cannot be written leaves no PNG, and a PNG that cannot be written
    no NetCDF file; --nc must name a .nc file; --seed must be a generator seed; an empty image
    file is named as such."""
    from iresnet_inverse.stages import reconstruct as apply

    image = _png(_shapes(), tmp_path / "x.png")
    base = ["reconstruct", "--model", str(iresnet_model), "--image", str(image)]
    out, nc = tmp_path / "r.png", tmp_path / "r.nc"
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "r.nc").mkdir()  # a directory where the file should go
    assert main([*base, "--out", str(out), "--nc", str(tmp_path / "locked" / "r.nc")]) == 1
    assert "name a NetCDF file" in capsys.readouterr().err and not out.exists()

    def no_room(result: object, path: Path, model: object) -> Path:
        raise ArtifactError(f"{path}: cannot write: the disk is full (0 bytes free)")

    monkeypatch.setattr(apply, "write_result", no_room)
    assert main([*base, "--out", str(out), "--nc", str(nc)]) == 1
    assert f"error: {nc}: cannot write: the disk is full" in capsys.readouterr().err
    assert not out.exists() and not nc.exists()
    monkeypatch.undo()

    def full_disk(image: np.ndarray, path: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(apply, "write_png", full_disk)
    assert main([*base, "--out", str(out), "--nc", str(nc)]) == 1
    assert not nc.exists() and not list(tmp_path.glob(".r.nc*"))
    monkeypatch.undo()
    capsys.readouterr()
    for args, message in [
        (["--nc", str(tmp_path / "r.png5")], "name a NetCDF file"),
        (["--seed", str(2**70)], "--seed: must lie in [0, 2**32 - 1]"),
        (["--seed", "-5"], "--seed: must lie in [0, 2**32 - 1]"),
    ]:
        code = main([*base, "--out", str(out), *args]) if "--nc" in args else None
        if code is None:
            with pytest.raises(SystemExit):
                main([*base, "--out", str(out), *args])
        else:
            assert code == 1
        assert message in capsys.readouterr().err
    (tmp_path / "empty.png").write_bytes(b"")
    assert main(["reconstruct", "--model", str(iresnet_model), "--image",
                 str(tmp_path / "empty.png"), "--out", str(out)]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "empty.png: not a readable image (the file is empty)" in err and "pip" not in err
    assert not out.exists()


def test_an_unreadable_model_is_not_called_corrupt(iresnet_model, tmp_path, capsys, monkeypatch):
    """A model.pt the user may not read is named as such, without the advice to delete it."""
    opened = Path.open

    def no_permission(self: Path, *args: object, **kwargs: object) -> object:
        if self == Path(iresnet_model):
            raise PermissionError(13, "Permission denied")
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", no_permission)
    image = _png(_shapes(), tmp_path / "x.png")
    argv = ["reconstruct", "--model", str(iresnet_model), "--image", str(image)]
    assert main([*argv, "--out", str(tmp_path / "r.png")]) == 1
    err = capsys.readouterr().err
    assert "model.pt: cannot read the checkpoint (Permission denied)" in err
    assert "delete" not in err
