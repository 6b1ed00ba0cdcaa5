"""How the kernel's CMA heap places buffers in a CMA area, and the smallest area that serves a list
of buffers held at once.

Example:
    >>> model = CmaModel(reserved=0)
    >>> [p.slot_start for p in model.place([3 << 20, 4096, 1 << 20])]
    [0, 3145728, 4194304]
    >>> model.area([3 << 20, 4096, 1 << 20])  # 5 MiB of buffers, rounded up to 2 MiB
    6291456

What the model follows (Linux 6.12, checked in the source):

- ``drivers/dma-buf/heaps/cma_heap.c`` ``cma_heap_allocate``: ``size = PAGE_ALIGN(len)``,
  ``pagecount = size >> PAGE_SHIFT``, ``align = get_order(size)`` capped at
  ``CONFIG_CMA_ALIGNMENT`` (8 by default: 2^8 pages = 1 MiB with 4 KiB pages), then
  ``cma_alloc(cma, pagecount, align, false)``.
- ``mm/cma.c`` ``cma_alloc``/``__cma_alloc``: ``bitmap_find_next_zero_area_off(cma->bitmap,
  bitmap_maxno, start = 0, bitmap_count, mask, offset)``: the first free run of the bitmap that
  starts at a multiple of the alignment (first fit from the start of the area). The default
  area (``kernel/dma/contiguous.c`` ``dma_contiguous_reserve_area`` ->
  ``cma_declare_contiguous(base, size, limit, 0, 0, fixed, "reserved", ...)``) has
  ``order_per_bit`` 0: one bit per page.
- ``include/linux/cma.h`` ``CMA_MIN_ALIGNMENT_BYTES = PAGE_SIZE * pageblock_nr_pages``: the area's
  base and size are multiples of a pageblock (2 MiB on x86-64 and arm64 with 4 KiB pages), which
  is why ``cma=23M`` gives a 24 MiB area; since the base is aligned that far, an alignment of up
  to 1 MiB relative to the area is the same as an absolute one.
- What the kernel took from the area before the application runs is ``reserved`` bytes at the
  start of the area (boot-time allocations come first, so first fit puts them there; measure
  ``CmaTotal - CmaFree`` after boot).

The model assumes the buffers are allocated in the order given and none is freed in between;
``alloc_contig_range`` is assumed to succeed at the first position (when it returns ``-EBUSY``
the kernel tries the next aligned position, which needs more room than the model says).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..errors import UsageError

__all__ = [
    "CMA_ALIGNMENT_ORDER",
    "CMA_GRANULE",
    "PAGE_SIZE",
    "CmaModel",
    "Placement",
    "get_order",
    "page_align",
]

#: Bytes per page (x86-64 and arm64 with 4 KiB pages).
PAGE_SIZE: Final = 4096
#: CONFIG_CMA_ALIGNMENT's default: the most alignment (as a page order) a CMA heap buffer gets.
CMA_ALIGNMENT_ORDER: Final = 8
#: CMA_MIN_ALIGNMENT_BYTES with 4 KiB pages and pageblock_order 9: a CMA area's size step.
CMA_GRANULE: Final = 2 << 20


def page_align(size: int) -> int:
    """``PAGE_ALIGN(size)``: what the CMA and system heaps really allocate for ``size`` bytes."""
    return -(-size // PAGE_SIZE) * PAGE_SIZE


def get_order(size: int) -> int:
    """The kernel's ``get_order(size)``: the smallest order with ``PAGE_SIZE << order >= size``.

    Example:
        >>> get_order(4096), get_order(4097), get_order(3 << 20)
        (0, 1, 10)
    """
    pages = -(-size // PAGE_SIZE)
    return max(pages - 1, 0).bit_length()


@dataclass(frozen=True)
class Placement:
    """Where one buffer lies in the modelled area.

    Attributes:
        index: its position in the allocation order.
        size: the bytes asked for.
        allocated: ``PAGE_ALIGN(size)``.
        align: the slot alignment in bytes (``PAGE_SIZE << min(get_order, CONFIG_CMA_ALIGNMENT)``).
        slot_start: its first byte's offset in the area.
        padding: bytes left free before it to meet the alignment (the alignment waste).
    """

    index: int
    size: int
    allocated: int
    align: int
    slot_start: int
    padding: int

    @property
    def end(self) -> int:
        """The offset just past the buffer."""
        return self.slot_start + self.allocated


@dataclass(frozen=True)
class CmaModel:
    """The CMA heap's placement rule with the parameters of one kernel.

    Attributes:
        reserved: bytes the kernel has taken from the start of the area before the buffers.
        alignment_order: ``CONFIG_CMA_ALIGNMENT`` (the cap on a buffer's alignment order).
        granule: the step of the area's size (``CMA_MIN_ALIGNMENT_BYTES``).
    """

    reserved: int = 0
    alignment_order: int = CMA_ALIGNMENT_ORDER
    granule: int = CMA_GRANULE

    def __post_init__(self) -> None:
        if isinstance(self.reserved, bool) or not isinstance(self.reserved, int):
            raise UsageError(f"the reserved CMA bytes are an integer, not {self.reserved!r}")
        if not 0 <= self.reserved <= 1 << 40:
            raise UsageError(f"the reserved CMA bytes are from 0 to 2^40, not {self.reserved}")
        if isinstance(self.alignment_order, bool) or self.alignment_order not in range(13):
            raise UsageError(
                f"CONFIG_CMA_ALIGNMENT is an order from 0 to 12, not {self.alignment_order!r}"
            )
        if (
            isinstance(self.granule, bool)
            or not isinstance(self.granule, int)
            or self.granule < PAGE_SIZE
            or self.granule & (self.granule - 1)
        ):
            raise UsageError(f"the CMA granule is a power of two of pages, not {self.granule!r}")

    def alignment(self, size: int) -> int:
        """The slot alignment of a ``size``-byte buffer, in bytes."""
        return PAGE_SIZE << min(get_order(page_align(size)), self.alignment_order)

    def place(self, sizes: list[int]) -> list[Placement]:
        """First fit with alignment, in order, after ``reserved`` bytes at the start.

        Raises:
            UsageError: a size that is not a positive integer.
        """
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise UsageError(f"a buffer size is a positive integer, not {size!r}")
        taken: list[tuple[int, int]] = []  # (start, end), sorted, non-overlapping
        if self.reserved:
            taken.append((0, page_align(self.reserved)))
        placed: list[Placement] = []
        for index, size in enumerate(sizes):
            need = page_align(size)
            align = self.alignment(size)
            start = 0
            previous_end = 0
            slot = None
            for i, (low, high) in enumerate(taken):
                start = -(-start // align) * align
                if start + need <= low:
                    slot = (i, start, previous_end)
                    break
                start = max(start, high)
                previous_end = high
            if slot is None:
                start = -(-start // align) * align
                slot = (len(taken), start, previous_end)
            i, start, previous_end = slot
            taken.insert(i, (start, start + need))
            placed.append(Placement(index, size, need, align, start, start - previous_end))
        return placed

    def area(self, sizes: list[int]) -> int:
        """The smallest area (a multiple of the granule) where every buffer fits at once.

        With first fit and no frees, a larger area places every buffer at the same offset, and
        one granule less leaves the buffer that ends last without room.
        """
        placed = self.place(sizes)
        end = max([page_align(self.reserved), *(p.end for p in placed)])
        return max(-(-end // self.granule) * self.granule, self.granule)
