"""The fork server runs a command as its own process would: same output, exit status, working
directory; signals reach the command; without a server the command runs in its own process."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from iresnet_inverse.forkserver import ENV, forward


class Server(NamedTuple):
    path: str
    pid: int
    log: Path  # the argv of every command the server's children ran, a line each

    def ran(self, args: list[str]) -> bool:
        return " ".join(args) in self.log.read_text().splitlines()


# The project's main, logging what it runs: a command that fell back to its own process is absent.
SERVE = """
import sys
from iresnet_inverse.cli import main
from iresnet_inverse.forkserver import serve
LOG = sys.argv[2]
def logged(argv):
    with open(LOG, "a") as log:
        log.write(" ".join(argv) + "\\n")
    return main(argv)
serve(sys.argv[1], logged, ())
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server without preloads (the mechanism, not the speed)."""
    home = tmp_path_factory.mktemp("forkserver")
    path, log = str(home / "socket"), home / "ran.txt"
    log.touch()
    process = subprocess.Popen([sys.executable, "-c", SERVE, path, str(log)])
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield Server(path, process.pid, log)
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
    server: Server, tmp_path: Path, args: list[str]
) -> None:
    (tmp_path / "results").mkdir()
    alone = _cli(tmp_path, *args)
    served = _cli(tmp_path, *args, socket=server.path)
    assert (served.returncode, served.stdout, served.stderr) == (
        alone.returncode,
        alone.stdout,
        alone.stderr,
    )
    assert alone.returncode in {0, 1, 2} and alone.stdout + alone.stderr
    assert server.ran(args)


def test_the_server_runs_the_command(
    server: Server, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(ENV, server.path)
    assert forward(["describe", "--help"]) == 0  # None would mean it ran here
    assert "usage: iresnet-inverse describe" in capfd.readouterr().out


def test_without_a_server_the_command_runs_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert forward(["describe", "--help"]) is None
    monkeypatch.setenv(ENV, str(tmp_path / "no-such-socket"))
    assert forward(["describe", "--help"]) is None


def test_sigterm_reaches_the_forwarded_command(server: Server, tmp_path: Path) -> None:
    """The command blocks opening a FIFO nobody writes to; only the signal passed on ends it."""
    fifo = tmp_path / "archive.tar.gz"
    os.mkfifo(fifo)
    env = {**os.environ, ENV: server.path}
    command = [sys.executable, "-m", "iresnet_inverse.cli", "verify-archive", str(fifo)]
    client = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # the client is waiting on its child, which is blocked in open()
        assert client.poll() is None
    finally:
        client.terminate()
        _, stderr = client.communicate(timeout=30)
    assert server.ran(command[3:])
    # Ended by the signal, as the command alone would be, and silent.
    assert client.returncode == -signal.SIGTERM and not stderr


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_killed_client_takes_its_command_with_it(server: Server, tmp_path: Path) -> None:
    """SIGKILL cannot be passed on: the child sees the connection close and ends itself, rather
    than write results for a job that is gone."""
    fifo = tmp_path / "archive.tar.gz"
    os.mkfifo(fifo)
    before = set(_children(server.pid))
    command = [sys.executable, "-m", "iresnet_inverse.cli", "verify-archive", str(fifo)]
    client = subprocess.Popen(command, env={**os.environ, ENV: server.path})
    try:
        time.sleep(3)
        (child,) = set(_children(server.pid)) - before
    finally:
        client.kill()
        client.wait(timeout=30)
    deadline = time.monotonic() + 30
    while child in _children(server.pid):
        assert time.monotonic() < deadline, "the command outlived its client"
        time.sleep(0.1)


def test_a_forwarded_command_writes_results_as_its_own_process(
    server: Server, tmp_path: Path
) -> None:
    """The same data set, with the file mode the caller's umask gives."""
    import xarray as xr

    small = '{"data": {"patches": {"train": 2, "val": 2, "test": 2}}}'
    modes = {}
    for name, socket in (("alone", None), ("served", server.path)):
        (tmp_path / name).mkdir()
        env = {k: v for k, v in os.environ.items() if k != ENV} | ({ENV: socket} if socket else {})
        command = ["data", "--config-json", small, "--out", "images.nc"]
        run = f"umask 077 && exec {sys.executable} -m iresnet_inverse.cli " + " ".join(
            f"'{a}'" for a in command
        )
        subprocess.run(["sh", "-c", run], cwd=tmp_path / name, env=env, check=True, timeout=300)
        modes[name] = (tmp_path / name / "images.nc").stat().st_mode & 0o777
    assert server.ran(command)
    assert modes == {"alone": 0o600, "served": 0o600}
    with xr.open_dataset(tmp_path / "alone" / "images.nc") as a:
        with xr.open_dataset(tmp_path / "served" / "images.nc") as b:
            assert a.equals(b)
