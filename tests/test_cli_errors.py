"""The command line fails in one line naming the culprit, never with a traceback."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

SMALL = json.dumps({"data": {"patches": {"train": 2, "val": 2, "test": 2}}})


def _cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "iresnet_inverse.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["data", "--config-json", "not json", "--out", "x.nc"], 1, "--config-json is not JSON"),
        (["data", "--config-json", "[1]", "--out", "x.nc"], 1, "must be a JSON object"),
        (["data", "--threads", "0", "--out", "x.nc"], 2, "--threads: must be at least 1"),
        (
            ["observe", "--images", "i.nc", "--operator", "radon", "--noise-level", "0.1",
             "--out", "o.nc"],
            2,
            "argument --operator: invalid choice: 'radon'",
        ),
        (
            ["observe", "--images", "i.nc", "--operator", "blur", "--noise-level", "nan",
             "--out", "o.nc"],
            2,
            "--noise-level: must be a finite number >= 0, not nan",
        ),
        (
            ["observe", "--images", "i.nc", "--operator", "blur", "--noise-level", "-5",
             "--out", "o.nc"],
            2,
            "must be a finite number >= 0, not -5",
        ),
        (["train", "--job-json", "{}", "--images", "i", "--observations", "o", "--out-dir", "d"],
         1, "--job-json is not a job"),
    ],
)  # fmt: skip
def test_bad_arguments_give_one_line(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    result = _cli(*args)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {patches: [1, 2\n")
    result = _cli("data", "--config", str(bad), "--out", str(tmp_path / "x.nc"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{bad}: not valid YAML" in result.stderr


@pytest.mark.parametrize("out", ["a directory", "/proc/no/such/place/images.nc"])
def test_an_output_that_cannot_be_written_names_itself(tmp_path: Path, out: str) -> None:
    """--out a directory, or a place no one can write (the message names the file asked
    for, not the hidden temporary one)."""
    target = tmp_path if out == "a directory" else Path(out)
    result = _cli("data", "--config-json", SMALL, "--out", str(target))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{target}: " in result.stderr
    assert ".tmp" not in result.stderr


def _tampered_jobs() -> dict[str, str]:
    """A real job of the ci config, each hand-edited one way."""
    from iresnet_inverse import config
    from iresnet_inverse.jobs import image_job

    cfg = config.load(Path(__file__).parents[1] / "config" / "ci.yaml")
    good = json.loads(image_job(cfg, config.cells(cfg)[0], ("data",)).to_json())

    def edit(change: object) -> str:
        record = json.loads(json.dumps(good))
        change(record)
        return json.dumps(record)

    return {
        "settings: config field batch_size": edit(lambda r: r["settings"].update(batch_size=0)),
        "settings: lack learning_rate": edit(lambda r: r["settings"].pop("learning_rate")),
        "settings: config field solver.tol": edit(lambda r: r["settings"]["solver"].update(tol=-1)),
        "settings: config field (top level): [1, 2] is not": edit(
            lambda r: r.update(settings=[1, 2])
        ),
        "is not a job (ValueError": edit(lambda r: r["cell"].update(lipschitz="abc")),
        "spec: config field archs.spec.channels: 0 is less than": edit(
            lambda r: r["spec"].update(channels=0)
        ),
        "lipschitz 5.0 is not in (0, 1)": edit(lambda r: r["cell"].update(lipschitz=5.0)),
        "objective 'nope' is not one of": edit(lambda r: r["cell"].update(objective="nope")),
        f"seed {2**70} is not in [0, 4294967295]": edit(lambda r: r["cell"].update(seed=2**70)),
        "seed -1 is not in": edit(lambda r: r["cell"].update(seed=-1)),
    }


@pytest.mark.parametrize("name", list(_tampered_jobs()))
def test_a_tampered_job_is_refused_in_one_line(name: str) -> None:
    """Values no rule would pass (batch size 0 gave a ZeroDivisionError, a missing setting a
    KeyError) are refused when the job is read."""
    from iresnet_inverse.jobs import Job

    with pytest.raises(ValueError, match=re.escape(name)):
        Job.from_json(_tampered_jobs()[name])


def test_a_tampered_job_on_the_command_line_gives_one_line(tmp_path: Path) -> None:
    job = _tampered_jobs()["settings: config field batch_size"]
    result = _cli("train", "--job-json", job, "--images", "i", "--observations", "o",
                  "--out-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--job-json settings: config field batch_size: 0 is less than" in result.stderr


@pytest.mark.parametrize("command", ["archive", "combine"])
def test_archive_and_combine_never_write_over_an_input(tmp_path: Path, command: str) -> None:
    """`--out` naming one of the inputs, by another spelling, is refused before any work and
    the input keeps its bytes."""
    (tmp_path / "sub").mkdir()
    source = tmp_path / "r.nc"
    source.write_bytes(b"an input that must survive")
    out = str(tmp_path / "sub" / ".." / "r.nc")
    extra = ["--config-json", "{}"] if command == "archive" else []
    result = _cli(command, str(source), "--out", out, *extra)
    assert result.returncode == 1, result.stderr
    assert f"--out {out} is the file of" in result.stderr and "overwritten" in result.stderr
    assert "Traceback" not in result.stderr
    assert source.read_bytes() == b"an input that must survive"
