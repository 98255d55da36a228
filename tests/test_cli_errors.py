"""The command line fails in one line naming the culprit, never with a traceback."""

import json
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
