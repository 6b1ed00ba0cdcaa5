"""The heap registry on a real kernel: discovery (dma-heap, udmabuf, the vgem device heap, memfd),
allocation from every backend, permissions, udmabuf's size limit, GEM handles after export."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator

import pytest

from devalloc.drm import DrmDevice
from devalloc.errors import InvalidArgumentError, PermissionDeniedError, UsageError
from devalloc.heaps.device import DeviceHeap
from devalloc.heaps.properties import HeapProperties, HeapRequest
from devalloc.heaps.registry import HeapId, HeapRegistry, NoHeapError
from devalloc.heaps.udmabuf import (
    SIZE_LIMIT_PARAM,
    Memfd,
    UdmabufDevice,
    UdmabufHeap,
    size_limit_bytes,
)

from ..conftest import open_fds, require
from .conftest import SYSTEM_HEAP, _vgem_node

pytestmark = pytest.mark.kernel

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
NOBODY = 65534


@pytest.fixture
def registry() -> Iterator[HeapRegistry]:
    require(os.path.exists(SYSTEM_HEAP), f"{SYSTEM_HEAP} is absent (no dma-heap support here)")
    require(os.path.exists("/dev/udmabuf"), "/dev/udmabuf is absent")
    with HeapRegistry.discover() as reg:
        yield reg


def by_kind(reg: HeapRegistry, kind: str) -> list[tuple[HeapId, HeapProperties]]:
    return [(h, p) for h, p in reg.heaps() if p.kind == kind]


@contextlib.contextmanager
def as_nobody() -> Iterator[None]:
    """Drop to an ordinary user for the block (as root, file modes would not apply)."""
    require(os.geteuid() == 0, "needs root to change the effective user")
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_discovery_finds_every_kind_in_order(registry: HeapRegistry) -> None:
    heaps = registry.heaps()
    kinds = [p.kind for _, p in heaps]
    assert kinds[0] == "dma-heap"
    assert kinds[-1] == "memfd"
    assert "udmabuf" in kinds
    assert "device" in kinds
    assert kinds == sorted(kinds, key=["dma-heap", "udmabuf", "device", "memfd"].index)
    system = next(p for _, p in heaps if p.name == SYSTEM_HEAP)
    assert (system.contiguous, system.cpu_cache, system.protected) == (False, "cached", False)
    assert system.accessible
    # as root /proc/iomem shows the RAM's addresses: the reach of any page of it
    assert system.dma_bits is not None
    assert 20 < system.dma_bits <= 48
    [(_, udmabuf)] = by_kind(registry, "udmabuf")
    assert udmabuf.max_size == size_limit_bytes() == 64 * MiB
    devices = by_kind(registry, "device")
    card = _vgem_node("card")
    vgem = next(p for _, p in devices if p.name == f"{card} (vgem)")
    assert (vgem.location, vgem.contiguous, vgem.cpu_cache) == ("system", None, "write-combined")
    assert not any("renderD" in p.name for _, p in devices)  # render nodes refuse dumb buffers
    assert registry.select(HeapRequest()) == heaps[0][0]


@pytest.mark.parametrize(
    ("kind", "exp_name"), [("dma-heap", "system"), ("udmabuf", "udmabuf"), ("device", "drm")]
)
def test_every_backend_allocates_named_shared_buffers(
    registry: HeapRegistry, kind: str, exp_name: str
) -> None:
    heap_id, props = by_kind(registry, kind)[0]
    pattern = bytes(range(256)) * (3 * PAGE // 256)
    with registry.allocate(heap_id, 3 * PAGE, name=f"{kind}-test") as buf:
        assert buf.size >= 3 * PAGE
        info = buf.info()
        assert (info.exp_name, info.name, info.size) == (exp_name, f"{kind}-test", buf.size)
        with buf.cpu_access("w") as view:
            view[: len(pattern)] = pattern
        with buf.cpu_access("r") as view:
            assert bytes(view[: len(pattern)]) == pattern
        assert registry.stats(heap_id).live_bytes == buf.size
    assert registry.stats(heap_id).live_buffers == 0
    assert props.device_importable


def test_a_device_heap_buffer_imports_into_another_device(registry: HeapRegistry) -> None:
    heap_id, _ = by_kind(registry, "device")[0]
    with (
        registry.allocate(heap_id, MiB) as buf,
        DrmDevice(_vgem_node("renderD")) as other,
        other.import_buffer(buf) as handle,
    ):
        assert handle.handle > 0


def test_the_device_heap_keeps_no_gem_handle() -> None:
    with DeviceHeap(_vgem_node("card")) as heap:
        bufs = [heap.allocate(size) for size in (1, PAGE, 5 * MiB + 1)]
        try:
            assert [b.size for b in bufs] == [PAGE, PAGE, 5 * MiB + PAGE]
            # Handles are the lowest free ids from 1: none remains after GEM_CLOSE.
            assert not any(heap.device.handle_exists(h) for h in range(1, 17))
            # The check can fail: a dumb buffer not yet released is found.
            with heap.device.create_dumb(16, 16, 32) as dumb:
                assert heap.device.handle_exists(dumb.handle)
        finally:
            for b in bufs:
                b.close()


def test_an_inaccessible_machine_falls_back_to_memfd() -> None:
    require(os.path.exists(SYSTEM_HEAP), f"{SYSTEM_HEAP} is absent")
    for node in (SYSTEM_HEAP, "/dev/udmabuf", _vgem_node("card")):
        assert not os.stat(node).st_mode & 0o007, f"{node} is open to everyone"
    with as_nobody():
        reg = HeapRegistry.discover()
    with reg:
        heaps = reg.heaps()
        inaccessible = [p for _, p in heaps if not p.accessible]
        assert {p.kind for p in inaccessible} == {"dma-heap", "udmabuf", "device"}
        assert all("EACCES" in p.reason for p in inaccessible)
        with pytest.raises(NoHeapError) as info:
            reg.select(HeapRequest())
        assert f"{SYSTEM_HEAP} is not accessible" in str(info.value)
        assert "memfd is not importable by devices" in str(info.value)
        memfd = reg.select(HeapRequest(device_importable=False))
        assert reg.properties(memfd).kind == "memfd"
        with pytest.raises(PermissionDeniedError):
            reg.allocate(heaps[0][0], PAGE)


def test_selection_moves_on_to_udmabuf_when_the_heap_is_root_only() -> None:
    require(os.path.exists(SYSTEM_HEAP), f"{SYSTEM_HEAP} is absent")
    with tempfile.TemporaryDirectory() as root:
        os.chmod(root, 0o755)
        os.mkdir(os.path.join(root, "dma_heap"), 0o755)
        heap_node = os.path.join(root, "dma_heap", "system")
        udmabuf_node = os.path.join(root, "udmabuf")
        os.mknod(heap_node, stat.S_IFCHR | 0o600, os.stat(SYSTEM_HEAP).st_rdev)
        os.mknod(udmabuf_node, stat.S_IFCHR | 0o600, os.stat("/dev/udmabuf").st_rdev)
        os.chown(udmabuf_node, NOBODY, NOBODY)
        with as_nobody():
            reg = HeapRegistry.discover(dev=root)
            try:
                chosen = reg.select(HeapRequest())
                assert reg.properties(chosen).kind == "udmabuf"
                with reg.allocate(chosen, MiB) as buf, buf.cpu_access("rw") as view:
                    view[-1] = 0x5A
                    assert buf.info().exp_name == "udmabuf"
            finally:
                reg.close()


def test_udmabuf_size_limit() -> None:
    require(os.path.exists("/dev/udmabuf"), "/dev/udmabuf is absent")
    require(size_limit_bytes() == 64 * MiB, f"{SIZE_LIMIT_PARAM} is not the default 64")
    # The kernel's own check, at the default limit: 65 MiB is EINVAL.
    with UdmabufDevice() as dev, Memfd(65 * MiB) as mfd:
        before = open_fds()
        with pytest.raises(InvalidArgumentError) as info:
            dev.create(mfd, 0, 65 * MiB)
        assert info.value.operation == "UDMABUF_CREATE"
        assert open_fds() == before
    # The heap refuses it first, clearly; at the limit it works.
    with UdmabufHeap() as heap:
        before = open_fds()
        with pytest.raises(UsageError, match="per-buffer limit of 64 MiB"):
            heap.allocate(64 * MiB + 1)
        assert open_fds() == before
        with heap.allocate(64 * MiB) as buf:
            assert buf.info().size == 64 * MiB


def test_the_udmabuf_heap_keeps_one_fd_per_buffer() -> None:
    require(os.path.exists("/dev/udmabuf"), "/dev/udmabuf is absent")
    with UdmabufHeap() as heap:
        before = open_fds()
        buf = heap.allocate(PAGE + 1)
        # The memfd is closed at once (the dma-buf holds its pages): one new fd, the buffer's.
        assert open_fds() - before == {buf.fileno()}
        assert buf.size == 2 * PAGE
        with buf.cpu_access("rw") as view:
            view[:] = b"\x11" * len(view)
        with buf.cpu_access("r") as view:
            assert view.tobytes() == b"\x11" * 2 * PAGE
        buf.close()
        assert open_fds() == before


def test_contiguous_requests_get_cma_or_an_explanation(registry: HeapRegistry) -> None:
    """The full test kernel has the CMA heap ("reserved"); the stock one has none."""
    cma = [h for h, p in registry.heaps() if p.contiguous is True and p.accessible]
    request = HeapRequest(contiguous=True)
    if not cma:
        with pytest.raises(NoHeapError) as info:
            registry.select(request)
        message = str(info.value)
        assert message.startswith("no accessible contiguous, device-importable, CPU rw heap:")
        assert f"{SYSTEM_HEAP} is scattered" in message
        assert "udmabuf is scattered" in message
        assert "(vgem) has unknown contiguity" in message
        return
    chosen = registry.select(request)
    assert chosen == cma[0]
    assert registry.select(HeapRequest()) != chosen  # ordinary requests leave CMA alone
    props = registry.properties(chosen)
    with registry.allocate(chosen, 4 * MiB) as buf:
        assert buf.info().exp_name == os.path.basename(props.name)
        with buf.cpu_access("rw") as view:
            view[-1] = 7
