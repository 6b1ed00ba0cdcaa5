"""Holding a sized combination's CMA buffers at once on a real CMA heap, with an error that says by
how much the area is short when it does not fit (the proof behind ``devalloc size``).

Example:
    >>> from devalloc.heaps.dmaheap import DmaHeap
    >>> from devalloc.sizing import size_files
    >>> sizing = size_files(["examples/scenarios/hd-encode.toml"])
    >>> with DmaHeap("/dev/dma_heap/reserved") as heap:  # doctest: +SKIP
    ...     held = hold_cma_buffers(heap, sizing.worst, sizing.cma_bytes)
    ...     len(held.buffers), held.seconds
    ...     held.close()

I/O lives here only: reading ``/proc/meminfo`` and allocating from the heap.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..buffer import Buffer
from ..errors import OutOfMemoryError
from ..heaps.dmaheap import DmaHeap
from .compute import SizedCombination

__all__ = ["CmaExhaustedError", "HeldBuffers", "cma_meminfo", "hold_cma_buffers"]


class CmaExhaustedError(OutOfMemoryError):
    """The CMA area cannot hold every buffer of a combination at once.

    Attributes:
        needed: the CMA area the combination needs (``devalloc size``'s answer), in bytes.
        total: the area's size (``CmaTotal``), in bytes.
        short: ``needed - total`` (how much larger the area must be; 0 when the model says it
            fits and something else holds part of the area).
        placed: how many buffers were allocated before the refusal.
    """

    def __init__(
        self, message: str, *, needed: int, total: int, placed: int, path: str | None
    ) -> None:
        super().__init__(errno.ENOMEM, message, path=path, operation="DMA_HEAP_IOCTL_ALLOC")
        self.needed = needed
        self.total = total
        self.short = max(needed - total, 0)
        self.placed = placed


def cma_meminfo(path: str | Path = "/proc/meminfo") -> tuple[int, int]:
    """``(CmaTotal, CmaFree)`` in bytes ((0, 0) when the kernel has no CMA)."""
    found = {"CmaTotal": 0, "CmaFree": 0}
    with open(path, encoding="ascii") as lines:
        for line in lines:
            key, _, value = line.partition(":")
            if key in found:
                found[key] = int(value.split()[0]) * 1024
    return found["CmaTotal"], found["CmaFree"]


@dataclass
class HeldBuffers:
    """The buffers of a combination, all held; :meth:`close` releases them.

    Attributes:
        buffers: in allocation order.
        latencies: seconds each allocation took.
    """

    buffers: list[Buffer] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Every allocation together."""
        return sum(self.latencies)

    def close(self) -> None:
        """Close every buffer (idempotent)."""
        while self.buffers:
            self.buffers.pop().close()

    def __enter__(self) -> HeldBuffers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hold_cma_buffers(
    heap: DmaHeap, combination: SizedCombination, needed: int, meminfo: str | Path = "/proc/meminfo"
) -> HeldBuffers:
    """Allocate every CMA buffer of ``combination`` from ``heap`` in the sized order and hold them.

    Raises:
        CmaExhaustedError: the heap refused one (ENOMEM); nothing stays allocated. The message
            names the buffer, what was already placed, the area's size and how much is missing.
    """
    held = HeldBuffers()
    try:
        for index, (pipeline, role, size) in enumerate(combination.cma_order):
            started = time.perf_counter()
            try:
                buffer = heap.allocate(size)
            except OutOfMemoryError:
                total, free = cma_meminfo(meminfo)
                placed = sum(b.size for b in held.buffers)
                short = needed - total
                how = (
                    f"{short} bytes short ({short / (1 << 20):.2f} MiB): the area must be"
                    f" {needed} bytes (devalloc size)"
                    if short > 0
                    else f"the model says {needed} bytes suffice; something else holds part of"
                    f" the area (CmaFree {free})"
                )
                raise CmaExhaustedError(
                    f"the CMA area is exhausted: buffer #{index} of"
                    f" {len(combination.cma_order)} ({size} bytes, {pipeline} {role}) refused"
                    f" after {len(held.buffers)} buffers ({placed} bytes) of"
                    f" {combination.name!r}; CmaTotal {total} bytes, {how}",
                    needed=needed,
                    total=total,
                    placed=len(held.buffers),
                    path=heap.path,
                ) from None
            held.latencies.append(time.perf_counter() - started)
            held.buffers.append(buffer)
    except BaseException:
        held.close()
        raise
    return held
