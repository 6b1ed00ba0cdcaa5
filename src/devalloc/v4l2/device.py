"""V4L2 video devices: capabilities, pixel formats, plane sizes, and DMABUF streaming I/O.

Example:
    >>> from devalloc.uapi.videodev2 import V4l2BufType
    >>> nodes = v4l2_nodes_of_driver("vivid")                       # doctest: +SKIP
    >>> with V4l2Device(nodes[0]) as dev:                           # doctest: +SKIP
    ...     dev.querycap().driver
    ...     fmt = dev.try_format(V4l2BufType.VIDEO_CAPTURE, v4l2_fourcc("NV12"), 640, 480)
    ...     fmt.planes
    'vivid'
    [V4l2PlaneFormat(bytesperline=640, sizeimage=460800)]
    >>> with V4l2Device(nodes[0]) as dev, heap.allocate(614400) as buf:  # doctest: +SKIP
    ...     dev.set_format(V4l2BufType.VIDEO_CAPTURE, "YUYV", 640, 480)
    ...     with dev.dmabuf_queue(V4l2BufType.VIDEO_CAPTURE, 1) as queue:
    ...         queue.queue(0, [DmabufPlane(buf)])
    ...         queue.start()
    ...         queue.dequeue(timeout=5).bytesused
    (614400,)

Formats are asked about with VIDIOC_ENUM_FMT, VIDIOC_TRY_FMT and VIDIOC_G_FMT, which leave the
device as it is; VIDIOC_S_FMT and the streaming calls (REQBUFS, QBUF, STREAMON, DQBUF, STREAMOFF)
change it. A driver that cannot do what TRY_FMT/S_FMT asks adjusts the request (another size,
another pixel format) rather than failing: compare what comes back with what was asked.

Streaming here imports dma-bufs (V4L2_MEMORY_DMABUF): the kernel takes its own reference to each
queued dma-buf, so :class:`~devalloc.buffer.Buffer` objects stay owned by the caller, and
:class:`DmabufQueue` frees the slots (REQBUFS 0) when it is released, after failures too.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import math
import os
import re
import select
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

from .._fd import FdResource, ioctl, open_fd
from ..buffer import Buffer
from ..errors import ClosedResourceError, KernelError, UsageError, error_from_errno
from ..formats.fourcc import fourcc_to_str
from ..formats.v4l2 import v4l2_fourcc
from ..uapi import videodev2 as _uapi
from ..uapi.videodev2 import V4l2BufCap, V4l2BufFlag, V4l2BufType, V4l2Cap, V4l2Field, V4l2Memory

__all__ = [
    "SYSFS_V4L2",
    "DmabufPlane",
    "DmabufQueue",
    "V4l2BufferRequest",
    "V4l2Caps",
    "V4l2Device",
    "V4l2FormatDesc",
    "V4l2Frame",
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
        fmt, what = self._format_request(buf_type, pixelformat, width, height, field, ())
        self._ioctl(_uapi.VIDIOC_TRY_FMT, fmt, "VIDIOC_TRY_FMT", f"try {what}")
        return _image_format(fmt)

    def set_format(
        self,
        buf_type: V4l2BufType | int,
        pixelformat: int | str,
        width: int,
        height: int,
        *,
        field: V4l2Field | int = V4l2Field.ANY,
        bytesperline: Sequence[int] = (),
    ) -> V4l2ImageFormat:
        """Set the queue's format (VIDIOC_S_FMT) and return what the driver chose.

        Like TRY_FMT the driver adjusts what it cannot do, so compare the result with the
        request. The format cannot change while buffers are allocated (EBUSY).

        Args:
            buf_type: a video queue (VIDEO_CAPTURE/OUTPUT or their _MPLANE variants).
            pixelformat: a V4L2 fourcc code, or its four characters.
            width: width in pixels.
            height: height in pixels.
            field: field order (default ANY: the driver picks).
            bytesperline: requested bytes per line, per memory plane (empty: the driver's
                smallest); drivers may raise them.

        Raises:
            UsageError: not a video buffer type, or a bad fourcc, size or pitch.
            KernelError: the driver refused (EBUSY while buffers are allocated, EINVAL ...).
        """
        fmt, what = self._format_request(buf_type, pixelformat, width, height, field, bytesperline)
        self._ioctl(_uapi.VIDIOC_S_FMT, fmt, "VIDIOC_S_FMT", f"set {what}")
        return _image_format(fmt)

    def _format_request(
        self,
        buf_type: V4l2BufType | int,
        pixelformat: int | str,
        width: int,
        height: int,
        field: V4l2Field | int,
        bytesperline: Sequence[int],
    ) -> tuple[_uapi.v4l2_format, str]:
        buf_type = _check_type(buf_type)
        if isinstance(pixelformat, str):
            pixelformat = v4l2_fourcc(pixelformat)
        checks = [("width", width), ("height", height), ("pixelformat", pixelformat)]
        checks += [(f"bytesperline[{i}]", v) for i, v in enumerate(bytesperline)]
        for label, value in checks:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
                raise UsageError(f"V4L2 {label} must be a 32-bit unsigned integer, not {value!r}")
        fmt = _uapi.v4l2_format(type=buf_type)
        if buf_type in _MPLANE_TYPES:
            if len(bytesperline) > _uapi.VIDEO_MAX_PLANES:
                raise UsageError(
                    f"V4L2 formats have at most {_uapi.VIDEO_MAX_PLANES} planes, "
                    f"not {len(bytesperline)}"
                )
            mp = fmt.fmt.pix_mp
            mp.width, mp.height, mp.pixelformat, mp.field = width, height, pixelformat, int(field)
            mp.num_planes = len(bytesperline)
            for plane, pitch in zip(mp.plane_fmt, bytesperline, strict=False):
                plane.bytesperline = pitch
        else:
            if len(bytesperline) > 1:
                raise UsageError(
                    f"{_type_name(buf_type)} is single-planar: one bytesperline, "
                    f"not {len(bytesperline)}"
                )
            pix = fmt.fmt.pix
            pix.width, pix.height, pix.pixelformat = width, height, pixelformat
            pix.field = int(field)
            pix.bytesperline = bytesperline[0] if bytesperline else 0
        what = (
            f"{fourcc_to_str(pixelformat)} {width}x{height} on {_type_name(buf_type)} "
            f"of {self.description}"
        )
        return fmt, what

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

    # --- streaming I/O ----------------------------------------------------------------------

    def request_buffers(
        self,
        buf_type: V4l2BufType | int,
        count: int,
        memory: V4l2Memory | int = V4l2Memory.DMABUF,
    ) -> V4l2BufferRequest:
        """VIDIOC_REQBUFS: allocate ``count`` buffer slots of ``memory`` type (0 frees them all).

        With V4L2_MEMORY_DMABUF no memory is allocated: the slots are filled by
        :meth:`queue_dmabuf`. The driver may grant more or fewer slots than asked.

        Raises:
            UsageError: not a video buffer type, or a bad count.
            KernelError: EINVAL when the queue does not support ``memory``, EBUSY when buffers
                are still queued or another file owns the queue.
        """
        buf_type = _check_type(buf_type)
        _check_u32("buffer count", count)
        memory = V4l2Memory(memory)
        req = _uapi.v4l2_requestbuffers(count=count, type=buf_type, memory=memory)
        what = (
            f"request {count} {memory.name} buffers on {_type_name(buf_type)} of {self.description}"
        )
        self._ioctl(_uapi.VIDIOC_REQBUFS, req, "VIDIOC_REQBUFS", what)
        return V4l2BufferRequest(int(req.count), V4l2BufCap(int(req.capabilities)))

    def buffer_capabilities(self, buf_type: V4l2BufType | int) -> V4l2BufCap:
        """The queue's V4L2_BUF_CAP_* flags (REQBUFS with count 0 and MMAP memory, which every
        vb2 queue accepts; it frees this file's MMAP buffers if there were any).

        Raises:
            KernelError: the queue refused (EBUSY when another file owns it).
        """
        return self.request_buffers(buf_type, 0, V4l2Memory.MMAP).capabilities

    def queue_dmabuf(
        self, buf_type: V4l2BufType | int, index: int, planes: Sequence[DmabufPlane]
    ) -> None:
        """VIDIOC_QBUF of dma-bufs into slot ``index`` (after REQBUFS with DMABUF memory).

        The kernel takes its own reference to each dma-buf, so the caller keeps owning (and may
        close) its :class:`Buffer` objects. Single-planar queues take exactly one plane.

        Raises:
            UsageError: a plane that is not a dma-buf, a wrong plane count, bad numbers.
            KernelError: the driver refused: EINVAL (e.g. a buffer shorter than the format's
                sizeimage, "invalid dmabuf length"), EFAULT (the device could not map it, e.g.
                a contiguous-only device given scattered memory) ...
        """
        buf_type = _check_type(buf_type)
        _check_u32("buffer index", index)
        if not planes:
            raise UsageError(f"queue_dmabuf on {self.description} needs at least one plane")
        for n, plane in enumerate(planes):
            if not plane.buffer.is_dmabuf:
                raise UsageError(
                    f"plane {n}: {plane.buffer.description} is not a dma-buf: "
                    f"{self.description} cannot import it"
                )
        arg = _uapi.v4l2_buffer(index=index, type=buf_type, memory=V4l2Memory.DMABUF)
        sizes = ", ".join(f"{p.buffer.size}" for p in planes)
        what = (
            f"queue dma-buf(s) of {sizes} bytes into slot {index} of {_type_name(buf_type)} "
            f"of {self.description}"
        )
        if buf_type in _MPLANE_TYPES:
            if len(planes) > _uapi.VIDEO_MAX_PLANES:
                raise UsageError(f"at most {_uapi.VIDEO_MAX_PLANES} planes, not {len(planes)}")
            array = (_uapi.v4l2_plane * len(planes))()
            for item, plane in zip(array, planes, strict=True):
                length = plane.resolved_length()
                item.m.fd = plane.buffer.fileno()
                item.length = length
                item.data_offset = plane.data_offset
                item.bytesused = plane.bytesused
            arg.m.planes = array
            arg.length = len(planes)
            self._ioctl(_uapi.VIDIOC_QBUF, arg, "VIDIOC_QBUF", what)
            return
        if len(planes) != 1:
            raise UsageError(
                f"{_type_name(buf_type)} is single-planar: queue one dma-buf, not {len(planes)}"
            )
        plane = planes[0]
        if plane.data_offset:
            raise UsageError("single-planar V4L2 queues have no data_offset: pass 0")
        length = plane.resolved_length()
        arg.m.fd = plane.buffer.fileno()
        arg.length = length
        arg.bytesused = plane.bytesused
        self._ioctl(_uapi.VIDIOC_QBUF, arg, "VIDIOC_QBUF", what)

    def dequeue_buffer(
        self,
        buf_type: V4l2BufType | int,
        *,
        memory: V4l2Memory | int = V4l2Memory.DMABUF,
        timeout: float = 5.0,
    ) -> V4l2Frame:
        """Wait up to ``timeout`` seconds for a finished buffer and take it back (VIDIOC_DQBUF).

        Waits with poll(2), then dequeues without blocking, so a queue that never delivers
        raises instead of hanging.

        Raises:
            TimedOutError: no buffer finished in time (ETIMEDOUT).
            KernelError: DQBUF failed (EINVAL when not streaming, EPIPE after the last buffer),
                or (errno EIO) poll reported POLLERR while nothing was ready: streaming with no
                buffer queued, or a device error.
        """
        buf_type = _check_type(buf_type)
        memory = V4l2Memory(memory)
        output = buf_type in (V4l2BufType.VIDEO_OUTPUT, V4l2BufType.VIDEO_OUTPUT_MPLANE)
        events = select.POLLOUT | select.POLLWRNORM if output else select.POLLIN | select.POLLRDNORM
        arg = _uapi.v4l2_buffer(type=buf_type, memory=memory)
        array = None
        if buf_type in _MPLANE_TYPES:
            array = (_uapi.v4l2_plane * _uapi.VIDEO_MAX_PLANES)()
            arg.m.planes = array
            arg.length = _uapi.VIDEO_MAX_PLANES
        what = f"dequeue a buffer from {_type_name(buf_type)} of {self.description}"
        fd = self.fileno()
        poller = select.poll()
        poller.register(fd, events | select.POLLERR | select.POLLPRI)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            ready = poller.poll(max(0, math.ceil(remaining * 1000))) if remaining > 0 else []
            if not ready:
                raise error_from_errno(
                    errno.ETIMEDOUT,
                    f"{what}: no buffer finished within {timeout:g} s",
                    path=self.path,
                    operation="VIDIOC_DQBUF",
                )
            try:
                with _nonblocking(fd):
                    self._ioctl(_uapi.VIDIOC_DQBUF, arg, "VIDIOC_DQBUF", what)
            except KernelError as exc:
                if exc.errno != errno.EAGAIN:
                    raise
                if ready[0][1] & select.POLLERR:
                    # vb2 signals POLLERR when it is not streaming, has nothing queued, or the
                    # device failed; waiting would only spin until the deadline.
                    raise error_from_errno(
                        errno.EIO,
                        f"{what}: the queue reports an error (POLLERR): not streaming, no "
                        "buffer queued, or a device error",
                        path=self.path,
                        operation="VIDIOC_DQBUF",
                    ) from exc
                continue
            break
        if array is not None:
            used = tuple(int(p.bytesused) for p in array[: int(arg.length)])
        else:
            used = (int(arg.bytesused),)
        return V4l2Frame(
            index=int(arg.index),
            sequence=int(arg.sequence),
            flags=V4l2BufFlag(int(arg.flags)),
            field=int(arg.field),
            timestamp=int(arg.timestamp.tv_sec) + int(arg.timestamp.tv_usec) / 1e6,
            bytesused=used,
        )

    def stream_on(self, buf_type: V4l2BufType | int) -> None:
        """VIDIOC_STREAMON: start the queue (capture begins filling queued buffers)."""
        self._stream(buf_type, _uapi.VIDIOC_STREAMON, "VIDIOC_STREAMON", "start streaming")

    def stream_off(self, buf_type: V4l2BufType | int) -> None:
        """VIDIOC_STREAMOFF: stop the queue; every queued buffer returns to userspace."""
        self._stream(buf_type, _uapi.VIDIOC_STREAMOFF, "VIDIOC_STREAMOFF", "stop streaming")

    def _stream(self, buf_type: V4l2BufType | int, request: int, name: str, verb: str) -> None:
        buf_type = _check_type(buf_type)
        arg = ctypes.c_int(buf_type)
        self._ioctl(request, arg, name, f"{verb} on {_type_name(buf_type)} of {self.description}")

    def dmabuf_queue(self, buf_type: V4l2BufType | int, count: int) -> DmabufQueue:
        """A :class:`DmabufQueue` of ``count`` DMABUF slots on ``buf_type`` (REQBUFS now).

        Use it as a context manager: leaving it stops streaming and frees the slots
        (REQBUFS 0), also after a failed QBUF, so the device is reusable.
        """
        return DmabufQueue(self, buf_type, count)


@dataclass(frozen=True)
class V4l2BufferRequest:
    """What VIDIOC_REQBUFS granted: the number of buffer slots and the queue's capabilities."""

    count: int
    capabilities: V4l2BufCap

    @property
    def supports_dmabuf(self) -> bool:
        """The queue imports dma-bufs (V4L2_BUF_CAP_SUPPORTS_DMABUF)."""
        return bool(self.capabilities & V4l2BufCap.SUPPORTS_DMABUF)


@dataclass(frozen=True)
class DmabufPlane:
    """One memory plane handed to VIDIOC_QBUF: a borrowed dma-buf and the part of it to use.

    Attributes:
        buffer: the dma-buf; the caller keeps owning it.
        length: bytes of the plane (``v4l2_plane.length`` / ``v4l2_buffer.length``); None means
            the whole buffer. The kernel refuses a length below the format's sizeimage.
        data_offset: where the plane's data starts in the buffer (multi-planar queues only).
        bytesused: bytes of payload, for output queues: give the image size (the format's
            sizeimage, plus ``data_offset``). 0 leaves it to the kernel, which takes the whole
            ``length`` (deprecated; and vb2 refuses a payload above the format's sizeimage on a
            slot's first QBUF, so 0 fails for buffers larger than the image).
    """

    buffer: Buffer
    length: int | None = None
    data_offset: int = 0
    bytesused: int = 0

    def resolved_length(self) -> int:
        """``length``, or the buffer's size when it is None (checked to fit in 32 bits)."""
        length = self.buffer.size if self.length is None else self.length
        for label, value in (
            ("length", length),
            ("data_offset", self.data_offset),
            ("bytesused", self.bytesused),
        ):
            _check_u32(f"plane {label}", value)
        return length


@dataclass(frozen=True)
class V4l2Frame:
    """A buffer taken back with VIDIOC_DQBUF.

    Attributes:
        index: its slot.
        sequence: the driver's frame counter.
        flags: V4L2_BUF_FLAG_* (ERROR set means the data may be corrupt).
        field: the field order of the data.
        timestamp: seconds (CLOCK_MONOTONIC for most drivers).
        bytesused: bytes of payload per plane.
    """

    index: int
    sequence: int
    flags: V4l2BufFlag
    field: int
    timestamp: float
    bytesused: tuple[int, ...]

    @property
    def error(self) -> bool:
        """The driver flagged the data as possibly corrupt (V4L2_BUF_FLAG_ERROR)."""
        return bool(self.flags & V4l2BufFlag.ERROR)


class DmabufQueue:
    """DMABUF slots on one queue of a :class:`V4l2Device`, released when the block ends.

    Example:
        >>> with V4l2Device(node) as dev:                                    # doctest: +SKIP
        ...     dev.set_format(V4l2BufType.VIDEO_CAPTURE, "YUYV", 640, 480)
        ...     with dev.dmabuf_queue(V4l2BufType.VIDEO_CAPTURE, 2) as q:
        ...         for i, buf in enumerate(buffers):
        ...             q.queue(i, [DmabufPlane(buf)])
        ...         q.start()
        ...         frame = q.dequeue(timeout=2)

    Borrows the device (which must outlive it) and the queued buffers. ``release()`` (also on
    leaving the ``with`` block) issues STREAMOFF when streaming and REQBUFS(0), so a failed QBUF
    or DQBUF leaves the device ready for the next user.

    Args:
        device: the open device.
        buf_type: the queue.
        count: slots to request; the driver may grant another number (:attr:`count`).

    Raises:
        KernelError: REQBUFS failed (EINVAL: the queue does not import dma-bufs).
    """

    def __init__(self, device: V4l2Device, buf_type: V4l2BufType | int, count: int) -> None:
        self.device = device
        self.buf_type = _check_type(buf_type)
        self._streaming = False
        self._released = True
        granted = device.request_buffers(self.buf_type, count, V4l2Memory.DMABUF)
        self._released = False
        self.count = granted.count
        self.capabilities = granted.capabilities

    @property
    def streaming(self) -> bool:
        """STREAMON was issued and not yet undone."""
        return self._streaming

    def queue(self, index: int, planes: Sequence[DmabufPlane]) -> None:
        """QBUF dma-bufs into slot ``index`` (see :meth:`V4l2Device.queue_dmabuf`)."""
        self._check_open()
        self.device.queue_dmabuf(self.buf_type, index, planes)

    def start(self) -> None:
        """STREAMON."""
        self._check_open()
        self.device.stream_on(self.buf_type)
        self._streaming = True

    def dequeue(self, timeout: float = 5.0) -> V4l2Frame:
        """Wait for and take back one finished buffer (see :meth:`V4l2Device.dequeue_buffer`)."""
        self._check_open()
        return self.device.dequeue_buffer(self.buf_type, timeout=timeout)

    def stop(self) -> None:
        """STREAMOFF (every queued buffer comes back); a no-op when not streaming."""
        if self._streaming:
            self._streaming = False
            self.device.stream_off(self.buf_type)

    def release(self) -> None:
        """STREAMOFF if streaming, then REQBUFS(0): the kernel drops its dma-buf references.
        Idempotent; a device that is already closed released everything itself."""
        if self._released:
            return
        self._released = True
        if self.device.closed:
            self._streaming = False
            return
        try:
            self.stop()
        finally:
            self.device.request_buffers(self.buf_type, 0, V4l2Memory.DMABUF)

    def _check_open(self) -> None:
        if self._released:
            raise ClosedResourceError(
                f"the DMABUF queue of {_type_name(self.buf_type)} on {self.device.description} "
                "was released"
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def _nonblocking(fd: int) -> Iterator[None]:
    """Set O_NONBLOCK on ``fd``'s open file for the duration of the block."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & os.O_NONBLOCK:
        yield
        return
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        yield
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)


def _check_u32(label: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
        raise UsageError(f"V4L2 {label} must be a 32-bit unsigned integer, not {value!r}")


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
