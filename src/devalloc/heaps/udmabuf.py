"""udmabuf: dma-bufs made from pages of a sealed memfd.

Example:
    >>> with Memfd(1 << 20) as mfd, UdmabufDevice() as dev:     # doctest: +SKIP
    ...     with dev.create(mfd, 0, 1 << 20) as buf:
    ...         buf.info().exp_name
    'udmabuf'
    >>> with UdmabufHeap() as heap, heap.allocate(1 << 20) as buf:  # doctest: +SKIP
    ...     buf.size
    1048576

The kernel insists that the memfd is sealed against shrinking (F_SEAL_SHRINK) and not sealed
against writing, and that offsets and sizes are page-aligned; it answers EINVAL otherwise, and
EBADFD for an fd that is not a memfd. devalloc passes requests through so these checks stay the
kernel's.

:class:`UdmabufHeap` is udmabuf used as a heap: each buffer gets its own memfd (MFD_ALLOW_SEALING |
MFD_CLOEXEC), sized with ftruncate, sealed with F_SEAL_SHRINK and turned into a dma-buf with
UDMABUF_CREATE (UDMABUF_FLAGS_CLOEXEC); the memfd is closed at once (the dma-buf holds its pages).
A size above the module's ``size_limit_mb`` is refused before the kernel, which would say EINVAL.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Sequence
from typing import Protocol

from .. import limits as _limits
from .._fd import _FD_MAX, FdResource, check_path, ioctl, open_fd
from ..buffer import Buffer, check_name, named
from ..errors import UsageError, error_from_oserror
from ..limits import CLOSE_HOOKS as _CLOSE_HOOKS
from ..limits import admit as _admit
from ..limits import charges as _charges
from ..limits import discharge as _discharge
from ..limits import log_charge as _log_charge
from ..uapi import udmabuf as _uapi
from .properties import HeapProperties

UDMABUF_PATH = "/dev/udmabuf"
SIZE_LIMIT_PARAM = "/sys/module/udmabuf/parameters/size_limit_mb"
#: The module's default ``size_limit_mb``: 64 MiB per buffer.
DEFAULT_SIZE_LIMIT = 64 << 20
_MEMFD_FLAGS = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
_U32 = 1 << 32
_U64 = 1 << 64
_MAX_FILE = 1 << 63  # off_t
#: ``struct udmabuf_create`` (memfd, flags, offset, size) as a struct.Struct for the hot path:
#: packing it costs a fraction of building the ctypes structure
#: (:class:`devalloc.uapi.udmabuf.udmabuf_create`, checked against the C header; a test checks
#: that the two agree).
CREATE_DATA = struct.Struct("=IIQQ")
_pack_create = CREATE_DATA.pack
_CLOEXEC = _uapi.UDMABUF_FLAGS_CLOEXEC
_CREATE = _uapi.UDMABUF_CREATE


class SupportsFileno(Protocol):
    def fileno(self) -> int: ...


FdLike = SupportsFileno | int
"""An fd borrowed for the duration of one call: an object with ``fileno()`` or a plain int."""


def _borrow(fd: FdLike) -> int:
    """The fd number of ``fd`` (an int, or an object with ``fileno()``), checked to be one."""
    try:
        number = fd.fileno() if not isinstance(fd, int) else fd
    except AttributeError:
        number = None
    if type(number) is not int or not 0 <= number <= _FD_MAX:
        raise UsageError(
            f"udmabuf: expected a memfd (an fd or an object with fileno()), not {fd!r}"
        )
    return number


def size_limit_bytes(param: str = SIZE_LIMIT_PARAM) -> int | None:
    """The udmabuf module's per-buffer size limit, or None when the module is absent."""
    param = check_path(param, what="udmabuf size_limit_mb parameter")
    try:
        with open(param, encoding="ascii") as f:
            value = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return value << 20 if value > 0 else None


class Memfd(FdResource):
    """A memfd sized to ``size`` bytes, created with MFD_ALLOW_SEALING and, by default, sealed
    against shrinking as udmabuf requires.

    Args:
        size: bytes (udmabuf needs whole pages).
        seal_shrink: add F_SEAL_SHRINK (False only to show what the kernel does without it).
    """

    def __init__(self, size: int, *, name: str = "devalloc", seal_shrink: bool = True) -> None:
        if not (
            type(size) is int
            and 0 <= size < _MAX_FILE
            and type(name) is str
            and seal_shrink is True
        ):
            if type(size) is not int or size < 0:
                raise UsageError(f"memfd size must be a non-negative integer, not {size!r}")
            if size >= _MAX_FILE:
                raise UsageError(f"memfd size {size} is beyond what a file can hold (2**63 - 1)")
            if not isinstance(name, str):
                raise UsageError(f"memfd name must be a string, not {name!r}")
            if not isinstance(seal_shrink, bool):
                raise UsageError(f"memfd: seal_shrink is True or False, not {seal_shrink!r}")
        try:
            fd = os.memfd_create(name, _MEMFD_FLAGS)
        except OSError as exc:
            raise error_from_oserror(exc, "memfd_create failed") from exc
        except ValueError as exc:  # NUL, or a name the file system encoding cannot encode
            raise UsageError(f"memfd name {name!r} cannot be used: {exc}") from exc
        try:
            os.ftruncate(fd, size)
            if seal_shrink:
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
        except BaseException as exc:
            os.close(fd)
            if not isinstance(exc, OSError):
                raise
            raise error_from_oserror(exc, f"cannot size and seal memfd {name}") from exc
        # FdResource's attributes set here (this runs once per udmabuf allocation); _fd last.
        self.description = f"memfd {name}"
        self.path = None
        self.size = size
        self._fd = fd

    def add_seals(self, seals: int) -> None:
        """Add F_SEAL_* seals (fcntl F_ADD_SEALS)."""
        if not isinstance(seals, int) or isinstance(seals, bool) or not 0 <= seals < 1 << 31:
            raise UsageError(f"{self.description}: seals must be F_SEAL_* flags, not {seals!r}")
        try:
            fcntl.fcntl(self.fileno(), fcntl.F_ADD_SEALS, seals)
        except OSError as exc:
            raise error_from_oserror(exc, f"cannot seal {self.description}") from exc

    @property
    def seals(self) -> int:
        """The F_SEAL_* seals in force."""
        return fcntl.fcntl(self.fileno(), fcntl.F_GET_SEALS)


class UdmabufDevice(FdResource):
    """The open /dev/udmabuf node."""

    def __init__(self, path: str = UDMABUF_PATH) -> None:
        fd = open_fd(path, os.O_RDWR, what="udmabuf")
        super().__init__(fd, description="udmabuf", path=path)

    def create(self, memfd: FdLike, offset: int, size: int, *, cloexec: bool = True) -> Buffer:
        """A dma-buf over ``size`` bytes of ``memfd`` from ``offset`` (UDMABUF_CREATE).

        ``memfd`` is only borrowed: the caller keeps owning it (the dma-buf holds the pages).
        """
        fd = memfd if type(memfd) is int and 0 <= memfd <= _FD_MAX else _borrow(memfd)
        if not (
            type(offset) is int
            and type(size) is int
            and 0 <= offset < _U64
            and 0 <= size < _U64
            and cloexec is True
        ):
            _check_range(offset, size)
            _check_cloexec(cloexec)
        dev = self._fd
        if dev < 0:
            self.fileno()  # raises ClosedResourceError
        # The dma-buf pins the range's pages for its life: charged to devalloc's total, with the
        # charge inlined (see devalloc.limits: logged as the try's first step, returned by the
        # handler on any failure; the buffer comes without hooks and gets its discharge as the
        # try's last step, so exactly one of the two returns the charge).
        try:
            _log_charge(size)
            if len(_charges) > _limits.bound or size > _limits.fast_max:
                _admit(size, "udmabuf")
            buf = self._create(dev, fd, offset, size, cloexec)
            buf._close_hooks = _CLOSE_HOOKS  # discharge the limits' total on close
        except BaseException:
            _discharge(size)
            raise
        return buf

    def _create(self, dev: int, fd: int, offset: int, size: int, cloexec: bool) -> Buffer:
        """UDMABUF_CREATE on checked arguments: a buffer without close hooks (the caller charged
        ``size`` and gives the buffer its discharge)."""
        try:
            arg = bytearray(_pack_create(fd, _CLOEXEC if cloexec else 0, offset, size))
            new_fd = fcntl.ioctl(dev, _CREATE, arg, True)
        except OSError as exc:
            raise error_from_oserror(
                exc,
                f"create a udmabuf of {size} bytes at offset {offset} of fd {fd}",
                path=self.path,
                operation="UDMABUF_CREATE",
            ) from exc
        # udmabuf exports O_RDWR dma-bufs.
        return Buffer._adopt(new_fd, "udmabuf", "buffer from udmabuf", size)

    def create_list(
        self, ranges: Sequence[tuple[FdLike, int, int]], *, cloexec: bool = True
    ) -> Buffer:
        """One dma-buf over several (memfd, offset, size) ranges, in order (UDMABUF_CREATE_LIST)."""
        _check_cloexec(cloexec)
        if not isinstance(ranges, Sequence) or isinstance(ranges, (str, bytes)) or not ranges:
            raise UsageError(
                "udmabuf: create_list needs a non-empty sequence of (memfd, offset, size) ranges, "
                f"not {ranges!r}"
            )
        if len(ranges) >= _U32:
            raise UsageError(f"udmabuf: {len(ranges)} ranges is more than the kernel takes")
        checked = []
        for entry in ranges:
            if not isinstance(entry, tuple) or len(entry) != 3:
                raise UsageError(
                    f"udmabuf: a range is a (memfd, offset, size) tuple, not {entry!r}"
                )
            memfd, offset, size = entry
            _check_range(offset, size)
            checked.append((_borrow(memfd), offset, size))
        total = sum(size for _, _, size in checked)
        arg = _uapi.udmabuf_create_list_of(len(checked))()
        arg.head.flags = _uapi.UDMABUF_FLAGS_CLOEXEC if cloexec else 0
        arg.head.count = len(checked)
        for item, (fd, offset, size) in zip(arg.list, checked, strict=True):
            item.memfd = fd
            item.offset = offset
            item.size = size
        dev = self.fileno()
        try:  # the charge as in create()
            _log_charge(total)
            if len(_charges) > _limits.bound or total > _limits.fast_max:
                _admit(total, "udmabuf")
            new_fd = ioctl(
                dev,
                _uapi.UDMABUF_CREATE_LIST,
                arg,
                name="UDMABUF_CREATE_LIST",
                what=f"create a udmabuf of {len(ranges)} ranges, {total} bytes",
                path=self.path,
            )
            buf = Buffer._adopt(new_fd, "udmabuf", "buffer from udmabuf", total)
            buf._close_hooks = _CLOSE_HOOKS
        except BaseException:
            _discharge(total)
            raise
        return buf


def _check_cloexec(cloexec: object) -> None:
    if not isinstance(cloexec, bool):
        raise UsageError(f"udmabuf: cloexec is True or False, not {cloexec!r}")


def _check_range(offset: int, size: int) -> None:
    for label, value in (("offset", offset), ("size", size)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << 64):
            raise UsageError(f"udmabuf: {label} must be an integer in [0, 2**64), not {value!r}")


def udmabuf_properties(size_limit: int, *, dma_bits: int | None = None) -> HeapProperties:
    """What udmabuf offers: scattered, cached shmem pages in system memory, up to the module's
    per-buffer ``size_limit`` bytes."""
    return HeapProperties(
        kind="udmabuf",
        name="udmabuf",
        contiguous=False,
        cpu_cache="cached",
        protected=False,
        cpu_mappable=True,
        dma_bits=dma_bits,
        location="system",
        max_size=size_limit,
    )


class UdmabufHeap:
    """udmabuf as a heap: one sealed memfd per buffer, turned into a dma-buf.

    Args:
        path: the udmabuf node.
        size_limit_param: the module parameter holding the per-buffer limit in MiB (the default
            limit, 64 MiB, applies when it cannot be read).
        dma_bits: the physical reach of system memory, if known (for :attr:`properties`).

    Raises:
        PermissionDeniedError, NotFoundError: the node cannot be opened.
    """

    def __init__(
        self,
        path: str = UDMABUF_PATH,
        *,
        size_limit_param: str = SIZE_LIMIT_PARAM,
        dma_bits: int | None = None,
    ) -> None:
        path = check_path(path, what="udmabuf")
        self.size_limit = size_limit_bytes(size_limit_param) or DEFAULT_SIZE_LIMIT
        self.size_limit_param = size_limit_param
        self.properties = udmabuf_properties(self.size_limit, dma_bits=dma_bits)
        self._page = os.sysconf("SC_PAGE_SIZE")
        self.device = UdmabufDevice(path)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self.device.closed

    def allocate(self, size: int, *, name: str | None = None) -> Buffer:
        """A dma-buf of ``size`` bytes rounded up to whole pages, zero-filled.

        Raises:
            UsageError: a bad size or name, or a size above the module's limit.
            KernelError: what memfd_create, ftruncate, F_ADD_SEALS or UDMABUF_CREATE said.
        """
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise UsageError(f"udmabuf: size must be a positive integer, not {size!r}")
        if name is not None:
            check_name(name)
        length = -(-size // self._page) * self._page
        if length > self.size_limit:
            raise UsageError(
                f"udmabuf: {size} bytes is above the udmabuf module's per-buffer limit of "
                f"{self.size_limit >> 20} MiB ({self.size_limit_param}); raise it with "
                "udmabuf.size_limit_mb= or use another heap"
            )
        dev = self.device.fileno()
        mfd: Memfd | None = None
        try:  # the charge as in UdmabufDevice.create
            _log_charge(length)
            if len(_charges) > _limits.bound or length > _limits.fast_max:
                _admit(length, "udmabuf")
            mfd = Memfd(length, name=name or "devalloc-udmabuf")
            buf = self.device._create(dev, mfd._fd, 0, length, True)
            buf._close_hooks = _CLOSE_HOOKS
        except BaseException:
            _discharge(length)
            raise
        finally:
            if mfd is not None:
                mfd.close()
        return named(buf, name)

    def close(self) -> None:
        """Close the udmabuf node. Idempotent; buffers already made stay valid."""
        self.device.close()

    def __enter__(self) -> UdmabufHeap:
        self.device.fileno()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<UdmabufHeap limit={self.size_limit >> 20} MiB {self.device!r}>"
