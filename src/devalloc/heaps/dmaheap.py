"""DMA-BUF heaps: the nodes under /dev/dma_heap and allocation from them.

Example:
    >>> for path in heap_paths():                      # doctest: +SKIP
    ...     with DmaHeap(path) as heap, heap.allocate(1 << 20) as buf:
    ...         print(heap.name, buf.size, heap.properties.contiguous)
    system 1048576 False

A heap's properties come from its name (:func:`devalloc.heaps.properties.dma_heap_properties`):
the kernel's heap names are stable, and a name devalloc does not know gets unknown properties.
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys
from array import array as _array

from .. import limits as _limits
from .._fd import FdResource, check_path, open_fd
from ..buffer import Buffer, check_name, named
from ..errors import UsageError, error_from_oserror
from ..limits import CLOSE_HOOKS as _CLOSE_HOOKS
from ..limits import admit as _admit
from ..limits import charges as _charges
from ..limits import discharge as _discharge
from ..limits import log_charge as _log_charge
from ..uapi import dma_heap as _uapi
from .properties import HeapProperties, dma_heap_properties

DMA_HEAP_DIR = "/dev/dma_heap"

_U32 = 1 << 32
_U64 = 1 << 64
_DEFAULT_FD_FLAGS = os.O_RDWR | os.O_CLOEXEC
_NO_HEAP_FLAGS = 0
_PAGE_MASK = os.sysconf("SC_PAGE_SIZE") - 1
#: ``struct dma_heap_allocation_data`` (len, fd, fd_flags, heap_flags) as a struct.Struct
#: (:class:`devalloc.uapi.dma_heap.dma_heap_allocation_data`, which is checked against the C
#: header; a test checks that the two agree). The allocation hot path passes the kernel an
#: ``array("I")`` of its six 32-bit words, copied from a prebuilt one for the default flags:
#: copying an array, storing the length word and reading the fd word cost less than packing a
#: struct into a bytearray and unpacking the fd, or building the ctypes structure.
ALLOCATION_DATA = struct.Struct("=QIIQ")
_pack_allocation = ALLOCATION_DATA.pack
_FD_OFFSET = _uapi.dma_heap_allocation_data.fd.offset
_unpack_fd = struct.Struct("=I").unpack_from  # the fd from a packed argument (tests use it)
_FD_WORD = _FD_OFFSET // 4
_LENGTH_WORD = 0 if sys.byteorder == "little" else 1  # the low half of the u64 len
_DEFAULT_DATA = _array("I", _pack_allocation(0, 0, _DEFAULT_FD_FLAGS, _NO_HEAP_FLAGS))
_ALLOC = _uapi.DMA_HEAP_IOCTL_ALLOC
_new_buffer = object.__new__


def heap_paths(root: str = DMA_HEAP_DIR) -> list[str]:
    """Every heap node under ``root``, sorted; empty when the kernel has no dma-heaps.

    Raises:
        UsageError: ``root`` is not a usable path string.
        KernelError: ``root`` exists but cannot be listed (not a directory, no permission).
    """
    root = check_path(root, what="dma-heap directory")
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise error_from_oserror(exc, "cannot list the dma-heap directory", path=root) from exc
    return [os.path.join(root, n) for n in names]


class DmaHeap(FdResource):
    """An open dma-heap node.

    Args:
        path: the node, e.g. ``/dev/dma_heap/system``.
        properties: what the heap offers (default: from its name).

    Raises:
        PermissionDeniedError: the node is not accessible to this process (often root-only).
        NotFoundError: no such heap.
    """

    def __init__(self, path: str, *, properties: HeapProperties | None = None) -> None:
        path = check_path(path, what="dma-heap")
        if properties is not None and not isinstance(properties, HeapProperties):
            raise UsageError(f"dma-heap {path}: properties must be HeapProperties or None")
        self.name = os.path.basename(path)
        self.properties = properties or dma_heap_properties(self.name, path=path)
        # what every buffer of this heap is given, computed once (allocate runs at allocation rate)
        self._exporter = f"dma-heap {self.name}"
        self._buffer_description = f"buffer from {self._exporter}"
        self._protected = self.properties.protected is True
        self._cpu_mappable = self.properties.cpu_mappable is not False
        self._special = self._protected or not self._cpu_mappable
        fd = open_fd(path, os.O_RDONLY, what=f"dma-heap {self.name}")
        super().__init__(fd, description=f"dma-heap {self.name}", path=path)

    def allocate(
        self,
        length: int,
        *,
        fd_flags: int = _DEFAULT_FD_FLAGS,
        heap_flags: int = _NO_HEAP_FLAGS,
    ) -> Buffer:
        """Allocate a dma-buf of ``length`` bytes (the kernel rounds up to whole pages).

        Flags are passed to the kernel as they are, so its own checks apply: fd flags outside
        ``DMA_HEAP_VALID_FD_FLAGS``, heap flags outside ``DMA_HEAP_VALID_HEAP_FLAGS``, a zero length
        or one that wraps when page-aligned all fail with EINVAL.

        Raises:
            UsageError: a value that does not fit the kernel's argument type.
            AllocationLimitError: above a cap of :mod:`devalloc.limits` (before the kernel).
            InvalidArgumentError, OutOfMemoryError, ...: what the kernel said.
        """
        # The common case (an int length, the default flags, which are then the very objects of
        # the defaults) is checked first: this runs at allocation rate.
        if not (
            type(length) is int
            and 0 <= length < _U64
            and fd_flags is _DEFAULT_FD_FLAGS
            and heap_flags is _NO_HEAP_FLAGS
        ):
            for label, value, limit in (
                ("length", length, _U64),
                ("fd_flags", fd_flags, _U32),
                ("heap_flags", heap_flags, _U64),
            ):
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
                    raise UsageError(
                        f"dma-heap {self.name}: {label} must be an integer in [0, {limit}), "
                        f"not {value!r}"
                    )
        fd = self._fd
        if fd < 0:
            self.fileno()  # raises ClosedResourceError
        size = (length + _PAGE_MASK) & ~_PAGE_MASK
        if length < _U32 and fd_flags is _DEFAULT_FD_FLAGS and heap_flags is _NO_HEAP_FLAGS:
            data = _DEFAULT_DATA[:]  # a copy: C-level, cheaper than packing a struct
            data[_LENGTH_WORD] = length
        else:
            data = _array("I", _pack_allocation(length, 0, fd_flags, heap_flags))
        # devalloc.limits' charge inlined (see its module): logged as the try's first step, so any
        # failure below (a signal's exception included) finds it logged and returns it. The
        # buffer is built here, in Buffer._adopt's order, with no call after its fd is stored:
        # from there on nothing can raise, and the buffer owns the fd and the charge.
        try:
            _log_charge(size)
            if len(_charges) > _limits.bound or size > _limits.fast_max:
                _admit(size, self._exporter)
            fcntl.ioctl(fd, _ALLOC, data, True)
            new_fd = data[_FD_WORD]
            buf = _new_buffer(Buffer)
            buf.description = self._buffer_description
            buf.exporter = self._exporter
            buf.size = size
            buf._fd = new_fd
            buf._close_hooks = _CLOSE_HOOKS  # discharge the limits' total on close
        except BaseException as exc:
            _discharge(size)  # first: a signal's exception comes only after a call
            # The kernel writes the new fd into the argument only on success (it was 0): one
            # there is not owned by any buffer yet (a signal came after the ioctl).
            created = data[_FD_WORD]
            if created:
                os.close(created)
            if not isinstance(exc, OSError):
                raise
            raise error_from_oserror(
                exc,
                f"allocate {length} bytes from dma-heap {self.name}",
                path=self.path,
                operation="DMA_HEAP_IOCTL_ALLOC",
            ) from exc
        if self._special:  # a protected or unmappable heap
            buf.protected = self._protected
            buf.cpu_mappable = self._cpu_mappable and not self._protected
        if fd_flags is not _DEFAULT_FD_FLAGS and (fd_flags & os.O_ACCMODE) == os.O_RDONLY:
            buf._writable = False
        return buf


class DmaHeapBackend:
    """A :class:`DmaHeap` as a heap-registry backend: ``allocate(size, name=...)`` with the
    default flags (O_RDWR | O_CLOEXEC). Owns the heap.

    Args:
        heap: the open heap; closed with this object.
    """

    def __init__(self, heap: DmaHeap) -> None:
        if not isinstance(heap, DmaHeap):
            raise UsageError(f"DmaHeapBackend needs a DmaHeap, not {heap!r:.80}")
        self.heap = heap
        self.properties = heap.properties
        #: ``allocate(size)`` without a name: the heap's own method, one call less on the
        #: registry's hot path.
        self.allocate_unnamed = heap.allocate

    @property
    def closed(self) -> bool:
        """True once the heap is closed."""
        return self.heap.closed

    def allocate(self, size: int, *, name: str | None = None) -> Buffer:
        """A dma-buf of ``size`` bytes, named ``name`` (DMA_BUF_SET_NAME_B) when given."""
        if name is not None:
            check_name(name)
        buf = self.heap.allocate(size)
        return named(buf, name)

    def close(self) -> None:
        """Close the heap node. Idempotent."""
        self.heap.close()

    def __repr__(self) -> str:
        return f"<DmaHeapBackend {self.heap!r}>"
