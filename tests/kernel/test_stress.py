"""Stress on the real system heap (/dev/dma_heap/system), shorter than the host's
(tests/test_stress.py, whose checks these are): threads through one registry and one pool, no
cross-talk, no fd left open, the counters exact; then sequential allocations.

Example:
    $ tests/vm/run.sh --kernel stock -- -m kernel tests/kernel/test_stress.py
"""

from __future__ import annotations

import pytest

from devalloc.heaps.dmaheap import DmaHeap
from devalloc.heaps.properties import HeapRequest
from devalloc.heaps.registry import HeapRegistry
from devalloc.pool import BufferPool

from ..conftest import open_fds
from ..test_stress import stress_sequential, stress_threads
from .conftest import SYSTEM_HEAP

pytestmark = pytest.mark.kernel

# The VM runs under TCG (the host's cycles are tens of times slower there): a fifth of the host's
# threads, a quarter of their cycles and a tenth of its sequential cycles (about 35 s in the VM),
# with buffers of 4 pages, so the pool's zeroing and the sync ioctls are on the path.
THREADS = 20
CYCLES = 250
SEQUENTIAL = 10_000
SIZE = 16384
POOL_COUNT = 4


def test_threads_through_one_registry_and_one_pool_on_the_system_heap(
    system_heap: DmaHeap,
) -> None:
    before = open_fds()
    with (
        HeapRegistry.discover() as registry,
        BufferPool(system_heap, SIZE, POOL_COUNT, name="stress") as pool,
    ):
        heap = registry.select(HeapRequest())
        assert registry.properties(heap).name == SYSTEM_HEAP
        stress_threads(registry, heap, pool, threads=THREADS, cycles=CYCLES, size=SIZE)
    assert open_fds() == before


@pytest.mark.usefixtures("system_heap")  # requires the system heap (a failure in the VM)
def test_sequential_cycles_on_the_system_heap_leak_nothing() -> None:
    before = open_fds()
    with HeapRegistry.discover() as registry:
        heap = registry.select(HeapRequest())
        assert registry.properties(heap).name == SYSTEM_HEAP
        stress_sequential(registry, heap, cycles=SEQUENTIAL, size=SIZE)
    assert open_fds() == before
