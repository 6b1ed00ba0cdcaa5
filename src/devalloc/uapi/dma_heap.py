"""linux/dma-heap.h: allocate dma-bufs from a heap under /dev/dma_heap.

Example:
    >>> data = dma_heap_allocation_data(len=4096, fd_flags=DMA_HEAP_VALID_FD_FLAGS)
    >>> # fcntl.ioctl(heap_fd, DMA_HEAP_IOCTL_ALLOC, data) fills data.fd
"""

from __future__ import annotations

import ctypes
import os
from typing import ClassVar

from ._ioc import _IOWR

C_HEADERS = ("linux/dma-heap.h",)


class dma_heap_allocation_data(ctypes.Structure):
    """Argument of DMA_HEAP_IOCTL_ALLOC.

    .. code-block:: c

        struct dma_heap_allocation_data {
                __u64 len;
                __u32 fd;
                __u32 fd_flags;
                __u64 heap_flags;
        };
    """

    _c_type_: ClassVar[str] = "struct dma_heap_allocation_data"
    _fields_ = (
        ("len", ctypes.c_uint64),
        ("fd", ctypes.c_uint32),
        ("fd_flags", ctypes.c_uint32),
        ("heap_flags", ctypes.c_uint64),
    )


DMA_HEAP_IOC_MAGIC = "H"
DMA_HEAP_IOCTL_ALLOC = _IOWR(DMA_HEAP_IOC_MAGIC, 0x0, dma_heap_allocation_data)

#: fd flags the kernel accepts for the returned dma-buf fd.
DMA_HEAP_VALID_FD_FLAGS = os.O_CLOEXEC | os.O_ACCMODE
#: heap flags the kernel accepts: none are defined yet.
DMA_HEAP_VALID_HEAP_FLAGS = 0

C_STRUCTS = (dma_heap_allocation_data,)
C_CONSTANTS = {
    "DMA_HEAP_IOCTL_ALLOC": DMA_HEAP_IOCTL_ALLOC,
    "DMA_HEAP_VALID_FD_FLAGS": DMA_HEAP_VALID_FD_FLAGS,
    "DMA_HEAP_VALID_HEAP_FLAGS": DMA_HEAP_VALID_HEAP_FLAGS,
}
