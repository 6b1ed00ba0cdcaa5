"""The memfd backend: CPU-only buffers for machines without dma-buf support.

Example:
    >>> with MemfdHeap().allocate(4096) as buf:
    ...     buf.is_dmabuf
    False
    >>> MemfdHeap().properties.device_importable
    False

A memfd is not a dma-buf: no device can import it, and devalloc reports it as "not importable by
devices". The heap registry always lists it last, as the fallback for CPU-only buffers.
"""

from __future__ import annotations

import os

from ..buffer import Buffer
from ..errors import UsageError, error_from_oserror
from .properties import HeapProperties

_PAGE_MASK = os.sysconf("SC_PAGE_SIZE") - 1
_MFD_CLOEXEC = os.MFD_CLOEXEC
_memfd_create = os.memfd_create
_ftruncate = os.ftruncate


class MemfdHeap:
    """Allocates memfd-backed buffers (``memfd_create`` + ``ftruncate``).

    Args:
        dma_bits: the physical reach of system memory, if known (for :attr:`properties`).
    """

    name = "memfd"
    importable_by_devices = False

    def __init__(self, *, dma_bits: int | None = None) -> None:
        self.properties = HeapProperties(
            kind="memfd",
            name="memfd",
            contiguous=False,
            cpu_cache="cached",
            protected=False,
            cpu_mappable=True,
            dma_bits=dma_bits,
            location="system",
            device_importable=False,
        )

    def allocate(self, length: int, *, name: str | None = None) -> Buffer:
        """A zero-filled, CPU-accessible buffer of ``length`` bytes (rounded up to a page).

        Args:
            name: the memfd's name (shown in /proc/PID/fd as ``/memfd:NAME``).
        """
        # The common case (an int length, no name) is checked first: this runs at allocation rate.
        if not (type(length) is int and length > 0 and name is None):
            if not isinstance(length, int) or isinstance(length, bool) or length <= 0:
                raise UsageError(f"memfd: length must be a positive integer, not {length!r}")
            if name is not None and (not isinstance(name, str) or "\0" in name):
                raise UsageError(f"memfd: name must be a string without NUL, not {name!r}")
        size = (length + _PAGE_MASK) & ~_PAGE_MASK
        # memfd_create + ftruncate directly (not Memfd): no seals are needed for CPU-only
        # buffers, and this path runs at allocation rate.
        try:
            fd = _memfd_create(name or "devalloc", _MFD_CLOEXEC)
        except OSError as exc:
            raise error_from_oserror(exc, f"memfd_create for a {size}-byte buffer failed") from exc
        try:
            _ftruncate(fd, size)
        except OSError as exc:
            os.close(fd)
            raise error_from_oserror(exc, f"cannot size a memfd to {size} bytes") from exc
        buf = Buffer._adopt(fd, "memfd", "buffer from memfd", size)
        buf.is_dmabuf = False
        return buf

    def close(self) -> None:
        """Nothing to release (memfd needs no device); present for the heap interface."""
