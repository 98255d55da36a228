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

import json
import os
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable, Sequence

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


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("the other end closed the connection")
        data += chunk
    return data


def forward(argv: Sequence[str]) -> int | None:
    """Run ``iresnet-inverse argv`` in a child of the server named by ``IRESNET_INVERSE_FORKSERVER``
    and return its exit status; None when there is no server to run it (run it here)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    request = json.dumps({"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ)})
    payload = request.encode()
    with conn:
        socket.send_fds(conn, [_HEADER.pack(len(payload)) + payload], list(range(_STREAMS)))
        (pid,) = _INT.unpack(_recv_exactly(conn, _INT.size))

        def pass_on(signum: int, _frame: object) -> None:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:  # the child has just finished
                pass

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, pass_on)
        try:
            (status,) = _INT.unpack(_recv_exactly(conn, _INT.size))
        except EOFError:
            print(f"iresnet-inverse: the fork server's child {pid} died", file=sys.stderr)
            return 1
    return status


def _reopen_streams() -> None:
    """Standard streams on the received descriptors, buffered as a fresh process buffers them."""
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115


Command = Callable[[list[str]], int]  # the command line's main: argv -> exit status


def _run(main: Command, argv: list[str]) -> int:
    sys.argv = ["iresnet-inverse", *argv]
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's usage errors (2), sys.exit in a command
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return 128 + signal.SIGINT
    except BaseException:  # a bug: its traceback, as a fresh process would print it
        traceback.print_exc()
        return 1


def _child(conn: socket.socket, request: dict, fds: list[int], main: Command) -> None:
    """The forked child: the caller's streams, directory and environment, then the command."""
    for sig, handler in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGCHLD, signal.SIG_DFL)):
        signal.signal(sig, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update({k: v for k, v in request["env"].items() if k != ENV})
    _reopen_streams()
    status = 1
    try:
        conn.sendall(_INT.pack(os.getpid()))
        status = _run(main, request["argv"])
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:
                pass
        try:
            conn.sendall(_INT.pack(status))
        finally:
            os._exit(status)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    message, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, _STREAMS)
    if len(message) < _HEADER.size:
        message += _recv_exactly(conn, _HEADER.size - len(message))
    (size,) = _HEADER.unpack(message[: _HEADER.size])
    payload = message[_HEADER.size :]
    payload += _recv_exactly(conn, size - len(payload))
    return json.loads(payload), list(fds)


def serve(path: str, main: Command, preload: Sequence[str] = PRELOAD) -> None:
    """Import ``preload``, then fork a child per connection on the socket ``path`` that runs
    ``main(argv)``, until SIGTERM or until this process's parent exits."""
    import importlib

    parent = os.getppid()
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
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    server.settimeout(1.0)
    try:
        while os.getppid() == parent:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(None)
                try:
                    request, fds = _receive(conn)
                except (OSError, EOFError, ValueError):
                    continue
                if os.fork() == 0:
                    server.close()
                    _child(conn, request, fds, main)
                for fd in fds:
                    os.close(fd)
    finally:
        server.close()
        os.unlink(path)
