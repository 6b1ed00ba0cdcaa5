"""V4L2 video devices: capabilities, pixel formats and the plane sizes a driver chooses.

Example:
    >>> from devalloc.uapi.videodev2 import V4l2BufType
    >>> nodes = v4l2_nodes_of_driver("vivid")                       # doctest: +SKIP
    >>> with V4l2Device(nodes[0]) as dev:                           # doctest: +SKIP
    ...     dev.querycap().driver
    ...     fmt = dev.try_format(V4l2BufType.VIDEO_CAPTURE, v4l2_fourcc("NV12"), 640, 480)
    ...     fmt.planes
    'vivid'
    [V4l2PlaneFormat(bytesperline=640, sizeimage=460800)]

Formats are only asked about (VIDIOC_ENUM_FMT, VIDIOC_TRY_FMT, VIDIOC_G_FMT); nothing here changes
the device's state. A driver that cannot do what TRY_FMT asks adjusts the request (another size,
another pixel format) rather than failing: compare what comes back with what was asked.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from typing import Any

from ._fd import FdResource, ioctl, open_fd
from .errors import KernelError, UsageError
from .formats.fourcc import fourcc_to_str
from .formats.v4l2 import v4l2_fourcc
from .uapi import videodev2 as _uapi
from .uapi.videodev2 import V4l2BufType, V4l2Cap, V4l2Field

__all__ = [
    "SYSFS_V4L2",
    "V4l2Caps",
    "V4l2Device",
    "V4l2FormatDesc",
    "V4l2ImageFormat",
    "V4l2PlaneFormat",
    "v4l2_fourcc",
    "v4l2_node_name",
    "v4l2_nodes_of_driver",
]

#: Where sysfs lists V4L2 nodes (relative to the sysfs mount).
SYSFS_V4L2 = os.path.join("class", "video4linux")

_FOURCC_BE = 1 << 31  # v4l2_fourcc_be(): the big-endian variant of a format
_MPLANE_TYPES = (V4l2BufType.VIDEO_CAPTURE_MPLANE, V4l2BufType.VIDEO_OUTPUT_MPLANE)
_SPLANE_TYPES = (V4l2BufType.VIDEO_CAPTURE, V4l2BufType.VIDEO_OUTPUT)
_CAP_TO_TYPES: tuple[tuple[V4l2Cap, tuple[V4l2BufType, ...]], ...] = (
    (V4l2Cap.VIDEO_CAPTURE, (V4l2BufType.VIDEO_CAPTURE,)),
    (V4l2Cap.VIDEO_OUTPUT, (V4l2BufType.VIDEO_OUTPUT,)),
    (V4l2Cap.VIDEO_OVERLAY, (V4l2BufType.VIDEO_OVERLAY,)),
    (V4l2Cap.VBI_CAPTURE, (V4l2BufType.VBI_CAPTURE,)),
    (V4l2Cap.VBI_OUTPUT, (V4l2BufType.VBI_OUTPUT,)),
    (V4l2Cap.SLICED_VBI_CAPTURE, (V4l2BufType.SLICED_VBI_CAPTURE,)),
    (V4l2Cap.SLICED_VBI_OUTPUT, (V4l2BufType.SLICED_VBI_OUTPUT,)),
    (V4l2Cap.VIDEO_OUTPUT_OVERLAY, (V4l2BufType.VIDEO_OUTPUT_OVERLAY,)),
    (V4l2Cap.VIDEO_CAPTURE_MPLANE, (V4l2BufType.VIDEO_CAPTURE_MPLANE,)),
    (V4l2Cap.VIDEO_OUTPUT_MPLANE, (V4l2BufType.VIDEO_OUTPUT_MPLANE,)),
    (V4l2Cap.VIDEO_M2M, (V4l2BufType.VIDEO_CAPTURE, V4l2BufType.VIDEO_OUTPUT)),
    (
        V4l2Cap.VIDEO_M2M_MPLANE,
        (V4l2BufType.VIDEO_CAPTURE_MPLANE, V4l2BufType.VIDEO_OUTPUT_MPLANE),
    ),
    (V4l2Cap.SDR_CAPTURE, (V4l2BufType.SDR_CAPTURE,)),
    (V4l2Cap.SDR_OUTPUT, (V4l2BufType.SDR_OUTPUT,)),
    (V4l2Cap.META_CAPTURE, (V4l2BufType.META_CAPTURE,)),
    (V4l2Cap.META_OUTPUT, (V4l2BufType.META_OUTPUT,)),
)


def _c_string(raw: Any) -> str:
    """A NUL-terminated ``__u8[]`` field as text."""
    return bytes(raw).split(b"\0", 1)[0].decode(errors="replace")


@dataclass(frozen=True)
class V4l2Caps:
    """VIDIOC_QUERYCAP: who the driver is and what the node can do.

    Attributes:
        driver: the driver's name (``"vivid"``).
        card: the device's name (``"vivid"``, or a board name).
        bus_info: where it sits (``"platform:vivid-000"``).
        version: the kernel version as ``KERNEL_VERSION(a, b, c)``.
        capabilities: V4L2_CAP_* of the whole physical device.
        device_caps: V4L2_CAP_* of this node (0 when the driver does not set DEVICE_CAPS).
    """

    driver: str
    card: str
    bus_info: str
    version: int
    capabilities: int
    device_caps: int

    @property
    def node_caps(self) -> V4l2Cap:
        """This node's capabilities: ``device_caps`` when given, else ``capabilities``."""
        if self.capabilities & V4l2Cap.DEVICE_CAPS:
            return V4l2Cap(self.device_caps)
        return V4l2Cap(self.capabilities)

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        """``version`` as (major, minor, patch)."""
        return (self.version >> 16) & 0xFF, (self.version >> 8) & 0xFF, self.version & 0xFF

    @property
    def is_multiplanar(self) -> bool:
        """The node's video queues use the multi-planar API (``*_MPLANE`` buffer types)."""
        mplane = V4l2Cap.VIDEO_CAPTURE_MPLANE | V4l2Cap.VIDEO_OUTPUT_MPLANE
        return bool(self.node_caps & (mplane | V4l2Cap.VIDEO_M2M_MPLANE))

    @property
    def is_streaming(self) -> bool:
        """The node supports streaming I/O (REQBUFS/QBUF/DQBUF)."""
        return bool(self.node_caps & V4l2Cap.STREAMING)

    @property
    def buffer_types(self) -> tuple[V4l2BufType, ...]:
        """The buffer types this node's capabilities imply, in enum order."""
        caps = self.node_caps
        found = {t for cap, types in _CAP_TO_TYPES if caps & cap for t in types}
        return tuple(sorted(found))

    def supports(self, buf_type: V4l2BufType | int) -> bool:
        """Whether the node's capabilities imply ``buf_type``."""
        return buf_type in self.buffer_types


@dataclass(frozen=True)
class V4l2FormatDesc:
    """One VIDIOC_ENUM_FMT entry.

    Attributes:
        index: its position in the enumeration.
        buf_type: the queue it was enumerated on.
        pixelformat: the V4L2 fourcc code.
        description: the driver's name for it.
        flags: V4L2_FMT_FLAG_*.
        mbus_code: the media bus code it was filtered by (0 normally).
    """

    index: int
    buf_type: int
    pixelformat: int
    description: str
    flags: int
    mbus_code: int = 0

    @property
    def fourcc(self) -> str:
        """``pixelformat`` as its four characters (``"NV12"``); see also :attr:`big_endian`."""
        return fourcc_to_str(self.pixelformat)

    @property
    def big_endian(self) -> bool:
        """Bit 31 of the code is set: the big-endian variant of :attr:`fourcc` (``v4l2_fourcc_be``,
        e.g. ``'Y16 '`` BE), a different memory layout from the plain code."""
        return bool(self.pixelformat & _FOURCC_BE)

    @property
    def compressed(self) -> bool:
        """A compressed format (MJPEG, H.264, ...): it has no plane layout."""
        return bool(self.flags & _uapi.V4L2_FMT_FLAG_COMPRESSED)


@dataclass(frozen=True)
class V4l2PlaneFormat:
    """One memory plane of an image: bytes per line and bytes in all, as the driver chose."""

    bytesperline: int
    sizeimage: int


@dataclass(frozen=True)
class V4l2ImageFormat:
    """An image format from VIDIOC_TRY_FMT or VIDIOC_G_FMT.

    Attributes:
        buf_type: the queue it is for.
        width: width in pixels.
        height: height in pixels.
        pixelformat: the V4L2 fourcc code.
        field: the field order (V4l2Field).
        planes: one entry per memory plane: a single entry for the single-planar API (its
            ``sizeimage`` covers every colour plane of the format), ``num_planes`` entries for
            the multi-planar API.
        colorspace: V4L2_COLORSPACE_*.
    """

    buf_type: int
    width: int
    height: int
    pixelformat: int
    field: int
    planes: tuple[V4l2PlaneFormat, ...]
    colorspace: int = 0

    @property
    def fourcc(self) -> str:
        """``pixelformat`` as its four characters."""
        return fourcc_to_str(self.pixelformat)

    @property
    def sizeimage(self) -> int:
        """Bytes in all memory planes together."""
        return sum(p.sizeimage for p in self.planes)

    @property
    def multi_planar(self) -> bool:
        """It came from the multi-planar API."""
        return self.buf_type in _MPLANE_TYPES


class V4l2Device(FdResource):
    """An open V4L2 node (/dev/video*), opened O_RDWR | O_CLOEXEC.

    Args:
        path: the device node.
    """

    def __init__(self, path: str) -> None:
        fd = open_fd(path, os.O_RDWR, what="V4L2 device")
        super().__init__(fd, description=f"V4L2 device {path}", path=path)

    def _ioctl(self, request: int, arg: Any, name: str, what: str) -> int:
        return ioctl(self.fileno(), request, arg, name=name, what=what, path=self.path)

    def querycap(self) -> V4l2Caps:
        """The driver's identity and the node's capabilities (VIDIOC_QUERYCAP).

        Raises:
            KernelError: the node is not a V4L2 device (ENOTTY) or the call failed.
        """
        cap = _uapi.v4l2_capability()
        what = f"query the capabilities of {self.description}"
        self._ioctl(_uapi.VIDIOC_QUERYCAP, cap, "VIDIOC_QUERYCAP", what)
        return V4l2Caps(
            driver=_c_string(cap.driver),
            card=_c_string(cap.card),
            bus_info=_c_string(cap.bus_info),
            version=int(cap.version),
            capabilities=int(cap.capabilities),
            device_caps=int(cap.device_caps),
        )

    def enum_formats(self, buf_type: V4l2BufType | int) -> list[V4l2FormatDesc]:
        """Every pixel format the queue ``buf_type`` offers (VIDIOC_ENUM_FMT until EINVAL).

        Raises:
            KernelError: the first call failed other than with EINVAL, or a later one failed.
        """
        buf_type = _check_type(buf_type)
        found: list[V4l2FormatDesc] = []
        while True:
            desc = _uapi.v4l2_fmtdesc(index=len(found), type=buf_type)
            what = f"enumerate format {len(found)} of {_type_name(buf_type)} on {self.description}"
            try:
                self._ioctl(_uapi.VIDIOC_ENUM_FMT, desc, "VIDIOC_ENUM_FMT", what)
            except KernelError as exc:
                if exc.errno == errno.EINVAL:
                    return found
                raise
            found.append(
                V4l2FormatDesc(
                    index=int(desc.index),
                    buf_type=int(desc.type),
                    pixelformat=int(desc.pixelformat),
                    description=_c_string(desc.description),
                    flags=int(desc.flags),
                    mbus_code=int(desc.mbus_code),
                )
            )

    def try_format(
        self,
        buf_type: V4l2BufType | int,
        pixelformat: int | str,
        width: int,
        height: int,
        *,
        field: V4l2Field | int = V4l2Field.ANY,
    ) -> V4l2ImageFormat:
        """What the driver would make of a format (VIDIOC_TRY_FMT); the device is not changed.

        V4L2 drivers adjust rather than refuse: an unsupported pixel format comes back as one
        the driver supports, and sizes are clamped and aligned. Bytes per line are left to the
        driver (asked as 0: the smallest it allows).

        Args:
            buf_type: a video queue (VIDEO_CAPTURE/OUTPUT or their _MPLANE variants).
            pixelformat: a V4L2 fourcc code, or its four characters (``"NV12"``).
            width: requested width in pixels.
            height: requested height in pixels.
            field: requested field order (default ANY: the driver picks).

        Raises:
            UsageError: not a video buffer type, or a bad fourcc or size.
            KernelError: the driver refused (e.g. EINVAL for a queue it does not have).
        """
        buf_type = _check_type(buf_type)
        if isinstance(pixelformat, str):
            pixelformat = v4l2_fourcc(pixelformat)
        for label, value in (("width", width), ("height", height), ("pixelformat", pixelformat)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
                raise UsageError(f"V4L2 {label} must be a 32-bit unsigned integer, not {value!r}")
        fmt = _uapi.v4l2_format(type=buf_type)
        if buf_type in _MPLANE_TYPES:
            mp = fmt.fmt.pix_mp
            mp.width, mp.height, mp.pixelformat, mp.field = width, height, pixelformat, int(field)
        else:
            pix = fmt.fmt.pix
            pix.width, pix.height, pix.pixelformat = width, height, pixelformat
            pix.field = int(field)
        what = (
            f"try {fourcc_to_str(pixelformat)} {width}x{height} on {_type_name(buf_type)} "
            f"of {self.description}"
        )
        self._ioctl(_uapi.VIDIOC_TRY_FMT, fmt, "VIDIOC_TRY_FMT", what)
        return _image_format(fmt)

    def get_format(self, buf_type: V4l2BufType | int) -> V4l2ImageFormat:
        """The queue's current format (VIDIOC_G_FMT).

        Raises:
            UsageError: not a video buffer type.
            KernelError: the driver refused (e.g. EINVAL for a queue it does not have).
        """
        buf_type = _check_type(buf_type)
        fmt = _uapi.v4l2_format(type=buf_type)
        what = f"get the {_type_name(buf_type)} format of {self.description}"
        self._ioctl(_uapi.VIDIOC_G_FMT, fmt, "VIDIOC_G_FMT", what)
        return _image_format(fmt)


def _check_type(buf_type: V4l2BufType | int) -> V4l2BufType:
    try:
        value = V4l2BufType(buf_type)
    except ValueError:
        raise UsageError(f"unknown V4L2 buffer type {buf_type!r}") from None
    if value not in _MPLANE_TYPES + _SPLANE_TYPES:
        raise UsageError(f"{_type_name(value)} is not a video queue: it has no image format")
    return value


def _type_name(buf_type: int) -> str:
    try:
        return f"V4L2_BUF_TYPE_{V4l2BufType(buf_type).name}"
    except ValueError:
        return f"V4L2 buffer type {buf_type}"


def _image_format(fmt: _uapi.v4l2_format) -> V4l2ImageFormat:
    buf_type = int(fmt.type)
    if buf_type in _MPLANE_TYPES:
        mp = fmt.fmt.pix_mp
        count = min(int(mp.num_planes), _uapi.VIDEO_MAX_PLANES)
        planes = tuple(
            V4l2PlaneFormat(int(p.bytesperline), int(p.sizeimage)) for p in mp.plane_fmt[:count]
        )
        return V4l2ImageFormat(
            buf_type,
            int(mp.width),
            int(mp.height),
            int(mp.pixelformat),
            int(mp.field),
            planes,
            int(mp.colorspace),
        )
    pix = fmt.fmt.pix
    return V4l2ImageFormat(
        buf_type,
        int(pix.width),
        int(pix.height),
        int(pix.pixelformat),
        int(pix.field),
        (V4l2PlaneFormat(int(pix.bytesperline), int(pix.sizeimage)),),
        int(pix.colorspace),
    )


def natural_key(name: str) -> tuple[str, int]:
    """Sort key that puts video2 before video10."""
    m = re.match(r"(.*?)(\d+)$", name)
    return (m.group(1), int(m.group(2))) if m else (name, -1)


def v4l2_node_driver(node: str, sysfs: str = "/sys") -> str:
    """The kernel driver a V4L2 node's device is bound to (sysfs driver link); "" if unbound."""
    link = os.path.join(sysfs, SYSFS_V4L2, os.path.basename(node), "device", "driver")
    try:
        return os.path.basename(os.readlink(link))
    except OSError:
        return ""


def v4l2_node_name(node: str, sysfs: str = "/sys") -> str:
    """The name the driver gave a V4L2 node (sysfs ``video4linux/videoN/name``, e.g.
    ``"vivid-000-vid-cap"``); "" when sysfs does not tell."""
    path = os.path.join(sysfs, SYSFS_V4L2, os.path.basename(node), "name")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def v4l2_nodes_of_driver(driver: str, sysfs: str = "/sys", dev: str = "/dev") -> list[str]:
    """The /dev/video* nodes whose device is bound to kernel driver ``driver``, naturally sorted
    (video2 before video10). Read from sysfs: nothing is opened."""
    base = os.path.join(sysfs, SYSFS_V4L2)
    try:
        names = os.listdir(base)
    except OSError:
        return []
    found = [
        n for n in names if re.fullmatch(r"video\d+", n) and v4l2_node_driver(n, sysfs) == driver
    ]
    found.sort(key=natural_key)
    return [os.path.join(dev, n) for n in found]
