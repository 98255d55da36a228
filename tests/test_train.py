"""Training: determinism, resuming after a kill, clear failures, evaluation metrics."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from iresnet_inverse import config
from iresnet_inverse.artifacts import ArtifactError, read_dataset, write_dataset
from iresnet_inverse.cells import ImageCell
from iresnet_inverse.checkpoints import load_checkpoint
from iresnet_inverse.history import history_dataset, plateau_reached
from iresnet_inverse.jobs import Job, image_job
from iresnet_inverse.metrics import psnr, ssim
from iresnet_inverse.nets.iresnet import build_iresnet
from iresnet_inverse.operators import get_operator
from iresnet_inverse.stages.data import image_dataset, observation_dataset
from iresnet_inverse.stages.evaluate import evaluate_model_file
from iresnet_inverse.stages.train import check_not_diverged
from iresnet_inverse.training import Run, Task, TrainingError, TrainSettings, dihedral, fit

CELL = {
    "operator": "blur",
    "noise_level": 0.05,
    "lipschitz": 0.9,
    "objective": "reconstruction",
    "arch": "tiny",
    "seed": 3,
}


def _config(epochs: int, patches: int = 16) -> dict:
    return config.validate(
        {
            "device": "cpu",
            "data": {
                "downscale": 8,
                "patch_size": 16,
                "patches": {"train": patches, "val": 4, "test": 4},
                "named_size": 32,
            },
            "archs": {
                "tiny": {"kind": "conv", "blocks": 2, "channels": 2, "hidden": 4, "kernel_size": 3}
            },
            "train": {"epochs": epochs, "batch_size": 8, "solver": {"method": "fixed_point"}},
            "grid": [
                {
                    **{k: [v] for k, v in CELL.items()},
                    "objective": ["reconstruction", "approximation"],
                }
            ],
        }
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    cfg = _config(1, patches=96)
    images = image_dataset(cfg["data"])
    write_dataset(images, root / "images.nc", title="t")
    obs = observation_dataset(images, "blur", cfg["operators"]["blur"], 0.05, seed=0)
    write_dataset(obs, root / "obs.nc", title="t", cell={"operator": "blur", "noise_level": 0.05})
    return root / "images.nc", root / "obs.nc"


def _job(cfg: dict, objective: str = "reconstruction") -> Job:
    return image_job(cfg, ImageCell.of({**CELL, "objective": objective}), ("data", "evaluate"))


def _train_command(
    cfg: dict, data: tuple[Path, Path], out: Path, objective: str = "reconstruction"
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "iresnet_inverse.cli",
        "train",
        "--job-json",
        _job(cfg, objective).to_json(),
        "--threads",
        "1",
        "--images",
        str(data[0]),
        "--observations",
        str(data[1]),
        "--out-dir",
        str(out),
    ]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _metrics(out: Path, cfg: dict, data: tuple[Path, Path]) -> dict[str, np.ndarray]:
    ds = evaluate_model_file(out / "model.pt", data[0], data[1], _job(cfg))
    history = read_dataset(out / "history.nc")
    return {
        "psnr": ds["psnr"].values,
        "ssim": ds["ssim"].values,
        "loss": history["loss"].values.ravel(),
        "val": history["val_psnr"].values.ravel(),
    }


def _kill_after_first_checkpoint(cmd: list[str], out: Path) -> None:
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "resume.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "model.pt").exists(), "the run finished before it could be killed"


def test_same_seed_same_metrics_and_resume_after_kill(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    cfg = _config(epochs=8, patches=96)
    _run(_train_command(cfg, data, tmp_path / "a"))
    _run(_train_command(cfg, data, tmp_path / "b"))
    a, b = _metrics(tmp_path / "a", cfg, data), _metrics(tmp_path / "b", cfg, data)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])

    # Kill a third run as soon as its first epoch checkpoint exists, then rerun it.
    out = tmp_path / "killed"
    _kill_after_first_checkpoint(_train_command(cfg, data, out), out)
    rerun = _run(_train_command(cfg, data, out))
    assert "resuming from epoch" in rerun.stderr
    assert not (out / "resume.pt").exists()
    resumed = _metrics(out, cfg, data)
    for key in a:
        np.testing.assert_array_equal(resumed[key], a[key])
    assert json.loads(read_dataset(out / "history.nc").attrs["resumed_at_epochs"])


def test_a_cell_interrupted_archived_and_restored_elsewhere_finishes_bit_for_bit(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    """Checkpoints travel in an archive (--checkpoints): the cell continues on another
    machine (here: another directory) exactly as an uninterrupted run."""
    cfg, cell = _config(epochs=6, patches=96), ImageCell.of(CELL).dir
    _run(_train_command(cfg, data, tmp_path / "whole"))
    first, second = (tmp_path / name / "results" for name in ("first", "second"))
    _kill_after_first_checkpoint(
        _train_command(cfg, data, first / "train" / cell), first / "train" / cell
    )
    archive, cli = tmp_path / "study.tar.gz", [sys.executable, "-m", "iresnet_inverse.cli"]
    _run([*cli, "archive", "--results", str(first), "--checkpoints", "--out", str(archive)])
    _run([*cli, "restore", str(archive), "--results", str(second)])
    rerun = _run(_train_command(cfg, data, second / "train" / cell))
    assert "resuming from epoch" in rerun.stderr
    whole = load_checkpoint(tmp_path / "whole" / "model.pt")["model"]
    resumed = load_checkpoint(second / "train" / cell / "model.pt")["model"]
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    np.testing.assert_array_equal(
        read_dataset(second / "train" / cell / "history.nc")["loss"].values,
        read_dataset(tmp_path / "whole" / "history.nc")["loss"].values,
    )


def test_a_corrupt_resume_checkpoint_is_discarded_not_fatal(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    cfg = _config(epochs=1, patches=96)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "resume.pt").write_bytes(b"half a checkpoint")
    result = _run(_train_command(cfg, data, tmp_path))
    assert "resume.pt is not a loadable checkpoint" in result.stderr
    assert "discarding it and starting afresh" in result.stderr
    assert "weights_only" not in result.stderr and "delete it" not in result.stderr
    assert (tmp_path / "model.pt").exists() and not (tmp_path / "resume.pt").exists()


def test_history_and_evaluation_contents(tmp_path: Path, data: tuple[Path, Path]) -> None:
    cfg = _config(epochs=2, patches=96)
    _run(_train_command(cfg, data, tmp_path))
    history = read_dataset(tmp_path / "history.nc")
    assert history["val_psnr"].sizes["epoch"] == 2
    assert history["lipschitz_certificate"].sizes["block"] == 2
    bound = float(history["block_bound"].squeeze())
    assert float(history["lipschitz_certificate"].max()) <= bound + 1e-5
    assert history["loss"].sizes["step"] == 2 * 12
    assert float(history["wall_time"].squeeze()) > 0
    ds = evaluate_model_file(tmp_path / "model.pt", data[0], data[1], _job(cfg))
    for name in (
        "psnr",
        "ssim",
        "mse",
        "inversion_error",
        "forward_mse",
        "forward_ssim",
        "data_psnr",
        "data_ssim",
        "solver_iterations",
        "solver_residual",
        "converged",
    ):
        assert ds[name].sizes["image"] == 4, name
        assert np.isfinite(ds[name].values).all(), name
    assert ds["named_reconstruction"].shape == (3, 32, 32)


def test_warm_start_from_another_cell(tmp_path: Path, data: tuple[Path, Path]) -> None:
    cfg = _config(epochs=1, patches=96)
    _run(_train_command(cfg, data, tmp_path / "approx", "approximation"))
    warm = _run(
        [
            *_train_command(cfg, data, tmp_path / "warm"),
            "--warm-start",
            str(tmp_path / "approx" / "model.pt"),
        ]
    )
    assert "warm start from" in warm.stderr
    _run(_train_command(cfg, data, tmp_path / "cold"))
    # The warm-started run starts from the approximation-trained weights, not the identity.
    warm_loss = read_dataset(tmp_path / "warm" / "history.nc")["loss"].values.ravel()
    cold_loss = read_dataset(tmp_path / "cold" / "history.nc")["loss"].values.ravel()
    assert warm_loss[0] != cold_loss[0]


def test_a_model_or_data_of_another_cell_is_refused_naming_both(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    """A model.pt copied over another cell's, observations of another noise level, and a warm
    start from another architecture: each job stops, naming what it holds and what it is."""
    cfg = _config(epochs=1, patches=96)
    _run(_train_command(cfg, data, tmp_path / "approx", "approximation"))
    model = tmp_path / "approx" / "model.pt"
    with pytest.raises(ArtifactError, match="a model of .*objective~approximation.* but this job"):
        evaluate_model_file(model, data[0], data[1], _job(cfg))
    other = observation_dataset(read_dataset(data[0]), "blur", cfg["operators"]["blur"], 0.1, 0)
    write_dataset(
        other, tmp_path / "obs.nc", title="t", cell={"operator": "blur", "noise_level": 0.1}
    )
    job = _job(cfg, "approximation")
    with pytest.raises(ArtifactError, match="noise_level~0.1, but this job is .*noise_level~0.05"):
        evaluate_model_file(model, data[0], tmp_path / "obs.nc", job)
    cfg["archs"]["other"] = {**cfg["archs"]["tiny"], "channels": 4}
    cfg["grid"][0]["arch"] = ["tiny", "other"]
    other_arch = image_job(cfg, ImageCell.of({**CELL, "arch": "other"}), ("data",))
    command = _train_command(cfg, data, tmp_path / "other")
    command[command.index("--job-json") + 1] = other_arch.to_json()
    result = subprocess.run([*command, "--warm-start", str(model)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "arch~tiny/seed~3, but this job is" in result.stderr
    assert "Traceback" not in result.stderr


def test_non_convergence_is_counted_and_warned(
    tmp_path: Path, data: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    cfg = _config(epochs=1, patches=96)
    _run(_train_command(cfg, data, tmp_path))
    cfg["evaluate"]["solver"] = {"method": "fixed_point", "tol": 1e-12, "max_iter": 1, "memory": 5}
    ds = evaluate_model_file(tmp_path / "model.pt", data[0], data[1], _job(cfg))
    assert ds.attrs["nonconverged_samples"] == int((ds["converged"] == 0).sum()) > 0
    assert "did not reach rtol" in capsys.readouterr().out


def test_ssim_and_psnr_match_scikit_image() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((3, 20, 20))
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    for i in range(3):
        assert ssim(x, y)[i] == structural_similarity(x[i], y[i], data_range=1.0)
    y[0, 0, 0] = x[0, 0, 0]  # any pair: PSNR equals scikit-image's bit for bit
    expected = [peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(x, y, strict=True)]
    assert psnr(x, y).tolist() == expected
    assert not np.allclose(
        ssim(x, y), [structural_similarity(a, b, data_range=2.0) for a, b in zip(x, y, strict=True)]
    )


def test_diverged_training_stops_in_one_line_and_writes_no_model(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    cfg = _config(epochs=2, patches=96)
    cfg["train"]["learning_rate"] = 10.0
    result = subprocess.run(_train_command(cfg, data, tmp_path), capture_output=True, text=True)
    assert result.returncode == 1
    assert "training diverged: final validation PSNR" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "model.pt").exists()
    # The same run as a search trial is a failed trial: recorded, not an error of the workflow.
    trial = subprocess.run([*_train_command(cfg, data, tmp_path), "--trial"], capture_output=True)
    assert trial.returncode == 0, trial.stderr[-2000:]
    history = read_dataset(tmp_path / "history.nc")
    assert np.isnan(history["val_psnr"]).all() and "diverged" in history.attrs["failure"]
    assert not (tmp_path / "resume.pt").exists()
    x = np.random.default_rng(0).random((4, 8, 8))
    constant = float(np.mean(psnr(x, np.full_like(x, x.mean()))))
    check_not_diverged(constant - 2.9, x, "cell")  # a poor net, not a diverged one
    for bad in (constant - 3.1, float("nan")):
        with pytest.raises(TrainingError, match="cell: training diverged"):
            check_not_diverged(bad, x, "cell")


@pytest.mark.parametrize("kill_after", [None, 3])
def test_early_stopping_keeps_the_best_epoch_and_resumes(
    tmp_path: Path, kill_after: int | None
) -> None:
    """Scripted validation scores 1, 3, 2, 2.5, 2.9, 4: with patience 3 training stops after
    epoch 5 (epoch 2 best, three epochs without gain) and keeps epoch 2's weights, also when
    the run is interrupted after epoch 3 and resumed."""
    cfg = _config(epochs=6)
    cfg["train"]["patience"] = 3
    settings = TrainSettings.of(config.train_settings(cfg, ImageCell.of(CELL)))
    scores, snapshots, interrupted = [1.0, 3.0, 2.0, 2.5, 2.9, 4.0], [], []

    class Interrupt(Exception):
        pass

    def validate(model: torch.nn.Module) -> float:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        if kill_after and not interrupted and len(snapshots) == kill_after + 1:
            interrupted.append(True)  # once: killed during epoch 4's validation
            raise Interrupt
        return scores[len(snapshots) - 1]

    def run(net: torch.nn.Module) -> object:
        x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        task = Task("reconstruction", get_operator("blur"), x, x.clone(), 0.05, 0)
        return fit(net, task, settings, Run(tmp_path, "run", "cell", validate, lambda m: None))

    torch.manual_seed(0)
    net = build_iresnet(cfg["archs"]["tiny"], 0.9)
    if kill_after:
        with pytest.raises(Interrupt):
            run(net)
        snapshots.pop()  # the interrupted epoch's validation never happened
        torch.manual_seed(1)
        net = build_iresnet(cfg["archs"]["tiny"], 0.9)  # a new process: fresh weights
    history = run(net)
    assert history.val_psnr == scores[:5] and history.best_epoch == 2
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, snapshots[1][key], rtol=0, atol=0)
    assert any((snapshots[4][k] != v).any() for k, v in snapshots[1].items())


def test_plateau_rule_needs_a_window_without_gain() -> None:
    """P = max(5, ceil(0.2 n)) epochs without a 0.05 dB gain over the best before them."""
    assert not plateau_reached([1.0] * 5)  # nothing before the window
    assert plateau_reached([*[1.0] * 5, 1.04])
    assert not plateau_reached([*[1.0] * 5, 1.05])
    # epoch-to-epoch noise of 0.3 dB over a rising trend is not a plateau within 5 epochs
    assert not plateau_reached([25.5, 25.89, 26.27, 26.44, 26.33, 26.38])
    rising = [0.1 * k for k in range(30)]  # 0.1 dB per epoch never stalls
    assert not any(plateau_reached(rising[:n]) for n in range(1, 31))
    # At 30 epochs the window is 6: a gain 6 epochs back still counts, one 7 back does not.
    assert not plateau_reached([*[1.0] * 24, *[1.2] * 6])
    assert plateau_reached([*[1.0] * 23, *[1.2] * 7])


@pytest.mark.parametrize("kill_after", [None, 11])
def test_plateau_schedule_decays_after_the_plateau_then_stops(
    tmp_path: Path, kill_after: int | None
) -> None:
    """Scripted validation scores 1, 2, 3, 4, then 4.01: at epoch 9 the last five epochs
    gained 0.01 dB over epoch 4, so the rate, constant until then, decays over five epochs and
    training stops after epoch 14 of at most 20, converged; the same when the run is killed
    during epoch 12's validation and resumed (the schedule's state is in the checkpoint)."""
    cfg = _config(epochs=20)
    cfg["train"]["lr_schedule"] = "plateau"
    settings = TrainSettings.of(config.train_settings(cfg, ImageCell.of(CELL)))
    scores = [1.0, 2.0, 3.0, 4.0, *[4.01] * 12]
    calls, interrupted = [], []

    class Interrupt(Exception):
        pass

    def validate(model: torch.nn.Module) -> float:
        calls.append(1)
        if kill_after and not interrupted and len(calls) == kill_after + 1:
            interrupted.append(True)
            raise Interrupt
        return scores[len(calls) - 1]

    def run() -> object:
        torch.manual_seed(0)
        net = build_iresnet(cfg["archs"]["tiny"], 0.9)
        x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        task = Task("reconstruction", get_operator("blur"), x, x.clone(), 0.05, 0)
        return fit(net, task, settings, Run(tmp_path, "run", "cell", validate, lambda m: None))

    if kill_after:
        with pytest.raises(Interrupt):
            run()
        calls.pop()
    history = run()
    assert history.val_psnr == scores[:14] and history.plateau_epoch == 9
    rate = np.array(history.learning_rate) / settings.learning_rate
    per_epoch = len(rate) // 14
    assert (rate[: 9 * per_epoch] == 1.0).all()
    decay = rate[9 * per_epoch :]
    assert (np.diff(decay) < 0).all() and decay[-1] == pytest.approx(0.01)
    net = build_iresnet(cfg["archs"]["tiny"], 0.9)
    ds = history_dataset(history, [0.9, 0.9], net, per_epoch, settings.batch_size)
    assert int(ds["plateau_epoch"]) == 9 and int(ds["converged"]) == 1


def test_plateau_schedule_at_the_cap_is_not_converged(tmp_path: Path) -> None:
    cfg = _config(epochs=4)
    cfg["train"]["lr_schedule"] = "plateau"
    settings = TrainSettings.of(config.train_settings(cfg, ImageCell.of(CELL)))
    net = build_iresnet(cfg["archs"]["tiny"], 0.9)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    task = Task("reconstruction", get_operator("blur"), x, x.clone(), 0.05, 0)
    rising = iter([1.0, 2.0, 3.0, 4.0])
    run = Run(tmp_path, "run", "cell", lambda m: next(rising), lambda m: None)
    history = fit(net, task, settings, run)
    assert len(history.val_psnr) == 4 and history.plateau_epoch == 0
    assert set(history.learning_rate) == {settings.learning_rate}
    ds = history_dataset(history, [0.9, 0.9], net, 1, settings.batch_size)
    assert int(ds["converged"]) == 0


def test_non_finite_loss_names_cell_and_step(tmp_path: Path) -> None:
    cfg = _config(epochs=1)
    settings = config.train_settings(cfg, ImageCell.of(CELL))
    net = build_iresnet(cfg["archs"]["tiny"], 0.9)
    x = torch.rand(4, 1, 8, 8)
    clean = x.clone()
    clean[1, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingError, match=r"cell-label: non-finite loss nan at step 0"):
        fit(
            net,
            Task("approximation", get_operator("blur"), x, clean, 0.05, 0),
            TrainSettings.of(settings),
            Run(tmp_path, "run", "cell-label", lambda n: 0.0, lambda m: None),
        )


@pytest.mark.parametrize("compile_backend", [None, "eager"])
def test_gpu_path_options_keep_the_solver_in_float32(compile_backend: str | None) -> None:
    """bf16 autocast, channels-last and a compiled residual give the fp32 step's loss and
    gradient direction, with solver iterates and residuals in float32 (run here on the CPU)."""
    from iresnet_inverse import objectives
    from iresnet_inverse.nets.examples import random_residuals
    from iresnet_inverse.nets.solvers import SolverConfig
    from iresnet_inverse.training import accelerate

    spec = {"kind": "conv", "blocks": 3, "channels": 4, "hidden": 8, "kernel_size": 3}
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    z = x + 0.01 * torch.randn_like(x)
    solver = SolverConfig(method="anderson", tol=1e-3, adjoint_tol=1e-2, max_iter=100)
    steps = {}
    for name, settings in {
        "fp32": {},
        "fast": {"precision": "bf16", "channels_last": True, "compile": compile_backend},
    }.items():
        torch.manual_seed(1)
        net = build_iresnet(spec, 0.99)
        random_residuals(net)
        autocast, to_format = accelerate(net, torch.device("cpu"), **settings)
        with autocast:
            value, inverse = objectives.loss(
                "reconstruction", net, None, to_format(x), to_format(z), 0.0, solver
            )
        value.backward()
        grad = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
        steps[name] = (float(value.detach()), grad, inverse, net)
    (loss32, grad32, _, _), (loss16, grad16, inverse, net) = steps["fp32"], steps["fast"]
    assert inverse.x.dtype == torch.float32 and inverse.residual.dtype == torch.float32
    assert bool(inverse.converged.all())
    assert loss16 != loss32 and loss16 == pytest.approx(loss32, rel=2e-2)  # bf16 did run
    assert float(torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)) > 0.99
    weight = net.blocks[0].residual.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)


def test_dihedral_gives_the_eight_symmetries_of_the_square() -> None:
    """Checked against numpy's rotations and flips, on an image with no symmetry."""
    x = torch.arange(25, dtype=torch.float64).reshape(1, 1, 5, 5) ** 1.5
    got = [dihedral(x, torch.tensor([g]))[0, 0].numpy() for g in range(8)]
    image = x[0, 0].numpy()
    expected = [np.rot90(image, k) for k in range(4)] + [
        np.rot90(np.fliplr(image), k) for k in range(4)
    ]
    assert len({a.tobytes() for a in got}) == 8
    assert {a.tobytes() for a in got} == {np.ascontiguousarray(a).tobytes() for a in expected}
    batch = torch.cat([x, 2 * x, 3 * x])
    mixed = dihedral(batch, torch.tensor([0, 5, 3]))  # each image its own symmetry
    for i, g in enumerate([0, 5, 3]):
        np.testing.assert_array_equal(mixed[i, 0].numpy(), (i + 1) * got[g])


@pytest.mark.parametrize("operator", ["blur", "diffusion"])
def test_the_operators_commute_with_the_augmentation(operator: str) -> None:
    """Training augments x and F(x) alike, which is right only if F(g x) = g F(x)."""
    op = get_operator(operator).double()
    x = torch.rand(8, 1, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = torch.arange(8)
    with torch.no_grad():
        np.testing.assert_allclose(dihedral(op(x), g), op(dihedral(x, g)), rtol=0, atol=1e-12)
        assert float((op(dihedral(x, g)) - op(x)).abs().max()) > 0.1  # the symmetries act


def test_a_snapshot_is_the_net_a_run_of_that_length_trains(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    """At a constant rate, the net kept after epoch 2 of a 4-epoch run is bit for bit the net a
    2-epoch run trains (the budget study's premise), and its budget curve evaluates each
    snapshot as evaluation does the final model."""
    from iresnet_inverse.models import snapshot_file
    from iresnet_inverse.stages.evaluate import evaluate_snapshots

    runs = {}
    for epochs, snapshots in ((4, [2, 4]), (2, [])):
        cfg = _config(epochs=epochs)
        cfg["train"].update(lr_schedule="constant", snapshots=snapshots)
        runs[epochs] = (cfg, tmp_path / f"e{epochs}")
        _run(_train_command(cfg, data, runs[epochs][1]))
    long_dir, short_dir = runs[4][1], runs[2][1]
    snapshot = torch.load(snapshot_file(long_dir, 2), weights_only=True)["model"]
    short = torch.load(short_dir / "model.pt", weights_only=True)["model"]
    assert snapshot.keys() == short.keys()
    for key, value in short.items():
        torch.testing.assert_close(snapshot[key], value, rtol=0, atol=0)
    final = torch.load(long_dir / "model.pt", weights_only=True)["model"]
    assert any((final[k] != v).any() for k, v in short.items())  # epochs 3-4 changed it

    curve = evaluate_snapshots(long_dir, *data, _job(runs[4][0]))
    assert list(curve["snapshot_epoch"].values) == [2, 4]
    assert list(curve["samples"].values) == [192, 384]  # epochs x 96 training patches
    for epoch, model_dir in ((2, short_dir), (4, long_dir)):
        whole = evaluate_model_file(model_dir / "model.pt", *data, _job(runs[4][0]))
        got = float(curve["psnr"].sel(samples=96 * epoch))
        assert got == pytest.approx(float(whole["psnr"].mean()), abs=1e-9)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"snapshots": [2], "lr_schedule": "cosine"}, "needs lr_schedule constant"),
        ({"snapshots": [2], "lr_schedule": "constant", "patience": 2}, "needs patience null"),
        ({"snapshots": [5], "lr_schedule": "constant"}, "beyond epochs"),
    ],
)
def test_snapshots_that_would_not_be_budget_runs_are_refused(train: dict, message: str) -> None:
    cfg = _config(epochs=4)
    cfg["train"].update(train)
    with pytest.raises(config.ConfigError, match=f"train.snapshots .*{message}"):
        config.check(config.validate(cfg))


def test_the_resume_fingerprint_covers_everything_training_reads(monkeypatch) -> None:
    """A resume checkpoint of a run with other operator parameters (blur sigma 3 instead of
    5/3), data, settings or net code is not continued: its fingerprint differs."""
    from iresnet_inverse.stages import train

    cfg = _config(epochs=2)
    base = train.run_fingerprint(_job(cfg))
    assert train.run_fingerprint(_job(_config(epochs=2))) == base  # stable
    changed = {
        "operators": {**cfg, "operators": {**cfg["operators"], "blur": {"sigma": 3.0}}},
        "data": {**cfg, "data": {**cfg["data"], "seed": 1}},
        "settings": _config(epochs=3),
    }
    for what, other in changed.items():
        other = config.validate(other)
        assert train.run_fingerprint(_job(other)) != base, what
    assert train.run_fingerprint(_job(cfg), warm_start="a/model.pt") != base
    monkeypatch.setattr(train, "training_code_version", lambda: "other code")
    assert train.run_fingerprint(_job(cfg)) != base


def test_a_resume_checkpoint_missing_keys_is_discarded(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    """A loadable resume.pt of this very run that lacks the optimizer (a hand-edited or
    foreign file) is discarded with a message instead of a KeyError on every rerun."""
    from iresnet_inverse.checkpoints import save_checkpoint
    from iresnet_inverse.stages.train import run_fingerprint

    cfg = _config(epochs=1, patches=96)
    tmp_path.mkdir(exist_ok=True)
    save_checkpoint({"run_id": run_fingerprint(_job(cfg)), "epoch": 0}, tmp_path / "resume.pt")
    result = _run(_train_command(cfg, data, tmp_path))
    assert "resume.pt lacks elapsed, generator, history, model, optimizer, scheduler" in (
        result.stderr
    )
    assert (tmp_path / "model.pt").exists() and not (tmp_path / "resume.pt").exists()


def test_a_checkpoint_written_on_one_device_resumes_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after epoch 1 resumes where the loader would put tensors on another device
    (emulated: every ``map_location`` but the CPU loads onto ``meta``, as ``cuda`` would put
    the generator state on the GPU): the generator state stays a CPU ByteTensor, Adam's moments
    go to the parameters' device and its step stays on the CPU, and the resumed run ends with
    the uninterrupted run's weights."""
    from iresnet_inverse import checkpoints
    from iresnet_inverse import training as train

    cfg = _config(epochs=2)
    settings = TrainSettings.of(config.train_settings(cfg, ImageCell.of(CELL)))
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    task = Task("reconstruction", get_operator("blur"), x, x.clone(), 0.05, 0)

    class Interrupt(Exception):
        pass

    def run(out: Path, kill_at: int | None = None) -> tuple[torch.nn.Module, Run]:
        calls = []

        def validate(model: torch.nn.Module) -> float:
            calls.append(1)
            if len(calls) == kill_at:
                raise Interrupt
            return 0.0

        torch.manual_seed(0)
        return build_iresnet(cfg["archs"]["tiny"], 0.9), Run(out, "run", "c", validate, print)

    net, whole = run(tmp_path / "whole")
    (tmp_path / "whole").mkdir()
    fit(net, task, settings, whole)
    expected = {k: v.clone() for k, v in net.state_dict().items()}

    (tmp_path / "cut").mkdir()
    killed, cut = run(tmp_path / "cut", kill_at=2)
    with pytest.raises(Interrupt):
        fit(killed, task, settings, cut)
    saved = checkpoints.load_checkpoint(tmp_path / "cut" / "resume.pt")

    real_load = torch.load

    def load_elsewhere(path, map_location=None, **kwargs):  # noqa: ANN001, ANN202
        other = map_location if map_location == "cpu" else "meta"
        return real_load(path, map_location=other, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "load", load_elsewhere)
    resumed, cut = run(tmp_path / "cut")
    state = train._start(resumed, task, settings, cut)
    rng = state.rng.get_state()
    assert rng.device.type == "cpu" and rng.dtype == torch.uint8
    assert torch.equal(rng, saved["generator"])
    moments = state.optimizer.state[next(resumed.parameters())]
    assert moments["step"].device.type == "cpu"
    assert moments["exp_avg"].device == next(resumed.parameters()).device
    resumed, cut = run(tmp_path / "cut")
    history = fit(resumed, task, settings, cut)
    assert history.resumed_at_epochs == [1]
    for key, value in resumed.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


@pytest.fixture
def torch_flags(monkeypatch: pytest.MonkeyPatch) -> object:
    """Flags as torch has them on a fresh CUDA process (cuDNN convolutions in TF32), restored
    afterwards."""
    backends = (torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn)
    before = [b.fp32_precision for b in backends]
    for backend in backends:
        backend.fp32_precision = "tf32"
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    yield backends
    for backend, value in zip(backends, before, strict=True):
        backend.fp32_precision = value
    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("entry", ["train", "evaluate", "probe", "apply"])
def test_every_job_runs_float32_without_tf32_and_deterministic_on_request(
    tmp_path: Path, torch_flags: tuple, entry: str, deterministic: bool
) -> None:
    """Each job sets the device up before its first read (here of a missing file): TF32 off
    for matmuls and cuDNN, and with ``deterministic: true`` deterministic algorithms and
    cuBLAS's fixed workspace; the job's JSON carries the option only when it is on."""
    from iresnet_inverse.stages.probe import probe_model_file
    from iresnet_inverse.stages.reconstruct import apply_model
    from iresnet_inverse.stages.train import train_image_cell

    cfg = config.validate({**_config(1), "deterministic": deterministic})
    job = Job.from_json(_job(cfg).to_json())
    assert job.deterministic is deterministic
    assert ("deterministic" in job.to_json()) is deterministic  # old jobs keep their JSON
    missing = tmp_path / "missing.nc"
    run = {
        "train": lambda: train_image_cell(job, missing, missing, tmp_path),
        "evaluate": lambda: evaluate_model_file(missing, missing, missing, job),
        "probe": lambda: probe_model_file("directional", str(missing), str(missing), job),
        "apply": lambda: apply_model(missing, missing, device="cpu"),
    }[entry]
    with pytest.raises((ArtifactError, FileNotFoundError, ValueError)):
        run()
    assert [backend.fp32_precision for backend in torch_flags] == ["ieee"] * 3
    assert torch.get_float32_matmul_precision() == "highest"
    on = deterministic and entry != "apply"  # the reconstruct tool has no config
    assert torch.are_deterministic_algorithms_enabled() is on
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == (":4096:8" if on else None)


def test_deterministic_algorithms_leave_cpu_training_unchanged(
    tmp_path: Path, torch_flags: tuple
) -> None:
    """No op of a training step lacks a deterministic CPU kernel, and the CPU result is the
    same bits with the option on."""
    from iresnet_inverse.runtime import setup

    cfg = _config(epochs=1)
    settings = TrainSettings.of(config.train_settings(cfg, ImageCell.of(CELL)))
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    task = Task("divergence", get_operator("blur"), x, x.clone(), 0.05, 0)
    weights = []
    for deterministic in (False, True):
        setup("cpu", deterministic)
        torch.manual_seed(0)
        net = build_iresnet(cfg["archs"]["tiny"], 0.9)
        (tmp_path / str(deterministic)).mkdir()
        fit(net, task, settings, Run(tmp_path / str(deterministic), "r", "c", lambda n: 0.0, print))
        weights.append(net.state_dict())
    assert torch.are_deterministic_algorithms_enabled()
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=0, atol=0)


def test_compiled_residuals_compile_each_argument_kind_once(tmp_path: Path) -> None:
    """compile aot_eager (AOTAutograd, as inductor): a 6-block net trains through the implicit
    backward (which differentiates one evaluation many times) with batches of 4 and 2 and
    validates with 3; every graph is compiled in the first epoch, fewer than torch's 8 per
    function (past which it falls back to eager), and the second epoch compiles none."""
    from torch._dynamo.utils import counters

    from iresnet_inverse.models import reconstruct
    from iresnet_inverse.nets.solvers import SolverConfig

    cfg = _config(epochs=2)
    cfg["archs"]["tiny"]["blocks"] = 6
    cfg["train"].update(batch_size=4, compile="aot_eager")
    cfg["train"]["solver"] = {"method": "anderson", "tol": 1e-3}
    settings = TrainSettings.of(config.train_settings(cfg, ImageCell.of(CELL)))
    x = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    operator = get_operator("blur")
    task = Task("reconstruction", operator, x, x.clone(), 0.05, 0)
    graphs = []

    def validate(model: torch.nn.Module) -> float:
        reconstruct(model, "reconstruction", operator, x[:3], SolverConfig(tol=1e-3))
        graphs.append(counters["stats"]["unique_graphs"])
        return 0.0

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    net = build_iresnet(cfg["archs"]["tiny"], 0.9)
    history = fit(net, task, settings, Run(tmp_path, "r", "c", validate, print))
    assert np.isfinite(history.loss).all() and len(history.loss) == 6
    assert 0 < graphs[0] == graphs[1] < 8, graphs
    assert counters["frames"]["ok"] == counters["frames"]["total"]


def test_a_training_step_reads_the_device_once_for_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Host reads of tensor values (each a synchronization on an accelerator) made by the
    training loop itself: one per step, for loss, evaluations and residual together; the
    augmentation reads none (it read 16 per step, the record 4)."""
    import traceback

    from iresnet_inverse import training as train

    cfg = _config(epochs=1)
    settings = TrainSettings.of(config.train_settings(cfg, ImageCell.of(CELL)))
    assert settings.augment
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    task = Task("reconstruction", get_operator("blur"), x, x.clone(), 0.05, 0)
    reads = []

    def counting(name: str) -> None:
        real = getattr(torch.Tensor, name)

        def read(self: torch.Tensor, *args: object) -> object:
            if traceback.extract_stack()[-2].filename == train.__file__:  # the loop's own
                reads.append(name)
            return real(self, *args)

        monkeypatch.setattr(torch.Tensor, name, read)

    torch.manual_seed(0)
    net = build_iresnet(cfg["archs"]["tiny"], 0.9)
    for name in ("item", "__float__", "__int__", "__bool__", "tolist"):
        counting(name)
    history = fit(net, task, settings, Run(tmp_path, "r", "c", lambda n: 0.0, print))
    monkeypatch.undo()
    assert len(history.loss) == 2 and np.isfinite(history.inverse_evaluations).all()
    assert len(reads) == len(history.loss), reads


def test_a_net_with_tracked_norms_resumes_bit_for_bit(tmp_path: Path) -> None:
    """The tracked symbol norm's vectors are not in the checkpoint (every refresh and every
    load set them from the weights alone): a run stopped during its second epoch and resumed
    in a new process ends with the uninterrupted run's weights and losses."""
    cfg = _config(epochs=3)
    cfg["archs"]["tiny"]["symbol_norm"] = "power"
    settings = TrainSettings.of(config.train_settings(cfg, ImageCell.of(CELL)))

    class Interrupt(Exception):
        pass

    def run(out: Path, seed: int, stop_at: int | None = None) -> tuple[torch.nn.Module, object]:
        calls = []

        def validate(model: torch.nn.Module) -> float:
            calls.append(1)
            if len(calls) == stop_at:
                raise Interrupt
            return float(len(calls))

        torch.manual_seed(seed)
        net = build_iresnet(cfg["archs"]["tiny"], 0.9)
        assert net.blocks[0].residual.conv_in.tracked
        x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        task = Task("reconstruction", get_operator("blur"), x, x.clone(), 0.05, 0)
        history = fit(net, task, settings, Run(out, "run", "cell", validate, lambda m: None))
        return net, history

    whole, history = run(tmp_path / "whole", 0)
    with pytest.raises(Interrupt):
        run(tmp_path / "stopped", 0, stop_at=2)
    resumed, resumed_history = run(tmp_path / "stopped", 1)  # a new process: fresh weights
    assert resumed_history.loss == history.loss and len(history.loss) == 6
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
