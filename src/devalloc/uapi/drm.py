"""drm/drm.h and drm/drm_mode.h: the DRM/KMS subset devalloc uses (caps, PRIME, dumb, planes).

Covers the driver version and capability queries, PRIME import/export of GEM handles, dumb buffers,
framebuffers (ADDFB2 with modifiers), plane/property/blob enumeration, connectors, encoders and
display modes, atomic commits, and the IN_FORMATS blob layout with :func:`parse_in_formats` to
decode it.

Example:
    >>> cap = drm_get_cap(capability=DRM_CAP_PRIME)
    >>> # fcntl.ioctl(card_fd, DRM_IOCTL_GET_CAP, cap)
    >>> # bool(cap.value & DRM_PRIME_CAP_EXPORT) -> the driver exports dma-bufs
    >>> prime = drm_prime_handle(handle=1, flags=DRM_CLOEXEC | DRM_RDWR)
    >>> # fcntl.ioctl(card_fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, prime) fills prime.fd
"""

from __future__ import annotations

import ctypes
import enum
import os
from typing import ClassVar

from ._ioc import _IOW, _IOWR

C_HEADERS = ("drm/drm.h", "drm/drm_mode.h")

DRM_IOCTL_BASE = "d"

#: Length of a property or property-enum name, including the terminating NUL.
DRM_PROP_NAME_LEN = 32


# --- drm.h: version and capabilities -------------------------------------------------------------


class drm_version(ctypes.Structure):
    """Argument of DRM_IOCTL_VERSION; the kernel fills the three strings up to their ``*_len``.

    Call once with null pointers to learn the lengths, then again with buffers of that size (the
    kernel does not NUL-terminate a truncated string).

    .. code-block:: c

        struct drm_version {
                int version_major;
                int version_minor;
                int version_patchlevel;
                __kernel_size_t name_len;
                char *name;
                __kernel_size_t date_len;
                char *date;
                __kernel_size_t desc_len;
                char *desc;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_version"
    _fields_ = (
        ("version_major", ctypes.c_int),
        ("version_minor", ctypes.c_int),
        ("version_patchlevel", ctypes.c_int),
        ("name_len", ctypes.c_size_t),
        ("name", ctypes.c_char_p),
        ("date_len", ctypes.c_size_t),
        ("date", ctypes.c_char_p),
        ("desc_len", ctypes.c_size_t),
        ("desc", ctypes.c_char_p),
    )


class drm_get_cap(ctypes.Structure):
    """Argument of DRM_IOCTL_GET_CAP: ``capability`` is a DRM_CAP_*, the kernel fills ``value``.

    .. code-block:: c

        struct drm_get_cap {
                __u64 capability;
                __u64 value;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_get_cap"
    _fields_ = (("capability", ctypes.c_uint64), ("value", ctypes.c_uint64))


class drm_set_client_cap(ctypes.Structure):
    """Argument of DRM_IOCTL_SET_CLIENT_CAP: ``capability`` is a DRM_CLIENT_CAP_*.

    .. code-block:: c

        struct drm_set_client_cap {
                __u64 capability;
                __u64 value;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_set_client_cap"
    _fields_ = (("capability", ctypes.c_uint64), ("value", ctypes.c_uint64))


class DrmCap(enum.IntEnum):
    """DRM_CAP_*: what DRM_IOCTL_GET_CAP can be asked."""

    DUMB_BUFFER = 0x1
    VBLANK_HIGH_CRTC = 0x2
    DUMB_PREFERRED_DEPTH = 0x3
    DUMB_PREFER_SHADOW = 0x4
    PRIME = 0x5
    TIMESTAMP_MONOTONIC = 0x6
    ASYNC_PAGE_FLIP = 0x7
    CURSOR_WIDTH = 0x8
    CURSOR_HEIGHT = 0x9
    ADDFB2_MODIFIERS = 0x10
    PAGE_FLIP_TARGET = 0x11
    CRTC_IN_VBLANK_EVENT = 0x12
    SYNCOBJ = 0x13
    SYNCOBJ_TIMELINE = 0x14
    #: Linux 6.8.
    ATOMIC_ASYNC_PAGE_FLIP = 0x15


DRM_CAP_DUMB_BUFFER = DrmCap.DUMB_BUFFER
DRM_CAP_VBLANK_HIGH_CRTC = DrmCap.VBLANK_HIGH_CRTC
DRM_CAP_DUMB_PREFERRED_DEPTH = DrmCap.DUMB_PREFERRED_DEPTH
DRM_CAP_DUMB_PREFER_SHADOW = DrmCap.DUMB_PREFER_SHADOW
DRM_CAP_PRIME = DrmCap.PRIME
DRM_CAP_TIMESTAMP_MONOTONIC = DrmCap.TIMESTAMP_MONOTONIC
DRM_CAP_ASYNC_PAGE_FLIP = DrmCap.ASYNC_PAGE_FLIP
DRM_CAP_CURSOR_WIDTH = DrmCap.CURSOR_WIDTH
DRM_CAP_CURSOR_HEIGHT = DrmCap.CURSOR_HEIGHT
DRM_CAP_ADDFB2_MODIFIERS = DrmCap.ADDFB2_MODIFIERS
DRM_CAP_PAGE_FLIP_TARGET = DrmCap.PAGE_FLIP_TARGET
DRM_CAP_CRTC_IN_VBLANK_EVENT = DrmCap.CRTC_IN_VBLANK_EVENT
DRM_CAP_SYNCOBJ = DrmCap.SYNCOBJ
DRM_CAP_SYNCOBJ_TIMELINE = DrmCap.SYNCOBJ_TIMELINE
DRM_CAP_ATOMIC_ASYNC_PAGE_FLIP = DrmCap.ATOMIC_ASYNC_PAGE_FLIP


class DrmPrimeCap(enum.IntFlag):
    """DRM_PRIME_CAP_*: bits of the DRM_CAP_PRIME value."""

    NONE = 0
    IMPORT = 0x1
    EXPORT = 0x2


DRM_PRIME_CAP_IMPORT = DrmPrimeCap.IMPORT
DRM_PRIME_CAP_EXPORT = DrmPrimeCap.EXPORT


class DrmClientCap(enum.IntEnum):
    """DRM_CLIENT_CAP_*: what DRM_IOCTL_SET_CLIENT_CAP can turn on."""

    STEREO_3D = 1
    UNIVERSAL_PLANES = 2
    ATOMIC = 3
    ASPECT_RATIO = 4
    WRITEBACK_CONNECTORS = 5
    #: Linux 6.8.
    CURSOR_PLANE_HOTSPOT = 6


DRM_CLIENT_CAP_STEREO_3D = DrmClientCap.STEREO_3D
DRM_CLIENT_CAP_UNIVERSAL_PLANES = DrmClientCap.UNIVERSAL_PLANES
DRM_CLIENT_CAP_ATOMIC = DrmClientCap.ATOMIC
DRM_CLIENT_CAP_ASPECT_RATIO = DrmClientCap.ASPECT_RATIO
DRM_CLIENT_CAP_WRITEBACK_CONNECTORS = DrmClientCap.WRITEBACK_CONNECTORS
DRM_CLIENT_CAP_CURSOR_PLANE_HOTSPOT = DrmClientCap.CURSOR_PLANE_HOTSPOT


# --- drm.h: GEM and PRIME ------------------------------------------------------------------------


class drm_prime_handle(ctypes.Structure):
    """Argument of DRM_IOCTL_PRIME_HANDLE_TO_FD and DRM_IOCTL_PRIME_FD_TO_HANDLE.

    .. code-block:: c

        struct drm_prime_handle {
                __u32 handle;
                __u32 flags;
                __s32 fd;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_prime_handle"
    _fields_ = (
        ("handle", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("fd", ctypes.c_int32),
    )


class DrmPrimeFlag(enum.IntFlag):
    """``drm_prime_handle.flags`` for HANDLE_TO_FD: open flags of the new dma-buf fd."""

    NONE = 0
    RDWR = os.O_RDWR
    CLOEXEC = os.O_CLOEXEC


DRM_RDWR = DrmPrimeFlag.RDWR
DRM_CLOEXEC = DrmPrimeFlag.CLOEXEC


class drm_gem_close(ctypes.Structure):
    """Argument of DRM_IOCTL_GEM_CLOSE.

    .. code-block:: c

        struct drm_gem_close {
                __u32 handle;
                __u32 pad;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_gem_close"
    _fields_ = (("handle", ctypes.c_uint32), ("pad", ctypes.c_uint32))


# --- drm_mode.h: resources, planes, properties, blobs --------------------------------------------


class drm_mode_card_res(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_GETRESOURCES; the ``*_ptr`` fields are user pointers as __u64.

    .. code-block:: c

        struct drm_mode_card_res {
                __u64 fb_id_ptr;
                __u64 crtc_id_ptr;
                __u64 connector_id_ptr;
                __u64 encoder_id_ptr;
                __u32 count_fbs;
                __u32 count_crtcs;
                __u32 count_connectors;
                __u32 count_encoders;
                __u32 min_width;
                __u32 max_width;
                __u32 min_height;
                __u32 max_height;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_card_res"
    _fields_ = (
        ("fb_id_ptr", ctypes.c_uint64),
        ("crtc_id_ptr", ctypes.c_uint64),
        ("connector_id_ptr", ctypes.c_uint64),
        ("encoder_id_ptr", ctypes.c_uint64),
        ("count_fbs", ctypes.c_uint32),
        ("count_crtcs", ctypes.c_uint32),
        ("count_connectors", ctypes.c_uint32),
        ("count_encoders", ctypes.c_uint32),
        ("min_width", ctypes.c_uint32),
        ("max_width", ctypes.c_uint32),
        ("min_height", ctypes.c_uint32),
        ("max_height", ctypes.c_uint32),
    )


class drm_mode_get_plane_res(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_GETPLANERESOURCES (16 bytes: tail padding after the count).

    .. code-block:: c

        struct drm_mode_get_plane_res {
                __u64 plane_id_ptr;
                __u32 count_planes;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_get_plane_res"
    _fields_ = (("plane_id_ptr", ctypes.c_uint64), ("count_planes", ctypes.c_uint32))


class drm_mode_get_plane(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_GETPLANE.

    .. code-block:: c

        struct drm_mode_get_plane {
                __u32 plane_id;
                __u32 crtc_id;
                __u32 fb_id;
                __u32 possible_crtcs;
                __u32 gamma_size;
                __u32 count_format_types;
                __u64 format_type_ptr;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_get_plane"
    _fields_ = (
        ("plane_id", ctypes.c_uint32),
        ("crtc_id", ctypes.c_uint32),
        ("fb_id", ctypes.c_uint32),
        ("possible_crtcs", ctypes.c_uint32),
        ("gamma_size", ctypes.c_uint32),
        ("count_format_types", ctypes.c_uint32),
        ("format_type_ptr", ctypes.c_uint64),
    )


class drm_mode_obj_get_properties(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_OBJ_GETPROPERTIES (``obj_type`` is a DRM_MODE_OBJECT_*).

    .. code-block:: c

        struct drm_mode_obj_get_properties {
                __u64 props_ptr;
                __u64 prop_values_ptr;
                __u32 count_props;
                __u32 obj_id;
                __u32 obj_type;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_obj_get_properties"
    _fields_ = (
        ("props_ptr", ctypes.c_uint64),
        ("prop_values_ptr", ctypes.c_uint64),
        ("count_props", ctypes.c_uint32),
        ("obj_id", ctypes.c_uint32),
        ("obj_type", ctypes.c_uint32),
    )


class drm_mode_property_enum(ctypes.Structure):
    """One entry of an enum or bitmask property (the array behind ``enum_blob_ptr``).

    .. code-block:: c

        struct drm_mode_property_enum {
                __u64 value;
                char name[DRM_PROP_NAME_LEN];
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_property_enum"
    _fields_ = (("value", ctypes.c_uint64), ("name", ctypes.c_char * DRM_PROP_NAME_LEN))


class drm_mode_get_property(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_GETPROPERTY (``flags`` are DRM_MODE_PROP_*).

    .. code-block:: c

        struct drm_mode_get_property {
                __u64 values_ptr;
                __u64 enum_blob_ptr;
                __u32 prop_id;
                __u32 flags;
                char name[DRM_PROP_NAME_LEN];
                __u32 count_values;
                __u32 count_enum_blobs;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_get_property"
    _fields_ = (
        ("values_ptr", ctypes.c_uint64),
        ("enum_blob_ptr", ctypes.c_uint64),
        ("prop_id", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("name", ctypes.c_char * DRM_PROP_NAME_LEN),
        ("count_values", ctypes.c_uint32),
        ("count_enum_blobs", ctypes.c_uint32),
    )


class drm_mode_get_blob(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_GETPROPBLOB: ``data`` is a user pointer as __u64.

    .. code-block:: c

        struct drm_mode_get_blob {
                __u32 blob_id;
                __u32 length;
                __u64 data;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_get_blob"
    _fields_ = (
        ("blob_id", ctypes.c_uint32),
        ("length", ctypes.c_uint32),
        ("data", ctypes.c_uint64),
    )


class drm_mode_create_blob(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_CREATEPROPBLOB.

    .. code-block:: c

        struct drm_mode_create_blob {
                __u64 data;
                __u32 length;
                __u32 blob_id;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_create_blob"
    _fields_ = (
        ("data", ctypes.c_uint64),
        ("length", ctypes.c_uint32),
        ("blob_id", ctypes.c_uint32),
    )


class drm_mode_destroy_blob(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_DESTROYPROPBLOB.

    .. code-block:: c

        struct drm_mode_destroy_blob {
                __u32 blob_id;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_destroy_blob"
    _fields_ = (("blob_id", ctypes.c_uint32),)


class DrmModeObject(enum.IntEnum):
    """DRM_MODE_OBJECT_*: KMS object types (``obj_type`` of OBJ_GETPROPERTIES)."""

    ANY = 0
    CRTC = 0xCCCCCCCC
    CONNECTOR = 0xC0C0C0C0
    ENCODER = 0xE0E0E0E0
    MODE = 0xDEDEDEDE
    PROPERTY = 0xB0B0B0B0
    FB = 0xFBFBFBFB
    BLOB = 0xBBBBBBBB
    PLANE = 0xEEEEEEEE


DRM_MODE_OBJECT_ANY = DrmModeObject.ANY
DRM_MODE_OBJECT_CRTC = DrmModeObject.CRTC
DRM_MODE_OBJECT_CONNECTOR = DrmModeObject.CONNECTOR
DRM_MODE_OBJECT_ENCODER = DrmModeObject.ENCODER
DRM_MODE_OBJECT_MODE = DrmModeObject.MODE
DRM_MODE_OBJECT_PROPERTY = DrmModeObject.PROPERTY
DRM_MODE_OBJECT_FB = DrmModeObject.FB
DRM_MODE_OBJECT_BLOB = DrmModeObject.BLOB
DRM_MODE_OBJECT_PLANE = DrmModeObject.PLANE


def DRM_MODE_PROP_TYPE(n: int) -> int:
    """The extended property type ``n`` as stored in ``drm_mode_get_property.flags``."""
    return n << 6


class DrmModePropFlag(enum.IntFlag):
    """DRM_MODE_PROP_*: property type and flags.

    The legacy types are single bits; the extended types (OBJECT, SIGNED_RANGE) are small numbers
    in the EXTENDED_TYPE field, so compare ``flags & EXTENDED_TYPE`` with them rather than testing
    bits.
    """

    NONE = 0
    PENDING = 1 << 0
    RANGE = 1 << 1
    IMMUTABLE = 1 << 2
    ENUM = 1 << 3
    BLOB = 1 << 4
    BITMASK = 1 << 5
    LEGACY_TYPE = RANGE | ENUM | BLOB | BITMASK
    EXTENDED_TYPE = 0x0000FFC0
    OBJECT = 1 << 6
    SIGNED_RANGE = 2 << 6
    ATOMIC = 0x80000000


DRM_MODE_PROP_PENDING = DrmModePropFlag.PENDING
DRM_MODE_PROP_RANGE = DrmModePropFlag.RANGE
DRM_MODE_PROP_IMMUTABLE = DrmModePropFlag.IMMUTABLE
DRM_MODE_PROP_ENUM = DrmModePropFlag.ENUM
DRM_MODE_PROP_BLOB = DrmModePropFlag.BLOB
DRM_MODE_PROP_BITMASK = DrmModePropFlag.BITMASK
DRM_MODE_PROP_LEGACY_TYPE = DrmModePropFlag.LEGACY_TYPE
DRM_MODE_PROP_EXTENDED_TYPE = DrmModePropFlag.EXTENDED_TYPE
DRM_MODE_PROP_OBJECT = DrmModePropFlag.OBJECT
DRM_MODE_PROP_SIGNED_RANGE = DrmModePropFlag.SIGNED_RANGE
DRM_MODE_PROP_ATOMIC = DrmModePropFlag.ATOMIC


class _DrmPlaneType(enum.IntEnum):
    """Values of a plane's "type" enum property (whose enum names are "Overlay", "Primary", ...).

    These are the kernel-internal ``enum drm_plane_type`` (include/drm/drm_plane.h), not part of
    any uapi header, so they cannot be checked by tests/test_uapi_headers.py and stay private.
    Userspace should match the property's enum entry names rather than rely on these numbers.
    """

    OVERLAY = 0
    PRIMARY = 1
    CURSOR = 2


# --- drm_mode.h: modes, connectors, encoders -----------------------------------------------------

#: Length of a display mode's name, including the terminating NUL.
DRM_DISPLAY_MODE_LEN = 32


class drm_mode_modeinfo(ctypes.Structure):
    """A display mode: the timings of one video signal (GETCONNECTOR's mode list, a MODE_ID blob).

    .. code-block:: c

        struct drm_mode_modeinfo {
                __u32 clock;
                __u16 hdisplay;
                __u16 hsync_start;
                __u16 hsync_end;
                __u16 htotal;
                __u16 hskew;
                __u16 vdisplay;
                __u16 vsync_start;
                __u16 vsync_end;
                __u16 vtotal;
                __u16 vscan;
                __u32 vrefresh;
                __u32 flags;
                __u32 type;
                char name[DRM_DISPLAY_MODE_LEN];
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_modeinfo"
    _fields_ = (
        ("clock", ctypes.c_uint32),
        ("hdisplay", ctypes.c_uint16),
        ("hsync_start", ctypes.c_uint16),
        ("hsync_end", ctypes.c_uint16),
        ("htotal", ctypes.c_uint16),
        ("hskew", ctypes.c_uint16),
        ("vdisplay", ctypes.c_uint16),
        ("vsync_start", ctypes.c_uint16),
        ("vsync_end", ctypes.c_uint16),
        ("vtotal", ctypes.c_uint16),
        ("vscan", ctypes.c_uint16),
        ("vrefresh", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("name", ctypes.c_char * DRM_DISPLAY_MODE_LEN),
    )


class DrmModeType(enum.IntFlag):
    """DRM_MODE_TYPE_*: ``drm_mode_modeinfo.type`` (the deprecated bits are left out)."""

    NONE = 0
    PREFERRED = 1 << 3
    USERDEF = 1 << 5
    DRIVER = 1 << 6


DRM_MODE_TYPE_PREFERRED = DrmModeType.PREFERRED
DRM_MODE_TYPE_USERDEF = DrmModeType.USERDEF
DRM_MODE_TYPE_DRIVER = DrmModeType.DRIVER


class DrmModeFlag(enum.IntFlag):
    """DRM_MODE_FLAG_*: ``drm_mode_modeinfo.flags`` (sync polarity and scan; 3D and aspect-ratio
    fields left out)."""

    NONE = 0
    PHSYNC = 1 << 0
    NHSYNC = 1 << 1
    PVSYNC = 1 << 2
    NVSYNC = 1 << 3
    INTERLACE = 1 << 4
    DBLSCAN = 1 << 5


DRM_MODE_FLAG_PHSYNC = DrmModeFlag.PHSYNC
DRM_MODE_FLAG_NHSYNC = DrmModeFlag.NHSYNC
DRM_MODE_FLAG_PVSYNC = DrmModeFlag.PVSYNC
DRM_MODE_FLAG_NVSYNC = DrmModeFlag.NVSYNC
DRM_MODE_FLAG_INTERLACE = DrmModeFlag.INTERLACE
DRM_MODE_FLAG_DBLSCAN = DrmModeFlag.DBLSCAN


class drm_mode_get_connector(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_GETCONNECTOR; the ``*_ptr`` fields are user pointers as __u64.

    Ask with zero counts for the numbers (``count_modes`` 0 force-probes the connector when the
    caller is DRM master), then again with arrays of that capacity.

    .. code-block:: c

        struct drm_mode_get_connector {
                __u64 encoders_ptr;
                __u64 modes_ptr;
                __u64 props_ptr;
                __u64 prop_values_ptr;
                __u32 count_modes;
                __u32 count_props;
                __u32 count_encoders;
                __u32 encoder_id;
                __u32 connector_id;
                __u32 connector_type;
                __u32 connector_type_id;
                __u32 connection;
                __u32 mm_width;
                __u32 mm_height;
                __u32 subpixel;
                __u32 pad;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_get_connector"
    _fields_ = (
        ("encoders_ptr", ctypes.c_uint64),
        ("modes_ptr", ctypes.c_uint64),
        ("props_ptr", ctypes.c_uint64),
        ("prop_values_ptr", ctypes.c_uint64),
        ("count_modes", ctypes.c_uint32),
        ("count_props", ctypes.c_uint32),
        ("count_encoders", ctypes.c_uint32),
        ("encoder_id", ctypes.c_uint32),
        ("connector_id", ctypes.c_uint32),
        ("connector_type", ctypes.c_uint32),
        ("connector_type_id", ctypes.c_uint32),
        ("connection", ctypes.c_uint32),
        ("mm_width", ctypes.c_uint32),
        ("mm_height", ctypes.c_uint32),
        ("subpixel", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    )


class DrmModeConnector(enum.IntEnum):
    """DRM_MODE_CONNECTOR_*: ``drm_mode_get_connector.connector_type``."""

    UNKNOWN = 0
    VGA = 1
    DVII = 2
    DVID = 3
    DVIA = 4
    COMPOSITE = 5
    SVIDEO = 6
    LVDS = 7
    COMPONENT = 8
    PIN_DIN_9 = 9
    DISPLAYPORT = 10
    HDMIA = 11
    HDMIB = 12
    TV = 13
    EDP = 14
    VIRTUAL = 15
    DSI = 16
    DPI = 17
    WRITEBACK = 18
    SPI = 19
    USB = 20


#: The C names of the connector types (their case is not uniform: ``DRM_MODE_CONNECTOR_eDP``).
_CONNECTOR_C_NAMES: dict[DrmModeConnector, str] = {
    DrmModeConnector.UNKNOWN: "Unknown",
    DrmModeConnector.VGA: "VGA",
    DrmModeConnector.DVII: "DVII",
    DrmModeConnector.DVID: "DVID",
    DrmModeConnector.DVIA: "DVIA",
    DrmModeConnector.COMPOSITE: "Composite",
    DrmModeConnector.SVIDEO: "SVIDEO",
    DrmModeConnector.LVDS: "LVDS",
    DrmModeConnector.COMPONENT: "Component",
    DrmModeConnector.PIN_DIN_9: "9PinDIN",
    DrmModeConnector.DISPLAYPORT: "DisplayPort",
    DrmModeConnector.HDMIA: "HDMIA",
    DrmModeConnector.HDMIB: "HDMIB",
    DrmModeConnector.TV: "TV",
    DrmModeConnector.EDP: "eDP",
    DrmModeConnector.VIRTUAL: "VIRTUAL",
    DrmModeConnector.DSI: "DSI",
    DrmModeConnector.DPI: "DPI",
    DrmModeConnector.WRITEBACK: "WRITEBACK",
    DrmModeConnector.SPI: "SPI",
    DrmModeConnector.USB: "USB",
}

DRM_MODE_CONNECTOR_VIRTUAL = DrmModeConnector.VIRTUAL
DRM_MODE_CONNECTOR_WRITEBACK = DrmModeConnector.WRITEBACK


class drm_mode_get_encoder(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_GETENCODER: ``possible_crtcs`` is a bitmask of CRTC indices.

    .. code-block:: c

        struct drm_mode_get_encoder {
                __u32 encoder_id;
                __u32 encoder_type;
                __u32 crtc_id;
                __u32 possible_crtcs;
                __u32 possible_clones;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_get_encoder"
    _fields_ = (
        ("encoder_id", ctypes.c_uint32),
        ("encoder_type", ctypes.c_uint32),
        ("crtc_id", ctypes.c_uint32),
        ("possible_crtcs", ctypes.c_uint32),
        ("possible_clones", ctypes.c_uint32),
    )


# --- drm_mode.h: dumb buffers --------------------------------------------------------------------


class drm_mode_create_dumb(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_CREATE_DUMB; the kernel fills handle, pitch and size.

    .. code-block:: c

        struct drm_mode_create_dumb {
                __u32 height;
                __u32 width;
                __u32 bpp;
                __u32 flags;
                __u32 handle;
                __u32 pitch;
                __u64 size;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_create_dumb"
    _fields_ = (
        ("height", ctypes.c_uint32),
        ("width", ctypes.c_uint32),
        ("bpp", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("handle", ctypes.c_uint32),
        ("pitch", ctypes.c_uint32),
        ("size", ctypes.c_uint64),
    )


class drm_mode_map_dumb(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_MAP_DUMB; ``offset`` is the fake mmap offset on the card fd.

    .. code-block:: c

        struct drm_mode_map_dumb {
                __u32 handle;
                __u32 pad;
                __u64 offset;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_map_dumb"
    _fields_ = (
        ("handle", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("offset", ctypes.c_uint64),
    )


class drm_mode_destroy_dumb(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_DESTROY_DUMB.

    .. code-block:: c

        struct drm_mode_destroy_dumb {
                __u32 handle;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_destroy_dumb"
    _fields_ = (("handle", ctypes.c_uint32),)


# --- drm_mode.h: framebuffers --------------------------------------------------------------------


class drm_mode_fb_cmd2(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_ADDFB2 (and GETFB2).

    ``modifier`` is read only with DRM_MODE_FB_MODIFIERS in ``flags``; it must be the same for
    every plane.

    .. code-block:: c

        struct drm_mode_fb_cmd2 {
                __u32 fb_id;
                __u32 width;
                __u32 height;
                __u32 pixel_format;
                __u32 flags;
                __u32 handles[4];
                __u32 pitches[4];
                __u32 offsets[4];
                __u64 modifier[4];
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_fb_cmd2"
    _fields_ = (
        ("fb_id", ctypes.c_uint32),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("handles", ctypes.c_uint32 * 4),
        ("pitches", ctypes.c_uint32 * 4),
        ("offsets", ctypes.c_uint32 * 4),
        ("modifier", ctypes.c_uint64 * 4),
    )


class DrmModeFbFlag(enum.IntFlag):
    """DRM_MODE_FB_*: ``drm_mode_fb_cmd2.flags``."""

    NONE = 0
    INTERLACED = 1 << 0
    MODIFIERS = 1 << 1


DRM_MODE_FB_INTERLACED = DrmModeFbFlag.INTERLACED
DRM_MODE_FB_MODIFIERS = DrmModeFbFlag.MODIFIERS


# --- drm_mode.h: atomic --------------------------------------------------------------------------


class drm_mode_atomic(ctypes.Structure):
    """Argument of DRM_IOCTL_MODE_ATOMIC; the ``*_ptr`` fields are user pointers as __u64.

    .. code-block:: c

        struct drm_mode_atomic {
                __u32 flags;
                __u32 count_objs;
                __u64 objs_ptr;
                __u64 count_props_ptr;
                __u64 props_ptr;
                __u64 prop_values_ptr;
                __u64 reserved;
                __u64 user_data;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_mode_atomic"
    _fields_ = (
        ("flags", ctypes.c_uint32),
        ("count_objs", ctypes.c_uint32),
        ("objs_ptr", ctypes.c_uint64),
        ("count_props_ptr", ctypes.c_uint64),
        ("props_ptr", ctypes.c_uint64),
        ("prop_values_ptr", ctypes.c_uint64),
        ("reserved", ctypes.c_uint64),
        ("user_data", ctypes.c_uint64),
    )


class DrmModePageFlipFlag(enum.IntFlag):
    """DRM_MODE_PAGE_FLIP_*: legacy page flip flags (EVENT and ASYNC also apply to atomic)."""

    NONE = 0
    EVENT = 0x01
    ASYNC = 0x02
    TARGET_ABSOLUTE = 0x4
    TARGET_RELATIVE = 0x8
    TARGET = TARGET_ABSOLUTE | TARGET_RELATIVE
    FLAGS = EVENT | ASYNC | TARGET


DRM_MODE_PAGE_FLIP_EVENT = DrmModePageFlipFlag.EVENT
DRM_MODE_PAGE_FLIP_ASYNC = DrmModePageFlipFlag.ASYNC
DRM_MODE_PAGE_FLIP_TARGET_ABSOLUTE = DrmModePageFlipFlag.TARGET_ABSOLUTE
DRM_MODE_PAGE_FLIP_TARGET_RELATIVE = DrmModePageFlipFlag.TARGET_RELATIVE
DRM_MODE_PAGE_FLIP_TARGET = DrmModePageFlipFlag.TARGET
DRM_MODE_PAGE_FLIP_FLAGS = DrmModePageFlipFlag.FLAGS


class DrmModeAtomicFlag(enum.IntFlag):
    """``drm_mode_atomic.flags``: DRM_MODE_ATOMIC_* plus the page-flip EVENT and ASYNC bits."""

    NONE = 0
    PAGE_FLIP_EVENT = 0x01  # DRM_MODE_PAGE_FLIP_EVENT
    PAGE_FLIP_ASYNC = 0x02  # DRM_MODE_PAGE_FLIP_ASYNC
    TEST_ONLY = 0x0100
    NONBLOCK = 0x0200
    ALLOW_MODESET = 0x0400
    FLAGS = PAGE_FLIP_EVENT | PAGE_FLIP_ASYNC | TEST_ONLY | NONBLOCK | ALLOW_MODESET


DRM_MODE_ATOMIC_TEST_ONLY = DrmModeAtomicFlag.TEST_ONLY
DRM_MODE_ATOMIC_NONBLOCK = DrmModeAtomicFlag.NONBLOCK
DRM_MODE_ATOMIC_ALLOW_MODESET = DrmModeAtomicFlag.ALLOW_MODESET
DRM_MODE_ATOMIC_FLAGS = DrmModeAtomicFlag.FLAGS


# --- drm_mode.h: the IN_FORMATS blob -------------------------------------------------------------

#: The only ``drm_format_modifier_blob.version`` defined so far.
FORMAT_BLOB_CURRENT = 1


class drm_format_modifier_blob(ctypes.Structure):
    """Header of a plane's IN_FORMATS property blob.

    ``count_formats`` fourcc codes (__u32) start at byte ``formats_offset`` of the blob and
    ``count_modifiers`` ``struct drm_format_modifier`` at ``modifiers_offset``.

    .. code-block:: c

        struct drm_format_modifier_blob {
        #define FORMAT_BLOB_CURRENT 1
                __u32 version;
                __u32 flags;
                __u32 count_formats;
                __u32 formats_offset;
                __u32 count_modifiers;
                __u32 modifiers_offset;
                /* __u32 formats[] */
                /* struct drm_format_modifier modifiers[] */
        };
    """

    _c_type_: ClassVar[str] = "struct drm_format_modifier_blob"
    _fields_ = (
        ("version", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("count_formats", ctypes.c_uint32),
        ("formats_offset", ctypes.c_uint32),
        ("count_modifiers", ctypes.c_uint32),
        ("modifiers_offset", ctypes.c_uint32),
    )


class drm_format_modifier(ctypes.Structure):
    """One modifier of an IN_FORMATS blob and the formats it applies to.

    Bit ``i`` of ``formats`` set means the modifier applies to format ``offset + i`` of the blob's
    format list (a sliding 64-format window).

    .. code-block:: c

        struct drm_format_modifier {
                __u64 formats;
                __u32 offset;
                __u32 pad;
                __u64 modifier;
        };
    """

    _c_type_: ClassVar[str] = "struct drm_format_modifier"
    _fields_ = (
        ("formats", ctypes.c_uint64),
        ("offset", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("modifier", ctypes.c_uint64),
    )


def _blob_array(blob: bytes, what: str, offset: int, count: int, item_size: int) -> None:
    """Raise ValueError unless ``count`` items of ``item_size`` at ``offset`` fit in ``blob``."""
    if count == 0:
        return
    end = offset + count * item_size
    if offset < ctypes.sizeof(drm_format_modifier_blob) or end > len(blob):
        raise ValueError(
            f"IN_FORMATS blob of {len(blob)} bytes cannot hold {count} {what} "
            f"at offset {offset} (bytes {offset}..{end})"
        )


def parse_in_formats(blob: bytes) -> list[tuple[int, int]]:
    """Decode a plane's IN_FORMATS property blob into (fourcc, modifier) pairs.

    The blob is a ``drm_format_modifier_blob`` header, a list of fourcc codes and a list of
    ``drm_format_modifier``; each modifier names the formats it applies to by a 64-bit mask over
    the window ``offset .. offset + 63`` of the format list. Pairs come in modifier order, then
    format-list order within a modifier.

    Raises:
        ValueError: the blob is truncated, has an unknown version, or a modifier refers to a
            format index past the end of the format list.
    """
    header_size = ctypes.sizeof(drm_format_modifier_blob)
    if len(blob) < header_size:
        raise ValueError(
            f"IN_FORMATS blob of {len(blob)} bytes is shorter than its {header_size}-byte header"
        )
    header = drm_format_modifier_blob.from_buffer_copy(blob)
    if header.version != FORMAT_BLOB_CURRENT:
        raise ValueError(
            f"IN_FORMATS blob has version {header.version}, expected {FORMAT_BLOB_CURRENT}"
        )
    _blob_array(blob, "formats", header.formats_offset, header.count_formats, 4)
    modifier_size = ctypes.sizeof(drm_format_modifier)
    _blob_array(blob, "modifiers", header.modifiers_offset, header.count_modifiers, modifier_size)
    formats = (ctypes.c_uint32 * header.count_formats).from_buffer_copy(blob, header.formats_offset)
    pairs: list[tuple[int, int]] = []
    for n in range(header.count_modifiers):
        entry = drm_format_modifier.from_buffer_copy(
            blob, header.modifiers_offset + n * modifier_size
        )
        mask = entry.formats
        bit = 0
        while mask:
            if mask & 1:
                index = entry.offset + bit
                if index >= header.count_formats:
                    raise ValueError(
                        f"IN_FORMATS modifier {n} ({entry.modifier:#x}) refers to format "
                        f"{index}, but the blob lists only {header.count_formats} formats"
                    )
                pairs.append((formats[index], entry.modifier))
            mask >>= 1
            bit += 1
    return pairs


# --- ioctl numbers -------------------------------------------------------------------------------

DRM_IOCTL_VERSION = _IOWR(DRM_IOCTL_BASE, 0x00, drm_version)
DRM_IOCTL_GEM_CLOSE = _IOW(DRM_IOCTL_BASE, 0x09, drm_gem_close)
DRM_IOCTL_GET_CAP = _IOWR(DRM_IOCTL_BASE, 0x0C, drm_get_cap)
DRM_IOCTL_SET_CLIENT_CAP = _IOW(DRM_IOCTL_BASE, 0x0D, drm_set_client_cap)
DRM_IOCTL_PRIME_HANDLE_TO_FD = _IOWR(DRM_IOCTL_BASE, 0x2D, drm_prime_handle)
DRM_IOCTL_PRIME_FD_TO_HANDLE = _IOWR(DRM_IOCTL_BASE, 0x2E, drm_prime_handle)
DRM_IOCTL_MODE_GETRESOURCES = _IOWR(DRM_IOCTL_BASE, 0xA0, drm_mode_card_res)
DRM_IOCTL_MODE_GETENCODER = _IOWR(DRM_IOCTL_BASE, 0xA6, drm_mode_get_encoder)
DRM_IOCTL_MODE_GETCONNECTOR = _IOWR(DRM_IOCTL_BASE, 0xA7, drm_mode_get_connector)
DRM_IOCTL_MODE_GETPROPERTY = _IOWR(DRM_IOCTL_BASE, 0xAA, drm_mode_get_property)
DRM_IOCTL_MODE_GETPROPBLOB = _IOWR(DRM_IOCTL_BASE, 0xAC, drm_mode_get_blob)
#: The argument is the framebuffer id as a C ``unsigned int``.
DRM_IOCTL_MODE_RMFB = _IOWR(DRM_IOCTL_BASE, 0xAF, ctypes.c_uint)
DRM_IOCTL_MODE_CREATE_DUMB = _IOWR(DRM_IOCTL_BASE, 0xB2, drm_mode_create_dumb)
DRM_IOCTL_MODE_MAP_DUMB = _IOWR(DRM_IOCTL_BASE, 0xB3, drm_mode_map_dumb)
DRM_IOCTL_MODE_DESTROY_DUMB = _IOWR(DRM_IOCTL_BASE, 0xB4, drm_mode_destroy_dumb)
DRM_IOCTL_MODE_GETPLANERESOURCES = _IOWR(DRM_IOCTL_BASE, 0xB5, drm_mode_get_plane_res)
DRM_IOCTL_MODE_GETPLANE = _IOWR(DRM_IOCTL_BASE, 0xB6, drm_mode_get_plane)
DRM_IOCTL_MODE_ADDFB2 = _IOWR(DRM_IOCTL_BASE, 0xB8, drm_mode_fb_cmd2)
DRM_IOCTL_MODE_OBJ_GETPROPERTIES = _IOWR(DRM_IOCTL_BASE, 0xB9, drm_mode_obj_get_properties)
DRM_IOCTL_MODE_ATOMIC = _IOWR(DRM_IOCTL_BASE, 0xBC, drm_mode_atomic)
DRM_IOCTL_MODE_CREATEPROPBLOB = _IOWR(DRM_IOCTL_BASE, 0xBD, drm_mode_create_blob)
DRM_IOCTL_MODE_DESTROYPROPBLOB = _IOWR(DRM_IOCTL_BASE, 0xBE, drm_mode_destroy_blob)


C_STRUCTS = (
    drm_version,
    drm_get_cap,
    drm_set_client_cap,
    drm_prime_handle,
    drm_gem_close,
    drm_mode_card_res,
    drm_mode_get_plane_res,
    drm_mode_get_plane,
    drm_mode_obj_get_properties,
    drm_mode_property_enum,
    drm_mode_get_property,
    drm_mode_get_blob,
    drm_mode_create_blob,
    drm_mode_destroy_blob,
    drm_mode_modeinfo,
    drm_mode_get_connector,
    drm_mode_get_encoder,
    drm_mode_create_dumb,
    drm_mode_map_dumb,
    drm_mode_destroy_dumb,
    drm_mode_fb_cmd2,
    drm_mode_atomic,
    drm_format_modifier_blob,
    drm_format_modifier,
)

#: Newer than libdrm 2.4.114's copy of the headers (both came with Linux 6.8).
C_OPTIONAL: frozenset[str] = frozenset(
    {"DRM_CAP_ATOMIC_ASYNC_PAGE_FLIP", "DRM_CLIENT_CAP_CURSOR_PLANE_HOTSPOT"}
)

C_CONSTANTS: dict[str, int] = {
    "DRM_PROP_NAME_LEN": DRM_PROP_NAME_LEN,
    "FORMAT_BLOB_CURRENT": FORMAT_BLOB_CURRENT,
    **{f"DRM_CAP_{m.name}": m for m in DrmCap},
    **{f"DRM_PRIME_CAP_{m.name}": m for m in DrmPrimeCap if m.name != "NONE"},
    **{f"DRM_CLIENT_CAP_{m.name}": m for m in DrmClientCap},
    "DRM_RDWR": DRM_RDWR,
    "DRM_CLOEXEC": DRM_CLOEXEC,
    **{f"DRM_MODE_OBJECT_{m.name}": m for m in DrmModeObject},
    "DRM_MODE_PROP_PENDING": DRM_MODE_PROP_PENDING,
    "DRM_MODE_PROP_RANGE": DRM_MODE_PROP_RANGE,
    "DRM_MODE_PROP_IMMUTABLE": DRM_MODE_PROP_IMMUTABLE,
    "DRM_MODE_PROP_ENUM": DRM_MODE_PROP_ENUM,
    "DRM_MODE_PROP_BLOB": DRM_MODE_PROP_BLOB,
    "DRM_MODE_PROP_BITMASK": DRM_MODE_PROP_BITMASK,
    "DRM_MODE_PROP_LEGACY_TYPE": DRM_MODE_PROP_LEGACY_TYPE,
    "DRM_MODE_PROP_EXTENDED_TYPE": DRM_MODE_PROP_EXTENDED_TYPE,
    "DRM_MODE_PROP_OBJECT": DRM_MODE_PROP_OBJECT,
    "DRM_MODE_PROP_SIGNED_RANGE": DRM_MODE_PROP_SIGNED_RANGE,
    "DRM_MODE_PROP_ATOMIC": DRM_MODE_PROP_ATOMIC,
    "DRM_DISPLAY_MODE_LEN": DRM_DISPLAY_MODE_LEN,
    **{f"DRM_MODE_TYPE_{m.name}": m for m in DrmModeType if m.name != "NONE"},
    **{f"DRM_MODE_FLAG_{m.name}": m for m in DrmModeFlag if m.name != "NONE"},
    **{f"DRM_MODE_CONNECTOR_{name}": m for m, name in _CONNECTOR_C_NAMES.items()},
    "DRM_MODE_FB_INTERLACED": DRM_MODE_FB_INTERLACED,
    "DRM_MODE_FB_MODIFIERS": DRM_MODE_FB_MODIFIERS,
    "DRM_MODE_PAGE_FLIP_EVENT": DRM_MODE_PAGE_FLIP_EVENT,
    "DRM_MODE_PAGE_FLIP_ASYNC": DRM_MODE_PAGE_FLIP_ASYNC,
    "DRM_MODE_PAGE_FLIP_TARGET_ABSOLUTE": DRM_MODE_PAGE_FLIP_TARGET_ABSOLUTE,
    "DRM_MODE_PAGE_FLIP_TARGET_RELATIVE": DRM_MODE_PAGE_FLIP_TARGET_RELATIVE,
    "DRM_MODE_PAGE_FLIP_TARGET": DRM_MODE_PAGE_FLIP_TARGET,
    "DRM_MODE_PAGE_FLIP_FLAGS": DRM_MODE_PAGE_FLIP_FLAGS,
    "DRM_MODE_ATOMIC_TEST_ONLY": DRM_MODE_ATOMIC_TEST_ONLY,
    "DRM_MODE_ATOMIC_NONBLOCK": DRM_MODE_ATOMIC_NONBLOCK,
    "DRM_MODE_ATOMIC_ALLOW_MODESET": DRM_MODE_ATOMIC_ALLOW_MODESET,
    "DRM_MODE_ATOMIC_FLAGS": DRM_MODE_ATOMIC_FLAGS,
    "DRM_IOCTL_VERSION": DRM_IOCTL_VERSION,
    "DRM_IOCTL_GEM_CLOSE": DRM_IOCTL_GEM_CLOSE,
    "DRM_IOCTL_GET_CAP": DRM_IOCTL_GET_CAP,
    "DRM_IOCTL_SET_CLIENT_CAP": DRM_IOCTL_SET_CLIENT_CAP,
    "DRM_IOCTL_PRIME_HANDLE_TO_FD": DRM_IOCTL_PRIME_HANDLE_TO_FD,
    "DRM_IOCTL_PRIME_FD_TO_HANDLE": DRM_IOCTL_PRIME_FD_TO_HANDLE,
    "DRM_IOCTL_MODE_GETRESOURCES": DRM_IOCTL_MODE_GETRESOURCES,
    "DRM_IOCTL_MODE_GETENCODER": DRM_IOCTL_MODE_GETENCODER,
    "DRM_IOCTL_MODE_GETCONNECTOR": DRM_IOCTL_MODE_GETCONNECTOR,
    "DRM_IOCTL_MODE_GETPROPERTY": DRM_IOCTL_MODE_GETPROPERTY,
    "DRM_IOCTL_MODE_GETPROPBLOB": DRM_IOCTL_MODE_GETPROPBLOB,
    "DRM_IOCTL_MODE_RMFB": DRM_IOCTL_MODE_RMFB,
    "DRM_IOCTL_MODE_CREATE_DUMB": DRM_IOCTL_MODE_CREATE_DUMB,
    "DRM_IOCTL_MODE_MAP_DUMB": DRM_IOCTL_MODE_MAP_DUMB,
    "DRM_IOCTL_MODE_DESTROY_DUMB": DRM_IOCTL_MODE_DESTROY_DUMB,
    "DRM_IOCTL_MODE_GETPLANERESOURCES": DRM_IOCTL_MODE_GETPLANERESOURCES,
    "DRM_IOCTL_MODE_GETPLANE": DRM_IOCTL_MODE_GETPLANE,
    "DRM_IOCTL_MODE_ADDFB2": DRM_IOCTL_MODE_ADDFB2,
    "DRM_IOCTL_MODE_OBJ_GETPROPERTIES": DRM_IOCTL_MODE_OBJ_GETPROPERTIES,
    "DRM_IOCTL_MODE_ATOMIC": DRM_IOCTL_MODE_ATOMIC,
    "DRM_IOCTL_MODE_CREATEPROPBLOB": DRM_IOCTL_MODE_CREATEPROPBLOB,
    "DRM_IOCTL_MODE_DESTROYPROPBLOB": DRM_IOCTL_MODE_DESTROYPROPBLOB,
}
