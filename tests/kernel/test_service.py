"""The devalloc service on a real kernel: root serves, an unprivileged client gets system-heap
buffers it could not open itself; a killed client's buffers are freed by the kernel.

Example (in the test VM, which runs as root):
    $ tests/vm/run.sh --kernel stock -- -m kernel tests/kernel/test_service.py
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

import pytest

from devalloc.accounting import read_bufinfo
from devalloc.buffer import Buffer
from devalloc.constraints import Constraints, MemoryRules
from devalloc.devices.discover import discover
from devalloc.formats import fourcc_code
from devalloc.service import ServiceClient, connect

from .._service_helpers import NOBODY, run, service, start, start_holding, wait_for
from ..conftest import capability, need, require

pytestmark = pytest.mark.kernel

SYSTEM_HEAP = "/dev/dma_heap/system"
DEBUGFS = "/sys/kernel/debug"
YUYV = Constraints("cam", "out", ((fourcc_code("YUYV"), 0),))


@pytest.fixture
def root_only_heap() -> Iterator[None]:
    """The system heap node as a distribution leaves it: root only (0600)."""
    require(os.path.exists(SYSTEM_HEAP), f"{SYSTEM_HEAP} is absent (no dma-heap support here)")
    require(os.getuid() == 0, "the service test runs the service as root")
    mode = stat.S_IMODE(os.stat(SYSTEM_HEAP).st_mode)
    os.chmod(SYSTEM_HEAP, 0o600)
    try:
        yield
    finally:
        os.chmod(SYSTEM_HEAP, mode)


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
                    "verified": [n for n in result.notes if n.startswith("verified")],
                    "exp": result.buffers[0].info().exp_name,
                }

        result = run(client)
    assert "ok" in result, result
    got = result["ok"]
    assert isinstance(got, dict)
    assert got["heap"] == "dma-heap"
    assert len(got["verified"]) == 2, got


@pytest.mark.needs("cma_heap")
def test_unprivileged_client_gets_cma_buffers() -> None:
    """On the full kernel: contiguous memory from the CMA heap, through the service, for a client
    that cannot open the (root-only) node itself."""
    node = capability("cma_heap").nodes[0]
    mode = stat.S_IMODE(os.stat(node).st_mode)
    os.chmod(node, 0o600)
    contiguous = Constraints(
        "npu", "input", ((fourcc_code("XR24"), 0),), memory=MemoryRules(contiguous=True)
    )
    try:
        with service() as served:

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
    finally:
        os.chmod(node, mode)
    assert "ok" in result, result
    got = result["ok"]
    assert isinstance(got, dict)
    assert got["denied"] == errno.EACCES
    assert got["contiguous"] is True
    assert got["exp"] == os.path.basename(node)
    assert got["ok"] is True
