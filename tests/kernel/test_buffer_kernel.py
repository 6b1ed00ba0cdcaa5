"""Buffer extras on real dma-bufs: importing with from_fd (heap, udmabuf and DRM exports),
read-only imports, names, protected flags, layouts, and garbage collection of imports."""

from __future__ import annotations

import dataclasses
import fcntl
import gc
import os

import pytest

from devalloc.buffer import Buffer
from devalloc.drm import DrmDevice
from devalloc.errors import ClosedResourceError, UsageError
from devalloc.formats import LayoutRules, layout
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.heaps.udmabuf import Memfd, UdmabufDevice

from ..conftest import assert_fd_closed, open_fds

pytestmark = pytest.mark.kernel

PAGE = os.sysconf("SC_PAGE_SIZE")


def test_from_fd_imports_a_heap_buffer(system_heap: DmaHeap) -> None:
    with system_heap.allocate(4 * PAGE) as original:
        with original.cpu_access("w") as view:
            view[:6] = b"shared"
        alone = original.info().count
        imported = Buffer.from_fd(original.fileno())  # borrowed: the original keeps its fd
        fd = imported.fileno()
        assert fd != original.fileno()
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert imported.exporter == "system"
        assert imported.size == 4 * PAGE
        assert imported.is_dmabuf
        info = imported.info()
        assert info.inode == original.info().inode
        assert info.count == alone + 1
        with imported.cpu_access("rw") as view:
            assert bytes(view[:6]) == b"shared"
            view[6:9] = b"!!!"
        with original.cpu_access("r") as view:
            assert bytes(view[:9]) == b"shared!!!"
        imported.close()
        assert_fd_closed(fd)
        assert original.info().count == alone
        with original.cpu_access("r") as view:  # the original is untouched
            assert view[0] == ord("s")


def test_from_fd_imports_udmabuf_and_drm_exports(udmabuf: UdmabufDevice, vgem: DrmDevice) -> None:
    with (
        Memfd(2 * PAGE) as mfd,
        udmabuf.create(mfd, 0, 2 * PAGE) as buf,
        Buffer.from_fd(buf) as imported,
    ):
        assert (imported.exporter, imported.size) == ("udmabuf", 2 * PAGE)
    with vgem.create_dumb(32, 32, 32) as dumb, vgem.export(dumb) as exported:
        with Buffer.from_fd(exported) as imported:
            assert imported.exporter == "drm"
            assert imported.size == dumb.layout.size
            with imported.cpu_access("w") as view:
                view[:2] = b"ok"
        with exported.cpu_access("r") as view:
            assert bytes(view[:2]) == b"ok"


def test_a_read_only_import_cannot_write(system_heap: DmaHeap) -> None:
    with (
        system_heap.allocate(PAGE, fd_flags=os.O_RDONLY | os.O_CLOEXEC) as ro,
        Buffer.from_fd(ro) as imported,
    ):
        with imported.cpu_access("r") as view:
            assert view.readonly
            with pytest.raises(TypeError):
                view[0] = 1
        for mode in ("w", "rw"):
            with pytest.raises(UsageError, match="read-only"), imported.cpu_access(mode):
                pass


def test_from_fd_of_a_memfd_is_refused_in_the_kernel_vm_too() -> None:
    with Memfd(PAGE) as mfd:
        before = open_fds()
        with pytest.raises(UsageError, match="not a dma-buf"):
            Buffer.from_fd(mfd)
        assert open_fds() == before


def test_names_on_an_import(system_heap: DmaHeap) -> None:
    with system_heap.allocate(PAGE) as buf, Buffer.from_fd(buf) as imported:
        imported.set_name("from-elsewhere")
        assert buf.info().name == "from-elsewhere"  # one dma-buf, one name
        with pytest.raises(UsageError, match="at most 31 bytes"):
            imported.set_name("x" * 32)
        assert buf.info().name == "from-elsewhere"


def test_a_protected_import_is_not_mapped(system_heap: DmaHeap) -> None:
    with system_heap.allocate(PAGE) as buf, Buffer.from_fd(buf, protected=True) as imported:
        with pytest.raises(UsageError, match="protected memory"), imported.cpu_access("r"):
            pass
        assert imported._map is None
        assert imported.info().exp_name == "system"  # still a dma-buf to hand to devices


@pytest.mark.parametrize(
    ("protected", "message"),
    [(True, "protected memory"), (False, "memory the CPU cannot map")],
)
def test_a_heap_s_properties_reach_its_buffers(
    system_heap: DmaHeap, protected: bool, message: str
) -> None:
    # A heap whose properties say protected (or not CPU-mappable) hands out buffers that refuse
    # CPU access: the system heap opened with such properties shows the allocation path.
    props = dataclasses.replace(system_heap.properties, protected=protected, cpu_mappable=False)
    with DmaHeap(system_heap.path or "", properties=props) as heap, heap.allocate(PAGE) as buf:
        assert (buf.protected, buf.cpu_mappable) == (protected, False)
        with pytest.raises(UsageError, match=message):
            buf.cpu_access("r")
        assert buf.info().exp_name == "system"
    with system_heap.allocate(PAGE) as plain:
        assert (plain.protected, plain.cpu_mappable, plain._writable) == (False, True, True)


def test_a_layout_travels_with_an_import(system_heap: DmaHeap) -> None:
    nv12 = layout("NV12", 64, 64, rules=LayoutRules(pitch_align=64))
    size = nv12.size or 0
    with system_heap.allocate(size) as buf:
        with Buffer.from_fd(buf, layout=nv12) as imported:
            assert imported.layout is nv12
        before = open_fds()
        small = layout("NV12", 128, 128)
        with pytest.raises(UsageError, match="past the buffer's"):
            Buffer.from_fd(buf, layout=small)
        assert open_fds() == before


def test_sync_after_close_and_a_forgotten_import(system_heap: DmaHeap) -> None:
    with system_heap.allocate(PAGE) as buf:
        imported = Buffer.from_fd(buf)
        with imported.cpu_access("rw") as view:
            view[0] = 3
        imported.close()
        with pytest.raises(ClosedResourceError), imported.cpu_access("r"):
            pass
        forgotten: Buffer | None = Buffer.from_fd(buf)
        assert forgotten is not None
        fd = forgotten.fileno()
        with pytest.warns(ResourceWarning, match="unclosed buffer from system"):
            del forgotten
        gc.collect()
        assert_fd_closed(fd)
