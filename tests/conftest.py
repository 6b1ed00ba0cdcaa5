"""Shared fixtures: kernel-feature gates, fd-leak checks, the kernel version in the report."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator

import pytest

IN_VM = os.environ.get("DEVALLOC_IN_VM") == "1"


def open_fds() -> set[int]:
    """The fds open in this process right now."""
    return {int(n) for n in os.listdir("/proc/self/fd")}


def assert_fd_closed(fd: int) -> None:
    """Prove ``fd`` is closed: fstat must fail with EBADF."""
    with pytest.raises(OSError, match=r"Bad file descriptor") as info:
        os.fstat(fd)
    assert info.value.errno == 9


def require(condition: bool, reason: str) -> None:
    """Skip on a host that lacks a kernel feature; in the test VM a missing feature is a failure."""
    if condition:
        return
    if IN_VM:
        pytest.fail(f"the test VM must provide this: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _kernel_in_report(record_testsuite_property: Callable[[str, object], None]) -> None:
    record_testsuite_property("kernel", platform.release())
    record_testsuite_property("in_vm", str(IN_VM))


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Fail the test if it leaves any new fd open."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    details = {
        fd: os.readlink(f"/proc/self/fd/{fd}")
        for fd in leaked
        if os.path.exists(f"/proc/self/fd/{fd}")
    }
    assert not leaked, f"fds leaked by the test: {details}"
