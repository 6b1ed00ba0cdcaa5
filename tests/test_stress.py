"""Stress on the host (memfd): many threads through one heap registry and one buffer pool, and a
long run of sequential allocations; no cross-talk between threads, no fd left open, every counter
exact at the end.

Example:
    $ .venv/bin/pytest -q tests/test_stress.py

The checks live in :func:`hammer` and :func:`sequential`, which tests/kernel/test_stress.py runs
(shorter) on the real system heap in the test VM.

Cross-talk is looked for three ways: every thread writes its own byte pattern over the whole
buffer and reads it back; a pooled buffer, when a thread acquires it, holds either zeros (fresh,
or zeroed because its last owner was another thread) or that thread's own pattern (the thread
had it last), never another thread's; and no pool buffer is lent to two threads at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from devalloc.buffer import Buffer
from devalloc.heaps.memfd import MemfdHeap
from devalloc.heaps.registry import HeapId, HeapRegistry
from devalloc.pool import BufferPool

from .conftest import open_fds

THREADS = 100
CYCLES = 1000
SEQUENTIAL = 100_000
SIZE = 4096
POOL_COUNT = 16
#: The interpreter's thread switch interval during the threaded runs: 50 times more often than
#: the default 5 ms, so threads are preempted inside acquire, release and cpu_access (with the
#: default, 100 threads on this 2-core machine waited for a buffer 121 times in 100,000
#: acquisitions; with this, about 40,000 times).
SWITCH_INTERVAL = 1e-4


def pattern(thread: int, size: int) -> bytes:
    """Thread ``thread``'s pattern: never all zeros, different for every thread below 65,280."""
    hi, lo = divmod(thread, 255)
    return bytes((hi, lo + 1)) * (size // 2)


@dataclass
class Tally:
    """What the threads saw, merged."""

    cycles: int = 0
    #: pool acquisitions that found zeros (a fresh buffer, or one zeroed for a new owner)
    zero_acquisitions: int = 0
    #: every failure, as text (the test shows them all)
    errors: list[str] | None = None


def mapping_address(view: memoryview) -> int:
    """Where ``view``'s memory is: a pool buffer's identity across lends (the pool maps each
    buffer once, while every lend gets a Buffer object of its own)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def hammer(
    registry: HeapRegistry,
    heap_id: HeapId,
    pool: BufferPool,
    *,
    threads: int,
    cycles: int,
    size: int,
) -> tuple[Tally, set[int]]:
    """Run ``threads`` threads of ``cycles`` cycles each; each cycle allocates a buffer of
    ``size`` bytes from ``heap_id`` of ``registry``, fills it with the thread's pattern, reads it
    back and closes it, then does the same with a buffer acquired from ``pool`` for the thread as
    owner, and releases it.

    Returns:
        The merged tally, and the addresses of the pool buffers that were ever lent.
    """
    tally = Tally(errors=[])
    errors = tally.errors
    assert errors is not None
    lock = threading.Lock()
    held: set[int] = set()  # mapping_address() of the pool buffers lent right now
    seen: set[int] = set()  # mapping_address() of every pool buffer ever lent
    start = threading.Barrier(threads)

    def work(thread: int) -> None:
        mine = pattern(thread, size)
        zeros = bytes(size)
        done = zero_acquisitions = 0
        owner = f"thread-{thread}"
        try:
            start.wait()
            for cycle in range(cycles):
                with registry.allocate(heap_id, size) as buf, buf.cpu_access("rw") as view:
                    if view[:size] != zeros:
                        raise AssertionError(f"cycle {cycle}: a new buffer is not zeroed")
                    view[:size] = mine
                    if view[:size] != mine:
                        raise AssertionError(f"cycle {cycle}: another thread wrote into it")
                lent = pool.acquire(owner=owner)
                key = None
                try:
                    # No view outlives its block (a kept view makes the pool evict the buffer):
                    # every slice below is a temporary.
                    with lent.cpu_access("rw") as view:
                        key = mapping_address(view)
                        with lock:
                            if key in held:
                                raise AssertionError(f"cycle {cycle}: a pool buffer lent twice")
                            held.add(key)
                            seen.add(key)
                        if view[:size] == zeros:
                            zero_acquisitions += 1
                        elif view[:size] != mine:
                            raise AssertionError(
                                f"cycle {cycle}: acquired holding another owner's data "
                                f"({view[:4].hex()}, mine {mine[:4].hex()})"
                            )
                        view[:size] = mine
                        if view[:size] != mine:
                            raise AssertionError(f"cycle {cycle}: another thread wrote into it")
                finally:
                    if key is not None:
                        with lock:
                            held.discard(key)  # before release: another may get it then
                    lent.release()
                done += 1
        except BaseException as exc:  # every failure is reported by the test, not lost
            with lock:
                errors.append(f"thread {thread}: {type(exc).__name__}: {exc}")
            start.abort()
        finally:
            with lock:
                tally.cycles += done
                tally.zero_acquisitions += zero_acquisitions

    workers = [threading.Thread(target=work, args=(i,), name=f"stress-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return tally, seen


def sequential(allocate: Callable[[int], Buffer], *, cycles: int, size: int) -> int:
    """Allocate, write, read back and close ``cycles`` buffers one after the other; returns the
    number of cycles that completed."""
    mine = pattern(7, size)
    for cycle in range(cycles):
        with allocate(size) as buf, buf.cpu_access("rw") as view:
            view[:size] = mine
            if view[:size] != mine:
                raise AssertionError(f"cycle {cycle}: the buffer did not keep what was written")
    return cycles


def check_pool_exact(pool: BufferPool, tally: Tally, seen: set[int], lends: int) -> None:
    """The pool's counters after ``lends`` acquire/release pairs by distinct owners, ``seen``
    distinct buffers and ``tally.zero_acquisitions`` zero-filled acquisitions."""
    stats = pool.stats()
    assert (stats.acquires, stats.releases, stats.in_use) == (lends, lends, 0)
    assert (stats.count, stats.free) == (pool.max_count, pool.max_count)
    assert (stats.misses, stats.evictions, stats.timeouts) == (0, 0, 0)
    assert 1 <= len(seen) <= pool.max_count
    assert stats.peak_in_use <= pool.max_count
    # Each buffer's first lend found it fresh (the heap zeroed it); every other zero-filled lend
    # is one the pool zeroed because the owner changed, and nothing else was zeroed.
    assert stats.zeroings == tally.zero_acquisitions - len(seen)
    assert stats.zeroed_bytes == stats.zeroings * pool.size


@contextlib.contextmanager
def preempting() -> Iterator[None]:
    """Switch threads every :data:`SWITCH_INTERVAL` seconds inside the block."""
    default = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(default)


def stress_threads(
    registry: HeapRegistry,
    heap: HeapId,
    pool: BufferPool,
    *,
    threads: int,
    cycles: int,
    size: int,
) -> None:
    """:func:`hammer` (threads preempted often), then every check: no failure in any thread,
    every cycle done, the pool's counters and the heap's exact."""
    with preempting():
        tally, seen = hammer(registry, heap, pool, threads=threads, cycles=cycles, size=size)
    assert tally.errors == []
    assert tally.cycles == threads * cycles
    check_pool_exact(pool, tally, seen, threads * cycles)
    stats = registry.stats(heap)
    assert (stats.allocations, stats.failures) == (threads * cycles, 0)
    assert (stats.live_buffers, stats.live_bytes) == (0, 0)
    assert size <= stats.peak_bytes <= threads * size


def stress_sequential(registry: HeapRegistry, heap: HeapId, *, cycles: int, size: int) -> None:
    """:func:`sequential` through ``registry``, then its counters: every buffer closed, never
    more than one alive."""
    done = sequential(lambda length: registry.allocate(heap, length), cycles=cycles, size=size)
    assert done == cycles
    stats = registry.stats(heap)
    assert (stats.allocations, stats.live_buffers, stats.live_bytes) == (cycles, 0, 0)
    assert stats.peak_bytes == size


def test_threads_through_one_registry_and_one_pool() -> None:
    before = open_fds()
    with HeapRegistry() as registry, BufferPool(MemfdHeap(), SIZE, POOL_COUNT) as pool:
        heap = registry.add(MemfdHeap())
        stress_threads(registry, heap, pool, threads=THREADS, cycles=CYCLES, size=SIZE)
    assert open_fds() == before


def test_sequential_cycles_leak_nothing() -> None:
    before = open_fds()
    with HeapRegistry() as registry:
        stress_sequential(registry, registry.add(MemfdHeap()), cycles=SEQUENTIAL, size=SIZE)
    assert open_fds() == before
