"""DRM devices: identity, capabilities, PRIME import/export, dumb buffers, KMS planes, framebuffers.

Example:
    >>> with DrmDevice("/dev/dri/card0") as dev:                  # doctest: +SKIP
    ...     dev.version().name
    ...     with heap.allocate(4096) as buf, dev.import_buffer(buf) as handle:
    ...         handle.handle > 0
    'vgem'
    True
    >>> with DrmDevice("/dev/dri/card1") as kms:                  # doctest: +SKIP
    ...     [(p.type, len(p.pairs)) for p in kms.planes()]        # IN_FORMATS, universal planes
    ...     with kms.create_dumb(64, 64, 32) as bo:
    ...         with kms.add_framebuffer(64, 64, fourcc_code("XR24"), [bo], [bo.layout.pitch],
    ...                                  [0], modifier=0) as fb:  # ADDFB2; RMFB on close
    ...             fb.fb_id > 0
    [('primary', 2)]
    True

A GEM handle is a per-device kernel object, not an fd; :class:`GemHandle` owns one and releases it
with DRM_IOCTL_GEM_CLOSE (idempotent; a forgotten handle is released by the garbage collector
with a ResourceWarning). Handles die with their device fd, so closing the device first is safe.
:class:`Framebuffer` owns a framebuffer the same way (DRM_IOCTL_MODE_RMFB).

KMS queries (MODE_GETRESOURCES, GETPLANERESOURCES/GETPLANE, OBJ_GETPROPERTIES, GETPROPERTY,
GETPROPBLOB) are two-pass: counts first, then arrays, asked again when a count grew in between.
They need a primary (card) node of a modesetting driver: vgem answers EOPNOTSUPP, render nodes
EACCES.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from .._fd import FdResource, ioctl, open_fd
from ..buffer import Buffer
from ..errors import (
    ClosedResourceError,
    DevallocError,
    NotFoundError,
    UsageError,
    error_from_errno,
)
from ..formats.fourcc import fourcc_to_str
from ..formats.modifier import DRM_FORMAT_MOD_LINEAR
from ..uapi import drm as _uapi

DRI_DIR = "/dev/dri"
#: Two-pass KMS queries retry this often when the kernel's counts change in between.
_MAX_COUNT_RETRIES = 8


@dataclass(frozen=True)
class DrmVersion:
    """DRM_IOCTL_VERSION: the driver's name, date, description and version."""

    name: str
    date: str
    desc: str
    major: int
    minor: int
    patchlevel: int


@dataclass(frozen=True)
class DrmResources:
    """DRM_IOCTL_MODE_GETRESOURCES: the KMS objects and the framebuffer size limits.

    Attributes:
        fb_ids: framebuffers of this file.
        crtc_ids: CRTCs.
        connector_ids: connectors.
        encoder_ids: encoders.
        min_width: smallest framebuffer width.
        max_width: largest framebuffer width.
        min_height: smallest framebuffer height.
        max_height: largest framebuffer height.
    """

    fb_ids: tuple[int, ...]
    crtc_ids: tuple[int, ...]
    connector_ids: tuple[int, ...]
    encoder_ids: tuple[int, ...]
    min_width: int
    max_width: int
    min_height: int
    max_height: int


@dataclass(frozen=True)
class DrmProperty:
    """DRM_IOCTL_MODE_GETPROPERTY: a KMS property's metadata.

    Attributes:
        id: the property id.
        name: its name (``"type"``, ``"IN_FORMATS"``).
        flags: DRM_MODE_PROP_* (type and flags).
        values: range bounds or enum/bitmask values, as the kernel lists them.
        enums: (value, name) of each enum or bitmask entry.
    """

    id: int
    name: str
    flags: int
    values: tuple[int, ...] = ()
    enums: tuple[tuple[int, str], ...] = ()

    @property
    def is_blob(self) -> bool:
        """A blob property: its value is a blob id (0 for none)."""
        return bool(self.flags & _uapi.DRM_MODE_PROP_BLOB)

    @property
    def is_enum(self) -> bool:
        """An enum property: its value is one of :attr:`enums`."""
        return bool(self.flags & _uapi.DRM_MODE_PROP_ENUM)

    def enum_name(self, value: int) -> str | None:
        """The name of enum entry ``value``; None when there is no such entry."""
        return next((name for v, name in self.enums if v == value), None)


#: Plane types by the names of the "type" property's enum entries (drm_plane.c).
PLANE_TYPES = {"Overlay": "overlay", "Primary": "primary", "Cursor": "cursor"}


@dataclass(frozen=True)
class DrmPlane:
    """A KMS plane and the (format, modifier) pairs it scans out.

    Attributes:
        id: the plane id.
        type: ``"primary"``, ``"overlay"`` or ``"cursor"`` (from its "type" property; ``""`` when
            the driver does not expose one).
        possible_crtcs: bitmask of the CRTC indices it can be attached to.
        crtc_id: the CRTC it is on now (0: none).
        fb_id: the framebuffer it shows now (0: none).
        formats: the fourccs of DRM_IOCTL_MODE_GETPLANE, in the driver's order.
        pairs: (fourcc, modifier) pairs from the IN_FORMATS blob in blob order (modifier by
            modifier); when the driver has no IN_FORMATS (no modifier support), every format
            with DRM_FORMAT_MOD_LINEAR, the layout such drivers use for imported buffers.
        in_formats: :attr:`pairs` came from the IN_FORMATS blob.
    """

    id: int
    type: str
    possible_crtcs: int
    crtc_id: int
    fb_id: int
    formats: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]
    in_formats: bool


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


class DeviceObject:
    """Owns one object a DRM device keeps by id (a GEM handle, a framebuffer, a property blob):
    ``close()`` releases it once; one forgotten is released by the garbage collector with a
    ResourceWarning. Subclasses say how to release (``release(device, id, forgotten)``, which
    must not capture the object) and what to call it in messages.
    """

    def __init__(
        self,
        device: DrmDevice,
        object_id: int,
        release: Callable[[Any, int, bool], None],
        what: str,
    ) -> None:
        self.device = device
        self._object_id = object_id
        self._release = release
        self._what = what
        self._closed = False
        self._finalizer = weakref.finalize(self, release, device, object_id, True)
        self._finalizer.atexit = False

    @property
    def closed(self) -> bool:
        """True once released."""
        return self._closed

    def close(self) -> None:
        """Release the object. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        self._release(self.device, self._object_id, False)

    def __enter__(self) -> Self:
        if self._closed:
            raise ClosedResourceError(f"{self._what} is closed")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GemHandle(DeviceObject):
    """Owns one GEM handle on a DRM device; ``close()`` issues DRM_IOCTL_GEM_CLOSE once."""

    def __init__(self, device: DrmDevice, handle: int, *, what: str) -> None:
        super().__init__(device, handle, _release_handle, f"GEM handle {handle} ({what})")
        self.handle = handle
        self.what = what

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


def _remove_framebuffer(device: DrmDevice, fb_id: int, forgotten: bool) -> None:
    if not forgotten:
        if not device.closed:
            device.remove_framebuffer(fb_id)
        return
    with contextlib.suppress(DevallocError):
        if not device.closed:
            device.remove_framebuffer(fb_id)
    warnings.warn(
        f"framebuffer {fb_id} on {device.description} removed by the garbage collector",
        ResourceWarning,
        stacklevel=2,
    )


class Framebuffer(DeviceObject):
    """Owns one KMS framebuffer (DRM_IOCTL_MODE_ADDFB2); ``close()`` issues RMFB once.

    The framebuffer keeps its own references to the GEM objects it was made from, so their
    handles may be closed first. Closing the device removes it too.

    Attributes:
        device: the device it lives on.
        fb_id: the framebuffer id.
        width: width in pixels.
        height: height in pixels.
        fourcc: the DRM pixel format.
        modifier: the modifier it was created with (None: no DRM_MODE_FB_MODIFIERS flag).
    """

    def __init__(
        self,
        device: DrmDevice,
        fb_id: int,
        *,
        width: int,
        height: int,
        fourcc: int,
        modifier: int | None,
    ) -> None:
        super().__init__(device, fb_id, _remove_framebuffer, f"framebuffer {fb_id}")
        self.fb_id = fb_id
        self.width = width
        self.height = height
        self.fourcc = fourcc
        self.modifier = modifier

    def __repr__(self) -> str:
        return (
            f"<Framebuffer {self.fb_id} {fourcc_to_str(self.fourcc)} {self.width}x{self.height}"
            f" on {self.device.description}>"
        )


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

    # --- KMS: resources, planes, properties, framebuffers -------------------------------------

    def resources(self) -> DrmResources:
        """DRM_IOCTL_MODE_GETRESOURCES (asked until the object counts are stable).

        Raises:
            NotSupportedError: not a KMS driver (EOPNOTSUPP), e.g. vgem.
            PermissionDeniedError: a render node (KMS ioctls are refused there).
        """
        what = f"list the KMS resources of {self.description}"
        for _ in range(_MAX_COUNT_RETRIES):
            res = _uapi.drm_mode_card_res()
            self._ioctl(_uapi.DRM_IOCTL_MODE_GETRESOURCES, res, "DRM_IOCTL_MODE_GETRESOURCES", what)
            counts = (res.count_fbs, res.count_crtcs, res.count_connectors, res.count_encoders)
            arrays = [(ctypes.c_uint32 * max(n, 1))() for n in counts]
            res.fb_id_ptr, res.crtc_id_ptr, res.connector_id_ptr, res.encoder_id_ptr = (
                ctypes.addressof(a) for a in arrays
            )
            self._ioctl(_uapi.DRM_IOCTL_MODE_GETRESOURCES, res, "DRM_IOCTL_MODE_GETRESOURCES", what)
            now = (res.count_fbs, res.count_crtcs, res.count_connectors, res.count_encoders)
            if all(n <= m for n, m in zip(now, counts, strict=True)):
                fbs, crtcs, connectors, encoders = (
                    tuple(int(i) for i in a[:n]) for a, n in zip(arrays, now, strict=True)
                )
                return DrmResources(
                    fb_ids=fbs,
                    crtc_ids=crtcs,
                    connector_ids=connectors,
                    encoder_ids=encoders,
                    min_width=int(res.min_width),
                    max_width=int(res.max_width),
                    min_height=int(res.min_height),
                    max_height=int(res.max_height),
                )
        raise error_from_errno(
            errno.EAGAIN, f"{what}: the object counts kept changing", path=self.path
        )

    def enable_universal_planes(self) -> None:
        """Set DRM_CLIENT_CAP_UNIVERSAL_PLANES on this file, so primary and cursor planes are
        listed too (not only overlays)."""
        self.set_client_cap(_uapi.DRM_CLIENT_CAP_UNIVERSAL_PLANES, 1)

    def plane_ids(self) -> tuple[int, ...]:
        """DRM_IOCTL_MODE_GETPLANERESOURCES: the ids of the planes this file may see (overlays
        only unless :meth:`enable_universal_planes` was called)."""
        what = f"list the planes of {self.description}"
        request = _uapi.DRM_IOCTL_MODE_GETPLANERESOURCES
        for _ in range(_MAX_COUNT_RETRIES):
            arg = _uapi.drm_mode_get_plane_res()
            self._ioctl(request, arg, "DRM_IOCTL_MODE_GETPLANERESOURCES", what)
            count = int(arg.count_planes)
            ids = (ctypes.c_uint32 * max(count, 1))()
            arg.plane_id_ptr = ctypes.addressof(ids)
            self._ioctl(request, arg, "DRM_IOCTL_MODE_GETPLANERESOURCES", what)
            if arg.count_planes <= count:
                return tuple(ids[: arg.count_planes])
        raise error_from_errno(
            errno.EAGAIN, f"{what}: the plane count kept changing", path=self.path
        )

    def get_property(self, prop_id: int) -> DrmProperty:
        """DRM_IOCTL_MODE_GETPROPERTY: name, type, values and enum entries of a property."""
        what = f"get property {prop_id} of {self.description}"
        arg = _uapi.drm_mode_get_property(prop_id=prop_id)
        self._ioctl(_uapi.DRM_IOCTL_MODE_GETPROPERTY, arg, "DRM_IOCTL_MODE_GETPROPERTY", what)
        n_values, n_enums = int(arg.count_values), int(arg.count_enum_blobs)
        values = (ctypes.c_uint64 * max(n_values, 1))()
        enums = (_uapi.drm_mode_property_enum * max(n_enums, 1))()
        arg.values_ptr = ctypes.addressof(values)
        arg.enum_blob_ptr = ctypes.addressof(enums)
        self._ioctl(_uapi.DRM_IOCTL_MODE_GETPROPERTY, arg, "DRM_IOCTL_MODE_GETPROPERTY", what)
        n_values = min(n_values, int(arg.count_values))
        n_enums = min(n_enums, int(arg.count_enum_blobs))
        return DrmProperty(
            id=prop_id,
            name=bytes(arg.name).split(b"\0", 1)[0].decode(errors="replace"),
            flags=int(arg.flags),
            values=tuple(int(v) for v in values[:n_values]),
            enums=tuple(
                (int(e.value), bytes(e.name).split(b"\0", 1)[0].decode(errors="replace"))
                for e in enums[:n_enums]
            ),
        )

    def object_properties(self, obj_id: int, obj_type: int) -> list[tuple[DrmProperty, int]]:
        """DRM_IOCTL_MODE_OBJ_GETPROPERTIES: each property of a KMS object with its value."""
        what = f"list the properties of KMS object {obj_id} on {self.description}"
        request = _uapi.DRM_IOCTL_MODE_OBJ_GETPROPERTIES
        for _ in range(_MAX_COUNT_RETRIES):
            arg = _uapi.drm_mode_obj_get_properties(obj_id=obj_id, obj_type=obj_type)
            self._ioctl(request, arg, "DRM_IOCTL_MODE_OBJ_GETPROPERTIES", what)
            count = int(arg.count_props)
            ids = (ctypes.c_uint32 * max(count, 1))()
            values = (ctypes.c_uint64 * max(count, 1))()
            arg.props_ptr = ctypes.addressof(ids)
            arg.prop_values_ptr = ctypes.addressof(values)
            self._ioctl(request, arg, "DRM_IOCTL_MODE_OBJ_GETPROPERTIES", what)
            if arg.count_props <= count:
                n = int(arg.count_props)
                return [(self.get_property(int(ids[i])), int(values[i])) for i in range(n)]
        raise error_from_errno(
            errno.EAGAIN, f"{what}: the property count kept changing", path=self.path
        )

    def get_blob(self, blob_id: int) -> bytes:
        """DRM_IOCTL_MODE_GETPROPBLOB: the bytes of a property blob."""
        what = f"read property blob {blob_id} of {self.description}"
        arg = _uapi.drm_mode_get_blob(blob_id=blob_id)
        self._ioctl(_uapi.DRM_IOCTL_MODE_GETPROPBLOB, arg, "DRM_IOCTL_MODE_GETPROPBLOB", what)
        length = int(arg.length)
        data = ctypes.create_string_buffer(max(length, 1))
        arg.data = ctypes.addressof(data)
        self._ioctl(_uapi.DRM_IOCTL_MODE_GETPROPBLOB, arg, "DRM_IOCTL_MODE_GETPROPBLOB", what)
        return data.raw[: min(length, int(arg.length))]

    def get_plane(self, plane_id: int) -> DrmPlane:
        """One plane: DRM_IOCTL_MODE_GETPLANE for its formats, its "type" property and the
        (format, modifier) pairs of its IN_FORMATS blob.

        Raises:
            NotFoundError: no such plane (or hidden: see :meth:`enable_universal_planes`).
            ValueError: the driver's IN_FORMATS blob is malformed.
        """
        what = f"get plane {plane_id} of {self.description}"
        formats: tuple[int, ...] = ()
        for _ in range(_MAX_COUNT_RETRIES):
            arg = _uapi.drm_mode_get_plane(plane_id=plane_id)
            self._ioctl(_uapi.DRM_IOCTL_MODE_GETPLANE, arg, "DRM_IOCTL_MODE_GETPLANE", what)
            count = int(arg.count_format_types)
            array = (ctypes.c_uint32 * max(count, 1))()
            arg.format_type_ptr = ctypes.addressof(array)
            self._ioctl(_uapi.DRM_IOCTL_MODE_GETPLANE, arg, "DRM_IOCTL_MODE_GETPLANE", what)
            if arg.count_format_types <= count:
                formats = tuple(int(f) for f in array[: arg.count_format_types])
                break
        else:
            raise error_from_errno(
                errno.EAGAIN, f"{what}: the format count kept changing", path=self.path
            )
        plane_type = ""
        pairs: tuple[tuple[int, int], ...] = ()
        in_formats = False
        for prop, value in self.object_properties(plane_id, _uapi.DRM_MODE_OBJECT_PLANE):
            if prop.name == "type" and prop.is_enum:
                name = prop.enum_name(value) or ""
                plane_type = PLANE_TYPES.get(name, name.lower())
            elif prop.name == "IN_FORMATS" and prop.is_blob and value:
                pairs = tuple(_uapi.parse_in_formats(self.get_blob(value)))
                in_formats = True
        if not in_formats:
            pairs = tuple((f, DRM_FORMAT_MOD_LINEAR) for f in formats)
        return DrmPlane(
            id=plane_id,
            type=plane_type,
            possible_crtcs=int(arg.possible_crtcs),
            crtc_id=int(arg.crtc_id),
            fb_id=int(arg.fb_id),
            formats=formats,
            pairs=pairs,
            in_formats=in_formats,
        )

    def planes(self) -> list[DrmPlane]:
        """Every plane (universal planes enabled first), in the driver's order."""
        self.enable_universal_planes()
        return [self.get_plane(pid) for pid in self.plane_ids()]

    def add_framebuffer(
        self,
        width: int,
        height: int,
        fourcc: int,
        handles: Sequence[GemHandle],
        pitches: Sequence[int],
        offsets: Sequence[int],
        modifier: int | None = None,
    ) -> Framebuffer:
        """DRM_IOCTL_MODE_ADDFB2: a framebuffer over GEM objects of this device.

        Args:
            width: width in pixels.
            height: height in pixels.
            fourcc: the DRM pixel format code.
            handles: the GEM handle of each plane (the same handle for planes sharing a buffer).
            pitches: bytes per row, per plane.
            offsets: byte offset of each plane in its buffer.
            modifier: the format modifier for every plane, passed with DRM_MODE_FB_MODIFIERS;
                None leaves the flag off (the driver's implicit layout).

        Raises:
            UsageError: plane lists of different or unsupported lengths, foreign handles, bad
                numbers.
            InvalidArgumentError: the driver refused the format, modifier, size, pitch or offset.
        """
        n = len(handles)
        if not 1 <= n <= 4 or len(pitches) != n or len(offsets) != n:
            raise UsageError(
                f"ADDFB2 takes 1 to 4 planes with one handle, pitch and offset each; got "
                f"{n} handles, {len(pitches)} pitches, {len(offsets)} offsets"
            )
        for handle in handles:
            if handle.device is not self or handle.closed:
                raise UsageError(f"{handle!r} is not an open handle of {self.description}")
        numbers = [("width", width), ("height", height), ("fourcc", fourcc)]
        numbers += [(f"pitch {i}", p) for i, p in enumerate(pitches)]
        numbers += [(f"offset {i}", o) for i, o in enumerate(offsets)]
        for label, value in numbers:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
                raise UsageError(f"framebuffer {label} must be a 32-bit unsigned integer")
        if modifier is not None and not 0 <= modifier < 1 << 64:
            raise UsageError(f"modifier {modifier!r} is not a 64-bit value")
        arg = _uapi.drm_mode_fb_cmd2(width=width, height=height, pixel_format=fourcc)
        for i in range(n):
            arg.handles[i] = handles[i].handle
            arg.pitches[i] = pitches[i]
            arg.offsets[i] = offsets[i]
            if modifier is not None:
                arg.modifier[i] = modifier
        if modifier is not None:
            arg.flags = int(_uapi.DRM_MODE_FB_MODIFIERS)
        mod_text = "" if modifier is None else f" modifier {modifier:#x}"
        what = (
            f"add a {width}x{height} {fourcc_to_str(fourcc)}{mod_text} framebuffer "
            f"(pitches {list(pitches)}, offsets {list(offsets)}) on {self.description}"
        )
        self._ioctl(_uapi.DRM_IOCTL_MODE_ADDFB2, arg, "DRM_IOCTL_MODE_ADDFB2", what)
        return Framebuffer(
            self, int(arg.fb_id), width=width, height=height, fourcc=fourcc, modifier=modifier
        )

    def remove_framebuffer(self, fb_id: int) -> None:
        """DRM_IOCTL_MODE_RMFB on a raw id. Owners use Framebuffer.close()."""
        arg = ctypes.c_uint(fb_id)
        self._ioctl(
            _uapi.DRM_IOCTL_MODE_RMFB, arg, "DRM_IOCTL_MODE_RMFB", f"remove framebuffer {fb_id}"
        )


def _cap_name(capability: int) -> str:
    try:
        return f"DRM_CAP_{_uapi.DrmCap(capability).name}"
    except ValueError:
        return f"DRM capability {capability}"
