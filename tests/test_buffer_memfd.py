"""Buffer and fd ownership on the host, with the memfd backend (no dma-buf support needed)."""

from __future__ import annotations

import gc
import os

import pytest

from devalloc import ClosedResourceError, UsageError
from devalloc._fd import FdResource
from devalloc.buffer import Buffer
from devalloc.heaps.memfd import MemfdHeap
from devalloc.heaps.udmabuf import Memfd

from .conftest import assert_fd_closed, open_fds

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(autouse=True)
def _leak_check(no_fd_leak: None) -> None:
    """Every test here fails if it leaves an fd open."""


def test_memfd_buffer_round_trip() -> None:
    buf = MemfdHeap().allocate(3 * PAGE + 1)
    fd = buf.fileno()
    assert buf.size == 4 * PAGE
    assert not buf.is_dmabuf
    with buf.cpu_access("w") as view:
        view[-3:] = b"end"
    with buf.cpu_access("r") as view:
        assert bytes(view[-3:]) == b"end"
        assert view.readonly
        with pytest.raises(TypeError):
            view[0] = 1
    buf.close()
    assert buf.closed
    assert_fd_closed(fd)


def test_view_does_not_outlive_the_access() -> None:
    with MemfdHeap().allocate(PAGE) as buf:
        with buf.cpu_access("rw") as view:
            kept = view
        with pytest.raises(ValueError, match="released"):
            kept[0]


def test_mapping_is_reused() -> None:
    with MemfdHeap().allocate(PAGE) as buf:
        with buf.cpu_access("w"):
            first = buf._map
        with buf.cpu_access("r"):
            assert buf._map is first


def test_closed_buffer_refuses_use() -> None:
    buf = MemfdHeap().allocate(PAGE)
    buf.close()
    buf.close()
    with pytest.raises(ClosedResourceError, match="closed"):
        buf.fileno()
    with pytest.raises(ClosedResourceError), buf.cpu_access("r"):
        pass
    with pytest.raises(ClosedResourceError):
        buf.export()


@pytest.mark.parametrize("length", [0, -1, 1.5, True, "4096"])
def test_memfd_heap_bad_sizes(length: object) -> None:
    before = open_fds()
    with pytest.raises(UsageError, match="length"):
        MemfdHeap().allocate(length)  # type: ignore[arg-type]
    assert open_fds() == before


def test_bad_access_mode_and_names() -> None:
    with MemfdHeap().allocate(PAGE) as buf:
        with pytest.raises(UsageError, match="mode"), buf.cpu_access("x"):  # type: ignore[arg-type]
            pass
        with pytest.raises(UsageError, match="not a dma-buf"):
            buf.set_name("camera")
        with pytest.raises(UsageError, match="31 bytes"):
            buf.set_name("n" * 40)


def test_export_is_an_owned_duplicate() -> None:
    with MemfdHeap().allocate(PAGE) as buf:
        exported = buf.export()
        assert os.fstat(exported.fileno()).st_ino == os.fstat(buf.fileno()).st_ino
        raw = exported.detach()
        assert exported.closed
        os.close(raw)


def test_info_of_a_memfd() -> None:
    with MemfdHeap().allocate(2 * PAGE) as buf:
        info = buf.info()
        assert info.size == 2 * PAGE
        assert info.exp_name == "memfd"


def test_forgotten_buffer_is_closed_with_a_resource_warning() -> None:
    buf: Buffer | None = MemfdHeap().allocate(PAGE)
    assert buf is not None
    fd = buf.fileno()
    with pytest.warns(ResourceWarning, match="unclosed buffer from memfd"):
        del buf
    gc.collect()
    assert_fd_closed(fd)


def test_fd_resource_rejects_non_fds_with_a_usage_error() -> None:
    before = open_fds()
    for bad in (-1, True, "3", None, 1.5, 2**31, 2**63):
        with pytest.raises(UsageError, match="thing: not a file descriptor"):
            FdResource(bad, description="thing")  # type: ignore[arg-type]
    assert open_fds() == before


def test_memfd_seals() -> None:
    import fcntl

    with Memfd(4 * PAGE) as mfd:
        assert mfd.seals & fcntl.F_SEAL_SHRINK
        with pytest.raises(PermissionError):  # EPERM: sealed against shrinking
            os.ftruncate(mfd.fileno(), PAGE)
    with Memfd(PAGE, seal_shrink=False) as mfd:
        assert not mfd.seals & fcntl.F_SEAL_SHRINK
    with pytest.raises(UsageError):
        Memfd(-1)


def test_a_sync_interrupted_is_retried_and_other_errors_are_typed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The retry logic of the CPU access brackets, with the ioctl replaced (pure logic: the
    # kernel's side is covered by the VM tests).
    import errno
    import fcntl

    import devalloc.buffer as buffer_module
    from devalloc.errors import KernelError
    from devalloc.uapi.dma_buf import DMA_BUF_IOCTL_SYNC

    calls: list[tuple[int, int, bytes]] = []
    results = [OSError(errno.EAGAIN, "again"), None]

    def fake_ioctl(fd: int, request: int, arg: bytearray, mutate: bool) -> int:
        calls.append((fd, request, bytes(arg)))
        result = results.pop(0)
        if result is not None:
            raise result
        return 0

    monkeypatch.setattr(fcntl, "ioctl", fake_ioctl)
    start, _end = buffer_module._SYNC_ARGS["w"]
    with MemfdHeap().allocate(4096) as buf:
        buf._sync_failed(99, start, OSError(errno.EINTR, "interrupted"))
        assert calls == [(99, DMA_BUF_IOCTL_SYNC, bytes(start))] * 2
        results[:] = [OSError(errno.EIO, "io")]
        with pytest.raises(KernelError, match=r"CPU access sync .*WRITE.* of buffer from memfd"):
            buf._sync_failed(99, start, OSError(errno.EINTR, "interrupted"))
        with pytest.raises(KernelError) as info:
            buf._sync_failed(99, start, OSError(errno.EBADF, "bad"))
        assert info.value.errno == errno.EBADF
        assert info.value.operation == "DMA_BUF_IOCTL_SYNC"


def test_close_with_a_view_kept_past_its_access_closes_and_says_so() -> None:
    buf = MemfdHeap().allocate(PAGE)
    fd = buf.fileno()
    closed: list[int] = []
    buf.add_close_hook(closed.append)
    with buf.cpu_access("w") as view:
        view[:4] = b"kept"
        kept = view[:]
    with pytest.raises(UsageError, match="outlived its cpu_access block"):
        buf.close()
    assert buf.closed
    assert_fd_closed(fd)  # the buffer's own fd is closed all the same
    assert closed == [PAGE]
    assert bytes(kept[:4]) == b"kept"  # Python keeps the memory mapped for the view ...
    kept.release()  # ... until it goes (with mmap's own duplicate fd)
    buf.close()  # idempotent, and quiet now
    gc.collect()


@pytest.mark.parametrize("fd", [2**31, 2**63, -1, 1.5, "3", None, True])
def test_from_fd_refuses_what_is_not_an_fd(fd: object) -> None:
    with pytest.raises(UsageError):
        Buffer.from_fd(fd)  # type: ignore[arg-type]


def test_from_fd_refuses_a_fileno_that_is_not_an_fd() -> None:
    class Liar:
        def fileno(self) -> object:
            return 2**40

    with pytest.raises(UsageError, match="not a file descriptor"):
        Buffer.from_fd(Liar())  # type: ignore[arg-type]


@pytest.mark.parametrize("fd", [2**31, -1, True, 1.0])
def test_the_constructor_refuses_what_is_not_an_fd(fd: object) -> None:
    with pytest.raises(UsageError, match="not a file descriptor"):
        Buffer(fd, exporter="test", size=PAGE)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", [bytearray(), [], {}, None, 1, b"r", "x"])
def test_cpu_access_refuses_a_bad_mode(mode: object) -> None:
    with MemfdHeap().allocate(PAGE) as buf, pytest.raises(UsageError, match="mode must be"):
        buf.cpu_access(mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["\udcff", 7, None, "x" * 40, "a\0b"])
def test_set_name_refuses_a_bad_name(name: object) -> None:
    with MemfdHeap().allocate(PAGE) as buf, pytest.raises(UsageError, match="name"):
        buf.set_name(name)  # type: ignore[arg-type]
