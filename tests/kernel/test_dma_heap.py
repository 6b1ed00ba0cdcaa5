"""dma-heap behaviour on a real kernel, through devalloc's API (after the kernel's dmabuf-heap
selftests: allocate, map, sync, import, zeroing, bad inputs)."""

from __future__ import annotations

import errno
import os

import pytest

from devalloc import limits
from devalloc.errors import InvalidArgumentError, UsageError
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.uapi.dma_heap import DMA_HEAP_VALID_FD_FLAGS

from ..conftest import assert_fd_closed, open_fds
from .conftest import SYSTEM_HEAP

pytestmark = pytest.mark.kernel

MiB = 1 << 20


def test_allocate_map_sync_write_read_back(system_heap: DmaHeap) -> None:
    pattern = bytes(range(256)) * (MiB // 256)
    buf = system_heap.allocate(MiB)
    fd = buf.fileno()
    assert buf.size == MiB
    info = buf.info()
    assert info.exp_name == "system"
    assert info.size == MiB
    with buf.cpu_access("w") as view:
        assert len(view) == MiB
        view[:] = pattern
    with buf.cpu_access("r") as view:
        assert view == pattern
        with pytest.raises(TypeError):
            view[0] = 1  # a read access cannot write
    with buf.cpu_access("rw") as view:
        view[0] = 0xAB
        assert view[0] == 0xAB
    buf.close()
    buf.close()  # idempotent
    assert buf.closed
    assert_fd_closed(fd)


@pytest.mark.parametrize(("size", "count"), [(4096, 32), (MiB, 32)])
def test_buffers_come_back_zeroed(system_heap: DmaHeap, size: int, count: int) -> None:
    bufs = [system_heap.allocate(size) for _ in range(count)]
    for buf in bufs:
        with buf.cpu_access("w") as view:
            view[:] = b"\xff" * size
    fds = [b.fileno() for b in bufs]
    for buf in bufs:
        buf.close()
    for fd in fds:
        assert_fd_closed(fd)
    again = [system_heap.allocate(size) for _ in range(count)]
    try:
        for buf in again:
            with buf.cpu_access("r") as view:
                assert view.tobytes().count(0) == size, "a fresh heap buffer was not zeroed"
    finally:
        for buf in again:
            buf.close()


@pytest.mark.parametrize(
    ("what", "kwargs"),
    [
        ("invalid fd flags", {"length": 4096, "fd_flags": ~DMA_HEAP_VALID_FD_FLAGS & 0xFFFFFFFF}),
        ("invalid heap flags", {"length": 4096, "heap_flags": (1 << 64) - 1}),
        ("zero length", {"length": 0}),
        ("length that wraps when page-aligned", {"length": (1 << 64) - 1}),
    ],
)
def test_bad_inputs_raise_einval_and_leak_nothing(
    system_heap: DmaHeap, what: str, kwargs: dict[str, int]
) -> None:
    before, in_use = open_fds(), limits.in_use()
    # caps raised so that the kernel, not devalloc.limits, judges the wrapping length
    limits.set_limits(max_buffer=1 << 65, max_total=1 << 66)
    try:
        with pytest.raises(InvalidArgumentError) as info:
            system_heap.allocate(**kwargs)
    finally:
        limits.set_limits()
    assert limits.in_use() == in_use  # the refused request's charge was given back
    err = info.value
    assert err.errno == errno.EINVAL, what
    assert err.operation == "DMA_HEAP_IOCTL_ALLOC"
    assert "dma-heap system" in str(err)
    assert err.path == system_heap.path
    assert open_fds() == before


@pytest.mark.parametrize("length", [-1, 1 << 64, 4096.0, True])
def test_values_the_kernel_cannot_take_are_refused_before_it(
    system_heap: DmaHeap, length: object
) -> None:
    with pytest.raises(UsageError, match="length"):
        system_heap.allocate(length)  # type: ignore[arg-type]


def test_read_only_dma_buf_cannot_be_written(system_heap: DmaHeap) -> None:
    with system_heap.allocate(4096, fd_flags=os.O_RDONLY | os.O_CLOEXEC) as buf:
        with buf.cpu_access("r") as view:
            assert view[0] == 0
        with pytest.raises(UsageError, match="read-only"), buf.cpu_access("w"):
            pass


def test_name_and_fdinfo(system_heap: DmaHeap) -> None:
    with system_heap.allocate(8192) as buf:
        buf.set_name("devalloc-test")
        info = buf.info()
        assert info.name == "devalloc-test"
        assert info.size == 8192
        with pytest.raises(UsageError, match="at most 31 bytes"):
            buf.set_name("x" * 32)
        buf.set_name("y" * 31)
        assert buf.info().name == "y" * 31


def test_export_is_the_same_buffer(system_heap: DmaHeap) -> None:
    with system_heap.allocate(4096) as buf:
        with buf.cpu_access("w") as view:
            view[:4] = b"abcd"
        alone = buf.info().count
        exported = buf.export()
        fd = exported.fileno()
        assert os.fstat(fd).st_ino == os.fstat(buf.fileno()).st_ino
        assert buf.info().count == alone + 1  # one more reference on the same dma-buf file
        exported.close()
        assert_fd_closed(fd)
        assert buf.info().count == alone


def test_heap_node_closes(system_heap: DmaHeap) -> None:
    heap = DmaHeap(SYSTEM_HEAP)
    fd = heap.fileno()
    heap.close()
    assert_fd_closed(fd)
