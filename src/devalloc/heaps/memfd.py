"""The memfd backend: CPU-only buffers for machines without dma-buf support.

Example:
    >>> with MemfdHeap().allocate(4096) as buf:
    ...     buf.is_dmabuf
    False

A memfd is not a dma-buf: no device can import it, and devalloc reports it as such.
"""

from __future__ import annotations

import os

from ..buffer import Buffer
from ..errors import UsageError
from .udmabuf import Memfd


class MemfdHeap:
    """Allocates memfd-backed buffers (``memfd_create`` + ``ftruncate``)."""

    name = "memfd"
    importable_by_devices = False

    def allocate(self, length: int) -> Buffer:
        """A zero-filled, CPU-accessible buffer of ``length`` bytes (rounded up to a page)."""
        if not isinstance(length, int) or isinstance(length, bool) or length <= 0:
            raise UsageError(f"memfd: length must be a positive integer, not {length!r}")
        page = os.sysconf("SC_PAGE_SIZE")
        size = -(-length // page) * page
        return Buffer(Memfd(size).detach(), exporter="memfd", dmabuf=False, size=size)
