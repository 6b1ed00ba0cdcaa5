"""The kernel's userspace API, one module per header: ctypes structs, ioctl numbers and flags.

This package is the only place in devalloc that defines kernel structs or ioctl numbers. Each
module lists what it defines in ``C_STRUCTS`` (ctypes types with a ``_c_type_`` naming the C type)
and ``C_CONSTANTS`` (C macro or enumerator name -> value); ``tests/test_uapi_headers.py`` compiles
a C program against the system's headers and checks every size, offset and number. Names in
``C_OPTIONAL`` are newer than some distributions' headers: checked where the headers have them.

Example:
    >>> from devalloc.uapi import dma_heap
    >>> dma_heap.DMA_HEAP_IOCTL_ALLOC == 0xC0184800
    True
"""

from __future__ import annotations

from types import ModuleType

from . import dma_buf, dma_heap, drm, udmabuf, videodev2

MODULES: tuple[ModuleType, ...] = (dma_heap, dma_buf, udmabuf, drm, videodev2)
