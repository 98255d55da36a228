"""A process that imports the heavy libraries once and forks one child per ``iresnet-inverse`` call.

A workflow job spends 2-4 s of a 5-30 s job importing torch (and torch._dynamo, which the first
optimizer call imports), xarray, scipy and matplotlib; the demo runs 115 such jobs on 2 cores
(docs/demo.md, "Where the demo's time goes"). With the server running and
``IRESNET_INVERSE_FORKSERVER`` naming its socket, the ``iresnet-inverse`` command sends its
arguments, working directory, environment and standard streams to the server, which forks a child
that runs the command as a fresh process would, and returns its exit status. Signals the command
receives (SIGTERM from Snakemake, SIGINT) are passed on to the child. Without a server, or when it
does not answer, the command runs in its own process as always.

The child is not a descendant of the job's shell, so Snakemake's benchmark files (which follow the
shell's descendants) keep the job's wall time but not its CPU time or memory.

``iresnet-inverse forkserver SOCKET`` runs the server until SIGTERM, or until the process that
started it has gone (``make demo`` starts and stops it).
"""

import io
import json
import os
import signal
import socket
import struct
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence

import iresnet_inverse

ENV = "IRESNET_INVERSE_FORKSERVER"
# What the commands import lazily, imported once here. torch._dynamo comes with the first call of
# a torch optimizer (torch._compile); figures' module sets the Agg backend before pyplot.
PRELOAD = (
    "torch",
    "torch._dynamo",
    "xarray",
    "iresnet_inverse.artifacts",
    "iresnet_inverse.stages.data",
    "iresnet_inverse.stages.train",
    "iresnet_inverse.stages.evaluate",
    "iresnet_inverse.stages.probe",
    "iresnet_inverse.stages.toy",
    "iresnet_inverse.stages.figures",
)
_INT = struct.Struct("!i")
_HEADER = struct.Struct("!I")
_STREAMS = 3  # stdin, stdout, stderr
_PASSED_ON = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

Command = Callable[[list[str]], int]  # the command line's main: argv -> exit status


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("the other end closed the connection")
        data += chunk
    return data


def _identity() -> dict[str, str]:
    """What must match for a child to run this caller's code: the interpreter and the package."""
    return {"python": sys.executable, "package": os.path.realpath(iresnet_inverse.__file__)}


def forward(argv: Sequence[str]) -> int | None:
    """Run ``iresnet-inverse argv`` in a child of the server named by ``IRESNET_INVERSE_FORKSERVER``
    and return its exit status; None when no server takes it before it starts (run it here)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with conn:
        try:
            conn.connect(path)
            umask = os.umask(0o22)
            os.umask(umask)
            request = {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ)}
            payload = json.dumps({**request, "umask": umask, **_identity()}).encode()
            socket.send_fds(conn, [_HEADER.pack(len(payload)) + payload], list(range(_STREAMS)))
            (pid,) = _INT.unpack(_recv_exactly(conn, _INT.size))  # the child has not started
        except (OSError, EOFError):
            return None
        return _wait(conn, pid)


def _wait(conn: socket.socket, pid: int) -> int:
    """The child's exit status, passing the signals this process receives on to it. A child that
    a signal ended ends this process with the same signal, as if the command had run here."""
    received: list[int] = []

    def pass_on(signum: int, _frame: object) -> None:
        received.append(signum)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:  # the child has just finished
            pass

    for sig in _PASSED_ON:
        signal.signal(sig, pass_on)
    try:
        (status,) = _INT.unpack(_recv_exactly(conn, _INT.size))
    except (OSError, EOFError):
        if received:
            signal.signal(received[-1], signal.SIG_DFL)
            os.kill(os.getpid(), received[-1])
        print(f"iresnet-inverse: the fork server's child {pid} died", file=sys.stderr)
        return 1
    return status


def _reopen_streams(env: Mapping[str, str]) -> None:
    """Standard streams on the received descriptors, buffered as a fresh process buffers them
    (unbuffered with PYTHONUNBUFFERED, else line-buffered on a terminal)."""
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    errors = sys.__stdout__.errors if sys.__stdout__ else "strict"
    sys.stdin = open(0, closefd=False, errors=errors)  # noqa: SIM115
    raw = open(1, "wb", buffering=0 if unbuffered else -1, closefd=False)  # noqa: SIM115
    sys.stdout = io.TextIOWrapper(
        raw, errors=errors, line_buffering=raw.isatty(), write_through=unbuffered
    )
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115


def _run(main: Command, argv: list[str]) -> int:
    sys.argv = ["iresnet-inverse", *argv]
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's usage errors (2), sys.exit in a command
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C reaches the child twice: from the terminal and the client
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        traceback.print_exc()
        return 128 + signal.SIGINT
    except BaseException:  # a bug: its traceback, as a fresh process would print it
        traceback.print_exc()
        return 1


def _end_with_the_client(conn: socket.socket) -> None:
    """A client killed outright (SIGKILL, out of memory) closes the connection: end the command
    with SIGTERM rather than let it write results for a job that is gone."""

    def watch() -> None:
        try:
            conn.recv(1)
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def _child(conn: socket.socket, request: dict, fds: list[int], main: Command) -> int:
    """The forked child: the caller's streams, directory, environment, umask and thread count,
    then the command; its exit status."""
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update({k: v for k, v in request["env"].items() if k != ENV})
    os.umask(request["umask"])
    tempfile.tempdir = None  # TMPDIR is read again
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0 and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))  # as torch reads it when it loads
    _reopen_streams(os.environ)
    conn.sendall(_INT.pack(os.getpid()))
    _end_with_the_client(conn)
    status = _run(main, request["argv"])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    conn.sendall(_INT.pack(status))
    return status


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    message, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, _STREAMS)
    try:
        if len(message) < _HEADER.size:
            message += _recv_exactly(conn, _HEADER.size - len(message))
        (size,) = _HEADER.unpack(message[: _HEADER.size])
        payload = message[_HEADER.size :]
        payload += _recv_exactly(conn, size - len(payload))
        request = json.loads(payload)
        if len(fds) != _STREAMS or {k: request.get(k) for k in _identity()} != _identity():
            raise ValueError("another interpreter or package: the client runs the command")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, list(fds)


def _listen(path: str) -> socket.socket:
    """The server's socket at ``path``; a socket file no server answers on is replaced."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
    except OSError:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with probe:
            if probe.connect_ex(path) == 0:
                raise
        os.unlink(path)
        server.bind(path)
    server.listen(16)
    server.settimeout(1.0)
    return server


def serve(path: str, main: Command, preload: Sequence[str] = PRELOAD) -> None:
    """Import ``preload``, then fork a child per connection on the socket ``path`` that runs
    ``main(argv)``, until SIGTERM or until this process's parent exits."""
    import importlib

    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for module in preload:
        importlib.import_module(module)
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        # A forked child cannot use a CUDA context its parent started: serve nothing, so that
        # every command runs in its own process.
        print(
            "iresnet-inverse forkserver: CUDA was initialized while importing; not serving",
            file=sys.stderr,
        )
        return
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    server = _listen(path)
    try:
        while os.getppid() == parent:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(None)
                # Whatever goes wrong before a child sends its pid leaves the client to run the
                # command itself.
                try:
                    request, fds = _receive(conn)
                except (OSError, EOFError, ValueError):
                    continue
                try:
                    child = os.fork()
                except OSError:
                    child = None
                if child == 0:
                    status = 1
                    try:
                        server.close()
                        status = _child(conn, request, fds, main)
                    finally:
                        os._exit(status)
                for fd in fds:
                    os.close(fd)
    finally:
        server.close()
        if os.path.exists(path):
            os.unlink(path)
