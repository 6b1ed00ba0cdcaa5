"""BufferPool over real dma-bufs: the system heap (zeroing between owners, eviction of buffers
still exported at an owner change, forgotten buffers, threads) and a carveout."""

from __future__ import annotations

import mmap
import os
import threading

import pytest

from devalloc.buffer import Buffer
from devalloc.heaps.carveout import Carveout
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.heaps.udmabuf import UDMABUF_PATH
from devalloc.pool import BufferPool, PooledBuffer

from ..conftest import assert_fd_closed, require

pytestmark = pytest.mark.kernel

SIZE = 256 << 10


def _fill(buf: PooledBuffer, byte: int) -> None:
    with buf.cpu_access("w") as view:
        view[:] = bytes([byte]) * buf.size


def _is_all(buf: PooledBuffer, byte: int) -> bool:
    with buf.cpu_access("r") as view:
        return view.tobytes() == bytes([byte]) * buf.size


def test_pool_of_system_heap_buffers_zeroes_between_owners(system_heap: DmaHeap) -> None:
    with BufferPool(system_heap, SIZE, 2, name="sys") as pool:
        with pool.acquire(owner="camera") as lent:
            assert lent.info().exp_name == "system"
            assert lent.size == SIZE
            _fill(lent, 0xC4)
            buf = lent.info().inode
        with pool.acquire(owner="camera") as lent:
            assert lent.info().inode == buf
            assert _is_all(lent, 0xC4)
        with pool.acquire(owner="display") as lent:
            assert lent.info().inode == buf
            assert _is_all(lent, 0)
        stats = pool.stats()
        assert (stats.acquires, stats.zeroings, stats.zeroed_bytes, stats.evictions) == (
            3,
            1,
            SIZE,
            0,
        )


def test_a_buffer_still_exported_is_evicted_at_an_owner_change(system_heap: DmaHeap) -> None:
    with BufferPool(system_heap, SIZE, 2, name="leaky") as pool:
        with pool.acquire(owner="a") as lent:
            _fill(lent, 0x11)
            exported = lent.export()
            kept = lent.info().inode
            fd = lent.fileno()
        with pool.acquire(owner="a") as lent:  # same owner: its export may stay
            assert lent.info().inode == kept
        with pool.acquire(owner="b") as lent:  # another owner: never a shared buffer
            assert lent.info().inode != kept
            assert lent.fileno() != fd
            assert _is_all(lent, 0)
        assert_fd_closed(fd)  # the pool closed its own fd of the evicted buffer ...
        with mmap.mmap(exported.fileno(), SIZE) as view:  # ... the export still works
            assert view[:] == b"\x11" * SIZE
        exported.close()
        stats = pool.stats()
        assert (stats.evictions, stats.count) == (1, 1)
        first, second = pool.acquire(owner="c"), pool.acquire(owner="c")  # a replacement
        assert pool.stats().misses == 1
        assert pool.stats().count == 2
        first.release()
        second.release()


def test_a_forgotten_pooled_dmabuf_returns(system_heap: DmaHeap) -> None:
    with BufferPool(system_heap, SIZE, 1, name="gc") as pool:
        lent: PooledBuffer | None = pool.acquire()
        assert lent is not None
        with pytest.warns(ResourceWarning, match="pool gc was never released"):
            del lent
        with pool.acquire(timeout=0) as again:
            assert again.info().exp_name == "system"
        stats = pool.stats()
        assert (stats.releases, stats.evictions, stats.count) == (2, 0, 1)


def test_threads_share_a_system_heap_pool(system_heap: DmaHeap) -> None:
    errors: list[BaseException] = []
    with BufferPool(system_heap, SIZE, 2, grow=True, max_count=4, name="busy") as pool:

        def work(me: int) -> None:
            try:
                for _ in range(20):
                    with pool.acquire(timeout=60, owner=me % 3) as lent, lent.cpu_access("w") as v:
                        v[0] = me
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert not errors, errors
        stats = pool.stats()
        assert stats.acquires == stats.releases == 120
        assert stats.count <= 4


def test_closing_the_pool_closes_its_buffers(system_heap: DmaHeap) -> None:
    pool = BufferPool(system_heap, SIZE, 2)
    lent = pool.acquire()
    fds = [lent.fileno()]
    other = pool.acquire()
    fds.append(other.fileno())
    other.release()
    pool.close()
    assert_fd_closed(fds[1])
    lent.release()
    assert_fd_closed(fds[0])


def test_pool_over_a_carveout_carves_once() -> None:
    require(os.path.exists(UDMABUF_PATH), f"{UDMABUF_PATH} is absent")
    with Carveout(4 * SIZE, name="pool") as carveout:
        with BufferPool(carveout, SIZE, 3, name="carved") as pool:
            for i in range(10):
                with pool.acquire(owner=i % 2) as lent:
                    assert isinstance(lent.buffer, Buffer)
                    assert lent.info().exp_name == "udmabuf"
            assert carveout.stats().carved == 3
            assert pool.stats().zeroings >= 1
        stats = carveout.stats()
        assert (stats.live, stats.free_bytes) == (0, 4 * SIZE)
