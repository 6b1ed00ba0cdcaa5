"""KMS display: connectors, CRTCs, planes, properties by name, mode blobs, atomic commits.

Example:
    >>> with KmsDevice("/dev/dri/card1") as kms:                             # doctest: +SKIP
    ...     out = kms.find_output()  # a connected connector, its CRTC, primary plane, mode
    ...     with heap.allocate(plan.layout.size) as buf, \\
    ...             kms.framebuffer([buf], plan.layout) as fb, kms.mode_blob(out.mode) as mode:
    ...         req = kms.request().modeset(out, mode).show(out.primary, fb, out.crtc)
    ...         kms.commit(req, test_only=True, allow_modeset=True)  # would the driver take it?
    ...         kms.commit(req, allow_modeset=True)                   # light it up
    ...         kms.commit(kms.request().disable(out), allow_modeset=True)

:class:`KmsDevice` is a :class:`~devalloc.drm.DrmDevice` (one fd, one owner) that turns on the
atomic and writeback-connector client capabilities. Objects are found by what the kernel says:
connectors with DRM_IOCTL_MODE_GETCONNECTOR (modes, encoders, and through the encoders the CRTCs
they can be driven by), CRTCs and planes with their properties by name
(DRM_IOCTL_MODE_OBJ_GETPROPERTIES); a mode becomes a MODE_ID property blob
(DRM_IOCTL_MODE_CREATEPROPBLOB, owned by a :class:`PropertyBlob`).

An :class:`AtomicRequest` collects ``(object, property name, value)`` triples, resolved to ids
when they are added; :meth:`KmsDevice.commit` packs them into one DRM_IOCTL_MODE_ATOMIC with
TEST_ONLY / ALLOW_MODESET / NONBLOCK as asked. A writeback connector captures the CRTC's output
into a framebuffer (WRITEBACK_FB_ID); with WRITEBACK_OUT_FENCE_PTR the kernel returns a sync_file
that signals when the frame is written: the commit hands it back as an owned :class:`OutFence`
(wait for it with :meth:`OutFence.wait`, which polls for POLLIN).

Pure helpers (no kernel): :class:`Mode` (``drm_mode_modeinfo`` to and from bytes, refresh rate),
:func:`parse_fourcc_list` (the WRITEBACK_PIXEL_FORMATS blob), :func:`writeback_constraints`,
:func:`draw_pattern` and :func:`compare_xrgb8888` (draw and check 32-bit RGB test images).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import itertools
import operator
import os
import select
import sys
import time
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Self

from .._fd import FdResource
from ..buffer import Buffer
from ..constraints import Constraints
from ..errors import DevallocError, UsageError, error_from_errno
from ..formats import Layout, lookup_format
from ..formats.fourcc import fourcc_to_str
from ..formats.modifier import DRM_FORMAT_MOD_LINEAR
from ..uapi import drm as _uapi
from .device import DeviceObject, DrmDevice, DrmPlane, DrmProperty, Framebuffer, GemHandle

__all__ = [
    "CONNECTOR_TYPE_NAMES",
    "AtomicRequest",
    "Connector",
    "Crtc",
    "KmsDevice",
    "KmsObject",
    "Mode",
    "OutFence",
    "Output",
    "PixelMismatch",
    "PropertyBlob",
    "compare_xrgb8888",
    "draw_pattern",
    "parse_fourcc_list",
    "pattern_row",
    "writeback_constraints",
]

#: Connector type names as the kernel prints them (drm_connector.c; sysfs ``cardN-<name>-<n>``).
CONNECTOR_TYPE_NAMES: dict[int, str] = {
    0: "Unknown",
    1: "VGA",
    2: "DVI-I",
    3: "DVI-D",
    4: "DVI-A",
    5: "Composite",
    6: "SVIDEO",
    7: "LVDS",
    8: "Component",
    9: "DIN",
    10: "DP",
    11: "HDMI-A",
    12: "HDMI-B",
    13: "TV",
    14: "eDP",
    15: "Virtual",
    16: "DSI",
    17: "DPI",
    18: "Writeback",
    19: "SPI",
    20: "USB",
}

#: ``drm_mode_get_connector.connection``: the kernel-internal ``enum drm_connector_status``
#: (include/drm/drm_connector.h, not a uapi header; libdrm repeats it as DRM_MODE_CONNECTED...).
_CONNECTION = {1: "connected", 2: "disconnected", 3: "unknown"}

_MAX_COUNT_RETRIES = 8
_MODEINFO_SIZE = ctypes.sizeof(_uapi.drm_mode_modeinfo)


# --- modes (pure) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """A display mode (``struct drm_mode_modeinfo``): size, timings, refresh, flags, name.

    Attributes:
        name: the kernel's name (``"1024x768"``).
        clock: pixel clock in kHz.
        hdisplay: visible width in pixels.
        hsync_start: horizontal sync start.
        hsync_end: horizontal sync end.
        htotal: total pixels per line.
        hskew: horizontal skew.
        vdisplay: visible height in lines.
        vsync_start: vertical sync start.
        vsync_end: vertical sync end.
        vtotal: total lines per frame.
        vscan: vertical scan.
        vrefresh: the refresh rate in Hz as the kernel rounded it.
        flags: DRM_MODE_FLAG_* bits.
        type: DRM_MODE_TYPE_* bits (PREFERRED, DRIVER, USERDEF).
    """

    name: str
    clock: int
    hdisplay: int
    hsync_start: int
    hsync_end: int
    htotal: int
    hskew: int
    vdisplay: int
    vsync_start: int
    vsync_end: int
    vtotal: int
    vscan: int
    vrefresh: int
    flags: int = 0
    type: int = 0

    @classmethod
    def from_struct(cls, info: _uapi.drm_mode_modeinfo) -> Mode:
        """The mode in a ``drm_mode_modeinfo``."""
        return cls(
            name=bytes(info.name).split(b"\0", 1)[0].decode(errors="replace"),
            clock=int(info.clock),
            hdisplay=int(info.hdisplay),
            hsync_start=int(info.hsync_start),
            hsync_end=int(info.hsync_end),
            htotal=int(info.htotal),
            hskew=int(info.hskew),
            vdisplay=int(info.vdisplay),
            vsync_start=int(info.vsync_start),
            vsync_end=int(info.vsync_end),
            vtotal=int(info.vtotal),
            vscan=int(info.vscan),
            vrefresh=int(info.vrefresh),
            flags=int(info.flags),
            type=int(info.type),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Mode:
        """The mode in a MODE_ID property blob.

        Raises:
            ValueError: the blob is not exactly one ``drm_mode_modeinfo``.
        """
        if len(data) != _MODEINFO_SIZE:
            raise ValueError(
                f"a mode blob holds one {_MODEINFO_SIZE}-byte drm_mode_modeinfo, "
                f"not {len(data)} bytes"
            )
        return cls.from_struct(_uapi.drm_mode_modeinfo.from_buffer_copy(data))

    def to_struct(self) -> _uapi.drm_mode_modeinfo:
        """The ``drm_mode_modeinfo`` for this mode.

        Raises:
            UsageError: a field does not fit its C type, or the name is too long.
        """
        name = self.name.encode()
        if len(name) >= _uapi.DRM_DISPLAY_MODE_LEN:
            raise UsageError(
                f"mode name {self.name!r} is longer than {_uapi.DRM_DISPLAY_MODE_LEN - 1} bytes"
            )
        info = _uapi.drm_mode_modeinfo(name=name)
        for field_name, ctype in _uapi.drm_mode_modeinfo._fields_:
            if field_name == "name":
                continue
            value = getattr(self, field_name)
            bits = 8 * ctypes.sizeof(ctype)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
                raise UsageError(
                    f"mode {self.name!r}: {field_name}={value!r} does not fit {bits} unsigned bits"
                )
            setattr(info, field_name, value)
        return info

    def to_bytes(self) -> bytes:
        """The mode as the bytes of a MODE_ID property blob."""
        return bytes(self.to_struct())

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return (self.hdisplay, self.vdisplay)

    @property
    def preferred(self) -> bool:
        """The connector's preferred mode (DRM_MODE_TYPE_PREFERRED)."""
        return bool(self.type & _uapi.DRM_MODE_TYPE_PREFERRED)

    @property
    def refresh_hz(self) -> float:
        """The refresh rate computed from the timings as the kernel does (drm_mode_vrefresh),
        unrounded; 0.0 when a total is zero."""
        if self.htotal == 0 or self.vtotal == 0:
            return 0.0
        num = self.clock * 1000
        den = self.htotal * self.vtotal
        if self.flags & _uapi.DRM_MODE_FLAG_INTERLACE:
            num *= 2
        if self.flags & _uapi.DRM_MODE_FLAG_DBLSCAN:
            den *= 2
        if self.vscan > 1:
            den *= self.vscan
        return num / den

    def __str__(self) -> str:
        return f"{self.hdisplay}x{self.vdisplay}@{self.vrefresh}"


# --- property blobs (pure parsing) ---------------------------------------------------------------


def parse_fourcc_list(blob: bytes) -> tuple[int, ...]:
    """Decode a blob that is an array of __u32 fourcc codes (a writeback connector's
    WRITEBACK_PIXEL_FORMATS), in the kernel's order.

    Raises:
        ValueError: the length is not a multiple of 4.
    """
    if len(blob) % 4:
        raise ValueError(f"a fourcc list blob of {len(blob)} bytes is not a whole number of __u32")
    return tuple((ctypes.c_uint32 * (len(blob) // 4)).from_buffer_copy(blob))


# --- KMS objects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connector:
    """A connector (DRM_IOCTL_MODE_GETCONNECTOR) and the CRTCs it can be driven by.

    Attributes:
        id: the connector's object id.
        type: DRM_MODE_CONNECTOR_* (``drm_mode_get_connector.connector_type``).
        type_id: the number among connectors of this type (the ``1`` of ``Virtual-1``).
        connection: ``"connected"``, ``"disconnected"`` or ``"unknown"``.
        modes: the modes it offers, in the kernel's order.
        encoder_ids: the encoders it can use.
        possible_crtcs: bitmask of CRTC indices its encoders can be driven by.
        mm_width: the sink's width in millimetres (0: unknown).
        mm_height: the sink's height in millimetres.
        writeback_formats: for a writeback connector, the fourccs of its WRITEBACK_PIXEL_FORMATS.
    """

    id: int
    type: int
    type_id: int
    connection: str
    modes: tuple[Mode, ...] = ()
    encoder_ids: tuple[int, ...] = ()
    possible_crtcs: int = 0
    mm_width: int = 0
    mm_height: int = 0
    writeback_formats: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        """The kernel's name for it (``"Virtual-1"``, ``"Writeback-1"``), as in sysfs."""
        return f"{CONNECTOR_TYPE_NAMES.get(self.type, f'type{self.type}')}-{self.type_id}"

    @property
    def is_writeback(self) -> bool:
        """A writeback connector (captures a CRTC's output into a framebuffer)."""
        return self.type == _uapi.DRM_MODE_CONNECTOR_WRITEBACK

    @property
    def connected(self) -> bool:
        """The kernel says something is connected (vkms's writeback connector says so too)."""
        return self.connection == "connected"

    @property
    def preferred_mode(self) -> Mode | None:
        """The mode marked preferred, else the first one; None without modes."""
        return next((m for m in self.modes if m.preferred), self.modes[0] if self.modes else None)


@dataclass(frozen=True)
class Crtc:
    """A CRTC and its state as read from its properties.

    Attributes:
        id: the CRTC's object id.
        index: its position in MODE_GETRESOURCES (the bit of ``possible_crtcs`` masks).
        active: its ACTIVE property.
        mode: the mode of its MODE_ID blob (None: no mode set).
    """

    id: int
    index: int
    active: bool = False
    mode: Mode | None = None


#: What an atomic request can set properties on.
KmsObject = Connector | Crtc | DrmPlane


def _object_type(obj: KmsObject) -> int:
    if isinstance(obj, Connector):
        return int(_uapi.DRM_MODE_OBJECT_CONNECTOR)
    if isinstance(obj, Crtc):
        return int(_uapi.DRM_MODE_OBJECT_CRTC)
    if isinstance(obj, DrmPlane):
        return int(_uapi.DRM_MODE_OBJECT_PLANE)
    raise UsageError(f"{obj!r} is not a connector, CRTC or plane")


def _object_label(obj: KmsObject) -> str:
    if isinstance(obj, Connector):
        return f"connector {obj.id} ({obj.name})"
    if isinstance(obj, Crtc):
        return f"CRTC {obj.id}"
    return f"{obj.type or 'unknown'} plane {obj.id}"


@dataclass(frozen=True)
class Output:
    """A display pipe: a connector, the CRTC that drives it, a primary plane and a mode.

    Attributes:
        connector: the connector.
        crtc: a CRTC the connector can be driven by.
        primary: the primary plane that can go on that CRTC.
        mode: the mode to set (the connector's preferred one unless asked otherwise).
        overlays: overlay planes that can go on that CRTC.
        cursors: cursor planes that can go on that CRTC.
    """

    connector: Connector
    crtc: Crtc
    primary: DrmPlane
    mode: Mode
    overlays: tuple[DrmPlane, ...] = ()
    cursors: tuple[DrmPlane, ...] = ()


# --- atomic requests -----------------------------------------------------------------------------

#: Finds a property id by (object id, DRM_MODE_OBJECT_* type, name).
PropertyResolver = Callable[[int, int, str], int]


@dataclass
class _Setting:
    label: str
    name: str
    prop_id: int
    value: int


class AtomicRequest:
    """The property changes of one atomic commit, by object, in the order they were added.

    Setting a property twice keeps the last value. Create one with :meth:`KmsDevice.request`
    (which resolves property names on that device); ``resolve`` is any function from (object id,
    object type, property name) to the property id.

    Args:
        resolve: the property-id resolver.
    """

    def __init__(self, resolve: PropertyResolver) -> None:
        self.resolve = resolve
        self._objects: dict[int, dict[int, _Setting]] = {}
        self._fences: dict[int, ctypes.c_int32] = {}

    def set(self, obj: KmsObject, name: str, value: int) -> Self:
        """Set property ``name`` of ``obj`` to ``value`` (an unsigned 64-bit value; signed
        properties take their two's complement).

        Raises:
            UsageError: the object has no such property, or the value does not fit 64 bits.
        """
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not -(1 << 63) <= value < 1 << 64
        ):
            raise UsageError(f"{_object_label(obj)} {name}={value!r} is not a 64-bit value")
        prop_id = self.resolve(obj.id, _object_type(obj), name)
        settings = self._objects.setdefault(obj.id, {})
        settings[prop_id] = _Setting(_object_label(obj), name, prop_id, value % (1 << 64))
        return self

    def modeset(self, output: Output, mode: PropertyBlob) -> Self:
        """Drive ``output.connector`` from ``output.crtc`` with the mode in ``mode`` (a MODE_ID
        blob): CRTC ACTIVE=1 and MODE_ID, connector CRTC_ID. Needs ``allow_modeset``."""
        self.set(output.crtc, "ACTIVE", 1)
        self.set(output.crtc, "MODE_ID", mode.blob_id)
        return self.set(output.connector, "CRTC_ID", output.crtc.id)

    def show(
        self,
        plane: DrmPlane,
        fb: Framebuffer,
        crtc: Crtc,
        *,
        src: tuple[int, int, int, int] | None = None,
        dst: tuple[int, int, int, int] | None = None,
    ) -> Self:
        """Put ``fb`` on ``plane`` of ``crtc``: FB_ID, CRTC_ID, SRC_* and CRTC_*.

        Args:
            plane: the plane.
            fb: the framebuffer.
            crtc: the CRTC.
            src: (x, y, width, height) of the framebuffer to show, in whole pixels (sent as
                16.16 fixed point); default the whole framebuffer.
            dst: (x, y, width, height) on the CRTC; default ``src``'s size at (0, 0).
        """
        sx, sy, sw, sh = src if src is not None else (0, 0, fb.width, fb.height)
        dx, dy, dw, dh = dst if dst is not None else (0, 0, sw, sh)
        self.set(plane, "FB_ID", fb.fb_id)
        self.set(plane, "CRTC_ID", crtc.id)
        for name, value in (("SRC_X", sx), ("SRC_Y", sy), ("SRC_W", sw), ("SRC_H", sh)):
            if not 0 <= value < 1 << 16:
                raise UsageError(f"plane {plane.id} {name}={value} is not a 16-bit pixel count")
            self.set(plane, name, value << 16)
        for name, value in (("CRTC_X", dx), ("CRTC_Y", dy)):
            if not -(1 << 31) <= value < 1 << 31:
                raise UsageError(f"plane {plane.id} {name}={value} is not a 32-bit position")
            self.set(plane, name, value)
        self.set(plane, "CRTC_W", dw)
        return self.set(plane, "CRTC_H", dh)

    def hide(self, plane: DrmPlane) -> Self:
        """Take ``plane`` off its CRTC (FB_ID 0, CRTC_ID 0)."""
        self.set(plane, "FB_ID", 0)
        return self.set(plane, "CRTC_ID", 0)

    def writeback(self, connector: Connector, fb: Framebuffer, crtc: Crtc) -> Self:
        """Capture ``crtc``'s next frame into ``fb`` through the writeback ``connector``
        (CRTC_ID, WRITEBACK_FB_ID) and ask for an out-fence (WRITEBACK_OUT_FENCE_PTR): the
        commit returns it as an :class:`OutFence`.

        Raises:
            UsageError: ``connector`` is not a writeback connector.
        """
        if not connector.is_writeback:
            raise UsageError(f"connector {connector.id} ({connector.name}) is not a writeback one")
        slot = self._fences.setdefault(connector.id, ctypes.c_int32(-1))
        self.set(connector, "CRTC_ID", crtc.id)
        self.set(connector, "WRITEBACK_FB_ID", fb.fb_id)
        return self.set(connector, "WRITEBACK_OUT_FENCE_PTR", ctypes.addressof(slot))

    def disable(
        self,
        output: Output,
        *,
        planes: Sequence[DrmPlane] = (),
        connectors: Sequence[Connector] = (),
    ) -> Self:
        """Turn ``output`` off: its primary plane and ``planes`` hidden, its connector and
        ``connectors`` (a writeback one) detached, the CRTC inactive without a mode. Needs
        ``allow_modeset``."""
        for plane in (output.primary, *planes):
            self.hide(plane)
        for connector in (output.connector, *connectors):
            self.set(connector, "CRTC_ID", 0)
        self.set(output.crtc, "MODE_ID", 0)
        return self.set(output.crtc, "ACTIVE", 0)

    def pack(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """The four arrays of ``struct drm_mode_atomic``: object ids, property count per object,
        property ids and values (objects and their properties in the order first set)."""
        objs: list[int] = []
        counts: list[int] = []
        props: list[int] = []
        values: list[int] = []
        for obj_id, settings in self._objects.items():
            objs.append(obj_id)
            counts.append(len(settings))
            for setting in settings.values():
                props.append(setting.prop_id)
                values.append(setting.value)
        return objs, counts, props, values

    def describe(self) -> str:
        """The settings as text, for messages (``"CRTC 37: ACTIVE=1 MODE_ID=45; ..."``)."""
        parts: list[str] = []
        for settings in self._objects.values():
            items = list(settings.values())
            if not items:
                continue
            text = " ".join(
                f"{s.name}={'&fence' if s.name == 'WRITEBACK_OUT_FENCE_PTR' else s.value}"
                for s in items
            )
            parts.append(f"{items[0].label}: {text}")
        return "; ".join(parts) or "nothing"

    def __len__(self) -> int:
        return sum(len(s) for s in self._objects.values())

    def _reset_fences(self) -> None:
        for slot in self._fences.values():
            slot.value = -1

    def _fence_fds(self) -> list[tuple[int, int]]:
        return [(cid, int(slot.value)) for cid, slot in self._fences.items() if slot.value >= 0]


# --- owned kernel objects ------------------------------------------------------------------------


def _destroy_blob(device: KmsDevice, blob_id: int, forgotten: bool) -> None:
    if not forgotten:
        if not device.closed:  # closing the device destroyed it already
            device.destroy_blob(blob_id)
        return
    with contextlib.suppress(DevallocError):
        if not device.closed:
            device.destroy_blob(blob_id)
    warnings.warn(
        f"property blob {blob_id} on {device.description} destroyed by the garbage collector",
        ResourceWarning,
        stacklevel=2,
    )


class PropertyBlob(DeviceObject):
    """Owns one property blob (DRM_IOCTL_MODE_CREATEPROPBLOB); ``close()`` destroys it once.

    A blob in use by the current state (a MODE_ID) stays alive in the kernel until the state
    lets go of it, so closing it after the commit is safe. Closing the device destroys it too.

    Attributes:
        device: the device it lives on.
        blob_id: its id (the value of a blob property).
        length: its size in bytes.
    """

    def __init__(self, device: KmsDevice, blob_id: int, length: int) -> None:
        super().__init__(device, blob_id, _destroy_blob, f"property blob {blob_id}")
        self.device: KmsDevice = device
        self.blob_id = blob_id
        self.length = length

    def __repr__(self) -> str:
        return f"<PropertyBlob {self.blob_id} ({self.length} bytes) on {self.device.description}>"


class OutFence(FdResource):
    """An out-fence of an atomic commit: a sync_file fd that becomes readable (POLLIN) when the
    work it stands for (a writeback frame) is done. Owns the fd."""

    def signaled(self) -> bool:
        """Whether the fence has signaled (a poll that does not wait)."""
        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN)
        return any(ev & select.POLLIN for _, ev in poller.poll(0))

    def wait(self, timeout: float = 5.0) -> float:
        """Wait until the fence signals.

        Args:
            timeout: seconds to wait at most.

        Returns:
            The seconds waited.

        Raises:
            TimedOutError: the fence did not signal in time.
        """
        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN)
        start = time.monotonic()
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            events = poller.poll(max(0, int(left * 1000)))
            if any(ev & select.POLLIN for _, ev in events):
                return time.monotonic() - start
            if time.monotonic() >= deadline:
                raise error_from_errno(
                    errno.ETIMEDOUT,
                    f"{self.description} did not signal within {timeout:g} s",
                    path=self.path,
                )


# --- the device ----------------------------------------------------------------------------------


class KmsDevice(DrmDevice):
    """A DRM card with modesetting, opened as an atomic client that sees writeback connectors.

    Args:
        path: the card node (``/dev/dri/card1``).
        writeback: also set DRM_CLIENT_CAP_WRITEBACK_CONNECTORS (the kernel lists writeback
            connectors only to clients that ask).

    Raises:
        NotSupportedError, ...: the driver refused the atomic capability (no atomic modesetting);
            the fd is closed again.
    """

    def __init__(self, path: str, *, writeback: bool = True) -> None:
        super().__init__(path)
        self._prop_cache: dict[int, dict[str, DrmProperty]] = {}
        with contextlib.ExitStack() as stack:
            stack.callback(self.close)
            self.set_client_cap(_uapi.DRM_CLIENT_CAP_ATOMIC, 1)  # implies universal planes
            if writeback:
                self.set_client_cap(_uapi.DRM_CLIENT_CAP_WRITEBACK_CONNECTORS, 1)
            stack.pop_all()

    # -- properties ---------------------------------------------------------------------------

    def properties(self, obj: KmsObject) -> dict[str, tuple[DrmProperty, int]]:
        """Every property of ``obj`` by name, with its current value."""
        found = self.object_properties(obj.id, _object_type(obj))
        self._prop_cache[obj.id] = {p.name: p for p, _ in found}
        return {p.name: (p, v) for p, v in found}

    def property_value(self, obj: KmsObject, name: str) -> int:
        """The current value of property ``name`` of ``obj``.

        Raises:
            UsageError: ``obj`` has no such property.
        """
        props = self.properties(obj)
        if name not in props:
            raise UsageError(self._no_property(_object_label(obj), name, props))
        return props[name][1]

    def property_id(self, obj_id: int, obj_type: int, name: str) -> int:
        """The id of property ``name`` of KMS object ``obj_id`` (looked up once per object).

        Raises:
            UsageError: the object has no such property (the message lists the ones it has).
        """
        cache = self._prop_cache.get(obj_id)
        if cache is None:
            cache = {p.name: p for p, _ in self.object_properties(obj_id, obj_type)}
            self._prop_cache[obj_id] = cache
        prop = cache.get(name)
        if prop is None:
            raise UsageError(self._no_property(f"KMS object {obj_id}", name, cache))
        return prop.id

    def _no_property(self, label: str, name: str, props: Collection[str]) -> str:
        known = ", ".join(sorted(props)) or "none"
        return f"{label} on {self.description} has no property {name!r}; it has: {known}"

    # -- objects ------------------------------------------------------------------------------

    def encoder_possible_crtcs(self, encoder_id: int) -> int:
        """DRM_IOCTL_MODE_GETENCODER: the bitmask of CRTC indices the encoder can be driven by."""
        arg = _uapi.drm_mode_get_encoder(encoder_id=encoder_id)
        self._ioctl(
            _uapi.DRM_IOCTL_MODE_GETENCODER,
            arg,
            "DRM_IOCTL_MODE_GETENCODER",
            f"get encoder {encoder_id} of {self.description}",
        )
        return int(arg.possible_crtcs)

    def get_connector(self, connector_id: int) -> Connector:
        """DRM_IOCTL_MODE_GETCONNECTOR (asked until the counts are stable): type, connection,
        modes, encoders; the CRTCs it can use (from its encoders); for a writeback connector,
        its WRITEBACK_PIXEL_FORMATS.

        Raises:
            NotFoundError: no such connector (or a writeback one, hidden without the capability).
        """
        what = f"get connector {connector_id} of {self.description}"
        request = _uapi.DRM_IOCTL_MODE_GETCONNECTOR
        for _ in range(_MAX_COUNT_RETRIES):
            arg = _uapi.drm_mode_get_connector(connector_id=connector_id)
            self._ioctl(request, arg, "DRM_IOCTL_MODE_GETCONNECTOR", what)
            n_modes, n_encoders = int(arg.count_modes), int(arg.count_encoders)
            modes = (_uapi.drm_mode_modeinfo * max(n_modes, 1))()
            encoders = (ctypes.c_uint32 * max(n_encoders, 1))()
            arg = _uapi.drm_mode_get_connector(
                connector_id=connector_id,
                count_modes=n_modes,
                modes_ptr=ctypes.addressof(modes),
                count_encoders=n_encoders,
                encoders_ptr=ctypes.addressof(encoders),
            )
            self._ioctl(request, arg, "DRM_IOCTL_MODE_GETCONNECTOR", what)
            if arg.count_modes <= n_modes and arg.count_encoders <= n_encoders:
                break
        else:
            raise error_from_errno(
                errno.EAGAIN, f"{what}: the mode count kept changing", path=self.path
            )
        encoder_ids = tuple(int(e) for e in encoders[: arg.count_encoders])
        possible = 0
        for encoder_id in encoder_ids:
            possible |= self.encoder_possible_crtcs(encoder_id)
        connector = Connector(
            id=connector_id,
            type=int(arg.connector_type),
            type_id=int(arg.connector_type_id),
            connection=_CONNECTION.get(int(arg.connection), f"status {int(arg.connection)}"),
            modes=tuple(Mode.from_struct(m) for m in modes[: arg.count_modes]),
            encoder_ids=encoder_ids,
            possible_crtcs=possible,
            mm_width=int(arg.mm_width),
            mm_height=int(arg.mm_height),
        )
        if connector.is_writeback:
            blob_id = self.property_value(connector, "WRITEBACK_PIXEL_FORMATS")
            formats = parse_fourcc_list(self.get_blob(blob_id)) if blob_id else ()
            connector = dataclasses.replace(connector, writeback_formats=formats)
        return connector

    def connectors(self) -> list[Connector]:
        """Every connector (writeback ones too when the capability is on), in the kernel's
        order."""
        return [self.get_connector(c) for c in self.resources().connector_ids]

    def crtcs(self) -> list[Crtc]:
        """Every CRTC with its index, ACTIVE and the mode of its MODE_ID blob."""
        found: list[Crtc] = []
        for index, crtc_id in enumerate(self.resources().crtc_ids):
            crtc = Crtc(crtc_id, index)
            props = self.properties(crtc)
            active = bool(props["ACTIVE"][1]) if "ACTIVE" in props else False
            blob_id = props["MODE_ID"][1] if "MODE_ID" in props else 0
            mode = Mode.from_bytes(self.get_blob(blob_id)) if blob_id else None
            found.append(Crtc(crtc_id, index, active, mode))
        return found

    def find_output(
        self, connector: str | int | None = None, mode: str | Mode | None = None
    ) -> Output:
        """A display pipe: a connector, the first CRTC it can be driven by that has a primary
        plane, that plane, and a mode.

        Args:
            connector: a connector id or name (``"Virtual-1"``, or ``"Writeback-1"`` to drive a
                writeback connector alone); default the first connected, non-writeback one with
                modes.
            mode: a mode name (``"1024x768"``, or ``"1024x768@60"``: the first listed that
                matches), or a :class:`Mode` used as it is; default the connector's preferred
                mode.

        Raises:
            UsageError: the named connector or mode does not exist.
            NoDeviceError: nothing connected, or no CRTC with a primary plane for it.
        """
        connectors = self.connectors()
        if connector is not None:
            chosen = [c for c in connectors if connector in (c.id, c.name)]
            if not chosen:
                known = ", ".join(c.name for c in connectors) or "none"
                raise UsageError(f"{self.description} has no connector {connector!r}: {known}")
        else:
            chosen = [c for c in connectors if c.connected and c.modes and not c.is_writeback]
        crtcs = self.crtcs()
        planes = self.planes()
        for conn in chosen:
            for crtc in crtcs:
                if not conn.possible_crtcs & (1 << crtc.index):
                    continue
                on_crtc = [p for p in planes if p.possible_crtcs & (1 << crtc.index)]
                primary = next((p for p in on_crtc if p.type == "primary"), None)
                if primary is None:
                    continue
                return Output(
                    connector=conn,
                    crtc=crtc,
                    primary=primary,
                    mode=self._pick_mode(conn, mode),
                    overlays=tuple(p for p in on_crtc if p.type == "overlay"),
                    cursors=tuple(p for p in on_crtc if p.type == "cursor"),
                )
        raise error_from_errno(
            errno.ENODEV,
            f"no connected connector of {self.description} has a CRTC with a primary plane "
            f"(connectors: {', '.join(f'{c.name} {c.connection}' for c in connectors) or 'none'})",
            path=self.path,
        )

    def _pick_mode(self, conn: Connector, name: str | Mode | None) -> Mode:
        if isinstance(name, Mode):
            return name
        if name is None:
            preferred = conn.preferred_mode
            if preferred is None:
                raise UsageError(f"connector {conn.name} of {self.description} has no modes")
            return preferred
        for m in conn.modes:
            if name in (m.name, str(m)):
                return m
        known = ", ".join(dict.fromkeys(str(m) for m in conn.modes)) or "none"
        raise UsageError(f"connector {conn.name} has no mode {name!r}; its modes: {known}")

    def find_writeback(self, crtc: Crtc) -> Connector:
        """A writeback connector that ``crtc`` can drive.

        Raises:
            NoDeviceError: none (or the writeback capability was not asked for).
        """
        for conn in self.connectors():
            if conn.is_writeback and conn.possible_crtcs & (1 << crtc.index):
                return conn
        raise error_from_errno(
            errno.ENODEV,
            f"{self.description} has no writeback connector for CRTC {crtc.id}",
            path=self.path,
        )

    # -- blobs and framebuffers ---------------------------------------------------------------

    def create_blob(self, data: bytes) -> PropertyBlob:
        """DRM_IOCTL_MODE_CREATEPROPBLOB: a blob holding ``data``, owned by the result."""
        if not data:
            raise UsageError("a property blob cannot be empty")
        buf = ctypes.create_string_buffer(data, len(data))
        arg = _uapi.drm_mode_create_blob(data=ctypes.addressof(buf), length=len(data))
        self._ioctl(
            _uapi.DRM_IOCTL_MODE_CREATEPROPBLOB,
            arg,
            "DRM_IOCTL_MODE_CREATEPROPBLOB",
            f"create a {len(data)}-byte property blob on {self.description}",
        )
        return PropertyBlob(self, int(arg.blob_id), len(data))

    def destroy_blob(self, blob_id: int) -> None:
        """DRM_IOCTL_MODE_DESTROYPROPBLOB on a raw id. Owners use PropertyBlob.close()."""
        arg = _uapi.drm_mode_destroy_blob(blob_id=blob_id)
        self._ioctl(
            _uapi.DRM_IOCTL_MODE_DESTROYPROPBLOB,
            arg,
            "DRM_IOCTL_MODE_DESTROYPROPBLOB",
            f"destroy property blob {blob_id} on {self.description}",
        )

    def mode_blob(self, mode: Mode) -> PropertyBlob:
        """A MODE_ID blob holding ``mode``."""
        return self.create_blob(mode.to_bytes())

    def framebuffer(self, buffers: Sequence[Buffer], layout: Layout) -> Framebuffer:
        """A framebuffer over dma-bufs laid out as ``layout`` (a negotiated plan's layout):
        each buffer imported (PRIME_FD_TO_HANDLE), ADDFB2 with the layout's pitches, offsets and
        modifier (DRM_MODE_FB_MODIFIERS), then the GEM handles closed (the framebuffer holds its
        own references), on every path.

        Raises:
            UsageError: an opaque layout, or not one buffer (one per plane for multi-buffer
                layouts).
            KernelError: the import or ADDFB2 failed (the message names the format and layout).
        """
        if layout.opaque or not layout.planes:
            raise UsageError(
                f"{layout.format.name} with modifier {layout.modifier.hex} has an opaque layout: "
                "the exporter decides its pitches, so devalloc cannot make a framebuffer of it"
            )
        wanted = layout.format.planes if layout.multi_buffer else 1
        if len(buffers) != wanted:
            per_plane = " (one per plane)" if layout.multi_buffer else ""
            raise UsageError(
                f"a {layout.format.name} framebuffer needs {wanted} buffer(s){per_plane}, "
                f"got {len(buffers)}"
            )
        with contextlib.ExitStack() as stack:
            handles: list[GemHandle] = [stack.enter_context(self.import_buffer(b)) for b in buffers]
            planes = layout.planes
            return self.add_framebuffer(
                layout.width,
                layout.height,
                layout.format.fourcc,
                [handles[p.buffer] if layout.multi_buffer else handles[0] for p in planes],
                [p.pitch for p in planes],
                [p.offset for p in planes],
                layout.modifier.value,
            )

    # -- commits ------------------------------------------------------------------------------

    def disable(
        self,
        output: Output,
        *,
        planes: Sequence[DrmPlane] = (),
        connectors: Sequence[Connector] = (),
    ) -> None:
        """Commit :meth:`AtomicRequest.disable` for ``output`` (with ALLOW_MODESET)."""
        self.commit(
            self.request().disable(output, planes=planes, connectors=connectors),
            allow_modeset=True,
        )

    def request(self) -> AtomicRequest:
        """An empty atomic request whose property names are resolved on this device."""
        return AtomicRequest(self.property_id)

    def commit(
        self,
        request: AtomicRequest,
        *,
        test_only: bool = False,
        allow_modeset: bool = False,
        nonblock: bool = False,
    ) -> list[OutFence]:
        """DRM_IOCTL_MODE_ATOMIC with the request's properties.

        Args:
            request: what to change.
            test_only: only ask whether the driver would accept it (DRM_MODE_ATOMIC_TEST_ONLY).
            allow_modeset: allow a full modeset (DRM_MODE_ATOMIC_ALLOW_MODESET).
            nonblock: return before the change is on screen (DRM_MODE_ATOMIC_NONBLOCK).

        Returns:
            The out-fences the commit created (one per writeback connector of the request), each
            owning its sync_file fd; none for a test-only commit.

        Raises:
            InvalidArgumentError, BusyError, ...: the driver refused; the message lists the
                settings.
        """
        flags = _uapi.DrmModeAtomicFlag.NONE
        if test_only:
            flags |= _uapi.DRM_MODE_ATOMIC_TEST_ONLY
        if allow_modeset:
            flags |= _uapi.DRM_MODE_ATOMIC_ALLOW_MODESET
        if nonblock:
            flags |= _uapi.DRM_MODE_ATOMIC_NONBLOCK
        objs, counts, props, values = request.pack()
        n = len(objs)
        obj_array = (ctypes.c_uint32 * max(n, 1))(*objs)
        count_array = (ctypes.c_uint32 * max(n, 1))(*counts)
        prop_array = (ctypes.c_uint32 * max(len(props), 1))(*props)
        value_array = (ctypes.c_uint64 * max(len(values), 1))(*values)
        arg = _uapi.drm_mode_atomic(
            flags=int(flags),
            count_objs=n,
            objs_ptr=ctypes.addressof(obj_array),
            count_props_ptr=ctypes.addressof(count_array),
            props_ptr=ctypes.addressof(prop_array),
            prop_values_ptr=ctypes.addressof(value_array),
        )
        names = [
            n
            for n, on in (
                ("TEST_ONLY", test_only),
                ("ALLOW_MODESET", allow_modeset),
                ("NONBLOCK", nonblock),
            )
            if on
        ]
        flag_text = "|".join(names) or "no flags"
        what = f"atomic commit ({flag_text}) on {self.description} of {request.describe()}"
        request._reset_fences()
        self._ioctl(_uapi.DRM_IOCTL_MODE_ATOMIC, arg, "DRM_IOCTL_MODE_ATOMIC", what)
        pending = request._fence_fds()
        request._reset_fences()
        fences: list[OutFence] = []
        with contextlib.ExitStack() as stack:
            unowned = dict(pending)  # connector id -> fd, until an OutFence owns it
            stack.callback(_close_all_quietly, unowned)
            for connector_id, fd in pending:
                fence = OutFence(
                    fd,
                    description=(
                        f"writeback out-fence of connector {connector_id} on {self.description}"
                    ),
                    path=self.path,
                )
                del unowned[connector_id]
                stack.callback(fence.close)
                fences.append(fence)
            stack.pop_all()
        return fences


def _close_all_quietly(fds: dict[int, int]) -> None:
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)


# --- constraints ---------------------------------------------------------------------------------


def writeback_constraints(device: str, connector: Connector, mode: Mode) -> Constraints:
    """The ``writeback`` usage of a writeback connector: its WRITEBACK_PIXEL_FORMATS, LINEAR,
    written by the device, at most the mode's size.

    The kernel takes a writeback framebuffer only at exactly the CRTC's mode size (vkms:
    ``vkms_wb_atomic_check``); Constraints can say "at most", so negotiate at the mode's size.

    Raises:
        UsageError: ``connector`` is not a writeback connector or lists no format devalloc knows.
    """
    if not connector.is_writeback:
        raise UsageError(f"connector {connector.id} ({connector.name}) is not a writeback one")
    pairs: list[tuple[int, int]] = []
    for fourcc in connector.writeback_formats:
        try:
            lookup_format(fourcc)
        except UsageError:
            continue
        pairs.append((fourcc, DRM_FORMAT_MOD_LINEAR))
    if not pairs:
        listed = ", ".join(fourcc_to_str(f) for f in connector.writeback_formats) or "none"
        raise UsageError(
            f"writeback connector {connector.name} of {device} lists no format devalloc knows "
            f"(it lists: {listed})"
        )
    return Constraints(
        device=device,
        usage="writeback",
        pairs=tuple(pairs),
        max_width=mode.hdisplay,
        max_height=mode.vdisplay,
        access="write",
        description=(
            f"writeback connector {connector.name}: formats from WRITEBACK_PIXEL_FORMATS, "
            f"exactly the mode's size ({mode.hdisplay}x{mode.vdisplay})"
        ),
    )


# --- test images (pure) --------------------------------------------------------------------------


def pattern_row(y: int, width: int, seed: int = 0) -> bytearray:
    """Row ``y`` of the XRGB8888 test pattern (4 bytes per pixel, little-endian B, G, R, X).

    Every pixel differs from its neighbours in each direction and the pattern repeats only
    every 256 rows/columns, so a wrong pitch, offset or row order shows: blue is ``x`` (low
    byte), green is ``y + seed`` (low byte), red mixes the high bits of ``x`` and ``y``
    with ``seed``; X is 0.
    """
    if width < 0 or y < 0:
        raise UsageError(f"pattern row {y} of width {width}: both must be >= 0")
    row = bytearray(4 * width)
    row[0::4] = bytes(x & 0xFF for x in range(width))
    row[1::4] = bytes([(y + seed) & 0xFF]) * width
    red_base = ((y >> 8) * 0x35 + seed * 0x11) & 0xFF
    row[2::4] = bytes((red_base + (x >> 8) * 0x47) & 0xFF for x in range(width))
    return row


def draw_pattern(
    view: memoryview | bytearray,
    width: int,
    height: int,
    pitch: int,
    *,
    offset: int = 0,
    seed: int = 0,
) -> None:
    """Draw the XRGB8888 test pattern (:func:`pattern_row`) into ``view`` at ``offset`` with
    rows ``pitch`` bytes apart; the padding between rows is left as it is.

    Raises:
        UsageError: the pitch is shorter than a row, or the image does not fit ``view``.
    """
    _check_image(len(view), width, height, pitch, offset, "draw")
    row = bytearray(4 * width)
    last_high = -1
    for y in range(height):
        high = y >> 8
        if high != last_high:
            row = pattern_row(y, width, seed)
            last_high = high
        row[1::4] = bytes([(y + seed) & 0xFF]) * width
        start = offset + y * pitch
        view[start : start + 4 * width] = row


def _check_image(size: int, width: int, height: int, pitch: int, offset: int, what: str) -> None:
    if width < 0 or height < 0 or offset < 0:
        raise UsageError(f"cannot {what} a {width}x{height} image at offset {offset}")
    if pitch < 4 * width:
        raise UsageError(f"pitch {pitch} is shorter than a {width}-pixel XRGB8888 row")
    if height and offset + (height - 1) * pitch + 4 * width > size:
        raise UsageError(
            f"a {width}x{height} XRGB8888 image with pitch {pitch} at offset {offset} needs "
            f"{offset + (height - 1) * pitch + 4 * width} bytes; the buffer has {size}"
        )


@dataclass(frozen=True)
class PixelMismatch:
    """Where two XRGB8888 images differ.

    Attributes:
        count: how many pixels differ (X ignored).
        rows: how many rows hold a difference.
        first: (x, y) of the first differing pixel, row by row.
        expected: that pixel's (R, G, B) in the expected image.
        actual: its (R, G, B) in the actual image.
    """

    count: int
    rows: int
    first: tuple[int, int]
    expected: tuple[int, int, int]
    actual: tuple[int, int, int]

    def __str__(self) -> str:
        x, y = self.first
        return (
            f"{self.count} pixels in {self.rows} rows differ; first at ({x}, {y}): "
            f"expected RGB {self.expected}, got {self.actual}"
        )


def _rgb_words(row: bytes | bytearray | memoryview, width: int) -> memoryview:
    """A row's pixels as native 32-bit words with the X byte zeroed."""
    out = bytearray(row[: 4 * width])
    out[3::4] = bytes(width)
    return memoryview(out).cast("I")


def _rgb(word: int) -> tuple[int, int, int]:
    b, g, r, _ = word.to_bytes(4, sys.byteorder)
    return (r, g, b)


def compare_xrgb8888(
    expected: memoryview | bytes | bytearray,
    actual: memoryview | bytes | bytearray,
    width: int,
    height: int,
    *,
    expected_pitch: int,
    actual_pitch: int,
    expected_offset: int = 0,
    actual_offset: int = 0,
) -> PixelMismatch | None:
    """Compare two XRGB8888 (or ARGB8888 read as XRGB) images pixel by pixel, ignoring the
    X byte; None when every R, G and B matches.

    Raises:
        UsageError: an image does not fit its buffer.
    """
    _check_image(len(expected), width, height, expected_pitch, expected_offset, "compare")
    _check_image(len(actual), width, height, actual_pitch, actual_offset, "compare")
    count = rows = 0
    first: tuple[int, int] | None = None
    first_pixels: tuple[tuple[int, int, int], tuple[int, int, int]] = ((0, 0, 0), (0, 0, 0))
    for y in range(height):
        e_start = expected_offset + y * expected_pitch
        a_start = actual_offset + y * actual_pitch
        e_row = _rgb_words(expected[e_start : e_start + 4 * width], width)
        a_row = _rgb_words(actual[a_start : a_start + 4 * width], width)
        if e_row == a_row:
            continue
        rows += 1
        differ = list(itertools.compress(range(width), map(operator.ne, e_row, a_row)))
        count += len(differ)
        if first is None:
            x = differ[0]
            first = (x, y)
            first_pixels = (_rgb(e_row[x]), _rgb(a_row[x]))
    if first is None:
        return None
    return PixelMismatch(count, rows, first, first_pixels[0], first_pixels[1])
