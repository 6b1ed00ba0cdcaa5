"""DRM PRIME import/export and dumb buffers on vgem, through devalloc's API."""

from __future__ import annotations

import errno
import os

import pytest

from devalloc.drm import DrmDevice, GemHandle
from devalloc.errors import ClosedResourceError, KernelError, UsageError
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.heaps.memfd import MemfdHeap
from devalloc.heaps.udmabuf import Memfd, UdmabufDevice
from devalloc.uapi import drm as uapi_drm

from ..conftest import assert_fd_closed

pytestmark = pytest.mark.kernel


def _handle_is_released(dev: DrmDevice, handle: int) -> bool:
    return not dev.handle_exists(handle)


def test_vgem_identity(vgem: DrmDevice, vgem_render: DrmDevice) -> None:
    for dev in (vgem, vgem_render):
        version = dev.version()
        assert version.name == "vgem"
        assert version.desc
    assert vgem.get_cap(uapi_drm.DRM_CAP_PRIME) & uapi_drm.DRM_PRIME_CAP_IMPORT


def test_import_heap_buffer_into_vgem_and_release(system_heap: DmaHeap, vgem: DrmDevice) -> None:
    with system_heap.allocate(1 << 20) as buf:
        handle = vgem.import_buffer(buf)
        assert handle.handle > 0
        # The same dma-buf imported twice is the same GEM object: the kernel returns one handle,
        # and devalloc releases it only when its last owner closes.
        with vgem.import_buffer(buf) as again:
            assert again.handle == handle.handle
        assert vgem.handle_exists(handle.handle), "released while an owner still holds it"
        handle.close()
        handle.close()  # idempotent
        assert _handle_is_released(vgem, handle.handle)


def test_import_then_export_gives_back_the_same_dma_buf(
    system_heap: DmaHeap, vgem_render: DrmDevice
) -> None:
    with (
        system_heap.allocate(8192) as buf,
        vgem_render.import_buffer(buf) as handle,
        vgem_render.export(handle) as exported,
    ):
        assert os.fstat(exported.fileno()).st_ino == os.fstat(buf.fileno()).st_ino
        assert exported.info().exp_name == "system"


def test_import_udmabuf_into_vgem(udmabuf: UdmabufDevice, vgem: DrmDevice) -> None:
    with (
        Memfd(1 << 16) as mfd,
        udmabuf.create(mfd, 0, 1 << 16) as buf,
        vgem.import_buffer(buf) as handle,
    ):
        assert handle.handle > 0


def test_import_of_a_memfd_is_refused_before_the_kernel(vgem: DrmDevice) -> None:
    with MemfdHeap().allocate(4096) as buf, pytest.raises(UsageError, match="not a dma-buf"):
        vgem.import_buffer(buf)


def test_dumb_buffer_on_vgem_card_exports_a_mappable_dma_buf(vgem: DrmDevice) -> None:
    with vgem.create_dumb(64, 48, 32) as dumb:
        assert dumb.layout.pitch >= 64 * 4
        assert dumb.layout.size >= dumb.layout.pitch * 48
        buf = vgem.export(dumb)
        fd = buf.fileno()
        assert buf.info().exp_name == "drm"  # the DRM core's PRIME exporter
        assert buf.size == dumb.layout.size
        with buf.cpu_access("w") as view:
            view[:4] = b"vgem"
        with buf.cpu_access("r") as view:
            assert bytes(view[:4]) == b"vgem"
        buf.close()
        assert_fd_closed(fd)
    assert _handle_is_released(vgem, dumb.handle)


def test_dumb_buffers_are_refused_on_the_render_node(vgem_render: DrmDevice) -> None:
    with pytest.raises(KernelError) as info:
        vgem_render.create_dumb(64, 64, 32)
    assert info.value.operation == "DRM_IOCTL_MODE_CREATE_DUMB"
    assert info.value.path == vgem_render.path


def test_vgem_does_not_advertise_dumb_buffers(vgem: DrmDevice) -> None:
    # vgem has no dumb_create in its driver ops' capability list although CREATE_DUMB works on
    # card0: GET_CAP(DUMB_BUFFER) answers EOPNOTSUPP. Record the fact: discovery must not trust it.
    with pytest.raises(KernelError) as info:
        vgem.get_cap(uapi_drm.DRM_CAP_DUMB_BUFFER)
    assert info.value.errno == errno.EOPNOTSUPP


def test_bad_fd_import_fails_cleanly(system_heap: DmaHeap, vgem: DrmDevice) -> None:
    buf = system_heap.allocate(4096)
    buf.close()
    with pytest.raises(ClosedResourceError, match="closed"):
        vgem.import_buffer(buf)


def test_forgotten_handle_is_released_with_a_warning(system_heap: DmaHeap, vgem: DrmDevice) -> None:
    with system_heap.allocate(4096) as buf:
        handle: GemHandle | None = vgem.import_buffer(buf)
        assert handle is not None
        number = handle.handle
        with pytest.warns(ResourceWarning, match="GEM handle"):
            del handle  # the last reference: the finalizer runs now
        assert _handle_is_released(vgem, number)


def test_device_node_closes(vgem: DrmDevice) -> None:
    assert vgem.path is not None
    dev = DrmDevice(vgem.path)
    fd = dev.fileno()
    dev.close()
    assert_fd_closed(fd)
