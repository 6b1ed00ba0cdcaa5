"""Buffer: the owner of one dma-buf (or, on the memfd backend, one memfd) and its CPU mapping.

Example:
    >>> from devalloc.heaps.memfd import MemfdHeap
    >>> with MemfdHeap().allocate(4096) as buf:
    ...     with buf.cpu_access("w") as view:
    ...         view[:5] = b"hello"
    ...     with buf.cpu_access("r") as view:
    ...         bytes(view[:5])
    b'hello'

CPU access to a dma-buf is bracketed by DMA_BUF_IOCTL_SYNC START and END with the access's
read/write flags, so caches are maintained for every device attached to it. The mapping is made
once and reused; the memoryview handed out by :meth:`Buffer.cpu_access` is released when the block
ends, so no view outlives the bracket or the buffer.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from ._fd import FdResource, ioctl
from .errors import UsageError, error_from_oserror
from .uapi import dma_buf as _uapi

AccessMode = Literal["r", "w", "rw"]

_SYNC_FLAGS: dict[str, _uapi.DmaBufSyncFlag] = {
    "r": _uapi.DmaBufSyncFlag.READ,
    "w": _uapi.DmaBufSyncFlag.WRITE,
    "rw": _uapi.DmaBufSyncFlag.RW,
}


@dataclass(frozen=True)
class DmaBufInfo:
    """What the kernel reports about a dma-buf fd in /proc/self/fdinfo.

    Attributes:
        size: bytes.
        count: file references the kernel holds on the dma-buf.
        exp_name: the exporter: a heap name ("system"), "udmabuf", a DRM driver ("vgem") ...
        name: the name set with :meth:`Buffer.set_name` ("" when unset).
        inode: the dma-buf's inode number: equal for every fd of the same buffer.
    """

    size: int
    count: int
    exp_name: str
    name: str
    inode: int


_FDINFO_LINE = re.compile(r"^(\w+):\s*(.*)$")


def read_fdinfo(fd: int) -> dict[str, str]:
    """The key/value lines of /proc/self/fdinfo/FD."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        raise error_from_oserror(exc, f"cannot read fdinfo of fd {fd}") from exc
    fields: dict[str, str] = {}
    for line in text.splitlines():
        m = _FDINFO_LINE.match(line)
        if m:
            fields[m.group(1)] = m.group(2).strip()
    return fields


class Buffer(FdResource):
    """Owns one dma-buf fd (or a memfd on the memfd backend).

    Args:
        fd: the fd, which the buffer now owns.
        exporter: who made it, for messages (``"dma-heap system"``, ``"udmabuf"``, ``"memfd"``).
        dmabuf: True for a real dma-buf (CPU access is bracketed with DMA_BUF_IOCTL_SYNC and the
            buffer can be handed to devices); False for a memfd, which devices cannot import.
        size: the size in bytes if already known (else read from the fd).
    """

    def __init__(
        self, fd: int, *, exporter: str, dmabuf: bool = True, size: int | None = None
    ) -> None:
        self._map: mmap.mmap | None = None
        super().__init__(fd, description=f"buffer from {exporter}")
        self.exporter = exporter
        self.is_dmabuf = dmabuf
        try:
            self.size = size if size is not None else os.lseek(fd, 0, os.SEEK_END)
            self._writable = (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE) != os.O_RDONLY
        except OSError as exc:
            os.close(self._release())
            raise error_from_oserror(exc, f"cannot inspect {self.description}") from exc

    def _sync(self, flags: _uapi.DmaBufSyncFlag) -> None:
        arg = _uapi.dma_buf_sync(flags=int(flags))
        ioctl(
            self.fileno(),
            _uapi.DMA_BUF_IOCTL_SYNC,
            arg,
            name="DMA_BUF_IOCTL_SYNC",
            what=f"CPU access sync ({flags!r}) of {self.description}",
            retry=True,
        )

    def _mapping(self) -> mmap.mmap:
        if self._map is None:
            fd = self.fileno()
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if self._writable else 0)
            try:
                self._map = mmap.mmap(fd, self.size, mmap.MAP_SHARED, prot)
            except OSError as exc:
                raise error_from_oserror(exc, f"cannot map {self.description}") from exc
        return self._map

    @contextmanager
    def cpu_access(self, mode: AccessMode = "rw") -> Iterator[memoryview]:
        """Map the buffer for the CPU, bracketed by DMA_BUF_IOCTL_SYNC START/END.

        Args:
            mode: ``"r"`` (the view is read-only), ``"w"`` or ``"rw"``.

        Yields:
            A memoryview of the whole buffer, valid only inside the ``with`` block.
        """
        if mode not in _SYNC_FLAGS:
            raise UsageError(f"cpu_access mode must be 'r', 'w' or 'rw', not {mode!r}")
        if mode != "r" and not self._writable:
            raise UsageError(
                f"{self.description} was opened read-only: cannot access it for {mode!r}"
            )
        flags = _SYNC_FLAGS[mode]
        mapping = self._mapping()
        if self.is_dmabuf:
            self._sync(_uapi.DMA_BUF_SYNC_START | flags)
        # Views are made only after START succeeded, so a failed sync leaves none behind (an
        # exported view would stop close() from unmapping).
        view = memoryview(mapping)
        user_view = view.toreadonly() if mode == "r" else view
        try:
            yield user_view
        finally:
            user_view.release()
            view.release()
            if self.is_dmabuf:
                self._sync(_uapi.DMA_BUF_SYNC_END | flags)

    def set_name(self, name: str) -> None:
        """Name the dma-buf (shown in fdinfo, debugfs bufinfo and ``devalloc ps``)."""
        raw = name.encode()
        limit = _uapi.DMA_BUF_NAME_LEN - 1
        if len(raw) > limit or b"\0" in raw:
            raise UsageError(f"dma-buf name {name!r} must be at most {limit} bytes without NUL")
        if not self.is_dmabuf:
            raise UsageError(f"{self.description} is not a dma-buf: it cannot be named")
        text = ctypes.create_string_buffer(raw, _uapi.DMA_BUF_NAME_LEN)
        ioctl(
            self.fileno(),
            _uapi.DMA_BUF_SET_NAME_B,
            ctypes.c_void_p(ctypes.addressof(text)),
            name="DMA_BUF_SET_NAME_B",
            what=f"set the name of {self.description} to {name!r}",
        )

    def info(self) -> DmaBufInfo:
        """The kernel's view of this dma-buf (from /proc/self/fdinfo)."""
        fields = read_fdinfo(self.fileno())
        inode = fields.get("ino")
        return DmaBufInfo(
            size=int(fields.get("size", self.size)),
            count=int(fields.get("count", 0)),
            exp_name=fields.get("exp_name", "" if self.is_dmabuf else "memfd"),
            name=fields.get("name", ""),
            inode=int(inode) if inode is not None else os.fstat(self.fileno()).st_ino,
        )

    def export(self) -> FdResource:
        """A new fd for the same buffer (O_CLOEXEC), owned by the returned object.

        Hand it to another process or API with ``detach()``; the buffer keeps its own fd.
        """
        try:
            fd = os.dup(self.fileno())
        except OSError as exc:
            raise error_from_oserror(exc, f"cannot duplicate the fd of {self.description}") from exc
        return FdResource(fd, description=f"exported fd of {self.description}")

    def close(self) -> None:
        """Unmap (if mapped) and close the fd. Idempotent."""
        if self._map is not None:
            self._map.close()
            self._map = None
        super().close()
