"""The libdmabufheap test suite's behaviours against devalloc's heap registry, on a real kernel:
concurrent allocation, repeated allocation, zeroing, CPU sync modes, no leaks, bad inputs."""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from devalloc.buffer import Buffer
from devalloc.errors import (
    AllocationLimitError,
    BadFileDescriptorError,
    ClosedResourceError,
    DevallocError,
    UsageError,
)
from devalloc.heaps.properties import HeapProperties, HeapRequest
from devalloc.heaps.registry import HeapId, HeapRegistry

from ..conftest import assert_fd_closed, open_fds, require
from .conftest import SYSTEM_HEAP

pytestmark = pytest.mark.kernel

KiB = 1 << 10
MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def registry() -> Iterator[HeapRegistry]:
    require(os.path.exists(SYSTEM_HEAP), f"{SYSTEM_HEAP} is absent (no dma-heap support here)")
    with HeapRegistry.discover() as reg:
        yield reg


def cpu_heaps(reg: HeapRegistry) -> list[tuple[HeapId, HeapProperties]]:
    """The accessible dma-heaps with a known CPU cache mode: cached and uncached ones."""
    heaps = [
        (h, p)
        for h, p in reg.heaps()
        if p.kind == "dma-heap"
        and p.accessible
        and p.cpu_cache in ("cached", "write-combined")
        and p.cpu_mappable
    ]
    require(bool(heaps), "no accessible CPU-mappable dma-heap")
    return heaps


@pytest.fixture
def system(registry: HeapRegistry) -> HeapId:
    chosen = registry.select(HeapRequest())
    assert registry.properties(chosen).name == SYSTEM_HEAP
    return chosen


def _hammer(registry: HeapRegistry, heap_id: HeapId, threads: int) -> list[BaseException]:
    """``threads`` threads at once: allocate 4 KiB, map, sync RW, write, read back, close."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            start.wait()
            with registry.allocate(heap_id, 4 * KiB) as buf:
                with buf.cpu_access("rw") as view:
                    view[:] = bytes([index]) * len(view)
                with buf.cpu_access("r") as view:
                    assert view.tobytes() == bytes([index]) * 4 * KiB
        except BaseException as exc:  # pragma: no cover - reported by the caller
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return errors


def test_100_threads_allocate_map_sync_and_close(registry: HeapRegistry) -> None:
    for heap_id, props in cpu_heaps(registry):
        errors = _hammer(registry, heap_id, 100)
        assert not errors, f"{props.name}: {errors[:3]}"
        snap = registry.stats(heap_id)
        assert (snap.allocations, snap.live_buffers, snap.failures) == (100, 0, 0), props.name


@pytest.mark.parametrize("size", [4 * KiB, 64 * KiB, MiB, 2 * MiB])
def test_1024_repeated_allocations(registry: HeapRegistry, system: HeapId, size: int) -> None:
    before = open_fds()
    for _ in range(1024):
        buf = registry.allocate(system, size)
        assert buf.size == size
        buf.close()
    assert open_fds() == before
    snap = registry.stats(system)
    assert (snap.allocations, snap.live_bytes, snap.peak_bytes) == (1024, 0, size)


def test_freed_buffers_come_back_zeroed(registry: HeapRegistry, system: HeapId) -> None:
    for heap_id, _ in cpu_heaps(registry):
        bufs = [registry.allocate(heap_id, 64 * KiB) for _ in range(16)]
        for buf in bufs:
            with buf.cpu_access("w") as view:
                view[:] = b"\xaa" * len(view)
            with buf.cpu_access("r") as view:
                assert view.tobytes().count(0xAA) == 64 * KiB
        for buf in bufs:
            buf.close()
        with registry.allocate(heap_id, 64 * KiB) as fresh, fresh.cpu_access("r") as view:
            assert view.tobytes().count(0) == 64 * KiB, "the next allocation was not zeroed"


@pytest.mark.parametrize("mode", ["r", "w", "rw"])
def test_cpu_sync_read_write_and_read_write(
    registry: HeapRegistry, system: HeapId, mode: str
) -> None:
    with registry.allocate(system, 4 * KiB) as buf:
        with buf.cpu_access(mode) as view:  # type: ignore[arg-type]
            assert view.readonly == (mode == "r")
            if mode != "r":
                view[0] = 0x42
        with buf.cpu_access("r") as view:
            assert view[0] == (0 if mode == "r" else 0x42)


def _statm_rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE


def test_no_fd_or_memory_stays_after_many_cycles(registry: HeapRegistry, system: HeapId) -> None:
    """2 000 alloc/map/write/close cycles of 64 KiB from the system heap after a 200-cycle
    warm-up: the fd set is unchanged and RSS grows by less than 1 MiB. A leaked mapping would
    add 64 KiB a cycle (125 MiB); a leaked Buffer, hundreds of bytes a cycle."""

    def cycle() -> None:
        buf = registry.allocate(system, 64 * KiB)
        with buf.cpu_access("w") as view:
            view[::PAGE] = b"\x01" * (64 * KiB // PAGE)
        buf.close()

    for _ in range(200):
        cycle()
    gc.collect()
    fds = open_fds()
    rss = _statm_rss()
    for _ in range(2000):
        cycle()
    gc.collect()
    assert open_fds() == fds
    grown = _statm_rss() - rss
    assert grown < MiB, f"RSS grew by {grown} bytes"
    assert registry.stats(system).live_buffers == 0


def test_garbage_collected_buffers_close_their_fds(registry: HeapRegistry, system: HeapId) -> None:
    buf: Buffer | None = registry.allocate(system, 4 * KiB)
    assert buf is not None
    with buf.cpu_access("w") as view:
        view[0] = 1
    fd = buf.fileno()
    assert registry.stats(system).live_buffers == 1
    with pytest.warns(ResourceWarning, match="unclosed buffer from dma-heap system"):
        del buf  # the last reference: the finalizer runs now
    assert_fd_closed(fd)
    gc.collect()
    assert registry.stats(system).live_buffers == 0


def _expect(error: type[DevallocError], match: str, call: Callable[[], object]) -> None:
    before = open_fds()
    with pytest.raises(error, match=match):
        call()
    assert open_fds() == before


@pytest.mark.parametrize("size", [0, -1, 4096.0, True, "4096", None])
def test_bad_sizes(registry: HeapRegistry, system: HeapId, size: object) -> None:
    bad: int = size  # type: ignore[assignment]
    _expect(UsageError, "size must be a positive integer", lambda: registry.allocate(system, bad))
    assert registry.stats(system).failures == 0


def test_above_the_cap(system: HeapId, registry: HeapRegistry) -> None:
    too_big = registry.cap + 1
    # The registry's default cap is devalloc's per-buffer cap, which the heap itself enforces.
    _expect(
        AllocationLimitError,
        "is above devalloc's per-buffer cap",
        lambda: registry.allocate(system, too_big),
    )
    with HeapRegistry.discover(cap=MiB) as small:
        heap = small.select(HeapRequest())
        _expect(UsageError, f"cap of {MiB} bytes", lambda: small.allocate(heap, MiB + 1))
        small.allocate(heap, MiB).close()


def test_unknown_and_closed_heap_ids(registry: HeapRegistry, system: HeapId) -> None:
    other = HeapRegistry.discover()
    foreign = other.select(HeapRequest())
    _expect(UsageError, "another heap registry", lambda: registry.allocate(foreign, PAGE))
    other.close()
    _expect(ClosedResourceError, "closed", lambda: other.allocate(foreign, PAGE))
    name: HeapId = "system"  # type: ignore[assignment]
    _expect(UsageError, "not a HeapId", lambda: registry.allocate(name, PAGE))


def test_from_fd_refuses_what_is_not_a_dma_buf() -> None:
    r, w = os.pipe()
    try:
        _expect(UsageError, "is not a dma-buf", lambda: Buffer.from_fd(r))
    finally:
        os.close(r)
        os.close(w)
    with open(sys.executable, "rb") as f:
        _expect(UsageError, "is not a dma-buf", lambda: Buffer.from_fd(f))
    _expect(BadFileDescriptorError, "cannot import fd", lambda: Buffer.from_fd(r))


def test_a_closed_buffer_and_sync_after_close(registry: HeapRegistry, system: HeapId) -> None:
    buf = registry.allocate(system, PAGE)
    with buf.cpu_access("rw"):
        pass  # mapped once
    buf.close()
    _expect(ClosedResourceError, "closed", lambda: buf.cpu_access("rw").__enter__())
    _expect(ClosedResourceError, "closed", buf.export)
    _expect(ClosedResourceError, "closed", lambda: buf.set_name("late"))


def test_name_too_long(registry: HeapRegistry, system: HeapId) -> None:
    _expect(UsageError, "at most 31 bytes", lambda: registry.allocate(system, PAGE, name="n" * 32))
    with registry.allocate(system, PAGE, name="n" * 31) as buf:
        assert buf.info().name == "n" * 31
        _expect(UsageError, "at most 31 bytes", lambda: buf.set_name("m" * 32))
    assert registry.stats(system).allocations == 1


def test_mapping_a_protected_buffer_is_refused(registry: HeapRegistry, system: HeapId) -> None:
    with registry.allocate(system, PAGE) as buf, buf.export() as exported:
        protected = Buffer.from_fd(exported, protected=True)
        _expect(UsageError, "protected memory", lambda: protected.cpu_access("r").__enter__())
        assert protected._map is None
        protected.close()
