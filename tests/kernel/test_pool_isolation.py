"""Pool isolation over real dma-bufs (the system heap): a released lend's Buffer and views are
dead, a view kept past its lend or an fd still held elsewhere evicts the buffer at an owner
change, and an fd handed out but closed again does not (issue 12, defect 2)."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import pytest

from devalloc.errors import ClosedResourceError
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.pool import BufferPool

from ..conftest import assert_fd_closed
from ..test_pool_isolation import B_DATA, SECRET, _write, view_kept_past_its_block_evicts

pytestmark = pytest.mark.kernel

SIZE = 64 << 10


@pytest.fixture
def pool(system_heap: DmaHeap) -> Iterator[BufferPool]:
    with BufferPool(system_heap, SIZE, 1, grow=True, max_count=2, name="iso") as p:
        yield p


def test_a_stale_buffer_cannot_read_the_next_owners_data(pool: BufferPool) -> None:
    lent = pool.acquire(owner="A")
    _write(lent, SECRET)
    stale = lent.buffer
    lent.release()
    with pool.acquire(owner="B") as other:
        _write(other, B_DATA)
        with pytest.raises(ClosedResourceError, match="released to its pool"):
            stale.cpu_access("r").__enter__()
        with pytest.raises(ClosedResourceError):
            stale.export()
    stats = pool.stats()
    assert (stats.evictions, stats.zeroings, stats.count) == (0, 1, 1)


def test_an_escaped_view_evicts_the_dmabuf(pool: BufferPool) -> None:
    view_kept_past_its_block_evicts(pool)


def test_an_fd_still_held_evicts_one_closed_again_does_not(system_heap: DmaHeap) -> None:
    with BufferPool(system_heap, SIZE, 2, name="fds") as pool:  # no replacement reuses the fd
        _fd_still_held_evicts(pool)


def _fd_still_held_evicts(pool: BufferPool) -> None:
    lent = pool.acquire(owner="A")
    inode = lent.info().inode
    lent.export().close()  # handed out, then given back: the kernel's count is the pool's again
    lent.release()
    with pool.acquire(owner="B") as other:
        assert other.info().inode == inode
        exported = other.export()  # still open at the next owner change
        fd = other.fileno()
    with pool.acquire(owner="C") as third:
        assert third.info().inode != inode
    assert_fd_closed(fd)
    with mmap.mmap(exported.fileno(), SIZE) as view:  # the export keeps the evicted buffer
        assert view[:4] == bytes(4)
    exported.close()
    assert pool.stats().evictions == 1


def test_a_device_style_import_through_a_dup_evicts(pool: BufferPool) -> None:
    lent = pool.acquire(owner="A")
    inode = lent.info().inode
    dup = os.dup(lent.fileno())  # as a device import or an fd passed to another process would
    lent.release()
    try:
        with pool.acquire(owner="B") as other:
            assert other.info().inode != inode
    finally:
        os.close(dup)
    assert pool.stats().evictions == 1
