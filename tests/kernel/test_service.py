"""The devalloc service on a real kernel: root serves, an unprivileged client gets system-heap
buffers it could not open itself; a killed client's buffers are freed by the kernel; vkms scans a
client's service buffer out (full kernel); a restarted service's clients reconnect.

Example (in the test VM, which runs as root):
    $ tests/vm/run.sh --kernel stock -- -m kernel tests/kernel/test_service.py
    $ tests/vm/run.sh --kernel full -- -m kernel tests/kernel/test_service.py
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import stat
from collections.abc import Iterator

import pytest

from devalloc.accounting import read_bufinfo
from devalloc.buffer import Buffer
from devalloc.constraints import Constraints, MemoryRules
from devalloc.devices.discover import discover
from devalloc.devices.verify import Verdict
from devalloc.drm.kms import KmsDevice, draw_pattern
from devalloc.formats import fourcc_code
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.service import ServiceClient, ServiceError, connect

from .._service_helpers import (
    NOBODY,
    restart,
    run,
    service,
    start,
    start_holding,
    wait_for,
)
from ..conftest import assert_fd_closed, capability, need, require
from .test_kms import (
    DEFAULT_SIZE,
    _capture,
    _expected,
    _fill,
    _mismatch,
    _pitch,
    _plan,
    _writeback_plan,
    lit,
)

pytestmark = pytest.mark.kernel

SYSTEM_HEAP = "/dev/dma_heap/system"
DEBUGFS = "/sys/kernel/debug"
YUYV = Constraints("cam", "out", ((fourcc_code("YUYV"), 0),))


@contextlib.contextmanager
def root_only(node: str) -> Iterator[None]:
    """``node`` as a distribution leaves a heap node: root only (0600), restored afterwards."""
    mode = stat.S_IMODE(os.stat(node).st_mode)
    os.chmod(node, 0o600)
    try:
        yield
    finally:
        os.chmod(node, mode)


@pytest.fixture
def root_only_heap() -> Iterator[None]:
    """The system heap node as a distribution leaves it: root only (0600)."""
    require(os.path.exists(SYSTEM_HEAP), f"{SYSTEM_HEAP} is absent (no dma-heap support here)")
    require(os.getuid() == 0, "the service test runs the service as root")
    with root_only(SYSTEM_HEAP):
        yield


def test_unprivileged_client_gets_system_heap_buffers(root_only_heap: None) -> None:
    with service() as served:

        def client() -> object:
            try:
                fd = os.open(SYSTEM_HEAP, os.O_RDWR | os.O_CLOEXEC)
            except PermissionError as exc:
                denied = exc.errno
            else:
                os.close(fd)
                denied = None
            with (
                connect(served.path) as c,
                c.allocate(640, 480, usages=[YUYV], count=2, cpu_access="rw") as result,
            ):
                buffers = []
                for i, buf in enumerate(result.buffers):
                    info = buf.info()
                    pattern = bytes([i + 1]) * buf.size
                    with buf.cpu_access("w") as view:
                        view[:] = pattern
                    with buf.cpu_access("r") as view:
                        ok = view.tobytes() == pattern
                    buffers.append(
                        {"dmabuf": buf.is_dmabuf, "exp": info.exp_name, "name": info.name, "ok": ok}
                    )
                return {
                    "uid": os.getuid(),
                    "pid": os.getpid(),
                    "comm": open("/proc/self/comm", encoding="utf-8").read().strip(),
                    "denied": denied,
                    "heap": result.heap_properties.kind,
                    "buffers": buffers,
                }

        result = run(client)
    assert "ok" in result, result
    got = result["ok"]
    assert isinstance(got, dict)
    assert got["uid"] == NOBODY
    assert got["denied"] == errno.EACCES  # the client cannot open the heap itself
    assert got["heap"] == "dma-heap"
    assert len(got["buffers"]) == 2
    for i, buf in enumerate(got["buffers"]):
        assert buf["dmabuf"] is True
        assert buf["exp"] == "system"
        assert buf["ok"] is True
        assert buf["name"] == f"devalloc:{got['comm']}:{got['pid']}:{i}"


def _named_for(pid: int) -> list[int]:
    return [
        e.inode or 0
        for e in read_bufinfo(DEBUGFS).entries
        if e.name is not None and f":{pid}:" in e.name
    ]


def _books_of(client: ServiceClient, pid: int) -> int:
    return sum(int(c["bytes"]) for c in client.status()["books"]["clients"] if c["pid"] == pid)


def test_killed_client_buffers_are_freed_by_the_kernel(root_only_heap: None) -> None:
    require(
        os.access(os.path.join(DEBUGFS, "dma_buf", "bufinfo"), os.R_OK),
        "debugfs dma_buf/bufinfo is not readable",
    )
    with service() as served, connect(served.path) as observer:
        baseline = read_bufinfo(DEBUGFS).total_objects

        def holder() -> object:
            return connect(served.path).allocate(320, 240, usages=[YUYV], count=3)

        child = start_holding(holder)
        assert _books_of(observer, child.pid) > 0
        assert len(_named_for(child.pid)) == 3  # tied to the client by name in bufinfo
        child.kill()
        wait_for(lambda: _books_of(observer, child.pid) == 0, "the books to drop the client")
        wait_for(lambda: not _named_for(child.pid), "the kernel to free the client's buffers")
        wait_for(
            lambda: read_bufinfo(DEBUGFS).total_objects <= baseline,
            "bufinfo to return to the baseline",
        )
        with observer.allocate(64, 64, usages=[YUYV]) as result:  # still serving
            assert result.buffers[0].info().exp_name == "system"


def test_two_unprivileged_processes_share_a_system_heap_collection(root_only_heap: None) -> None:
    with service() as served, connect(served.path) as creator:
        token = creator.create_collection(320, 240, participants=2)
        pattern = bytes(range(256)) * 16

        def participant(access: str) -> object:
            with connect(served.path, timeout=60) as c:
                c.join(token, usages=[YUYV], cpu_access=access, count=1)  # type: ignore[arg-type]
                with c.commit(token, timeout=60) as shared:
                    buf = shared.buffers[0]
                    if access == "w":
                        with buf.cpu_access("w") as view:
                            view[: len(pattern)] = pattern
                        return {"inode": buf.info().inode, "exp": buf.info().exp_name}
                    wait_for(lambda: _first_bytes(buf) == pattern, "the writer's pattern", 60)
                    return {"inode": buf.info().inode, "exp": buf.info().exp_name}

        reader = start(lambda: participant("r"))
        writer = start(lambda: participant("w"))
        got_w, got_r = writer.result(timeout=120), reader.result(timeout=120)
    assert "ok" in got_w, got_w
    assert "ok" in got_r, got_r
    assert got_w["ok"]["exp"] == "system"  # type: ignore[index]
    assert got_w["ok"]["inode"] == got_r["ok"]["inode"]  # type: ignore[index]


def _first_bytes(buf: Buffer) -> bytes:
    with buf.cpu_access("r") as view:
        return bytes(view[:4096])


def test_service_verifies_its_buffers_on_live_devices(root_only_heap: None) -> None:
    need("vivid", "vgem")
    cams = [
        d.name
        for d in discover().v4l2
        if d.name.startswith("vivid") and any(c.usage == "capture" for c in d.usages)
    ]
    require(bool(cams), "no vivid capture node")
    with service(discover=True) as served:

        def client() -> object:
            with (
                connect(served.path, timeout=120) as c,
                c.allocate(
                    640,
                    480,
                    usages=[(cams[0], "capture"), "vgem"],
                    formats=["YUYV"],
                    count=2,
                    verify=True,
                    frames=2,
                    cpu_access="r",
                ) as result,
            ):
                return {
                    "heap": result.heap_properties.kind,
                    "verified": [str(v) for v in result.verdicts if v.ok],
                    "verdicts": all(isinstance(v, Verdict) for v in result.verdicts),
                    "exp": result.buffers[0].info().exp_name,
                }

        result = run(client)
    assert "ok" in result, result
    got = result["ok"]
    assert isinstance(got, dict)
    assert got["heap"] == "dma-heap"
    assert len(got["verified"]) == 2, got
    assert got["verdicts"] is True  # Verdict objects, as in-process


@pytest.mark.needs("cma_heap")
def test_unprivileged_client_gets_cma_buffers() -> None:
    """On the full kernel: contiguous memory from the CMA heap, through the service, for a client
    that cannot open the (root-only) node itself."""
    node = capability("cma_heap").nodes[0]
    contiguous = Constraints(
        "npu", "input", ((fourcc_code("XR24"), 0),), memory=MemoryRules(contiguous=True)
    )
    with root_only(node), service() as served:

        def client() -> object:
            try:
                os.close(os.open(node, os.O_RDWR | os.O_CLOEXEC))
                denied = None
            except PermissionError as exc:
                denied = exc.errno
            with (
                connect(served.path) as c,
                c.allocate(256, 256, usages=[contiguous], cpu_access="rw") as result,
            ):
                buf = result.buffers[0]
                with buf.cpu_access("w") as view:
                    view[:] = b"\x5a" * len(view)
                with buf.cpu_access("r") as view:
                    ok = view.tobytes() == b"\x5a" * len(view)
                return {
                    "denied": denied,
                    "contiguous": result.heap_properties.contiguous,
                    "exp": buf.info().exp_name,
                    "ok": ok,
                }

        result = run(client)
    assert "ok" in result, result
    got = result["ok"]
    assert isinstance(got, dict)
    assert got["denied"] == errno.EACCES
    assert got["contiguous"] is True
    assert got["exp"] == os.path.basename(node)
    assert got["ok"] is True


@pytest.mark.needs("vkms", "kms", "debugfs")
def test_vkms_imports_and_scans_out_a_service_buffer(
    root_only_heap: None, system_heap: DmaHeap
) -> None:
    """An unprivileged client asks the service (root, live devices discovered) for a buffer
    vkms's primary plane can scan out, with ``verify=True``: the reply's notes say the service
    imported it into vkms (PRIME import, ADDFB2, RMFB). The client draws the XRGB8888 test
    pattern into it and sends the fd to this (root) process over a socketpair.

    The second check does not take the service's word, nor stop at an import that a driver
    could accept without reading the memory: this process makes a vkms framebuffer of the
    client's very buffer (its bufinfo name is the client's), shows it on the primary plane and
    captures the composed output through the writeback connector into a buffer of its own; the
    capture holds, pixel for pixel, the pattern the client drew (and not another seed's). So
    vkms read the unprivileged client's service buffer."""
    (vkms,) = [d for d in discover().drm if d.driver == "vkms"]
    assert vkms.card is not None
    width, height = DEFAULT_SIZE
    seed = 5
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with parent_end, child_end, service(discover=True) as served:

        def client() -> object:
            with (
                connect(served.path, timeout=120) as c,
                c.allocate(
                    width,
                    height,
                    usages=[(vkms.name, "primary")],
                    formats=["XRGB8888"],
                    verify=True,
                    cpu_access="w",
                ) as result,
            ):
                buf = result.buffers[0]
                pitch = result.plan.layout.planes[0].pitch
                with buf.cpu_access("w") as view:
                    draw_pattern(view, width, height, pitch, seed=seed)
                socket.send_fds(child_end, [b"buffer"], [buf.fileno()])
                return {
                    "uid": os.getuid(),
                    "pid": os.getpid(),
                    "comm": open("/proc/self/comm", encoding="utf-8").read().strip(),
                    "heap": result.heap_properties.kind,
                    "verified": [str(v) for v in result.verdicts],
                    "unverified": list(result.unverified),
                    "pitch": pitch,
                    "size": buf.size,
                }

        result = run(client)
        assert "ok" in result, result
        parent_end.settimeout(30)
        _, fds, _, _ = socket.recv_fds(parent_end, 64, 1)
    got = result["ok"]
    assert isinstance(got, dict)
    assert got["uid"] == NOBODY
    assert got["heap"] == "dma-heap"
    assert got["verified"] == [f"{vkms.name}:primary: ok"], got
    assert got["unverified"] == []
    assert len(fds) == 1, fds
    plan = _plan([vkms.usage("primary")], "w")
    assert (got["pitch"], got["size"]) == (_pitch(plan), plan.layout.size)
    assert plan.layout.size is not None
    try:
        buf = Buffer.from_fd(fds[0])
    finally:
        os.close(fds[0])
    number = buf.fileno()
    with buf, KmsDevice(vkms.card) as kms, contextlib.ExitStack() as stack:
        assert (buf.info().exp_name, buf.info().name) == (
            "system",
            f"devalloc:{got['comm']}:{got['pid']}:0",
        )
        virtual = kms.find_output()
        wb = kms.find_writeback(virtual.crtc)
        out = kms.find_output(wb.name, mode=virtual.mode)  # writeback drives the CRTC alone
        wb_plan = _writeback_plan(kms, vkms, out)
        assert wb_plan.layout.size is not None
        fb = stack.enter_context(kms.framebuffer([buf], plan.layout))
        wb_buf = stack.enter_context(system_heap.allocate(wb_plan.layout.size))
        wb_fb = stack.enter_context(kms.framebuffer([wb_buf], wb_plan.layout))
        mode = stack.enter_context(kms.mode_blob(out.mode))
        _fill(wb_buf, 0x5A)
        with lit(kms, out):
            req = kms.request().modeset(out, mode).show(out.primary, fb, out.crtc)
            _capture(kms, req.writeback(wb, wb_fb, out.crtc), wb_fb, allow_modeset=True)
        assert _mismatch(_expected(plan, seed), _pitch(plan), wb_buf, wb_plan) is None
        assert _mismatch(_expected(plan, seed + 1), _pitch(plan), wb_buf, wb_plan) is not None
    assert_fd_closed(number)


def _signal(fd: int, what: bytes) -> None:
    assert os.write(fd, what) == len(what)


def _await(fd: int, what: bytes, timeout: float = 120.0) -> None:
    """Read ``what`` from the pipe ``fd`` (bounded; EOF: the other side failed or exited)."""
    ready, _, _ = select.select([fd], [], [], timeout)
    got = os.read(fd, len(what)) if ready else None
    assert got == what, f"expected {what!r} from the other side, got {got!r}"


def test_service_restart_clients_get_a_clear_error_and_reconnect(root_only_heap: None) -> None:
    """The service (root) is stopped with SIGTERM and started again on the same socket while an
    unprivileged client holds a system-heap buffer: the client's next request is a
    ServiceError that says to connect again; a new connection allocates; the buffer held across
    the restart still reads back what was written (its fd never depended on the service); and
    once the client has closed everything (it is still alive), bufinfo is back at its
    baseline."""
    require(
        os.access(os.path.join(DEBUGFS, "dma_buf", "bufinfo"), os.R_OK),
        "debugfs dma_buf/bufinfo is not readable",
    )
    pattern = bytes(range(256)) * 64
    ends: dict[str, int] = {}  # the pipes' ends this process still holds
    ends["parent_r"], ends["parent_w"] = os.pipe()  # the client's news for this process
    ends["child_r"], ends["child_w"] = os.pipe()  # this process's go-aheads for the client
    to_parent, from_parent = ends["parent_w"], ends["child_r"]
    parents = ends["parent_r"], ends["child_w"]

    def shut(*names: str) -> None:
        for name in names:
            os.close(ends.pop(name))

    try:
        with service() as served:
            baseline = read_bufinfo(DEBUGFS).total_objects

            def client() -> object:
                for fd in parents:  # so that this process's exit or failure is EOF here
                    os.close(fd)
                old = connect(served.path)
                held = old.allocate(128, 128, usages=[YUYV], cpu_access="rw")
                buf = held.buffers[0]
                with buf.cpu_access("w") as view:
                    view[: len(pattern)] = pattern
                _signal(to_parent, b"held")
                _await(from_parent, b"restarted")
                try:
                    old.hello()
                except ServiceError as exc:
                    error: str | None = str(exc)
                else:
                    error = None
                closed = old.closed
                with (
                    connect(served.path) as new,
                    new.allocate(128, 128, usages=[YUYV], cpu_access="r") as again,
                ):
                    exp = again.buffers[0].info().exp_name
                with buf.cpu_access("r") as view:
                    kept = view[: len(pattern)].tobytes() == pattern
                held.close()
                old.close()
                _signal(to_parent, b"closed")
                _await(from_parent, b"checked")
                return {"error": error, "closed": closed, "exp": exp, "kept": kept}

            try:
                child = start(client)
            finally:  # the child holds its own copies of its ends
                shut("parent_w", "child_r")
            try:
                _await(ends["parent_r"], b"held")
                assert _named_for(child.pid), "the client's buffer is not in bufinfo"
                assert restart(served) == 0  # a clean exit on SIGTERM
                # The kernel keeps the buffer for its holder; the new service never saw it.
                assert len(_named_for(child.pid)) == 1
                with connect(served.path) as observer:
                    assert _books_of(observer, child.pid) == 0
                _signal(ends["child_w"], b"restarted")
                _await(ends["parent_r"], b"closed")
                wait_for(
                    lambda: read_bufinfo(DEBUGFS).total_objects <= baseline,
                    "bufinfo to return to the baseline",
                )
                assert not _named_for(child.pid)
                _signal(ends["child_w"], b"checked")
            except BaseException as exc:
                shut("child_w")  # a client still waiting for a go-ahead gets EOF and reports
                exc.add_note(f"the client's side: {child.result(timeout=120)}")
                raise
            result = child.result(timeout=120)
    finally:
        shut(*list(ends))
    assert "ok" in result, result
    got = result["ok"]
    assert isinstance(got, dict)
    assert got["error"] is not None, "the request after the restart did not fail"
    assert "closed the connection" in got["error"]
    assert got["error"].endswith("connect again")
    assert got["closed"] is True
    assert got["exp"] == "system"
    assert got["kept"] is True
