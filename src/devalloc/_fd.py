"""File-descriptor ownership and the one ioctl helper (internal).

Example:
    >>> import os
    >>> r, w = os.pipe()
    >>> os.close(w)
    >>> with FdResource(r, description="pipe") as res:
    ...     res.closed
    False
    >>> res.closed
    True

Every fd devalloc opens belongs to exactly one :class:`FdResource`. ``close()`` is idempotent; the
fd attribute is cleared *before* the fd is closed, so a reused fd number is never closed twice; an
owner that is garbage-collected while still open closes its fd in ``__del__`` and emits a
ResourceWarning, never a print. (``__del__`` rather than ``weakref.finalize``: a finalizer costs
about as much as a small kernel allocation, and buffers are made at allocation rate; ``__del__``
touches only the object's own fields and its cleanup function is bound when the class is made, so
it also works during interpreter shutdown.)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import warnings
from collections.abc import Callable
from typing import Any, Self

from .errors import ClosedResourceError, UsageError, error_from_oserror

_RETRY_ERRNOS = (errno.EINTR, errno.EAGAIN)
_MAX_RETRIES = 1000
_FD_MAX = 2**31 - 1  # fds are C ints


def _close_forgotten(fd: int, description: str) -> None:
    # Close first: the warning may be turned into an exception by a warnings filter.
    with contextlib.suppress(OSError):
        os.close(fd)
    warnings.warn(
        f"unclosed {description} (fd {fd}) closed by the garbage collector",
        ResourceWarning,
        stacklevel=2,
    )


class FdResource:
    """Owner of one file descriptor. Context manager; ``close()`` may be called any number of times.

    Args:
        fd: the fd to own; from now on this object closes it.
        description: what it is, for messages and warnings (``"dma-heap system"``).
        path: the device node or file it was opened from, if any.

    Raises:
        UsageError: ``fd`` is not a file descriptor number (an int in [0, 2**31)); the caller
            still owns whatever it passed.
    """

    _fd: int = -1

    def __init__(self, fd: int, *, description: str, path: str | None = None) -> None:
        self._fd = -1
        if not isinstance(fd, int) or isinstance(fd, bool) or not 0 <= fd <= _FD_MAX:
            raise UsageError(f"{description}: not a file descriptor: {fd!r:.80}")
        self.description = description
        self.path = path
        self._fd = fd  # last: a failure above leaves nothing for __del__ to close

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (or the fd was given away with :meth:`detach`)."""
        return self._fd < 0

    def fileno(self) -> int:
        """The fd, borrowed: it stays owned by this object."""
        if self._fd < 0:
            raise ClosedResourceError(f"{self.description} is closed")
        return self._fd

    def detach(self) -> int:
        """Give up ownership: return the fd, which the caller must now close."""
        fd = self.fileno()
        self._release()
        return fd

    def _release(self) -> int:
        fd, self._fd = self._fd, -1
        return fd

    def __del__(self, _forgotten: Callable[[int, str], None] = _close_forgotten) -> None:
        # The safety net for an owner nobody closed (see the module).
        fd = self._fd
        if fd >= 0:
            self._fd = -1
            _forgotten(fd, self.description)

    def close(self) -> None:
        """Close the fd. Idempotent."""
        if self._fd < 0:
            return
        os.close(self._release())

    def __enter__(self) -> Self:
        self.fileno()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<{type(self).__name__} {self.description} {state}>"


def check_path(path: object, *, what: str) -> str:
    """``path`` (a str or an ``os.PathLike`` of one) as a str that the file system can take: no
    NUL, encodable. Raises UsageError naming ``what`` otherwise."""
    try:
        text = os.fspath(path)  # type: ignore[call-overload]
    except TypeError:
        text = None
    if not isinstance(text, str):
        raise UsageError(f"{what}: a path must be a string, not {path!r:.80}")
    try:
        os.fsencode(text)
    except UnicodeError:
        raise UsageError(f"{what}: the path {text!r:.80} cannot be encoded") from None
    if "\0" in text:
        raise UsageError(f"{what}: the path {text!r:.80} contains NUL")
    return text


def open_fd(path: str, flags: int, *, what: str) -> int:
    """``os.open`` with O_CLOEXEC, raising a devalloc error that names ``what`` and ``path``
    (UsageError for a path that is not a usable string)."""
    path = check_path(path, what=f"cannot open {what}")
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        raise error_from_oserror(exc, f"cannot open {what}", path=path) from exc


_libc = ctypes.CDLL(None, use_errno=True)
_libc_ioctl = _libc.ioctl
_libc_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_libc_ioctl.restype = ctypes.c_int


def _pointer_ioctl(fd: int, request: int, pointer: ctypes.c_void_p) -> int:
    """An ioctl whose argument is a raw pointer value (fcntl.ioctl only passes a C int)."""
    result: int = _libc_ioctl(fd, request, pointer)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def ioctl(
    fd: int,
    request: int,
    arg: ctypes.Structure | ctypes.Union | ctypes.Array[Any] | ctypes._SimpleCData[Any] | int,
    *,
    name: str,
    what: str | Callable[[], str],
    path: str | None = None,
    retry: bool = False,
) -> int:
    """Issue one ioctl; return its result. ctypes arguments are passed by pointer and updated.

    Args:
        name: the request's C name, for errors (``"DMA_BUF_IOCTL_SYNC"``).
        what: what was asked of whom, for errors (``"allocate 4096 bytes from heap system"``);
            a function returning it is called only on failure (for hot paths).
        path: the device involved, for errors.
        arg: a ctypes object (passed by pointer, updated in place), an int (passed by value) or
            a ``ctypes.c_void_p`` (a raw pointer value, e.g. to a string).
        retry: retry EINTR and EAGAIN (sync ioctls); otherwise both are reported to the caller.

    Raises:
        KernelError: the errno-specific subclass from :mod:`devalloc.errors`.
    """
    attempts = 0
    while True:
        try:
            if isinstance(arg, ctypes.c_void_p):
                return _pointer_ioctl(fd, request, arg)
            if isinstance(arg, int):
                return fcntl.ioctl(fd, request, arg)
            result = fcntl.ioctl(fd, request, arg, True)
            assert isinstance(result, int)  # a mutable buffer makes ioctl return the int result
            return result
        except OSError as exc:
            if retry and exc.errno in _RETRY_ERRNOS and attempts < _MAX_RETRIES:
                attempts += 1
                continue
            text = what if isinstance(what, str) else what()
            raise error_from_oserror(exc, text, path=path, operation=name) from exc
