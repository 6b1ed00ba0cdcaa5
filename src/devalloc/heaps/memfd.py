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

from .. import limits as _limits
from ..buffer import Buffer
from ..errors import DevallocError, UsageError, error_from_oserror
from ..limits import CLOSE_HOOKS as _CLOSE_HOOKS
from ..limits import SLOT as _SLOT
from ..limits import admit as _admit
from ..limits import big as _big
from ..limits import charges as _charges
from ..limits import discharge as _discharge
from ..limits import log_big as _log_big
from ..limits import log_charge as _log_charge
from .properties import HeapProperties

_PAGE_MASK = os.sysconf("SC_PAGE_SIZE") - 1
_PAGE_BASE = ~_PAGE_MASK
_MAX_LENGTH = (1 << 63) - _PAGE_MASK  # the largest file size (off_t), rounded down to a page
_MFD_CLOEXEC = os.MFD_CLOEXEC
_memfd_create = os.memfd_create
_ftruncate = os.ftruncate
_new_buffer = object.__new__
_DEFAULT_NAME = b"devalloc"  # bytes: os.memfd_create takes them as they are (no encoding)


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

        Raises:
            UsageError: a bad length or name.
            AllocationLimitError: above a cap of :mod:`devalloc.limits`.
            KernelError: what memfd_create or ftruncate said.
        """
        # The common case (an int length, no name) is checked first: this runs at allocation rate.
        if not (type(length) is int and 0 < length < _MAX_LENGTH and name is None):
            if not isinstance(length, int) or isinstance(length, bool) or length <= 0:
                raise UsageError(f"memfd: length must be a positive integer, not {length!r}")
            if length >= _MAX_LENGTH:
                raise UsageError(
                    f"memfd: {length} bytes is beyond what a file can hold (2**63 - 1 bytes)"
                )
            if name is not None and (not isinstance(name, str) or "\0" in name):
                raise UsageError(f"memfd: name must be a string without NUL, not {name!r}")
        size = (length + _PAGE_MASK) & _PAGE_BASE
        # devalloc.limits' charge inlined (see its module): logged as the try's first step, so any
        # failure below (a signal's exception included) finds it logged and returns it. The
        # buffer is built here, in Buffer._adopt's order, with no call after its fd is stored:
        # from there on nothing can raise, and the buffer owns the fd and the charge.
        fd = -1
        try:
            if size <= _SLOT:
                _log_charge(size)
                if len(_charges) > _limits.bound or size > _limits.fast_max:
                    _admit(size, "memfd")
            else:  # a big charge, on a bound of its own: memfd's cost does not grow with size
                _log_big(size)
                if len(_big) > _limits.big_bound or size > _limits.big_max:
                    _admit(size, "memfd")
            # memfd_create + ftruncate directly (not Memfd): no seals are needed for CPU-only
            # buffers, and this path runs at allocation rate.
            # (its argument converter, FSConverter, takes bytes as they are: typeshed says str)
            fd = _memfd_create(name or _DEFAULT_NAME, _MFD_CLOEXEC)  # type: ignore[arg-type]
            _ftruncate(fd, size)
            buf = _new_buffer(Buffer)
            buf.description = "buffer from memfd"
            buf.exporter = "memfd"
            buf.size = size
            buf._fd = fd
            buf.is_dmabuf = False
            buf._close_hooks = _CLOSE_HOOKS  # discharge the limits' total on close
        except BaseException as exc:
            _discharge(size)  # first: a signal's exception comes only after a call
            if fd >= 0:
                os.close(fd)
            if isinstance(exc, OSError):
                what = (
                    f"cannot size a memfd to {size} bytes"
                    if fd >= 0
                    else f"memfd_create for a {size}-byte buffer failed"
                )
                raise error_from_oserror(exc, what) from exc
            if isinstance(exc, ValueError) and not isinstance(exc, DevallocError):
                # a name the file system encoding cannot encode
                raise UsageError(f"memfd: name cannot be encoded: {name!r}") from exc
            raise
        return buf

    def close(self) -> None:
        """Nothing to release (memfd needs no device); present for the heap interface."""
