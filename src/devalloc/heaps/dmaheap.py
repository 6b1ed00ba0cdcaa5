"""DMA-BUF heaps: the nodes under /dev/dma_heap and allocation from them.

Example:
    >>> for path in heap_paths():                      # doctest: +SKIP
    ...     with DmaHeap(path) as heap, heap.allocate(1 << 20) as buf:
    ...         print(heap.name, buf.size)
    system 1048576
"""

from __future__ import annotations

import os

from .._fd import FdResource, ioctl, open_fd
from ..buffer import Buffer
from ..errors import UsageError
from ..uapi import dma_heap as _uapi

DMA_HEAP_DIR = "/dev/dma_heap"

_U32 = 1 << 32
_U64 = 1 << 64


def heap_paths(root: str = DMA_HEAP_DIR) -> list[str]:
    """Every heap node under ``root``, sorted; empty when the kernel has no dma-heaps."""
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [os.path.join(root, n) for n in names]


class DmaHeap(FdResource):
    """An open dma-heap node.

    Args:
        path: the node, e.g. ``/dev/dma_heap/system``.

    Raises:
        PermissionDeniedError: the node is not accessible to this process (often root-only).
        NotFoundError: no such heap.
    """

    def __init__(self, path: str) -> None:
        self.name = os.path.basename(path)
        fd = open_fd(path, os.O_RDONLY, what=f"dma-heap {self.name}")
        super().__init__(fd, description=f"dma-heap {self.name}", path=path)

    def allocate(
        self,
        length: int,
        *,
        fd_flags: int = os.O_RDWR | os.O_CLOEXEC,
        heap_flags: int = 0,
    ) -> Buffer:
        """Allocate a dma-buf of ``length`` bytes (the kernel rounds up to whole pages).

        Flags are passed to the kernel as they are, so its own checks apply: fd flags outside
        ``DMA_HEAP_VALID_FD_FLAGS``, heap flags outside ``DMA_HEAP_VALID_HEAP_FLAGS``, a zero length
        or one that wraps when page-aligned all fail with EINVAL.

        Raises:
            UsageError: a value that does not fit the kernel's argument type.
            InvalidArgumentError, OutOfMemoryError, ...: what the kernel said.
        """
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
        data = _uapi.dma_heap_allocation_data(len=length, fd_flags=fd_flags, heap_flags=heap_flags)
        ioctl(
            self.fileno(),
            _uapi.DMA_HEAP_IOCTL_ALLOC,
            data,
            name="DMA_HEAP_IOCTL_ALLOC",
            what=f"allocate {length} bytes from dma-heap {self.name}",
            path=self.path,
        )
        return Buffer(data.fd, exporter=f"dma-heap {self.name}")
