"""The service loop in a thread of the test process: limits that protect the other clients."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devalloc.allocator import Allocator
from devalloc.constraints import Constraints
from devalloc.formats import fourcc_code
from devalloc.negotiate import Plan
from devalloc.service import QuotaError, ServiceError, connect
from devalloc.service import server as server_module
from devalloc.service.policy import Identity, Policy
from devalloc.service.protocol import PLAN_SLOTS, VERSION
from devalloc.service.server import Service, listen

from ._service_helpers import wait_for

YUYV = Constraints("cam", "out", ((fourcc_code("YUYV"), 0),))


class _BrokenPlanner(Allocator):
    """An allocator with a bug in plan() for one width."""

    def plan(self, width: int, height: int, **kwargs: Any) -> Plan:
        if width == 13:
            raise RuntimeError("a bug")
        return super().plan(width, height, **kwargs)


@contextlib.contextmanager
def _serving(path: str, allocator: Allocator, policy: Policy | None = None) -> Iterator[Service]:
    """A Service at ``path`` whose loop runs in a thread."""
    service = Service(
        listen(path), allocator=allocator, own_allocator=True, policy=policy, socket_path=path
    )
    thread = threading.Thread(target=service.serve_forever, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.stop()
        thread.join(timeout=20)
        service.close()
    assert not os.path.exists(path)


@pytest.fixture
def inproc(tmp_path: object) -> Iterator[tuple[Service, str]]:
    path = os.path.join(str(tmp_path), "socket")
    with _serving(path, _BrokenPlanner(discover_devices=False)) as service:
        yield service, path


def test_a_bug_fails_the_request_not_the_client(inproc: tuple[Service, str]) -> None:
    _, path = inproc
    with connect(path, timeout=20) as c:
        with pytest.raises(ServiceError, match="internal error serving allocate: RuntimeError"):
            c.allocate(13, 8, usages=[YUYV], allow_cpu_only=True)
        with c.allocate(
            16, 8, usages=[YUYV], formats=[fourcc_code("YUYV")], allow_cpu_only=True
        ) as result:
            assert result.plan.format.name == "YUYV"


def test_one_uid_cannot_take_every_connection(
    inproc: tuple[Service, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, path = inproc
    monkeypatch.setattr(server_module, "MAX_PER_UID", 2)
    with connect(path, timeout=20) as a, connect(path, timeout=20) as b:
        a.hello()
        b.hello()
        with (
            pytest.raises(ServiceError, match="closed the connection"),
            connect(path, timeout=20) as third,
        ):
            third.hello()
        a.hello()


def test_a_client_that_does_not_read_is_disconnected(inproc: tuple[Service, str]) -> None:
    service, path = inproc
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock, connect(path) as good:
        sock.connect(path)
        sock.settimeout(10)
        request = json.dumps({"v": VERSION, "op": "status", "id": 1}).encode()
        sent = _send_until_refused(sock, request)
        assert sent > server_module.MAX_QUEUED
        wait_for(lambda: len(service.books.clients) == 1, "the service to drop the client")
        assert good.hello()["client"]["pid"] == os.getpid()


def _send_until_refused(sock: socket.socket, request: bytes) -> int:
    """Send ``request`` until the service closes the connection; how many were sent."""
    for sent in range(100_000):
        try:
            sock.send(request)
        except (BrokenPipeError, ConnectionResetError):
            return sent
    raise AssertionError("the service never gave up on a client that does not read")


def test_quotas_hold_for_a_uid_not_a_connection(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "socket")
    policy = Policy.from_text("[default]\nmax_buffers = 2\n", "p.toml")
    with (
        _serving(path, Allocator(discover_devices=False), policy),
        connect(path, timeout=20) as a,
        connect(path, timeout=20) as b,
        a.allocate(8, 8, usages=[YUYV], count=2, allow_cpu_only=True),
        pytest.raises(QuotaError, match="uid 0 would hold 3"),
    ):
        b.allocate(8, 8, usages=[YUYV], allow_cpu_only=True)


def test_plan_slots_wrap_and_stay_right(inproc: tuple[Service, str]) -> None:
    """A plan sent once is named by its slot afterwards; more plans than slots reuse slots and
    every allocation still carries its own plan."""
    _, path = inproc
    with connect(path, timeout=20) as c:
        for width in [*range(16, 16 + 2 * (PLAN_SLOTS + 6), 2), 16, 18, 16]:
            with c.allocate(width, 8, usages=[YUYV], allow_cpu_only=True) as result:
                assert result.plan.width == width
                assert result.buffers[0].layout == result.plan.layout
        assert len(c._plans) == PLAN_SLOTS


def test_allocate_for_the_application_alone(inproc: tuple[Service, str]) -> None:
    """``usages=[]`` as in-process: the application's formats and CPU access decide."""
    _, path = inproc
    with (
        connect(path, timeout=20) as c,
        c.allocate(64, 64, usages=[], formats=["XR24"], cpu_access="rw") as result,
    ):
        assert result.plan.format.name == "XRGB8888"
        assert result.plan.devices == ()
        with result.buffers[0].cpu_access("w") as view:
            view[0] = 1


class _CountingResolver(Allocator):
    """An allocator that counts how often a usage is resolved (once per negotiation)."""

    resolved = 0

    def resolve(self, spec: Any) -> Any:
        self.resolved += 1
        return super().resolve(spec)


def test_a_repeated_request_reuses_its_plan(tmp_path: object) -> None:
    """The same allocation asked for again is not negotiated again (the plan is reused; the
    heap, quota and books are handled per request), and it gets what the in-process Allocator
    gives: plan, notes, unverified labels, heap."""
    path = os.path.join(str(tmp_path), "socket")
    allocator = _CountingResolver(discover_devices=False)
    with (
        _serving(path, allocator, Policy.from_text("[default]\nmax_buffers = 3\n", "p.toml")),
        connect(path, timeout=20) as c,
        Allocator(discover_devices=False) as local,
    ):
        for _ in range(3):
            with c.allocate(32, 8, usages=[YUYV], allow_cpu_only=True) as result:
                assert result.buffers[0].size >= (result.plan.layout.size or 0)
        assert allocator.resolved == 2  # the first request: the plan and its unverified labels
        with (
            c.allocate(32, 8, usages=[YUYV], count=3, allow_cpu_only=True) as brokered,
            local.allocate(32, 8, usages=[YUYV], count=3, allow_cpu_only=True) as in_process,
        ):
            assert brokered.plan == in_process.plan
            assert brokered.notes == in_process.notes
            assert brokered.unverified == in_process.unverified == ("cam:out",)
            assert brokered.heap_properties == in_process.heap_properties
            with pytest.raises(QuotaError, match="max_buffers"):  # the quota still holds
                c.allocate(32, 8, usages=[YUYV], allow_cpu_only=True)
        with (
            c.allocate(64, 64, usages=[], formats=["XR24"]) as alone,
            local.allocate(64, 64, usages=[], formats=["XR24"]) as alone_here,
        ):
            assert alone.plan == alone_here.plan
            assert alone.plan.devices == ()
            assert alone.notes == alone_here.notes
            assert alone.unverified == ()
        assert c.status()["books"]["buffers"] == 0


def test_verify_empties_the_plan_cache(tmp_path: object) -> None:
    """A verify request negotiates in full (what it learns changes later plans), and the next
    plain request is negotiated again."""
    path = os.path.join(str(tmp_path), "socket")
    allocator = _CountingResolver(discover_devices=False)
    with _serving(path, allocator), connect(path, timeout=20) as c:
        c.allocate(32, 8, usages=[YUYV], allow_cpu_only=True).close()
        first = allocator.resolved
        c.allocate(32, 8, usages=[YUYV], allow_cpu_only=True, verify=True).close()
        assert allocator.resolved > first
        verified = allocator.resolved
        c.allocate(32, 8, usages=[YUYV], allow_cpu_only=True).close()
        assert allocator.resolved > verified


@pytest.mark.parametrize("name", [None, 'a "quoted" \\ name', "naïve"])
@pytest.mark.parametrize("plan_part", ["slot", "plan"])
def test_the_allocation_text_says_what_describe_says(
    inproc: tuple[Service, str], name: str | None, plan_part: str
) -> None:
    """The allocate reply made from parts (JSON text kept per kind of allocation, buffers
    formatted) is, read back, the message _describe builds: several images, several buffers,
    the heap, notes and name, the plan or its slot; asked twice, the same."""
    service, _ = inproc
    nv12 = Constraints("cam", "out", ((fourcc_code("NV12"), 0),))
    with service.allocator.allocate(64, 32, usages=[nv12], count=3, allow_cpu_only=True) as result:
        ids = list(range(100, 100 + len(result.images) * len(result.images[0])))
        plan: dict[str, Any] = {"plan_slot": 5}
        if plan_part == "plan":
            plan["plan"] = result.plan.to_json()
        need = server_module._Need(result.plan, (), "scattered", False, result.unverified, ())
        for kept in (None, need, need):  # made afresh, made and kept, read from the kept text
            text = server_module._describe_text(result, ids, name, plan, kept)
            got = json.loads(b"{" + text + b"}")
            assert got == {"allocation": server_module._describe(result, ids, name, plan)}
        assert need.common is not None
        other = "other" if name is None else None  # another name: not the kept text
        text = server_module._describe_text(result, ids, other, plan, need)
        assert json.loads(b"{" + text + b"}")["allocation"]["name"] == other
        assert len(got["allocation"]["buffers"]) == len(ids) == 3 * len(result.images[0])


def _pidfd_pid(pidfd: int) -> int:
    with open(f"/proc/self/fdinfo/{pidfd}", encoding="ascii") as f:
        for line in f:
            if line.startswith("Pid:"):
                return int(line.split()[1])
    raise AssertionError("no Pid: line in a pidfd's fdinfo")


@pytest.mark.parametrize(
    "option", ["SO_PEERPIDFD", "pidfd_open (older kernels)", "pidfd_open (option not known)"]
)
def test_the_peer_is_identified_with_a_pidfd_of_its_own_process(
    option: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if option == "pidfd_open (older kernels)":  # a kernel without the option refuses it
        monkeypatch.setattr(server_module, "SO_PEERPIDFD", 0x7FFF)
    elif option == "pidfd_open (option not known)":  # an architecture whose number is unknown
        monkeypatch.setattr(server_module, "SO_PEERPIDFD", None)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        ident, pidfd = server_module._peer(a)
        try:
            assert (ident.pid, ident.uid) == (os.getpid(), os.getuid())
            assert _pidfd_pid(pidfd) == os.getpid()
            assert not os.get_inheritable(pidfd)
        finally:
            os.close(pidfd)


def test_a_peer_that_exited_before_it_was_accepted_is_refused(tmp_path: object) -> None:
    """A process that connects and exits before the service accepts it is not taken for a
    client (nor is whichever process might have its pid now): no fd is left behind."""
    path = os.path.join(str(tmp_path), "socket")
    with listen(path) as listener:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                s.connect(path)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        before = len(os.listdir("/proc/self/fd"))
        sock, _ = listener.accept()
        with sock, pytest.raises(ProcessLookupError):
            server_module._peer(sock)
        assert len(os.listdir("/proc/self/fd")) == before


def test_the_pidfd_follows_the_connection_not_the_pid_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The death watch is on the process that connected, whatever process its pid number names
    by the time the service looks (simulated: /proc reads said another live process's pid)."""
    other = os.fork()
    if other == 0:  # pragma: no cover - the child: a live process with another pid
        time.sleep(30)
        os._exit(0)
    real = server_module._identity

    def reused(sock: socket.socket) -> Identity:
        return dataclasses.replace(real(sock), pid=other)

    monkeypatch.setattr(server_module, "_identity", reused)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        with a, b:
            _, pidfd = server_module._peer(a)
            try:
                assert _pidfd_pid(pidfd) == os.getpid()
            finally:
                os.close(pidfd)
    finally:
        os.kill(other, signal.SIGKILL)
        os.waitpid(other, 0)


def test_a_service_that_fails_to_start_closes_what_it_made(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure half-way through Service() (here: no fd left for its wake-up pair) closes the
    listener, the epoll and the allocator it made: no fd is left behind."""
    path = os.path.join(str(tmp_path), "socket")
    before = sorted(os.listdir("/proc/self/fd"))

    def no_fds(*args: object) -> object:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(socket, "socketpair", no_fds)
    listener = listen(path)
    with pytest.raises(OSError, match="Too many open files"):
        Service(listener, allocator=Allocator(discover_devices=False), own_allocator=True)
    assert listener.fileno() == -1
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_listen_leaves_no_socket_file_when_it_fails_after_bind(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = os.path.join(str(tmp_path), "socket")

    def refuse(*args: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    with pytest.raises(PermissionError):
        listen(path)
    assert not os.path.exists(path)


@pytest.mark.parametrize(
    "packet",
    [
        b'{"v":%d,"op":"release"}',
        b'{"v":%d,"op":"release","buffers":[]}',
        b'{"v":%d,"op":"release","buffers":[7,8]}',
    ],
)
def test_releases_without_a_reply_are_taken_quietly(
    inproc: tuple[Service, str], packet: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A release without id, of nothing or of ids the client does not hold, changes nothing,
    gets no reply and is no internal error."""
    _, path = inproc
    with connect(path, timeout=20) as c:
        c._live().sendmsg([packet % VERSION])
        assert c.hello()["ok"] is True
        assert c.status()["books"]["buffers"] == 0
    assert "internal error" not in caplog.text


def test_threads_sharing_a_client_each_get_their_own_plan(inproc: tuple[Service, str]) -> None:
    """Replies name plan slots in the order the service sent them: threads sharing one client,
    with more distinct plans than slots, each get the plan of what they asked for."""
    _, path = inproc
    widths = list(range(16, 16 + 2 * (PLAN_SLOTS + 16), 2))
    problems: list[str] = []

    def work(offset: int) -> None:
        try:
            for i in range(len(widths)):
                width = widths[(i * 7 + offset) % len(widths)]
                with c.allocate(width, 8, usages=[YUYV], allow_cpu_only=True) as result:
                    if result.plan.width != width:
                        problems.append(f"asked {width}, got a plan for {result.plan.width}")
        except Exception as exc:  # reported below, with the others
            problems.append(repr(exc))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: where they may interleave, they do
    try:
        with connect(path, timeout=60) as c:
            threads = [threading.Thread(target=work, args=(k * 11,)) for k in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert not problems, problems[:5]
