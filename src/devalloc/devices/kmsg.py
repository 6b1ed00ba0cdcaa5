"""The kernel's log as it grows: the lines logged while an operation ran (/dev/kmsg).

Example:
    >>> with KernelLog() as log:                                    # doctest: +SKIP
    ...     ...  # an ioctl that fails
    ...     log.new_lines()
    ['contiguous chunk is too small 1048576/1843200']

Reading /dev/kmsg needs CAP_SYSLOG (or ``kernel.dmesg_restrict=0``); where it cannot be opened
:class:`KernelLog` is simply unavailable (:attr:`KernelLog.available` False, no lines), since the
log only explains failures the errno already reports. Each read returns one record,
``PRIORITY,SEQUENCE,MICROSECONDS,FLAGS;MESSAGE`` (Documentation/ABI/testing/dev-kmsg).
"""

from __future__ import annotations

import errno
import os
from typing import Self

from .._fd import FdResource

__all__ = ["KMSG_PATH", "KernelLog", "parse_record"]

KMSG_PATH = "/dev/kmsg"
#: A record is at most this long (the kernel's CONSOLE_EXT_LOG_MAX is 8 KiB).
_RECORD_MAX = 8192


def parse_record(record: bytes) -> str:
    """The message of one /dev/kmsg record (continuation lines, which start with a space,
    are dropped); the whole record when it has no ``;`` header."""
    text = record.decode(errors="replace")
    header, sep, rest = text.partition(";")
    message = rest if sep else header
    return message.split("\n", 1)[0].rstrip()


class KernelLog:
    """The kernel log records that appear after this object is made.

    Args:
        path: the log device (default /dev/kmsg).
    """

    def __init__(self, path: str = KMSG_PATH) -> None:
        self.reason = ""
        self._res: FdResource | None = None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self.reason = f"cannot read {path}: {os.strerror(exc.errno or 0)}"
            return
        self._res = FdResource(fd, description=f"kernel log {path}", path=path)
        try:
            os.lseek(fd, 0, os.SEEK_END)
        except OSError as exc:
            self.reason = f"cannot seek {path}: {os.strerror(exc.errno or 0)}"
            self.close()

    @property
    def available(self) -> bool:
        """The log is open: :meth:`new_lines` can report what the kernel says."""
        return self._res is not None and not self._res.closed

    def new_lines(self) -> list[str]:
        """Every message logged since the last call (or since this object was made)."""
        if self._res is None or self._res.closed:
            return []
        lines: list[str] = []
        fd = self._res.fileno()
        while True:
            try:
                record = os.read(fd, _RECORD_MAX)
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records were overwritten before we read them
                    continue
                if exc.errno != errno.EAGAIN:  # the log only explains: never fail for it
                    self.reason = f"reading the kernel log failed: {os.strerror(exc.errno or 0)}"
                return lines
            if not record:
                return lines
            lines.append(parse_record(record))

    def close(self) -> None:
        """Close the log. Idempotent."""
        if self._res is not None:
            self._res.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
