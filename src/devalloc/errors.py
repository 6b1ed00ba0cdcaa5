"""devalloc's exceptions: one root, errno-carrying kernel errors, and the errno -> class mapping.

Example:
    >>> err = error_from_errno(13, "open /dev/dma_heap/system", path="/dev/dma_heap/system")
    >>> isinstance(err, PermissionError), isinstance(err, DevallocError), err.errno
    (True, True, 13)

Every kernel failure is raised as a :class:`KernelError` subclass chosen by :func:`error_from_errno`
(the only errno -> exception table in devalloc). Subclasses also inherit the matching builtin
``OSError`` subclass where Python has one, so ``except PermissionError`` keeps working.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Sequence


class DevallocError(Exception):
    """Root of every exception devalloc raises on purpose."""


class UsageError(DevallocError, ValueError):
    """The caller asked for something invalid; nothing reached the kernel."""


class AllocationLimitError(UsageError):
    """A request is above devalloc's per-buffer cap, or would take this process's live devalloc
    total above the total cap (:mod:`devalloc.limits`); nothing reached the kernel.

    Attributes:
        size: the bytes asked for, per buffer.
        count: how many buffers of that size were asked for.
        cap: the cap that refused it, in bytes.
        in_use: bytes this process held through devalloc when it was refused.
        variable: the environment variable that raises the cap (``DEVALLOC_MAX_BUFFER`` or
            ``DEVALLOC_MAX_TOTAL``).
    """

    def __init__(
        self, message: str, *, size: int, count: int, cap: int, in_use: int, variable: str
    ) -> None:
        super().__init__(message)
        self.size = size
        self.count = count
        self.cap = cap
        self.in_use = in_use
        self.variable = variable

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_limit,
            (str(self), self.size, self.count, self.cap, self.in_use, self.variable),
        )


def _rebuild_limit(
    message: str, size: int, count: int, cap: int, in_use: int, variable: str
) -> AllocationLimitError:
    return AllocationLimitError(
        message, size=size, count=count, cap=cap, in_use=in_use, variable=variable
    )


class NoPlanError(DevallocError):
    """No buffer satisfies every device (or a verification refuted the plan).

    Attributes:
        conflicts: what conflicts, one item per conflict (``devalloc.negotiate.Conflict`` from
            negotiation); the CLI prints them and exits with status 3.
    """

    def __init__(self, message: str, conflicts: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.conflicts: tuple[object, ...] = tuple(conflicts)


class ClosedResourceError(DevallocError):
    """The object (buffer, heap, device) was closed by its owner and cannot be used any more."""


class KernelError(DevallocError, OSError):
    """A system call failed.

    Attributes:
        errno: the kernel's error number.
        strerror: what was asked, of which device or heap (our message, not just the errno text).
        path: the device node or file involved, when there is one.
        operation: the call that failed (e.g. ``"DMA_HEAP_IOCTL_ALLOC"``), when known.
    """

    def __init__(
        self,
        errno: int,
        message: str,
        *,
        path: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(errno, message)
        self.path = path
        self.operation = operation

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno)) if self.errno else "?"
        reason = os.strerror(self.errno) if self.errno else "unknown error"
        where = f" [{self.path}]" if self.path else ""
        return f"{self.strerror}{where}: {name} ({reason})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.errno, self.strerror, self.path, self.operation))


def _rebuild(
    cls: type[KernelError], err: int, message: str, path: str | None, operation: str | None
) -> KernelError:
    return cls(err, message, path=path, operation=operation)


class InvalidArgumentError(KernelError):
    """EINVAL: the kernel rejected an argument (flags, size, alignment, format)."""


class NotFoundError(KernelError, FileNotFoundError):
    """ENOENT: no such device node, heap or object."""


class NoDeviceError(KernelError):
    """ENODEV/ENXIO: the device is gone or does not do this."""


class PermissionDeniedError(KernelError, PermissionError):
    """EACCES/EPERM: this process may not open or use the device."""


class OutOfMemoryError(KernelError):
    """ENOMEM: the heap or the system could not provide the memory."""


class NoSpaceError(KernelError):
    """ENOSPC: a fixed-size resource (pool, carveout, CMA region, ids) is exhausted."""


class BadFileDescriptorError(KernelError):
    """EBADF: the fd is closed or not open for this use."""


class BadFdStateError(KernelError):
    """EBADFD: the fd is of the wrong kind (e.g. not a memfd for udmabuf)."""


class NotSupportedError(KernelError):
    """ENOTTY/EOPNOTSUPP/ENOSYS: the device or kernel does not implement this request."""


class BusyError(KernelError):
    """EBUSY: the device or buffer is in use."""


class FaultError(KernelError):
    """EFAULT: the kernel could not access the memory (e.g. a device needs contiguous memory)."""


class TooBigError(KernelError):
    """E2BIG/EFBIG/EOVERFLOW/ERANGE: a size or count is beyond what the kernel accepts."""


class TryAgainError(KernelError, BlockingIOError):
    """EAGAIN: nothing ready yet (a non-blocking call would block)."""


class InterruptedCallError(KernelError, InterruptedError):
    """EINTR: the call was interrupted by a signal."""


class TimedOutError(KernelError, TimeoutError):
    """ETIMEDOUT: the kernel gave up waiting."""


class AlreadyExistsError(KernelError, FileExistsError):
    """EEXIST."""


_ERRNO_CLASSES: dict[int, type[KernelError]] = {
    _errno.EINVAL: InvalidArgumentError,
    _errno.ENOENT: NotFoundError,
    _errno.ENODEV: NoDeviceError,
    _errno.ENXIO: NoDeviceError,
    _errno.EACCES: PermissionDeniedError,
    _errno.EPERM: PermissionDeniedError,
    _errno.ENOMEM: OutOfMemoryError,
    _errno.ENOSPC: NoSpaceError,
    _errno.EBADF: BadFileDescriptorError,
    _errno.EBADFD: BadFdStateError,
    _errno.ENOTTY: NotSupportedError,
    _errno.EOPNOTSUPP: NotSupportedError,
    _errno.ENOSYS: NotSupportedError,
    _errno.EBUSY: BusyError,
    _errno.EFAULT: FaultError,
    _errno.E2BIG: TooBigError,
    _errno.EFBIG: TooBigError,
    _errno.EOVERFLOW: TooBigError,
    _errno.ERANGE: TooBigError,
    _errno.EAGAIN: TryAgainError,
    _errno.EINTR: InterruptedCallError,
    _errno.ETIMEDOUT: TimedOutError,
    _errno.EEXIST: AlreadyExistsError,
}


def error_class(err: int) -> type[KernelError]:
    """The KernelError subclass for an errno (KernelError itself for an unmapped one)."""
    return _ERRNO_CLASSES.get(err, KernelError)


def error_from_errno(
    err: int, message: str, *, path: str | None = None, operation: str | None = None
) -> KernelError:
    """Build the devalloc exception for a failed call. ``message`` says what was asked of whom."""
    return error_class(err)(err, message, path=path, operation=operation)


def error_from_oserror(
    exc: OSError, message: str, *, path: str | None = None, operation: str | None = None
) -> KernelError:
    """Turn a builtin OSError into the devalloc exception (chain it with ``raise ... from exc``)."""
    return error_from_errno(exc.errno or 0, message, path=path or exc.filename, operation=operation)
