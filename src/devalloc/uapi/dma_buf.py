"""linux/dma-buf.h: CPU access bracketing, names and sync files of a dma-buf.

Example:
    >>> sync = dma_buf_sync(flags=DmaBufSyncFlag.START | DmaBufSyncFlag.RW)
    >>> # fcntl.ioctl(dmabuf_fd, DMA_BUF_IOCTL_SYNC, sync)
"""

from __future__ import annotations

import ctypes
import enum
from typing import ClassVar

from ._ioc import _IOW, _IOWR

C_HEADERS = ("linux/dma-buf.h",)


class dma_buf_sync(ctypes.Structure):
    """Argument of DMA_BUF_IOCTL_SYNC.

    .. code-block:: c

        struct dma_buf_sync {
                __u64 flags;
        };
    """

    _c_type_: ClassVar[str] = "struct dma_buf_sync"
    _fields_ = (("flags", ctypes.c_uint64),)


class dma_buf_export_sync_file(ctypes.Structure):
    """Argument of DMA_BUF_IOCTL_EXPORT_SYNC_FILE.

    .. code-block:: c

        struct dma_buf_export_sync_file {
                __u32 flags;
                __s32 fd;
        };
    """

    _c_type_: ClassVar[str] = "struct dma_buf_export_sync_file"
    _fields_ = (("flags", ctypes.c_uint32), ("fd", ctypes.c_int32))


class dma_buf_import_sync_file(ctypes.Structure):
    """Argument of DMA_BUF_IOCTL_IMPORT_SYNC_FILE.

    .. code-block:: c

        struct dma_buf_import_sync_file {
                __u32 flags;
                __s32 fd;
        };
    """

    _c_type_: ClassVar[str] = "struct dma_buf_import_sync_file"
    _fields_ = (("flags", ctypes.c_uint32), ("fd", ctypes.c_int32))


class DmaBufSyncFlag(enum.IntFlag):
    """DMA_BUF_SYNC_* flags (START is 0: a sync without END starts an access)."""

    NONE = 0
    READ = 1 << 0
    WRITE = 2 << 0
    RW = READ | WRITE
    END = 1 << 2


DMA_BUF_SYNC_READ = DmaBufSyncFlag.READ
DMA_BUF_SYNC_WRITE = DmaBufSyncFlag.WRITE
DMA_BUF_SYNC_RW = DmaBufSyncFlag.RW
DMA_BUF_SYNC_START = DmaBufSyncFlag.NONE
DMA_BUF_SYNC_END = DmaBufSyncFlag.END
DMA_BUF_SYNC_VALID_FLAGS_MASK = DmaBufSyncFlag.RW | DmaBufSyncFlag.END

#: Longest dma-buf name including the terminating NUL.
DMA_BUF_NAME_LEN = 32

DMA_BUF_BASE = "b"
DMA_BUF_IOCTL_SYNC = _IOW(DMA_BUF_BASE, 0, dma_buf_sync)
# The kernel's DMA_BUF_SET_NAME is declared with a pointer type, so its number differs between 32-
# and 64-bit userspace; the _A and _B variants pin the size to 4 and 8 bytes.
DMA_BUF_SET_NAME = _IOW(DMA_BUF_BASE, 1, ctypes.c_char_p)
DMA_BUF_SET_NAME_A = _IOW(DMA_BUF_BASE, 1, ctypes.c_uint32)
DMA_BUF_SET_NAME_B = _IOW(DMA_BUF_BASE, 1, ctypes.c_uint64)
DMA_BUF_IOCTL_EXPORT_SYNC_FILE = _IOWR(DMA_BUF_BASE, 2, dma_buf_export_sync_file)
DMA_BUF_IOCTL_IMPORT_SYNC_FILE = _IOW(DMA_BUF_BASE, 3, dma_buf_import_sync_file)

C_STRUCTS = (dma_buf_sync, dma_buf_export_sync_file, dma_buf_import_sync_file)
C_CONSTANTS = {
    "DMA_BUF_SYNC_READ": DMA_BUF_SYNC_READ,
    "DMA_BUF_SYNC_WRITE": DMA_BUF_SYNC_WRITE,
    "DMA_BUF_SYNC_RW": DMA_BUF_SYNC_RW,
    "DMA_BUF_SYNC_START": DMA_BUF_SYNC_START,
    "DMA_BUF_SYNC_END": DMA_BUF_SYNC_END,
    "DMA_BUF_SYNC_VALID_FLAGS_MASK": DMA_BUF_SYNC_VALID_FLAGS_MASK,
    "DMA_BUF_NAME_LEN": DMA_BUF_NAME_LEN,
    "DMA_BUF_IOCTL_SYNC": DMA_BUF_IOCTL_SYNC,
    "DMA_BUF_SET_NAME": DMA_BUF_SET_NAME,
    "DMA_BUF_SET_NAME_A": DMA_BUF_SET_NAME_A,
    "DMA_BUF_SET_NAME_B": DMA_BUF_SET_NAME_B,
    "DMA_BUF_IOCTL_EXPORT_SYNC_FILE": DMA_BUF_IOCTL_EXPORT_SYNC_FILE,
    "DMA_BUF_IOCTL_IMPORT_SYNC_FILE": DMA_BUF_IOCTL_IMPORT_SYNC_FILE,
}
