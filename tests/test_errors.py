"""The exception hierarchy and the errno table."""

from __future__ import annotations

import errno
import pickle

import pytest

from devalloc import errors


@pytest.mark.parametrize(
    ("err", "cls", "builtin"),
    [
        (errno.EINVAL, errors.InvalidArgumentError, None),
        (errno.EACCES, errors.PermissionDeniedError, PermissionError),
        (errno.EPERM, errors.PermissionDeniedError, PermissionError),
        (errno.ENOENT, errors.NotFoundError, FileNotFoundError),
        (errno.EAGAIN, errors.TryAgainError, BlockingIOError),
        (errno.EINTR, errors.InterruptedCallError, InterruptedError),
        (errno.ETIMEDOUT, errors.TimedOutError, TimeoutError),
        (errno.EEXIST, errors.AlreadyExistsError, FileExistsError),
        (errno.ENOMEM, errors.OutOfMemoryError, None),
        (errno.EBADFD, errors.BadFdStateError, None),
        (errno.ENOTTY, errors.NotSupportedError, None),
        (errno.EOPNOTSUPP, errors.NotSupportedError, None),
        (errno.EFAULT, errors.FaultError, None),
    ],
)
def test_errno_maps_to_one_class(
    err: int, cls: type[errors.KernelError], builtin: type | None
) -> None:
    exc = errors.error_from_errno(err, "allocate 4096 bytes from dma-heap system", path="/dev/x")
    assert type(exc) is cls
    assert isinstance(exc, errors.DevallocError)
    assert isinstance(exc, OSError)
    if builtin is not None:
        assert isinstance(exc, builtin)
    assert exc.errno == err
    assert exc.path == "/dev/x"
    text = str(exc)
    assert "allocate 4096 bytes from dma-heap system" in text
    assert "/dev/x" in text
    assert errno.errorcode[err] in text


def test_unknown_errno_is_a_plain_kernel_error() -> None:
    exc = errors.error_from_errno(errno.EXDEV, "move")
    assert type(exc) is errors.KernelError
    assert exc.errno == errno.EXDEV


def test_oserror_conversion_keeps_errno_and_operation() -> None:
    exc = errors.error_from_oserror(
        PermissionError(errno.EACCES, "Permission denied", "/dev/dma_heap/system"),
        "cannot open dma-heap system",
        operation="open",
    )
    assert isinstance(exc, errors.PermissionDeniedError)
    assert exc.path == "/dev/dma_heap/system"
    assert exc.operation == "open"


def test_errors_pickle() -> None:
    exc = errors.error_from_errno(errno.EINVAL, "sync", path="/dev/udmabuf", operation="X")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is errors.InvalidArgumentError
    assert (back.errno, back.path, back.operation, str(back)) == (
        exc.errno,
        exc.path,
        exc.operation,
        str(exc),
    )


def test_usage_error_is_a_value_error() -> None:
    assert issubclass(errors.UsageError, ValueError)
    assert issubclass(errors.UsageError, errors.DevallocError)
    assert issubclass(errors.ClosedResourceError, errors.DevallocError)
