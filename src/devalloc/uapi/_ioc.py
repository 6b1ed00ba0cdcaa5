"""The kernel's ioctl number encoding (include/uapi/asm-generic/ioctl.h), for x86 and most arches.

Example:
    >>> import ctypes
    >>> hex(_IOWR("H", 0, ctypes.c_uint64 * 3))
    '0xc0184800'

Every ioctl number in devalloc is built here from the struct it carries; none is a literal.
"""

from __future__ import annotations

import ctypes
from typing import Any

_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_SIZEBITS = 14
_IOC_DIRBITS = 2

_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS

_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2

CType = type[Any]
"""A ctypes type (Structure, Union, array or simple type): its ``sizeof`` is the ioctl's size."""


def _type_code(type_: str | int) -> int:
    code = ord(type_) if isinstance(type_, str) else type_
    if not 0 <= code < (1 << _IOC_TYPEBITS):
        raise ValueError(f"ioctl type {type_!r} does not fit in {_IOC_TYPEBITS} bits")
    return code


def _IOC(direction: int, type_: str | int, nr: int, size: int) -> int:
    """Encode an ioctl request number from its direction, type (magic), number and size."""
    if not 0 <= nr < (1 << _IOC_NRBITS):
        raise ValueError(f"ioctl number {nr} does not fit in {_IOC_NRBITS} bits")
    if not 0 <= size < (1 << _IOC_SIZEBITS):
        raise ValueError(f"ioctl argument size {size} does not fit in {_IOC_SIZEBITS} bits")
    return (
        (direction << _IOC_DIRSHIFT)
        | (_type_code(type_) << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
        | (size << _IOC_SIZESHIFT)
    )


def _IO(type_: str | int, nr: int) -> int:
    """An ioctl that carries no argument."""
    return _IOC(_IOC_NONE, type_, nr, 0)


def _IOR(type_: str | int, nr: int, ctype: CType) -> int:
    """An ioctl whose argument the kernel writes (reads from the kernel's point of view: out)."""
    return _IOC(_IOC_READ, type_, nr, ctypes.sizeof(ctype))


def _IOW(type_: str | int, nr: int, ctype: CType) -> int:
    """An ioctl whose argument userspace writes (in)."""
    return _IOC(_IOC_WRITE, type_, nr, ctypes.sizeof(ctype))


def _IOWR(type_: str | int, nr: int, ctype: CType) -> int:
    """An ioctl whose argument travels both ways."""
    return _IOC(_IOC_READ | _IOC_WRITE, type_, nr, ctypes.sizeof(ctype))


def ioc_size(request: int) -> int:
    """The argument size encoded in an ioctl request number."""
    return (request >> _IOC_SIZESHIFT) & ((1 << _IOC_SIZEBITS) - 1)
