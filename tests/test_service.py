"""The devalloc service on the host (memfd buffers): a `devalloc serve` subprocess, clients in
other processes (some unprivileged), books, quotas, crash cleanup, collections."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from devalloc.allocator import Allocation
from devalloc.buffer import Buffer
from devalloc.constraints import Constraints
from devalloc.errors import ClosedResourceError, UsageError
from devalloc.formats import fourcc_code
from devalloc.negotiate import NegotiationError
from devalloc.service import (
    CollectionError,
    PolicyError,
    QuotaError,
    ServiceClient,
    ServiceError,
    connect,
)

from ._service_helpers import (
    NOBODY,
    SERVE,
    Served,
    open_directory,
    run,
    service,
    start,
    start_holding,
    wait_for,
)
from .conftest import assert_fd_closed

YUYV = Constraints("cam", "out", ((fourcc_code("YUYV"), 0),))
XR24 = Constraints("display", "in", ((fourcc_code("XR24"), 0),))


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with service() as s:
        yield s


@pytest.fixture
def client(served: Served) -> Iterator[ServiceClient]:
    with connect(served.path, timeout=20) as c:
        yield c


def _mine(status: dict[str, object], pid: int) -> list[dict[str, object]]:
    books = status["books"]
    assert isinstance(books, dict)
    return [c for c in books["clients"] if c["pid"] == pid]


def _bytes_of(client: ServiceClient, pid: int) -> int:
    return sum(int(c["bytes"]) for c in _mine(client.status(), pid))  # type: ignore[call-overload]


def test_allocate_returns_the_allocators_types(client: ServiceClient) -> None:
    result = client.allocate(
        64, 48, usages=[YUYV], count=2, cpu_access="rw", allow_cpu_only=True, name="frames"
    )
    assert isinstance(result, Allocation)
    assert all(isinstance(b, Buffer) for b in result.buffers)
    assert result.plan.format.name == "YUYV"
    assert result.heap_properties.kind == "memfd"
    assert any("memfd" in note for note in result.notes)
    fds = []
    with result:
        for buf in result.buffers:
            assert buf.layout == result.plan.layout
            assert buf.size >= (result.plan.layout.size or 0)
            with buf.cpu_access("w") as view:
                view[:4] = b"abcd"
            with buf.cpu_access("r") as view:
                assert bytes(view[:4]) == b"abcd"
            fds.append(buf.fileno())
        assert _bytes_of(client, os.getpid()) == sum(b.size for b in result.buffers)
    for fd in fds:
        assert_fd_closed(fd)
    assert _bytes_of(client, os.getpid()) == 0


def test_usage_errors_are_typed_and_the_service_keeps_serving(client: ServiceClient) -> None:
    with pytest.raises(NegotiationError, match="format"):
        client.allocate(64, 64, usages=[YUYV, XR24], allow_cpu_only=True)
    # The service never opens a path a client names (the client library reads device files).
    for usage in ("/etc/shadow:x", "../../etc/passwd", "no-such-thing:x"):
        with pytest.raises(UsageError, match="service does not read files for clients"):
            client._request("allocate", width=8, height=8, usages=[usage])
    with client.allocate(8, 8, usages=[YUYV], allow_cpu_only=True) as result:
        assert len(result.buffers) == 1


def test_device_file_is_read_by_the_client(client: ServiceClient, tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "cam.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write('device = "cam"\n[usages.out]\nformats = ["YUYV"]\nmodifiers = ["LINEAR"]\n')
    with client.allocate(32, 32, usages=[f"{path}:out"], allow_cpu_only=True) as result:
        assert result.plan.format.name == "YUYV"


def test_unprivileged_client_gets_buffers_named_by_identity(served: Served) -> None:
    def child() -> object:
        with connect(served.path, timeout=20) as c:
            hello = c.hello()
            with c.allocate(64, 64, usages=[YUYV], cpu_access="rw", allow_cpu_only=True) as r:
                buf = r.buffers[0]
                with buf.cpu_access("w") as view:
                    view[:] = bytes(range(256)) * (len(view) // 256)
                with buf.cpu_access("r") as view:
                    ok = bytes(view[:256]) == bytes(range(256))
                name = os.readlink(f"/proc/self/fd/{buf.fileno()}")
                others = [e for e in c.status()["books"]["clients"] if e["uid"] != os.getuid()]
            return {
                "uid": os.getuid(),
                "hello": hello["client"],
                "ok": ok,
                "name": name,
                "others": others,
            }

    with connect(served.path) as root:  # a root client the unprivileged one must not see
        root.hello()
        assert any(e["uid"] == 0 for e in root.status()["books"]["clients"])
        result = run(child)
    assert "ok" in result, result
    got = result["ok"]
    assert isinstance(got, dict)
    assert got["uid"] == NOBODY
    assert got["hello"]["uid"] == NOBODY
    assert got["ok"] is True
    assert got["others"] == []  # root's own connection is not shown to uid 65534
    # The memfd's name is the service's buffer name: devalloc:<comm>:<pid>:<n>
    assert f":{got['hello']['pid']}:0" in got["name"]
    assert "devalloc:" in got["name"]


def test_quota_refusal_names_the_rule() -> None:
    policy = (
        "[default]\nmax_buffers = 100\n"
        f'[[rule]]\nname = "tight"\nuid = {NOBODY}\nmax_buffers = 2\n'
        f'[[rule]]\nname = "no-cpu-only"\nuid = {NOBODY + 1}\ncpu_only = false\n'
    )
    with service(policy) as s:

        def over_quota() -> object:
            with (
                connect(s.path) as c,
                c.allocate(16, 16, usages=[YUYV], count=2, allow_cpu_only=True),
            ):
                c.allocate(16, 16, usages=[YUYV], count=1, allow_cpu_only=True)
            return None

        result = run(over_quota)
        assert result["error"] == "QuotaError", result
        assert "rule 'tight'" in str(result["rule"])
        assert "max_buffers = 2" in str(result["rule"])
        assert "max_buffers" in str(result["message"])

        def forbidden() -> object:
            with connect(s.path) as c:
                c.allocate(16, 16, usages=[YUYV], allow_cpu_only=True)
            return None

        result = run(forbidden, uid=NOBODY + 1)
        assert result["error"] == "PolicyError", result
        assert "no-cpu-only" in str(result["rule"])

        with (  # root, other rules: unaffected
            connect(s.path) as c,
            c.allocate(16, 16, usages=[YUYV], count=3, allow_cpu_only=True) as r,
        ):
            assert len(r.buffers) == 3
            with (
                c.allocate(16, 16, usages=[YUYV], count=64, allow_cpu_only=True),
                pytest.raises(QuotaError, match=r"quota of 100 set by \[default\] of .*toml"),
            ):
                c.allocate(16, 16, usages=[YUYV], count=64, allow_cpu_only=True)


def test_sighup_reloads_the_policy() -> None:
    with service("[default]\nmax_buffers = 1\n") as s:
        with connect(s.path) as c, pytest.raises(QuotaError, match="max_buffers"):
            c.allocate(16, 16, usages=[YUYV], count=2, allow_cpu_only=True)
        with open(os.path.join(s.directory, "policy.toml"), "w", encoding="utf-8") as f:
            f.write("[default]\nmax_buffers = 5\n")
        s.proc.send_signal(signal.SIGHUP)

        def reloaded() -> bool:
            with connect(s.path) as c:
                default = c.status()["policy"]["default"]
                return bool(default["max_buffers"] == 5)

        wait_for(reloaded, "the policy to be reloaded")
        with connect(s.path) as c, c.allocate(16, 16, usages=[YUYV], count=2, allow_cpu_only=True):
            pass


def test_sigkill_while_holding_buffers_releases_at_once(
    served: Served, client: ServiceClient
) -> None:
    client.hello()  # the service has accepted this connection: part of the baseline
    baseline = served.fds()
    before = served.fd_list()

    def holder() -> object:
        return connect(served.path).allocate(64, 64, usages=[YUYV], count=3, allow_cpu_only=True)

    child = start_holding(holder)
    assert _bytes_of(client, child.pid) > 0
    child.kill()
    wait_for(lambda: not _mine(client.status(), child.pid), "the books to drop the dead client")
    wait_for(
        lambda: served.fds() <= baseline,
        "the service's fds to return to baseline",
        show=lambda: (before, served.fd_list()),
    )
    with client.allocate(16, 16, usages=[YUYV], allow_cpu_only=True) as result:
        assert result.buffers


def test_dropped_connection_of_a_living_process_keeps_its_books(served: Served) -> None:
    """A process that drops its connection may still hold the fds: its books stay until it
    exits, and a new connection of the same process takes them over."""
    r, w = os.pipe()
    r2, w2 = os.pipe()
    kept: list[Allocation] = []

    def leaver() -> object:
        c = connect(served.path)
        kept.append(c.allocate(16, 16, usages=[YUYV], allow_cpu_only=True))
        c._live().close()  # dropped without the client's knowledge; the fds stay here
        os.write(w, b"x")
        os.read(r2, 1)
        with connect(served.path) as c2:  # the same process takes its books over
            return _bytes_of(c2, os.getpid())

    child = start(leaver)
    os.close(w)
    os.close(r2)
    assert os.read(r, 1) == b"x"
    os.close(r)
    with connect(served.path) as c:
        wait_for(
            lambda: [e["connected"] for e in _mine(c.status(), child.pid)] == [False],
            "the service to see the connection dropped",
        )
        assert _bytes_of(c, child.pid) > 0
        os.write(w2, b"x")
        os.close(w2)
        result = child.result()
        assert result["ok"] == kept[0].buffers[0].size if kept else int(result["ok"]) > 0  # type: ignore[call-overload]
        wait_for(lambda: not _mine(c.status(), child.pid), "the books to drop the exited process")


def test_closing_the_client_keeps_the_connection_for_its_buffers(
    served: Served, client: ServiceClient
) -> None:
    c = connect(served.path)
    result = c.allocate(16, 16, usages=[YUYV], allow_cpu_only=True)
    c.close()
    assert c.closed
    with pytest.raises(ClosedResourceError):
        c.hello()
    size = result.buffers[0].size
    assert _bytes_of(client, os.getpid()) == size
    result.close()
    wait_for(lambda: _bytes_of(client, os.getpid()) == 0, "the release")
    assert c._sock is None


def test_sigkill_in_the_middle_of_a_request(served: Served, client: ServiceClient) -> None:
    client.hello()  # the service has accepted this connection: part of the baseline
    baseline = served.fds()

    def killed_mid_request() -> object:
        c = connect(served.path)
        from devalloc.service.protocol import send_message

        send_message(
            c._live(),
            {
                "op": "allocate",
                "id": 1,
                "width": 1920,
                "height": 1080,
                "usages": [{"constraints": YUYV.to_json()}],
                "count": 16,
                "allow_cpu_only": True,
            },
        )
        os.kill(os.getpid(), signal.SIGKILL)
        return None

    for _ in range(5):
        child = start(killed_mid_request)
        os.waitpid(child.pid, 0)
        os.close(child.fd)
        pid = child.pid
        wait_for(lambda: not _mine(client.status(), pid), "the books to drop it")  # noqa: B023
    wait_for(lambda: served.fds() <= baseline, "the service's fds to return to baseline")
    assert served.proc.poll() is None


def test_status_command_shows_the_books(served: Served, client: ServiceClient) -> None:
    with client.allocate(64, 64, usages=[YUYV], allow_cpu_only=True):
        command = [sys.executable, "-m", "devalloc.service", "service", "status"]
        out = subprocess.run(
            [*command, "--socket", served.path], capture_output=True, text=True, check=True
        ).stdout
        assert f"pid {os.getpid()}" in out
        assert "cpu-only" in out
        data = json.loads(
            subprocess.run(
                [*command, "--json", "--socket", served.path],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert data["books"]["bytes_by_class"]["cpu-only"] > 0


def test_no_service_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(ServiceError, match=r"no devalloc service at .*devalloc serve"):
        connect(os.path.join(str(tmp_path), "absent"))


def test_service_restart_clients_get_a_clear_error_and_reconnect() -> None:
    with service() as s:
        c = connect(s.path)
        assert s.stop() == 0
        with pytest.raises(ServiceError, match="closed the connection"):
            c.hello()
        assert c.closed
    with service() as s2, connect(s2.path) as c2:
        assert c2.hello()["service"] == "devalloc"


def test_socket_activation_and_ready_notification() -> None:
    """As systemd starts it: the listening socket as fd 3 (LISTEN_FDS, LISTEN_PID), READY=1
    and STOPPING=1 to NOTIFY_SOCKET, SIGTERM a clean exit, the socket file left to systemd."""
    directory = open_directory()
    path = os.path.join(directory, "socket")
    notify_path = os.path.join(directory, "notify")
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify,
    ):
        listener.bind(path)
        os.chmod(path, 0o666)
        listener.listen(16)
        notify.bind(notify_path)
        notify.settimeout(30)
        fd = listener.fileno()
        env = {**os.environ, "LISTEN_FDS": "1", "NOTIFY_SOCKET": notify_path}
        proc = subprocess.Popen(
            ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *SERVE],
            env=env,
            close_fds=False,
            preexec_fn=lambda: os.dup2(fd, 3),
        )
        try:
            assert notify.recv(4096) == b"READY=1"
            with (
                connect(path) as c,
                c.allocate(16, 16, usages=[YUYV], cpu_access="rw", allow_cpu_only=True) as r,
            ):
                assert c.hello()["client"]["pid"] == os.getpid()
                assert r.buffers[0].size > 0
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
            assert notify.recv(4096) == b"STOPPING=1"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert os.path.exists(path)  # systemd's socket: not removed by the service
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    os.rmdir(directory)


def test_activation_with_a_wrong_socket_type_is_refused() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stream:
        fd = stream.fileno()
        proc = subprocess.run(
            ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *SERVE],
            env={**os.environ, "LISTEN_FDS": "1"},
            close_fds=False,
            preexec_fn=lambda: os.dup2(fd, 3),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert "SOCK_SEQPACKET" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- collections ---------------------------------------------------------------------------------


def test_two_processes_share_a_collection(served: Served, client: ServiceClient) -> None:
    token = client.create_collection(64, 64, participants=2, allow_cpu_only=True)
    pattern = bytes(range(256)) * 4

    def participant() -> object:
        with connect(served.path, timeout=20) as c:
            c.join(token, usages=[YUYV], cpu_access="w", count=1)
            shared = c.commit(token, timeout=20)
            buf = shared.buffers[0]
            with buf.cpu_access("w") as view:
                view[: len(pattern)] = pattern
            inode = os.fstat(buf.fileno()).st_ino
            shared.close()
            return inode

    child = start(participant)
    client.join(token, usages=[YUYV], cpu_access="r", count=1)
    shared = client.commit(token, timeout=20)
    with shared:
        assert len(shared.buffers) == 2  # one held by each participant
        result = child.result()
        assert "ok" in result, result
        assert os.fstat(shared.buffers[0].fileno()).st_ino == result["ok"]
        with shared.buffers[0].cpu_access("r") as view:
            assert bytes(view[: len(pattern)]) == pattern
        status = client.status()
        assert any(c["bytes_by_collection"] for c in _mine(status, os.getpid()))


def test_conflicting_join_names_the_joining_process(served: Served, client: ServiceClient) -> None:
    token = client.create_collection(64, 64, participants=2, allow_cpu_only=True)
    client.join(token, usages=[YUYV])

    def conflicting() -> object:
        with connect(served.path) as c:
            c.join(token, usages=[XR24])
        return None

    child = start(conflicting)
    result = child.result()
    assert result["error"] == "NegotiationError", result
    message = str(result["message"])
    assert f"pid {child.pid}, uid {NOBODY}" in message
    assert "display:in" in message
    assert "format" in message
    client.hello()
    assert any(f"pid {child.pid}" in n for n in client.notices)


def test_participant_that_dies_before_commit_fails_the_collection(
    served: Served, client: ServiceClient
) -> None:
    token = client.create_collection(32, 32, participants=2, allow_cpu_only=True)

    def joiner() -> object:
        c = connect(served.path)
        c.join(token, usages=[YUYV])
        return c

    child = start_holding(joiner)
    client.join(token, usages=[YUYV])
    child.kill()
    with pytest.raises(CollectionError, match=rf"pid {child.pid}.*left before the allocation"):
        client.commit(token, timeout=20)


def test_optional_participant_may_leave(served: Served, client: ServiceClient) -> None:
    token = client.create_collection(32, 32, participants=2, allow_cpu_only=True)

    def joiner() -> object:
        c = connect(served.path)
        c.join(token, usages=[YUYV], optional=True)
        return c

    child = start_holding(joiner)
    client.join(token, usages=[YUYV], count=2)
    child.kill()
    with client.commit(token, timeout=20) as shared:
        assert len(shared.buffers) == 2
    assert any("left" in n for n in client.notices)


def test_bad_token_is_a_collection_error(client: ServiceClient) -> None:
    with pytest.raises(CollectionError, match="no collection has this token"):
        client.join("not-a-token", usages=[YUYV])


def test_policy_error_is_a_quota_error_subclass() -> None:
    assert issubclass(PolicyError, QuotaError)


def test_cli_alloc_through_the_service(served: Served) -> None:
    """``devalloc alloc --service PATH``: the same arguments as ``devalloc alloc``."""
    import devalloc

    command = [sys.executable, "-m", "devalloc.cli", "alloc", "--service", served.path]
    out = subprocess.run(
        [*command, "-d", "uvc-webcam", "--size", "64x48", "--cpu-only", "--count", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["buffers"]) == 2
    assert data["heap"]["kind"] == "memfd"
    failed = subprocess.run(
        [*command, "-d", "uvc-webcam", "--size", "64x48", "--format", "XR24", "--cpu-only"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 3, failed.stderr
    assert "no plan" in failed.stdout
    assert "Traceback" not in failed.stderr
    absent = subprocess.run(
        [*command[:-1], served.path + ".absent", "-d", "uvc-webcam", "--size", "8x8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert absent.returncode == 1
    assert "no devalloc service at" in absent.stderr
    with devalloc.connect(served.path) as client:
        assert isinstance(client, ServiceClient)


def test_a_repeated_allocate_is_sent_as_encoded_before(
    client: ServiceClient, served: Served
) -> None:
    """The client keeps a repeated request encoded; the books, types and checks are the same."""
    before = _bytes_of(client, os.getpid())
    for _ in range(3):
        with client.allocate(32, 32, usages=[XR24], allow_cpu_only=True) as a:
            assert a.plan.format.fourcc == fourcc_code("XR24")
            assert a.buffers[0].size == 4096
            assert _bytes_of(client, os.getpid()) == before + 4096
    assert len(client._encoded) == 1
    assert _bytes_of(client, os.getpid()) == before
    # an equal value of another type is not the same request: still refused as before
    with pytest.raises(UsageError, match="width must be an integer"):
        client.allocate(True, 32, usages=[XR24], allow_cpu_only=True)
    # other usage objects are other requests (keyed by identity, the objects kept)
    with client.allocate(32, 32, usages=[YUYV], allow_cpu_only=True) as a:
        assert a.plan.format.fourcc == fourcc_code("YUYV")
    with pytest.raises(UsageError, match="not a live device"):
        client.allocate(32, 32, usages=[("display", "x")], allow_cpu_only=True)
    assert len(client._encoded) == 3


def test_a_service_that_does_not_answer_times_out(tmp_path: object) -> None:
    """The reply timeout is the kernel's (SO_RCVTIMEO): a silent service is a ServiceError."""
    path = os.path.join(str(tmp_path), "silent")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener:
        listener.bind(path)
        listener.listen(1)
        with connect(path, timeout=0.2) as c, pytest.raises(ServiceError, match="in time"):
            c.hello()


def test_fds_sent_with_a_reply_that_holds_none_are_closed(tmp_path: object) -> None:
    """A hello reply carries no fds: any the service sends anyway are closed, not leaked."""
    import threading

    from devalloc.service.protocol import recv_message, send_message

    path = os.path.join(str(tmp_path), "stray")
    r, w = os.pipe()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener:
        listener.bind(path)
        listener.listen(1)

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                received = recv_message(conn)
                assert received is not None
                request = json.loads(received.data)
                send_message(conn, {"id": request["id"], "ok": True}, [w])
                conn.recv(1)  # until the client closes

        server = threading.Thread(target=answer)
        server.start()
        pipe = os.readlink(f"/proc/self/fd/{w}")

        def pipe_ends() -> int:
            fds = os.listdir("/proc/self/fd")
            return sum(1 for fd in fds if _readlink(f"/proc/self/fd/{fd}") == pipe)

        try:
            with connect(path, timeout=5) as c:
                c.hello()
                assert pipe_ends() == 2  # r and w: the copy the service sent is closed
        finally:
            server.join(5)
            os.close(r)
            os.close(w)


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""
