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

A dma-buf made elsewhere (another process, a V4L2 or DRM export) becomes a Buffer with
:meth:`Buffer.from_fd`, which checks that the fd is a dma-buf and keeps its own duplicate. A
buffer may carry the plane layout it was allocated for (:attr:`Buffer.layout`); with numpy
installed, :meth:`Buffer.planes` gives one ``rows x pitch`` array per plane of a CPU access.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import importlib
import mmap
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self

from ._fd import _FD_MAX, FdResource, ioctl
from .errors import ClosedResourceError, UsageError, error_from_oserror
from .formats.layout import Layout
from .uapi import dma_buf as _uapi

AccessMode = Literal["r", "w", "rw"]

CloseHook = Callable[[int], None]
"""Called once with the buffer's size when the buffer closes (by its owner or the GC)."""

_SYNC_FLAGS: dict[str, _uapi.DmaBufSyncFlag] = {
    "r": _uapi.DmaBufSyncFlag.READ,
    "w": _uapi.DmaBufSyncFlag.WRITE,
    "rw": _uapi.DmaBufSyncFlag.RW,
}
#: The DMA_BUF_IOCTL_SYNC arguments of each mode (START, END), built once as the bytes of
#: ``struct dma_buf_sync``: IntFlag arithmetic and a ctypes struct on every access cost more than
#: the ioctl itself. They are bytearrays because ``fcntl.ioctl`` first tries a writable buffer and
#: makes (and drops) a TypeError for bytes; the kernel only reads them (_IOW), so the copy
#: ``fcntl`` writes back is the same bytes and sharing them between threads is harmless.
_SYNC_ARGS: dict[str, tuple[bytearray, bytearray]] = {
    mode: (
        bytearray(_uapi.dma_buf_sync(flags=int(_uapi.DMA_BUF_SYNC_START | flag))),
        bytearray(_uapi.dma_buf_sync(flags=int(_uapi.DMA_BUF_SYNC_END | flag))),
    )
    for mode, flag in _SYNC_FLAGS.items()
}
_new_object = object.__new__
_os_close = os.close
_RETRY_ERRNOS = (errno.EINTR, errno.EAGAIN)
_MAX_SYNC_RETRIES = 1000
_ioctl = fcntl.ioctl
_SYNC = _uapi.DMA_BUF_IOCTL_SYNC


class SupportsFileno(Protocol):
    """Anything with a ``fileno()`` (a Buffer, an FdResource, a file object)."""

    def fileno(self) -> int: ...


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
    """The key/value lines of /proc/self/fdinfo/FD (read as bytes with ``os.read``: a third of
    the cost of a text file object, at every received or checked buffer)."""
    try:
        info = os.open(f"/proc/self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(info, 65536):
                chunks.append(chunk)
        finally:
            os.close(info)
    except OSError as exc:
        raise error_from_oserror(exc, f"cannot read fdinfo of fd {fd}") from exc
    text = b"".join(chunks).decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        m = _FDINFO_LINE.match(line)
        if m:
            fields[m.group(1)] = m.group(2).strip()
    return fields


def _describe_fd(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "unknown file"


def _buffer_forgotten(fd: int, description: str, hooks: tuple[CloseHook, ...], size: int) -> None:
    # Close and account first: the warning may be turned into an exception by a warnings filter.
    # (The warning names __del__'s caller: the code that dropped the last reference.)
    with contextlib.suppress(OSError):
        os.close(fd)
    for hook in hooks:
        hook(size)
    warnings.warn(
        f"unclosed {description} (fd {fd}) closed by the garbage collector",
        ResourceWarning,
        stacklevel=2,
    )


def _numpy() -> Any:
    try:
        return importlib.import_module("numpy")
    except ImportError as exc:
        raise UsageError("Buffer.planes needs numpy (pip install numpy)") from exc


class Buffer(FdResource):
    """Owns one dma-buf fd (or a memfd on the memfd backend).

    Args:
        fd: the fd, which the buffer now owns.
        exporter: who made it, for messages (``"dma-heap system"``, ``"udmabuf"``, ``"memfd"``).
        dmabuf: True for a real dma-buf (CPU access is bracketed with DMA_BUF_IOCTL_SYNC and the
            buffer can be handed to devices); False for a memfd, which devices cannot import.
        size: the size in bytes if already known (else read from the fd).
        writable: whether the fd was opened for writing, if known (else read from the fd).
        protected: protected memory: the CPU must not map it, and :meth:`cpu_access` refuses.
        cpu_mappable: False when the exporter's memory cannot be mapped by the CPU.
        layout: the plane layout the buffer was allocated for, if any.

    A buffer that is never closed is closed when it is garbage-collected, with a
    ResourceWarning, and its close hooks run (``__del__``, like every fd owner: see
    :mod:`devalloc._fd`).

    Raises:
        UsageError: ``fd`` is not a file descriptor number (the caller still owns it; a
            ValueError too).
        KernelError: the fd could not be inspected (it is closed before raising).
        UsageError: ``layout`` does not fit (the fd is closed before raising).
    """

    # Class-level defaults keep construction cheap (buffers are made at allocation rate) and let
    # Buffer._adopt set only what differs between buffers.
    is_dmabuf = True
    protected = False
    cpu_mappable = True
    _writable = True
    _map: mmap.mmap | None = None
    _close_hooks: tuple[CloseHook, ...] = ()
    _layout: Layout | None = None
    _layout_buffer = 0
    path: str | None = None

    def __init__(
        self,
        fd: int,
        *,
        exporter: str,
        dmabuf: bool = True,
        size: int | None = None,
        writable: bool | None = None,
        protected: bool = False,
        cpu_mappable: bool = True,
        layout: Layout | None = None,
    ) -> None:
        # Set up here rather than in FdResource.__init__ (fewer calls at allocation rate), in
        # _adopt's order, with only what differs from the class defaults: then every buffer
        # shares one attribute layout. ``_fd`` (class default -1) is set once the fd is known
        # good, so a failure half-way leaves nothing for __del__ to do.
        if not isinstance(fd, int) or isinstance(fd, bool) or not 0 <= fd <= _FD_MAX:
            raise UsageError(f"buffer from {exporter}: not a file descriptor: {fd!r}")
        self.description = f"buffer from {exporter}"
        self.exporter = exporter
        try:
            self.size = size if size is not None else os.lseek(fd, 0, os.SEEK_END)
            if writable is None:
                writable = (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE) != os.O_RDONLY
        except OSError as exc:
            os.close(fd)
            raise error_from_oserror(exc, f"cannot inspect {self.description}") from exc
        self._fd = fd
        if not dmabuf:
            self.is_dmabuf = False
        if protected:
            self.protected = True
        if protected or not cpu_mappable:
            self.cpu_mappable = False
        if not writable:
            self._writable = False
        if layout is not None:
            try:
                self.attach_layout(layout)
            except BaseException:
                self.close()
                raise

    @classmethod
    def _adopt(cls, fd: int, exporter: str, description: str, size: int) -> Self:
        """The heaps' constructor (internal): ``fd`` is a writable dma-buf fd the caller just got
        from the kernel, ``size`` is known and ``description`` is ``"buffer from " + exporter``,
        built once per heap. Nothing is checked or asked of the kernel, and the other attributes
        keep their class defaults (a writable, CPU-mappable dma-buf); a caller whose buffer
        differs sets them on the result. This runs at allocation rate, where ``__init__``'s
        keyword arguments and checks cost about as much as the kernel's own 4 KiB allocation."""
        self = _new_object(cls)
        self.description = description
        self.exporter = exporter
        self.size = size
        self._fd = fd
        return self

    @classmethod
    def from_fd(
        cls,
        fd: int | SupportsFileno,
        *,
        protected: bool = False,
        layout: Layout | None = None,
    ) -> Buffer:
        """Import a dma-buf made elsewhere: the new Buffer owns an O_CLOEXEC duplicate of ``fd``
        (the caller keeps its own fd).

        The duplicate is checked to be a dma-buf (its fdinfo names an exporter, ``exp_name``),
        so a pipe, a regular file or a memfd is refused and nothing stays open.

        Raises:
            UsageError: ``fd`` is not a dma-buf, or not an fd at all.
            BadFileDescriptorError: ``fd`` is closed.
        """
        if isinstance(fd, bool) or not isinstance(fd, int):
            if isinstance(fd, bool) or not hasattr(fd, "fileno"):
                raise UsageError(f"Buffer.from_fd needs an fd or an object with fileno(): {fd!r}")
            fd = fd.fileno()
        if isinstance(fd, bool) or not isinstance(fd, int) or not 0 <= fd <= _FD_MAX:
            raise UsageError(f"Buffer.from_fd: {fd!r} is not a file descriptor")
        try:
            dup = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0)
        except OSError as exc:
            raise error_from_oserror(exc, f"cannot import fd {fd} as a dma-buf") from exc
        try:
            fields = read_fdinfo(dup)
            exp_name = fields.get("exp_name")
            if exp_name is None:
                raise UsageError(
                    f"fd {fd} ({_describe_fd(dup)}) is not a dma-buf: its fdinfo names no "
                    "exporter (exp_name)"
                )
            size = int(fields["size"]) if "size" in fields else None
        except BaseException:
            os.close(dup)
            raise
        return cls(dup, exporter=exp_name, size=size, protected=protected, layout=layout)

    # -- ownership -------------------------------------------------------------------------

    def add_close_hook(self, hook: CloseHook) -> None:
        """Call ``hook(size)`` once when this buffer closes, by :meth:`close` or, for a
        forgotten buffer, by the garbage collector. Hooks run in the order they were added."""
        if not callable(hook):
            raise UsageError(f"{self.description}: a close hook must be callable, not {hook!r}")
        if self._fd < 0:
            raise ClosedResourceError(f"{self.description} is closed")
        self._close_hooks = (*self._close_hooks, hook)

    def __del__(self, _forgotten: Callable[..., None] = _buffer_forgotten) -> None:
        # The cleanup is bound at definition time: it still runs during interpreter shutdown,
        # when module globals may already be gone.
        fd = self._fd
        if fd >= 0:
            self._fd = -1
            hooks, self._close_hooks = self._close_hooks, ()
            _forgotten(fd, self.description, hooks, self.size)

    def close(self) -> None:
        """Unmap (if mapped), close the fd and run the close hooks. Idempotent.

        A view of the mapping kept past its ``cpu_access`` block (``kept = view[:]``, a plane
        array, ``view.obj``) cannot be revoked: Python keeps the mapping, and the duplicate fd
        ``mmap`` holds, until the last such view is gone. close() still closes this buffer's fd
        and runs its hooks, then says so rather than hiding it.

        Raises:
            UsageError: a view of the mapping outlived its access (the buffer is closed all the
                same; the memory is unmapped when the last view is released).
        """
        if self._map is not None:
            self._close_mapped()
            return
        fd = self._fd
        if fd >= 0:
            self._fd = -1  # cleared first: a reused fd number is never closed twice
            hooks = self._close_hooks
            if not hooks:
                _os_close(fd)
            else:
                self._close_hooks = ()
                try:
                    _os_close(fd)
                finally:
                    for hook in hooks:
                        hook(self.size)

    def _close_mapped(self) -> None:
        """close() of a mapped buffer: unmap, then the rest of close() (kept off its hot path)."""
        mapping, self._map = self._map, None
        escaped = False
        try:
            mapping.close()  # type: ignore[union-attr]  # (close() checked it)
        except BufferError:
            escaped = True
        self.close()
        if escaped:
            raise UsageError(
                f"closed {self.description}, but a view of its CPU mapping outlived its "
                "cpu_access block (a slice or copy of the memoryview, a plane array): the memory "
                "stays mapped until that view is released; release views inside the block"
            )

    # -- CPU access ------------------------------------------------------------------------

    def _sync_failed(self, fd: int, arg: bytearray, exc: OSError) -> None:
        """DMA_BUF_IOCTL_SYNC ``arg`` failed with ``exc``: retry EINTR and EAGAIN, raise the rest
        (the brackets issue the first attempt themselves: one call less on the hot path)."""
        for _ in range(_MAX_SYNC_RETRIES):
            if exc.errno not in _RETRY_ERRNOS:
                break
            try:
                fcntl.ioctl(fd, _uapi.DMA_BUF_IOCTL_SYNC, arg, True)
                return
            except OSError as again:
                exc = again
        flags = _uapi.DmaBufSyncFlag(_uapi.dma_buf_sync.from_buffer_copy(arg).flags)
        what = f"CPU access sync ({flags!r}) of {self.description}"
        raise error_from_oserror(exc, what, operation="DMA_BUF_IOCTL_SYNC") from exc

    def _live_fd(self) -> int:
        """The fd, for the buffer's own calls (the pool's lent buffers count only what
        :meth:`fileno` hands out, see :mod:`devalloc.pool`)."""
        fd = self._fd
        if fd < 0:
            raise ClosedResourceError(f"{self.description} is closed")
        return fd

    def _mapping(self) -> mmap.mmap:
        if self._map is None:
            fd = self._live_fd()
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if self._writable else 0)
            try:
                self._map = mmap.mmap(fd, self.size, mmap.MAP_SHARED, prot)
            except OSError as exc:
                raise error_from_oserror(exc, f"cannot map {self.description}") from exc
        return self._map

    def cpu_access(self, mode: AccessMode = "rw") -> CpuAccess:
        """Map the buffer for the CPU, bracketed by DMA_BUF_IOCTL_SYNC START/END.

        Use it as ``with buf.cpu_access("w") as view: ...``; the mode is checked here, the
        mapping and the START sync happen when the block is entered, the END sync when it ends.

        Args:
            mode: ``"r"`` (the view is read-only), ``"w"`` or ``"rw"``.

        Returns:
            A context manager (used once) whose ``__enter__`` gives a memoryview of the whole
            buffer, valid only inside the ``with`` block.

        Raises:
            UsageError: a bad mode, a write access to a read-only fd, or a protected (not
                CPU-mappable) buffer.
            ClosedResourceError: the buffer is closed (when the block is entered).
        """
        try:
            args = _SYNC_ARGS.get(mode)
        except TypeError:  # unhashable: not a mode
            args = None
        if args is None or not self.cpu_mappable or (mode != "r" and not self._writable):
            self._refuse_access(mode)
        access = _new_object(CpuAccess)  # its fields set here (see CpuAccess)
        access._buffer = self
        access._readonly = mode == "r"
        access._sync_args = args if self.is_dmabuf else None
        access._views = None
        return access

    def _refuse_access(self, mode: object) -> None:
        if not isinstance(mode, str) or mode not in _SYNC_ARGS:
            raise UsageError(f"cpu_access mode must be 'r', 'w' or 'rw', not {mode!r}")
        if not self.cpu_mappable:
            what = "protected memory" if self.protected else "memory the CPU cannot map"
            raise UsageError(f"{self.description} is {what}: cpu_access is refused")
        raise UsageError(f"{self.description} was opened read-only: cannot access it for {mode!r}")

    # -- layout ----------------------------------------------------------------------------

    @property
    def layout(self) -> Layout | None:
        """The plane layout attached to this buffer (None by default)."""
        return self._layout

    @layout.setter
    def layout(self, value: Layout | None) -> None:
        if value is None:
            self._layout = None
        else:
            self.attach_layout(value)

    def attach_layout(self, layout: Layout, *, buffer: int = 0) -> None:
        """Attach the plane layout this buffer holds.

        Args:
            layout: the layout (from :func:`devalloc.formats.layout`).
            buffer: which of the layout's buffers this is (0 unless ``multi_buffer``).

        Raises:
            UsageError: not a Layout, no such buffer, or planes that do not fit this buffer.
        """
        if not isinstance(layout, Layout):
            raise UsageError(
                f"{self.description}: layout must be a devalloc Layout, not {layout!r}"
            )
        count = max(len(layout.buffer_sizes), 1)
        if isinstance(buffer, bool) or not isinstance(buffer, int) or not 0 <= buffer < count:
            raise UsageError(f"{self.description}: layout has no buffer {buffer!r}")
        for i, plane in enumerate(layout.planes):
            if plane.buffer == buffer and plane.end > self.size:
                raise UsageError(
                    f"{self.description}: plane {i} of the {layout.format.name} layout ends at "
                    f"{plane.end}, past the buffer's {self.size} bytes"
                )
        self._layout = layout
        self._layout_buffer = buffer

    def planes(self, view: memoryview) -> list[Any]:
        """One numpy array (``uint8``, ``rows x pitch``) per plane of the attached layout, over
        the memory of ``view``, a view from :meth:`cpu_access` of this buffer. Read-only when the
        access is.

        Use the arrays only inside the ``cpu_access`` block (caches are synchronised for that
        bracket only); an array kept longer keeps the mapping alive until it is collected (and
        :meth:`close` then raises UsageError after closing).

        Raises:
            UsageError: numpy is missing, no layout is attached (or it is opaque), or ``view`` is
                not a live view of this buffer.
        """
        np = _numpy()
        layout = self._layout
        if layout is None:
            raise UsageError(f"{self.description} has no layout: attach one first")
        if layout.opaque:
            raise UsageError(
                f"{self.description}: the {layout.format.name} layout is opaque "
                "(the exporter decides it): no planes to show"
            )
        try:
            owner = view.obj
            readonly = view.readonly
        except (ValueError, AttributeError):
            raise UsageError("planes() needs a view from an open cpu_access block") from None
        if self._map is None or owner is not self._map:
            raise UsageError(f"planes() needs a view from cpu_access of {self.description}")
        base = memoryview(self._map)
        if readonly:
            base = base.toreadonly()
        arrays = []
        for i, plane in enumerate(layout.planes):
            if plane.buffer != self._layout_buffer:
                continue
            if plane.rows * plane.pitch > plane.size:
                raise UsageError(
                    f"{self.description}: plane {i} is not rows x pitch bytes "
                    f"({plane.rows} x {plane.pitch} > {plane.size})"
                )
            array = np.frombuffer(
                base, dtype=np.uint8, count=plane.rows * plane.pitch, offset=plane.offset
            )
            arrays.append(array.reshape(plane.rows, plane.pitch))
        return arrays

    # -- naming and identity ---------------------------------------------------------------

    def set_name(self, name: str) -> None:
        """Name the dma-buf (shown in fdinfo, debugfs bufinfo and ``devalloc ps``)."""
        check_name(name)
        if not self.is_dmabuf:
            raise UsageError(f"{self.description} is not a dma-buf: it cannot be named")
        raw = name.encode()
        text = ctypes.create_string_buffer(raw, _uapi.DMA_BUF_NAME_LEN)
        ioctl(
            self._live_fd(),
            _uapi.DMA_BUF_SET_NAME_B,
            ctypes.c_void_p(ctypes.addressof(text)),
            name="DMA_BUF_SET_NAME_B",
            what=f"set the name of {self.description} to {name!r}",
        )

    def info(self) -> DmaBufInfo:
        """The kernel's view of this dma-buf (from /proc/self/fdinfo)."""
        fd = self._live_fd()
        fields = read_fdinfo(fd)
        inode = fields.get("ino")
        return DmaBufInfo(
            size=int(fields.get("size", self.size)),
            count=int(fields.get("count", 0)),
            exp_name=fields.get("exp_name", "" if self.is_dmabuf else "memfd"),
            name=fields.get("name", ""),
            inode=int(inode) if inode is not None else os.fstat(fd).st_ino,
        )

    def export(self) -> FdResource:
        """A new fd for the same buffer (O_CLOEXEC), owned by the returned object.

        Hand it to another process or API with ``detach()``; the buffer keeps its own fd.
        """
        try:
            fd = fcntl.fcntl(self.fileno(), fcntl.F_DUPFD_CLOEXEC, 0)
        except OSError as exc:
            raise error_from_oserror(exc, f"cannot duplicate the fd of {self.description}") from exc
        return FdResource(fd, description=f"exported fd of {self.description}")


class CpuAccess:
    """One CPU access bracket of a :class:`Buffer` (from :meth:`Buffer.cpu_access`).

    ``__enter__`` maps the buffer (once per buffer), issues DMA_BUF_IOCTL_SYNC START and returns
    the view; ``__exit__`` releases the views and issues END, also when the block raised. A
    class rather than a ``@contextmanager`` generator: the generator machinery cost more than
    the two ioctls (see bench/README.md). Each object brackets one block.
    """

    __slots__ = ("_buffer", "_readonly", "_sync_args", "_views")

    # Made only by Buffer.cpu_access, which sets the fields itself (no __init__ call: this runs
    # once per access).
    _buffer: Buffer
    _readonly: bool
    _sync_args: tuple[bytearray, bytearray] | None  # None: not a dma-buf, nothing to synchronise
    _views: tuple[memoryview, memoryview] | tuple[()] | None  # None: not entered; (): ended

    def __enter__(self) -> memoryview:
        if self._views is not None:
            raise UsageError("a cpu_access bracket is entered once; call cpu_access() again")
        buffer = self._buffer
        mapping = buffer._map  # None after close(), so a closed buffer is refused below
        if mapping is None:
            mapping = buffer._mapping()  # raises ClosedResourceError when closed
        args = self._sync_args
        if args is not None:
            fd = buffer._fd
            try:
                _ioctl(fd, _SYNC, args[0], True)
            except OSError as exc:
                buffer._sync_failed(fd, args[0], exc)
        # Views are made only after START succeeded, so a failed sync leaves none behind (an
        # exported view would stop close() from unmapping).
        view = memoryview(mapping)
        user_view = view.toreadonly() if self._readonly else view
        self._views = (view, user_view)
        return user_view

    def __exit__(self, *exc: object) -> None:
        views = self._views
        if not views:
            return
        self._views = ()
        view, user_view = views
        user_view.release()
        view.release()
        args = self._sync_args
        if args is not None:
            buffer = self._buffer
            fd = buffer._fd
            if fd < 0:
                buffer.fileno()  # closed inside the block: raises ClosedResourceError
            try:
                _ioctl(fd, _SYNC, args[1], True)
            except OSError as exc:
                buffer._sync_failed(fd, args[1], exc)


def check_name(name: str) -> None:
    """Refuse a dma-buf name the kernel would not take (at most 31 bytes, no NUL)."""
    if not isinstance(name, str):
        raise UsageError(f"a dma-buf name must be a string, not {name!r}")
    try:
        raw = name.encode()
    except UnicodeEncodeError:
        raise UsageError(f"dma-buf name {name!r} cannot be encoded as UTF-8") from None
    limit = _uapi.DMA_BUF_NAME_LEN - 1
    if len(raw) > limit or b"\0" in raw:
        raise UsageError(f"dma-buf name {name!r} must be at most {limit} bytes without NUL")


def named(buf: Buffer, name: str | None) -> Buffer:
    """``buf`` with its dma-buf name set (DMA_BUF_SET_NAME_B) when ``name`` is given; a failure
    closes ``buf`` (the caller never holds a half-made buffer) and raises."""
    if name is not None:
        try:
            buf.set_name(name)
        except BaseException:
            buf.close()
            raise
    return buf
