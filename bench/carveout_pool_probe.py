"""Probe: carveout carve latency by size, pool acquire+release vs a fresh dma-heap allocation, and
the cost of zeroing. Prints one JSON object; each function is importable on its own.

Example (as root, on a machine or VM with /dev/udmabuf and /dev/dma_heap/system)::

    python bench/carveout_pool_probe.py --repeat 50
    python bench/carveout_pool_probe.py --hugetlb    # needs free 2 MiB huge pages

Numbers are medians over ``repeat`` runs (``*_min_ns``: the fastest run, the best estimate on a
loaded machine), in nanoseconds, from ``time.perf_counter_ns``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence

from devalloc.heaps.carveout import Carveout, fill_zero
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.heaps.udmabuf import Memfd, UdmabufDevice
from devalloc.pool import BufferPool

SYSTEM_HEAP = "/dev/dma_heap/system"
DEFAULT_SIZES = (4096, 64 << 10, 1 << 20, 2 << 20, 8 << 20)


def _median_ns(run: Callable[[], int], repeat: int) -> int:
    return int(statistics.median(run() for _ in range(repeat)))


def carve_latency(
    sizes: Sequence[int] = DEFAULT_SIZES, repeat: int = 30, *, hugetlb: bool = False, batch: int = 3
) -> dict[str, dict[str, int]]:
    """Per size: the median and fastest time of ``Carveout.allocate`` (carve), the median time of
    closing the buffer (release: the kernel reference check, zeroing, the free-list update) and
    the mean time of the zeroing alone (from the carveout's stats).

    Each round carves ``batch`` buffers back to back, then closes them, so a carve is not timed
    right after the previous buffer's zeroing swept the caches. Two warm-up rounds per size."""
    results: dict[str, dict[str, int]] = {}
    with Carveout(batch * max(sizes), hugetlb=hugetlb, name="probe") as carveout:
        for size in sizes:
            carve: list[int] = []
            release: list[int] = []
            zero_ns = 0
            for round_ in range(repeat + 2):
                bufs = []
                times = []
                for _ in range(batch):
                    t0 = time.perf_counter_ns()
                    bufs.append(carveout.allocate(size))
                    times.append(time.perf_counter_ns() - t0)
                zero_before = carveout.stats().zero_ns
                closes = []
                for buf in bufs:
                    t0 = time.perf_counter_ns()
                    buf.close()
                    closes.append(time.perf_counter_ns() - t0)
                if round_ >= 2:
                    carve += times
                    release += closes
                    zero_ns += carveout.stats().zero_ns - zero_before
            results[str(size)] = {
                "carve_ns": int(statistics.median(carve)),
                "carve_min_ns": min(carve),
                "release_ns": int(statistics.median(release)),
                "zero_ns": zero_ns // len(release),
            }
    return results


def udmabuf_latency(sizes: Sequence[int] = DEFAULT_SIZES, repeat: int = 30) -> dict[str, int]:
    """Per size (and ``SIZE_min``): the median (fastest) time of UDMABUF_CREATE alone
    (``UdmabufDevice.create``, then close) over a memfd whose pages already exist: the kernel's
    share of a carve."""
    results: dict[str, int] = {}
    with Memfd(max(sizes)) as memfd, UdmabufDevice() as device:
        os.posix_fallocate(memfd.fileno(), 0, max(sizes))
        for size in sizes:
            times: list[int] = []
            for _ in range(repeat + 2):
                t0 = time.perf_counter_ns()
                buf = device.create(memfd, 0, size)
                times.append(time.perf_counter_ns() - t0)
                buf.close()
            results[str(size)] = int(statistics.median(times[2:]))
            results[f"{size}_min"] = min(times[2:])
    return results


def pool_vs_heap(
    size: int = 1 << 20, repeat: int = 200, heap_path: str = SYSTEM_HEAP
) -> dict[str, int]:
    """Median ns of: a fresh dma-heap allocate+close; a pool acquire+release by one owner (no
    zeroing); by alternating owners (zeroed on every handover)."""
    with DmaHeap(heap_path) as heap:

        def fresh() -> int:
            t0 = time.perf_counter_ns()
            heap.allocate(size).close()
            return time.perf_counter_ns() - t0

        result = {"size": size, "heap_alloc_close_ns": _median_ns(fresh, repeat)}
        with BufferPool(heap, size, 2, name="probe") as pool:

            def same_owner() -> int:
                t0 = time.perf_counter_ns()
                pool.acquire(owner="me").release()
                return time.perf_counter_ns() - t0

            result["pool_same_owner_ns"] = _median_ns(same_owner, repeat)
            owners = iter(range(1 << 62))

            def new_owner() -> int:
                t0 = time.perf_counter_ns()
                pool.acquire(owner=next(owners)).release()
                return time.perf_counter_ns() - t0

            result["pool_owner_change_ns"] = _median_ns(new_owner, repeat)
    return result


def zero_cost(
    size: int = 8 << 20, repeat: int = 20, heap_path: str = SYSTEM_HEAP
) -> dict[str, int]:
    """Median ns to zero a ``size``-byte dma-heap buffer through ``cpu_access("w")`` (the pool's
    way, sync ioctls included), and per MiB."""
    with DmaHeap(heap_path) as heap, heap.allocate(size) as buf:

        def zero() -> int:
            t0 = time.perf_counter_ns()
            with buf.cpu_access("w") as view:
                fill_zero(view)
            return time.perf_counter_ns() - t0

        zero()  # first touch maps and faults the pages: not what reuse costs
        ns = _median_ns(zero, repeat)
    return {"size": size, "zero_ns": ns, "zero_ns_per_mib": ns * (1 << 20) // size}


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    """Run every probe and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--hugetlb", action="store_true", help="also probe a hugetlb carveout")
    args = parser.parse_args(argv)
    report: dict[str, object] = {
        "carve_shmem": carve_latency(repeat=args.repeat),
        "udmabuf_create": udmabuf_latency(repeat=args.repeat),
        "pool_vs_heap": pool_vs_heap(repeat=args.repeat * 4),
        "zero": zero_cost(repeat=args.repeat),
    }
    if args.hugetlb:
        report["carve_hugetlb"] = carve_latency(repeat=args.repeat, hugetlb=True)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
