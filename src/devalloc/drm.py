"""DRM devices: identity, capabilities, PRIME import/export and dumb buffers.

Example:
    >>> with DrmDevice("/dev/dri/card0") as dev:                  # doctest: +SKIP
    ...     dev.version().name
    ...     with heap.allocate(4096) as buf, dev.import_buffer(buf) as handle:
    ...         handle.handle > 0
    'vgem'
    True

A GEM handle is a per-device kernel object, not an fd; :class:`GemHandle` owns one and releases it
with DRM_IOCTL_GEM_CLOSE (idempotent; a forgotten handle is released by the garbage collector
with a ResourceWarning). Handles die with their device fd, so closing the device first is safe.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Self

from ._fd import FdResource, ioctl, open_fd
from .buffer import Buffer
from .errors import ClosedResourceError, DevallocError, NotFoundError, UsageError
from .uapi import drm as _uapi

DRI_DIR = "/dev/dri"


@dataclass(frozen=True)
class DrmVersion:
    """DRM_IOCTL_VERSION: the driver's name, date, description and version."""

    name: str
    date: str
    desc: str
    major: int
    minor: int
    patchlevel: int


def drm_driver_name(node: str, sysfs: str = "/sys") -> str:
    """The kernel driver behind a DRM node: DRM_IOCTL_VERSION when the node can be opened, else
    sysfs (the device's driver link, or its modalias for driverless virtual devices like vgem);
    "" when neither tells."""
    if os.access(node, os.R_OK | os.W_OK):
        try:
            with DrmDevice(node) as dev:
                return dev.version().name
        except DevallocError:
            pass
    device = os.path.join(sysfs, "class", "drm", os.path.basename(node), "device")
    link = os.path.join(device, "driver")
    if os.path.islink(link):
        return os.path.basename(os.readlink(link))
    try:
        with open(os.path.join(device, "modalias"), encoding="ascii") as f:
            return f.read().strip().partition(":")[2]
    except OSError:
        return ""


def drm_nodes(dev: str = DRI_DIR) -> list[str]:
    """The DRM nodes (card*, renderD*) under ``dev``: cards first, then render nodes."""
    try:
        names = os.listdir(dev)
    except FileNotFoundError:
        return []
    nodes = [n for n in names if re.fullmatch(r"(card|renderD)\d+", n)]
    nodes.sort(key=lambda n: (n.startswith("renderD"), int(re.sub(r"\D", "", n))))
    return [os.path.join(dev, n) for n in nodes]


def drm_nodes_of_driver(driver: str, sysfs: str = "/sys") -> list[str]:
    """The /dev/dri nodes (cards first, then render nodes) whose kernel driver is ``driver``."""
    return [n for n in drm_nodes() if drm_driver_name(n, sysfs) == driver]


def _release_handle(device: DrmDevice, handle: int, forgotten: bool) -> None:
    if not forgotten:
        device._unref_handle(handle)
        return
    # Release first: the warning may be turned into an exception by a warnings filter.
    with contextlib.suppress(DevallocError):
        device._unref_handle(handle)
    warnings.warn(
        f"GEM handle {handle} on {device.description} released by the garbage collector",
        ResourceWarning,
        stacklevel=2,
    )


class GemHandle:
    """Owns one GEM handle on a DRM device; ``close()`` issues DRM_IOCTL_GEM_CLOSE once."""

    def __init__(self, device: DrmDevice, handle: int, *, what: str) -> None:
        self.device = device
        self.handle = handle
        self.what = what
        self._closed = False
        self._finalizer = weakref.finalize(self, _release_handle, device, handle, True)
        self._finalizer.atexit = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the handle. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        _release_handle(self.device, self.handle, False)

    def __enter__(self) -> Self:
        if self._closed:
            raise ClosedResourceError(f"GEM handle {self.handle} ({self.what}) is closed")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<GemHandle {self.handle} {self.what} on {self.device.description}>"


@dataclass(frozen=True)
class DumbLayout:
    """What DRM_IOCTL_MODE_CREATE_DUMB chose: pitch and size in bytes."""

    width: int
    height: int
    bpp: int
    pitch: int
    size: int


class DumbBuffer(GemHandle):
    """A dumb buffer's GEM handle together with the pitch and size the driver chose."""

    def __init__(self, device: DrmDevice, handle: int, layout: DumbLayout) -> None:
        super().__init__(device, handle, what=f"dumb {layout.width}x{layout.height}x{layout.bpp}")
        self.layout = layout


class DrmDevice(FdResource):
    """An open DRM node (/dev/dri/card* or renderD*)."""

    def __init__(self, path: str) -> None:
        # The kernel keeps one handle per GEM object per fd: importing the same dma-buf twice
        # returns the same handle, and one GEM_CLOSE releases it. Count owners per handle.
        self._handle_refs: dict[int, int] = {}
        fd = open_fd(path, os.O_RDWR, what="DRM device")
        super().__init__(fd, description=f"DRM device {path}", path=path)

    def _own_handle(self, handle: int, what: str) -> GemHandle:
        self._count_handle(handle)
        return GemHandle(self, handle, what=what)

    def _count_handle(self, handle: int) -> None:
        self._handle_refs[handle] = self._handle_refs.get(handle, 0) + 1

    def _unref_handle(self, handle: int) -> None:
        refs = self._handle_refs.get(handle, 0) - 1
        if refs > 0:
            self._handle_refs[handle] = refs
            return
        self._handle_refs.pop(handle, None)
        if not self.closed:  # closing the device fd released every handle already
            self.gem_close(handle)

    def close(self) -> None:
        """Close the device; the kernel releases every GEM handle it still had."""
        self._handle_refs.clear()
        super().close()

    def _ioctl(self, request: int, arg: Any, name: str, what: str) -> int:
        return ioctl(self.fileno(), request, arg, name=name, what=what, path=self.path)

    def version(self) -> DrmVersion:
        """The driver's identity (DRM_IOCTL_VERSION, asked twice: lengths, then strings)."""
        v = _uapi.drm_version()
        what = f"query the driver version of {self.description}"
        self._ioctl(_uapi.DRM_IOCTL_VERSION, v, "DRM_IOCTL_VERSION", what)
        bufs = [ctypes.create_string_buffer(n + 1) for n in (v.name_len, v.date_len, v.desc_len)]
        v.name, v.date, v.desc = (ctypes.cast(b, ctypes.c_char_p) for b in bufs)
        self._ioctl(_uapi.DRM_IOCTL_VERSION, v, "DRM_IOCTL_VERSION", what)
        name, date, desc = (b.value.decode(errors="replace") for b in bufs)
        return DrmVersion(name, date, desc, v.version_major, v.version_minor, v.version_patchlevel)

    def get_cap(self, capability: int) -> int:
        """DRM_IOCTL_GET_CAP. Raises the kernel's error (e.g. NotSupportedError) as it comes."""
        arg = _uapi.drm_get_cap(capability=capability)
        name = _cap_name(capability)
        self._ioctl(_uapi.DRM_IOCTL_GET_CAP, arg, "DRM_IOCTL_GET_CAP", f"query {name}")
        return int(arg.value)

    def set_client_cap(self, capability: int, value: int = 1) -> None:
        """DRM_IOCTL_SET_CLIENT_CAP (e.g. universal planes, atomic)."""
        arg = _uapi.drm_set_client_cap(capability=capability, value=value)
        self._ioctl(
            _uapi.DRM_IOCTL_SET_CLIENT_CAP,
            arg,
            "DRM_IOCTL_SET_CLIENT_CAP",
            f"set client capability {capability} to {value}",
        )

    def import_buffer(self, buffer: Buffer) -> GemHandle:
        """Import a dma-buf (DRM_IOCTL_PRIME_FD_TO_HANDLE): the handle it becomes on this device."""
        if not buffer.is_dmabuf:
            raise UsageError(f"{buffer.description} is not a dma-buf: {self.path} cannot import it")
        arg = _uapi.drm_prime_handle(fd=buffer.fileno())
        self._ioctl(
            _uapi.DRM_IOCTL_PRIME_FD_TO_HANDLE,
            arg,
            "DRM_IOCTL_PRIME_FD_TO_HANDLE",
            f"import {buffer.description} ({buffer.size} bytes)",
        )
        return self._own_handle(int(arg.handle), f"import of {buffer.description}")

    def export(self, handle: GemHandle, *, writable: bool = True) -> Buffer:
        """Export a GEM handle as a dma-buf (DRM_IOCTL_PRIME_HANDLE_TO_FD, O_CLOEXEC[|O_RDWR])."""
        if handle.device is not self or handle.closed:
            raise UsageError(f"{handle!r} is not an open handle of {self.description}")
        flags = _uapi.DRM_CLOEXEC | (_uapi.DRM_RDWR if writable else 0)
        arg = _uapi.drm_prime_handle(handle=handle.handle, flags=int(flags))
        self._ioctl(
            _uapi.DRM_IOCTL_PRIME_HANDLE_TO_FD,
            arg,
            "DRM_IOCTL_PRIME_HANDLE_TO_FD",
            f"export GEM handle {handle.handle} ({handle.what})",
        )
        return Buffer(int(arg.fd), exporter=f"{self.description} GEM {handle.handle}")

    def create_dumb(self, width: int, height: int, bpp: int) -> DumbBuffer:
        """DRM_IOCTL_MODE_CREATE_DUMB: a linear buffer whose pitch and size the driver picks."""
        for label, value in (("width", width), ("height", height), ("bpp", bpp)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < (1 << 32):
                raise UsageError(f"dumb buffer {label} must be a positive 32-bit integer")
        arg = _uapi.drm_mode_create_dumb(width=width, height=height, bpp=bpp)
        self._ioctl(
            _uapi.DRM_IOCTL_MODE_CREATE_DUMB,
            arg,
            "DRM_IOCTL_MODE_CREATE_DUMB",
            f"create a {width}x{height} {bpp}-bpp dumb buffer",
        )
        layout = DumbLayout(width, height, bpp, int(arg.pitch), int(arg.size))
        self._count_handle(int(arg.handle))
        return DumbBuffer(self, int(arg.handle), layout)

    def handle_exists(self, handle: int) -> bool:
        """Whether ``handle`` names a live GEM object on this fd (probed with a PRIME export that
        is closed at once; ENOENT means no such handle). For leak checks and diagnostics."""
        arg = _uapi.drm_prime_handle(handle=handle, flags=int(_uapi.DRM_CLOEXEC))
        try:
            self._ioctl(
                _uapi.DRM_IOCTL_PRIME_HANDLE_TO_FD,
                arg,
                "DRM_IOCTL_PRIME_HANDLE_TO_FD",
                f"probe GEM handle {handle}",
            )
        except NotFoundError:
            return False
        os.close(arg.fd)
        return True

    def gem_close(self, handle: int) -> None:
        """DRM_IOCTL_GEM_CLOSE on a raw handle. Owners use GemHandle.close(), which counts."""
        arg = _uapi.drm_gem_close(handle=handle)
        self._ioctl(
            _uapi.DRM_IOCTL_GEM_CLOSE, arg, "DRM_IOCTL_GEM_CLOSE", f"release GEM handle {handle}"
        )


def _cap_name(capability: int) -> str:
    try:
        return f"DRM_CAP_{_uapi.DrmCap(capability).name}"
    except ValueError:
        return f"DRM capability {capability}"
