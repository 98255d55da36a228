"""The fork server runs a command as its own process would: same output, exit status, working
directory; signals reach the command; without a server the command runs in its own process."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iresnet_inverse.forkserver import ENV, forward


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server without preloads (the mechanism, not the speed): its socket's path."""
    path = str(tmp_path_factory.mktemp("forkserver") / "socket")
    code = (
        "import sys; from iresnet_inverse.cli import main; "
        "from iresnet_inverse.forkserver import serve; serve(sys.argv[1], main, ())"
    )
    process = subprocess.Popen([sys.executable, "-c", code, path])
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield path
    process.terminate()
    assert process.wait(timeout=30) == 0
    assert not os.path.exists(path), "the server left its socket behind"


def _cli(cwd: Path, *args: str, socket: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if socket:
        env[ENV] = socket
    command = [sys.executable, "-m", "iresnet_inverse.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args",
    [
        ["summary", "results"],  # a relative path: the caller's working directory
        ["summary", "--bogus"],  # argparse's usage error, exit status 2
        ["describe", "--help"],  # usage on stdout, exit status 0
        ["verify-archive", "missing.tar.gz"],  # one-line error, exit status 1
    ],
)
def test_a_forwarded_command_prints_and_exits_as_its_own_process(
    server: str, tmp_path: Path, args: list[str]
) -> None:
    (tmp_path / "results").mkdir()
    alone = _cli(tmp_path, *args)
    served = _cli(tmp_path, *args, socket=server)
    assert (served.returncode, served.stdout, served.stderr) == (
        alone.returncode,
        alone.stdout,
        alone.stderr,
    )
    assert alone.returncode in {0, 1, 2} and alone.stdout + alone.stderr


def test_the_server_runs_the_command(
    server: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(ENV, server)
    assert forward(["describe", "--help"]) == 0  # None would mean it ran here
    assert "usage: iresnet-inverse describe" in capfd.readouterr().out


def test_without_a_server_the_command_runs_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert forward(["describe", "--help"]) is None
    monkeypatch.setenv(ENV, str(tmp_path / "no-such-socket"))
    assert forward(["describe", "--help"]) is None


def test_sigterm_reaches_the_forwarded_command(server: str, tmp_path: Path) -> None:
    """The command blocks opening a FIFO nobody writes to; only the signal passed on ends it."""
    fifo = tmp_path / "archive.tar.gz"
    os.mkfifo(fifo)
    env = {**os.environ, ENV: server}
    command = [sys.executable, "-m", "iresnet_inverse.cli", "verify-archive", str(fifo)]
    client = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # the client is waiting on its child, which is blocked in open()
    assert client.poll() is None
    client.terminate()
    _, stderr = client.communicate(timeout=30)
    assert client.returncode == 1 and "died" in stderr
