"""linux/udmabuf.h: turn ranges of a sealed memfd into a dma-buf.

Example:
    >>> arg = udmabuf_create(memfd=3, flags=UDMABUF_FLAGS_CLOEXEC, offset=0, size=4096)
    >>> # fcntl.ioctl(udmabuf_fd, UDMABUF_CREATE, arg) returns the new dma-buf fd
"""

from __future__ import annotations

import ctypes
from typing import ClassVar

from ._ioc import _IOW

C_HEADERS = ("linux/udmabuf.h",)

UDMABUF_FLAGS_CLOEXEC = 0x01


class udmabuf_create(ctypes.Structure):
    """Argument of UDMABUF_CREATE.

    .. code-block:: c

        struct udmabuf_create {
                __u32 memfd;
                __u32 flags;
                __u64 offset;
                __u64 size;
        };
    """

    _c_type_: ClassVar[str] = "struct udmabuf_create"
    _fields_ = (
        ("memfd", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("offset", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
    )


class udmabuf_create_item(ctypes.Structure):
    """One range of UDMABUF_CREATE_LIST.

    .. code-block:: c

        struct udmabuf_create_item {
                __u32 memfd;
                __u32 __pad;
                __u64 offset;
                __u64 size;
        };
    """

    _c_type_: ClassVar[str] = "struct udmabuf_create_item"
    _fields_ = (
        ("memfd", ctypes.c_uint32),
        ("__pad", ctypes.c_uint32),
        ("offset", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
    )


class udmabuf_create_list(ctypes.Structure):
    """Header of UDMABUF_CREATE_LIST; ``list`` is a flexible array that follows it.

    .. code-block:: c

        struct udmabuf_create_list {
                __u32 flags;
                __u32 count;
                struct udmabuf_create_item list[];
        };
    """

    _c_type_: ClassVar[str] = "struct udmabuf_create_list"
    _c_flexible_: ClassVar[tuple[str, ...]] = ("list",)
    _fields_ = (("flags", ctypes.c_uint32), ("count", ctypes.c_uint32))


def udmabuf_create_list_of(count: int) -> type[ctypes.Structure]:
    """A struct type laid out as ``udmabuf_create_list`` followed by ``count`` items."""

    class _List(ctypes.Structure):
        _fields_ = (
            ("head", udmabuf_create_list),
            ("list", udmabuf_create_item * count),
        )

    return _List


UDMABUF_CREATE = _IOW("u", 0x42, udmabuf_create)
UDMABUF_CREATE_LIST = _IOW("u", 0x43, udmabuf_create_list)

C_STRUCTS = (udmabuf_create, udmabuf_create_item, udmabuf_create_list)
C_CONSTANTS = {
    "UDMABUF_FLAGS_CLOEXEC": UDMABUF_FLAGS_CLOEXEC,
    "UDMABUF_CREATE": UDMABUF_CREATE,
    "UDMABUF_CREATE_LIST": UDMABUF_CREATE_LIST,
}
