"""Helpers of the service tests: a service subprocess started the way systemd would, and
clients in forked children (optionally dropping privileges)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

#: The service's command line: ``devalloc serve`` (as the systemd unit runs it).
SERVE = [sys.executable, "-m", "devalloc.cli", "serve", "--no-discover"]
#: An unprivileged uid/gid (nobody).
NOBODY = 65534


@dataclass
class Served:
    """A running service subprocess."""

    proc: subprocess.Popen[bytes]
    path: str
    directory: str

    def fds(self) -> int:
        """How many fds the service holds."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def fd_list(self) -> dict[str, str]:
        """The service's fds and what they are (for messages)."""
        out = {}
        for name in os.listdir(f"/proc/{self.proc.pid}/fd"):
            with contextlib.suppress(OSError):
                out[name] = os.readlink(f"/proc/{self.proc.pid}/fd/{name}")
        return out

    def stop(self) -> int:
        """SIGTERM and wait; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.stderr is not None:
                self.proc.stderr.close()


def open_directory() -> str:
    """A temporary directory every user may enter (for the socket)."""
    directory = tempfile.mkdtemp(prefix="devalloc-service-")
    os.chmod(directory, 0o755)
    return directory


def wait_for(
    predicate: Callable[[], bool], what: str, timeout: float = 15.0, show: object = None
) -> None:
    """Poll ``predicate`` until it holds (bounded); ``show()`` is added to the failure."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            extra = f": {show()}" if callable(show) else ""
            raise AssertionError(f"timed out waiting for {what}{extra}")
        time.sleep(0.02)


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


@contextlib.contextmanager
def service(
    policy: str | None = None, extra: Sequence[str] = (), *, discover: bool = False
) -> Iterator[Served]:
    """``devalloc serve --socket DIR/socket [--policy DIR/policy.toml]`` as a subprocess
    (``--no-discover`` unless ``discover``: live devices are looked for)."""
    directory = open_directory()
    path = os.path.join(directory, "socket")
    serve = SERVE if not discover else [a for a in SERVE if a != "--no-discover"]
    args = [*serve, "--socket", path, *extra]
    if policy is not None:
        policy_path = os.path.join(directory, "policy.toml")
        with open(policy_path, "w", encoding="utf-8") as f:
            f.write(policy)
        args += ["--policy", policy_path]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE)
    served = Served(proc, path, directory)
    try:
        wait_for(
            lambda: proc.poll() is not None or _answers(path),
            "the service to listen",
            timeout=120,  # a TCG VM imports slowly
        )
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        yield served
    finally:
        served.stop()
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


def restart(served: Served) -> int:
    """Stop the service (SIGTERM, as systemd does) and start its same command line again, on
    the same socket path; ``served`` then holds the new process (its stop and cleanup included).

    Returns:
        The stopped service's exit status.
    """
    status = served.stop()
    proc = subprocess.Popen(served.proc.args, stderr=subprocess.PIPE)
    served.proc = proc
    wait_for(
        lambda: proc.poll() is not None or _answers(served.path),
        "the restarted service to listen",
        timeout=120,  # a TCG VM imports slowly
    )
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    return status


@dataclass
class Child:
    """A forked child running one function; its result comes back as JSON."""

    pid: int
    fd: int

    def result(self, timeout: float = 30.0) -> dict[str, object]:
        """Wait for the child and return ``{"ok": value}`` or ``{"error": name, ...}``."""
        chunks = []
        deadline = time.monotonic() + timeout
        os.set_blocking(self.fd, False)
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    raise AssertionError("the child did not finish in time") from None
                time.sleep(0.01)
                continue
            if not chunk:
                break
            chunks.append(chunk)
        os.close(self.fd)
        os.waitpid(self.pid, 0)
        data = b"".join(chunks)
        assert data, "the child died without a result"
        result: dict[str, object] = json.loads(data)
        return result

    def kill(self) -> None:
        """SIGKILL and reap."""
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def start(function: Callable[[], object], *, uid: int | None = NOBODY) -> Child:
    """Fork a child that drops to ``uid`` (and gid, no groups) and runs ``function``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            payload = {"ok": function()}
        except BaseException as exc:
            payload = {
                "error": type(exc).__name__,
                "message": str(exc),
                "rule": getattr(exc, "rule", None),
            }
        try:
            os.write(w, json.dumps(payload).encode())
        finally:
            os._exit(0)
    os.close(w)
    return Child(pid, r)


def start_holding(function: Callable[[], object], *, uid: int | None = NOBODY) -> Child:
    """Fork a child that runs ``function``, keeps what it returned, and sleeps until killed;
    returns once ``function`` has returned."""
    r, w = os.pipe()

    def hold() -> object:
        kept = function()
        os.write(w, b"x")
        time.sleep(120)
        return repr(kept)

    child = start(hold, uid=uid)
    os.close(w)
    try:
        assert os.read(r, 1) == b"x", "the child failed before it was ready"
    finally:
        os.close(r)
    return child


def run(function: Callable[[], object], *, uid: int | None = NOBODY) -> dict[str, object]:
    """:func:`start` and wait for the result."""
    return start(function, uid=uid).result()
