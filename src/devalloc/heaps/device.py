"""The DRM "device heap": buffers allocated by a DRM device as dumb buffers, exported as dma-bufs.

Example:
    >>> with DeviceHeap("/dev/dri/card0") as heap:            # doctest: +SKIP
    ...     print(heap.driver, heap.properties.location)
    ...     with heap.allocate(1 << 20) as buf:
    ...         buf.info().exp_name
    vgem system
    'drm'

Each allocation is DRM_IOCTL_MODE_CREATE_DUMB on a card node, DRM_IOCTL_PRIME_HANDLE_TO_FD
(O_RDWR | O_CLOEXEC), and DRM_IOCTL_GEM_CLOSE right after the export: the dma-buf keeps the GEM
object alive, so the heap holds no handle per buffer. Dumb buffers are refused on render nodes,
and GET_CAP(DUMB_BUFFER) is not trusted alone (vgem answers EOPNOTSUPP although CREATE_DUMB works
on its card node): a heap is confirmed by creating and releasing a 1x1 dumb buffer.
"""

from __future__ import annotations

import errno
import os
from contextlib import ExitStack

from ..buffer import Buffer, check_name, named
from ..drm import DrmDevice
from ..errors import KernelError, UsageError, error_from_errno
from ..limits import charge as _charge
from ..limits import discharge as _discharge
from ..uapi import drm as _uapi_drm
from .properties import CpuCache, HeapProperties

#: Drivers whose dumb buffers are shmem pages in main memory (drm_gem_shmem helpers).
SYSTEM_MEMORY_DRIVERS = frozenset({"vgem", "vkms", "simpledrm", "udl", "virtio_gpu"})
#: CPU mapping of dumb buffers, where the driver fixes it (vgem sets map_wc on its objects).
DRIVER_CPU_CACHE: dict[str, CpuCache] = {"vgem": "write-combined"}

# Dumb buffers are asked for as rows of 1024 32-bit pixels: 4096 bytes a row (or the driver's
# larger pitch), so any size is a whole number of rows.
_WIDTH = 1024
_BPP = 32
_ROW = _WIDTH * _BPP // 8


def supports_dumb_buffers(device: DrmDevice) -> bool:
    """Whether ``device`` can allocate dumb buffers: GET_CAP(DUMB_BUFFER), or a 1x1 dumb buffer
    created and released at once when the capability is not advertised."""
    try:
        if device.get_cap(_uapi_drm.DRM_CAP_DUMB_BUFFER):
            return True
    except KernelError:
        pass
    try:
        with device.create_dumb(1, 1, _BPP):
            return True
    except KernelError:
        return False


def device_location(path: str, driver: str, sysfs: str = "/sys") -> str:
    """Where a DRM device's dumb buffers live: "system" for drivers known to use main memory,
    else the device's own memory, named ``device:DRIVER:BUS-ID`` (from sysfs) or by node."""
    if driver in SYSTEM_MEMORY_DRIVERS:
        return "system"
    link = os.path.join(sysfs, "class", "drm", os.path.basename(path), "device")
    bus_id = os.path.basename(os.path.realpath(link)) if os.path.exists(link) else ""
    return f"device:{driver or 'unknown'}:{bus_id or os.path.basename(path)}"


class DeviceHeap:
    """A DRM card node used as a heap (dumb buffers exported with PRIME).

    Args:
        path: the card node (``/dev/dri/card0``); render nodes refuse dumb buffers.
        sysfs: where sysfs is mounted (for the memory location of unknown drivers).
        dma_bits: the physical reach of system memory, if known (applied to system-memory
            drivers).

    Raises:
        PermissionDeniedError, NotFoundError: the node cannot be opened.
        NotSupportedError: the device cannot allocate dumb buffers.
    """

    def __init__(self, path: str, *, sysfs: str = "/sys", dma_bits: int | None = None) -> None:
        with ExitStack() as stack:
            device = stack.enter_context(DrmDevice(path))
            self.driver = device.version().name
            if not supports_dumb_buffers(device):
                raise error_from_errno(
                    errno.EOPNOTSUPP,
                    f"{path} ({self.driver}) cannot allocate dumb buffers: not a device heap",
                    path=path,
                    operation="DRM_IOCTL_MODE_CREATE_DUMB",
                )
            location = device_location(path, self.driver, sysfs)
            self.properties = HeapProperties(
                kind="device",
                name=f"{path} ({self.driver})",
                contiguous=None,
                cpu_cache=DRIVER_CPU_CACHE.get(self.driver),
                protected=False,
                cpu_mappable=True,
                dma_bits=dma_bits if location == "system" else None,
                location=location,
            )
            self.device = device
            stack.pop_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self.device.closed

    def allocate(self, size: int, *, name: str | None = None) -> Buffer:
        """A dma-buf of at least ``size`` bytes (whole rows of the driver's pitch).

        Raises:
            UsageError: a bad size or name.
            AllocationLimitError: above a cap of :mod:`devalloc.limits`.
            KernelError: what CREATE_DUMB or PRIME_HANDLE_TO_FD said (the handle is released).
        """
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise UsageError(f"device heap {self.properties.name}: size must be a positive integer")
        if name is not None:
            check_name(name)
        rows = -(-size // _ROW)
        if rows >= 1 << 32:
            raise UsageError(f"device heap {self.properties.name}: {size} bytes is too large")
        charged = rows * _ROW  # the least the driver makes (its pitch may be larger)
        _charge(charged, f"device heap {self.properties.name}")
        try:
            with self.device.create_dumb(_WIDTH, rows, _BPP) as dumb:
                buf = self.device.export(dumb)
        except BaseException:
            _discharge(charged)
            raise
        # The GEM handle is closed (GEM_CLOSE) now: the dma-buf alone keeps the object. Charge
        # what the driver really made (a negative discharge charges the difference).
        if buf.size != charged:
            _discharge(charged - buf.size)
        buf.add_close_hook(_discharge)
        return named(buf, name)

    def close(self) -> None:
        """Close the DRM node. Idempotent; buffers already exported stay valid."""
        self.device.close()

    def __enter__(self) -> DeviceHeap:
        self.device.fileno()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DeviceHeap {self.properties.name}>"
