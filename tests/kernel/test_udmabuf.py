"""udmabuf behaviour on a real kernel, through devalloc's API (after the kernel's udmabuf
selftest: alignment, memfd checks, seals, CREATE_LIST)."""

from __future__ import annotations

import errno
import fcntl
import os
import sys

import pytest

from devalloc.errors import BadFdStateError, InvalidArgumentError
from devalloc.heaps.udmabuf import Memfd, UdmabufDevice

from ..conftest import assert_fd_closed, open_fds

pytestmark = pytest.mark.kernel

PAGE = os.sysconf("SC_PAGE_SIZE")
SIZE = 16 * PAGE


def test_sealed_memfd_works_and_shares_its_pages(udmabuf: UdmabufDevice) -> None:
    with Memfd(SIZE) as mfd:
        mfd_fd = mfd.fileno()
        assert mfd.seals & fcntl.F_SEAL_SHRINK
        os.pwrite(mfd.fileno(), b"from the memfd", 3 * PAGE)
        buf = udmabuf.create(mfd, 0, SIZE)
        fd = buf.fileno()
        assert buf.size == SIZE
        assert buf.info().exp_name == "udmabuf"
        with buf.cpu_access("rw") as view:
            assert bytes(view[3 * PAGE : 3 * PAGE + 14]) == b"from the memfd"
            view[5 * PAGE : 5 * PAGE + 3] = b"dma"
        assert os.pread(mfd.fileno(), 3, 5 * PAGE) == b"dma"
        buf.close()
        assert_fd_closed(fd)
    assert_fd_closed(mfd_fd)


@pytest.mark.parametrize(
    ("offset", "size"), [(PAGE // 2, PAGE), (0, PAGE + 1), (1, SIZE - PAGE), (0, PAGE // 4)]
)
def test_unaligned_offset_or_size_fails(udmabuf: UdmabufDevice, offset: int, size: int) -> None:
    with Memfd(SIZE) as mfd:
        before = open_fds()
        with pytest.raises(InvalidArgumentError) as info:
            udmabuf.create(mfd, offset, size)
        assert info.value.errno == errno.EINVAL
        assert info.value.operation == "UDMABUF_CREATE"
        assert open_fds() == before


def test_non_memfd_fails(udmabuf: UdmabufDevice) -> None:
    # A pipe and a file on a non-shmem filesystem (tmpfs files are shmem, like memfds).
    r, w = os.pipe()
    try:
        with pytest.raises(BadFdStateError) as info:
            udmabuf.create(r, 0, PAGE)
        assert info.value.errno == errno.EBADFD
    finally:
        os.close(r)
        os.close(w)
    with open(sys.executable, "rb") as f, pytest.raises(BadFdStateError):
        udmabuf.create(f, 0, PAGE)


def test_missing_shrink_seal_fails(udmabuf: UdmabufDevice) -> None:
    with Memfd(SIZE, seal_shrink=False) as mfd, pytest.raises(InvalidArgumentError):
        udmabuf.create(mfd, 0, SIZE)


def test_write_seal_fails(udmabuf: UdmabufDevice) -> None:
    with Memfd(SIZE) as mfd:
        mfd.add_seals(fcntl.F_SEAL_WRITE)
        with pytest.raises(InvalidArgumentError):
            udmabuf.create(mfd, 0, SIZE)


def test_create_list_of_several_ranges(udmabuf: UdmabufDevice) -> None:
    with Memfd(SIZE) as a, Memfd(SIZE) as b:
        os.pwrite(a.fileno(), b"A" * PAGE, 2 * PAGE)
        os.pwrite(b.fileno(), b"B" * PAGE, 0)
        os.pwrite(a.fileno(), b"C" * PAGE, 8 * PAGE)
        ranges = [(a, 2 * PAGE, PAGE), (b, 0, 2 * PAGE), (a, 8 * PAGE, 4 * PAGE)]
        with udmabuf.create_list(ranges) as buf:
            assert buf.size == 7 * PAGE
            assert buf.info().size == 7 * PAGE
            with buf.cpu_access("r") as view:
                assert bytes(view[:PAGE]) == b"A" * PAGE
                assert bytes(view[PAGE : 2 * PAGE]) == b"B" * PAGE
                assert view[2 * PAGE : 3 * PAGE].tobytes().count(0) == PAGE
                assert bytes(view[3 * PAGE : 4 * PAGE]) == b"C" * PAGE


def test_create_list_rejects_an_unaligned_range(udmabuf: UdmabufDevice) -> None:
    with Memfd(SIZE) as a:
        with pytest.raises(InvalidArgumentError) as info:
            udmabuf.create_list([(a, 0, PAGE), (a, PAGE, PAGE + 7)])
        assert info.value.operation == "UDMABUF_CREATE_LIST"


def test_device_node_closes(udmabuf: UdmabufDevice) -> None:
    dev = UdmabufDevice()
    fd = dev.fileno()
    dev.close()
    assert_fd_closed(fd)
