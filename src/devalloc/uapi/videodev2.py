"""linux/videodev2.h: the V4L2 subset for formats, DMABUF streaming, codec commands and events.

We write this subset by hand rather than depending on linuxpy because the core library must have
no runtime dependencies, and this subset is verified against the system headers by
tests/test_uapi_headers.py.

Example:
    >>> fmt = v4l2_format(type=V4L2_BUF_TYPE_VIDEO_CAPTURE)
    >>> # fcntl.ioctl(video_fd, VIDIOC_G_FMT, fmt); fmt.fmt.pix.width, fmt.fmt.pix.pixelformat
    >>> req = v4l2_requestbuffers(count=4, type=V4L2_BUF_TYPE_VIDEO_CAPTURE)
    >>> req.memory = V4L2_MEMORY_DMABUF
    >>> # fcntl.ioctl(video_fd, VIDIOC_REQBUFS, req); then VIDIOC_QBUF with buf.m.fd = a dma-buf fd
    >>> v4l2_fourcc("N", "V", "1", "2") == V4L2_PIX_FMT_NV12
    True
"""

from __future__ import annotations

import ctypes
import enum
from typing import ClassVar

from ._ioc import _IOR, _IOW, _IOWR

#: linux/v4l2-subdev.h (which includes v4l2-mediabus.h) declares the sub-device pad formats that a
#: media-controller pipeline (vimc) needs before it streams.
C_HEADERS = ("linux/videodev2.h", "linux/v4l2-subdev.h")

VIDEO_MAX_PLANES = 8


def v4l2_fourcc(a: str | int, b: str | int, c: str | int, d: str | int) -> int:
    """The little-endian four-character code of a pixel format, as the C macro ``v4l2_fourcc``."""
    code = 0
    for shift, char in zip((0, 8, 16, 24), (a, b, c, d), strict=True):
        value = ord(char) if isinstance(char, str) else char
        if not 0 <= value <= 0xFF:
            raise ValueError(f"fourcc character {char!r} does not fit in a byte")
        code |= value << shift
    return code


# --- pixel formats -------------------------------------------------------------------------------

V4L2_PIX_FMT_RGB565 = v4l2_fourcc("R", "G", "B", "P")
V4L2_PIX_FMT_BGR24 = v4l2_fourcc("B", "G", "R", "3")
V4L2_PIX_FMT_RGB24 = v4l2_fourcc("R", "G", "B", "3")
V4L2_PIX_FMT_BGR32 = v4l2_fourcc("B", "G", "R", "4")
V4L2_PIX_FMT_ABGR32 = v4l2_fourcc("A", "R", "2", "4")
V4L2_PIX_FMT_XBGR32 = v4l2_fourcc("X", "R", "2", "4")
V4L2_PIX_FMT_RGB32 = v4l2_fourcc("R", "G", "B", "4")
V4L2_PIX_FMT_ARGB32 = v4l2_fourcc("B", "A", "2", "4")
V4L2_PIX_FMT_XRGB32 = v4l2_fourcc("B", "X", "2", "4")
V4L2_PIX_FMT_GREY = v4l2_fourcc("G", "R", "E", "Y")
V4L2_PIX_FMT_YUYV = v4l2_fourcc("Y", "U", "Y", "V")
V4L2_PIX_FMT_UYVY = v4l2_fourcc("U", "Y", "V", "Y")
V4L2_PIX_FMT_NV12 = v4l2_fourcc("N", "V", "1", "2")
V4L2_PIX_FMT_NV21 = v4l2_fourcc("N", "V", "2", "1")
V4L2_PIX_FMT_NV16 = v4l2_fourcc("N", "V", "1", "6")
V4L2_PIX_FMT_NV12M = v4l2_fourcc("N", "M", "1", "2")
V4L2_PIX_FMT_YUV420 = v4l2_fourcc("Y", "U", "1", "2")
V4L2_PIX_FMT_YVU420 = v4l2_fourcc("Y", "V", "1", "2")
V4L2_PIX_FMT_YUV420M = v4l2_fourcc("Y", "M", "1", "2")
V4L2_PIX_FMT_MJPEG = v4l2_fourcc("M", "J", "P", "G")
V4L2_PIX_FMT_H264 = v4l2_fourcc("H", "2", "6", "4")

#: ``v4l2_pix_format.priv`` value saying the fields after ``priv`` are valid.
V4L2_PIX_FMT_PRIV_MAGIC = 0xFEEDCAFE


# --- enums ---------------------------------------------------------------------------------------


class V4l2Field(enum.IntEnum):
    """enum v4l2_field: field order of an (interlaced) image."""

    ANY = 0
    NONE = 1
    TOP = 2
    BOTTOM = 3
    INTERLACED = 4
    SEQ_TB = 5
    SEQ_BT = 6
    ALTERNATE = 7
    INTERLACED_TB = 8
    INTERLACED_BT = 9


V4L2_FIELD_ANY = V4l2Field.ANY
V4L2_FIELD_NONE = V4l2Field.NONE
V4L2_FIELD_TOP = V4l2Field.TOP
V4L2_FIELD_BOTTOM = V4l2Field.BOTTOM
V4L2_FIELD_INTERLACED = V4l2Field.INTERLACED
V4L2_FIELD_SEQ_TB = V4l2Field.SEQ_TB
V4L2_FIELD_SEQ_BT = V4l2Field.SEQ_BT
V4L2_FIELD_ALTERNATE = V4l2Field.ALTERNATE
V4L2_FIELD_INTERLACED_TB = V4l2Field.INTERLACED_TB
V4L2_FIELD_INTERLACED_BT = V4l2Field.INTERLACED_BT


class V4l2BufType(enum.IntEnum):
    """enum v4l2_buf_type: the queue a format or buffer belongs to."""

    VIDEO_CAPTURE = 1
    VIDEO_OUTPUT = 2
    VIDEO_OVERLAY = 3
    VBI_CAPTURE = 4
    VBI_OUTPUT = 5
    SLICED_VBI_CAPTURE = 6
    SLICED_VBI_OUTPUT = 7
    VIDEO_OUTPUT_OVERLAY = 8
    VIDEO_CAPTURE_MPLANE = 9
    VIDEO_OUTPUT_MPLANE = 10
    SDR_CAPTURE = 11
    SDR_OUTPUT = 12
    META_CAPTURE = 13
    META_OUTPUT = 14
    #: Deprecated in the header.
    PRIVATE = 0x80


V4L2_BUF_TYPE_VIDEO_CAPTURE = V4l2BufType.VIDEO_CAPTURE
V4L2_BUF_TYPE_VIDEO_OUTPUT = V4l2BufType.VIDEO_OUTPUT
V4L2_BUF_TYPE_VIDEO_OVERLAY = V4l2BufType.VIDEO_OVERLAY
V4L2_BUF_TYPE_VBI_CAPTURE = V4l2BufType.VBI_CAPTURE
V4L2_BUF_TYPE_VBI_OUTPUT = V4l2BufType.VBI_OUTPUT
V4L2_BUF_TYPE_SLICED_VBI_CAPTURE = V4l2BufType.SLICED_VBI_CAPTURE
V4L2_BUF_TYPE_SLICED_VBI_OUTPUT = V4l2BufType.SLICED_VBI_OUTPUT
V4L2_BUF_TYPE_VIDEO_OUTPUT_OVERLAY = V4l2BufType.VIDEO_OUTPUT_OVERLAY
V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE = V4l2BufType.VIDEO_CAPTURE_MPLANE
V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE = V4l2BufType.VIDEO_OUTPUT_MPLANE
V4L2_BUF_TYPE_SDR_CAPTURE = V4l2BufType.SDR_CAPTURE
V4L2_BUF_TYPE_SDR_OUTPUT = V4l2BufType.SDR_OUTPUT
V4L2_BUF_TYPE_META_CAPTURE = V4l2BufType.META_CAPTURE
V4L2_BUF_TYPE_META_OUTPUT = V4l2BufType.META_OUTPUT
V4L2_BUF_TYPE_PRIVATE = V4l2BufType.PRIVATE


class V4l2Memory(enum.IntEnum):
    """enum v4l2_memory: how buffer memory is provided."""

    MMAP = 1
    USERPTR = 2
    OVERLAY = 3
    DMABUF = 4


V4L2_MEMORY_MMAP = V4l2Memory.MMAP
V4L2_MEMORY_USERPTR = V4l2Memory.USERPTR
V4L2_MEMORY_OVERLAY = V4l2Memory.OVERLAY
V4L2_MEMORY_DMABUF = V4l2Memory.DMABUF


class V4l2Cap(enum.IntFlag):
    """V4L2_CAP_*: ``v4l2_capability.capabilities`` and ``device_caps``."""

    NONE = 0
    VIDEO_CAPTURE = 0x00000001
    VIDEO_OUTPUT = 0x00000002
    VIDEO_OVERLAY = 0x00000004
    VBI_CAPTURE = 0x00000010
    VBI_OUTPUT = 0x00000020
    SLICED_VBI_CAPTURE = 0x00000040
    SLICED_VBI_OUTPUT = 0x00000080
    RDS_CAPTURE = 0x00000100
    VIDEO_OUTPUT_OVERLAY = 0x00000200
    HW_FREQ_SEEK = 0x00000400
    RDS_OUTPUT = 0x00000800
    VIDEO_CAPTURE_MPLANE = 0x00001000
    VIDEO_OUTPUT_MPLANE = 0x00002000
    VIDEO_M2M_MPLANE = 0x00004000
    VIDEO_M2M = 0x00008000
    TUNER = 0x00010000
    AUDIO = 0x00020000
    RADIO = 0x00040000
    MODULATOR = 0x00080000
    SDR_CAPTURE = 0x00100000
    EXT_PIX_FORMAT = 0x00200000
    SDR_OUTPUT = 0x00400000
    META_CAPTURE = 0x00800000
    READWRITE = 0x01000000
    STREAMING = 0x04000000
    META_OUTPUT = 0x08000000
    TOUCH = 0x10000000
    IO_MC = 0x20000000
    DEVICE_CAPS = 0x80000000


V4L2_CAP_VIDEO_CAPTURE = V4l2Cap.VIDEO_CAPTURE
V4L2_CAP_VIDEO_OUTPUT = V4l2Cap.VIDEO_OUTPUT
V4L2_CAP_VIDEO_OVERLAY = V4l2Cap.VIDEO_OVERLAY
V4L2_CAP_VBI_CAPTURE = V4l2Cap.VBI_CAPTURE
V4L2_CAP_VBI_OUTPUT = V4l2Cap.VBI_OUTPUT
V4L2_CAP_SLICED_VBI_CAPTURE = V4l2Cap.SLICED_VBI_CAPTURE
V4L2_CAP_SLICED_VBI_OUTPUT = V4l2Cap.SLICED_VBI_OUTPUT
V4L2_CAP_RDS_CAPTURE = V4l2Cap.RDS_CAPTURE
V4L2_CAP_VIDEO_OUTPUT_OVERLAY = V4l2Cap.VIDEO_OUTPUT_OVERLAY
V4L2_CAP_HW_FREQ_SEEK = V4l2Cap.HW_FREQ_SEEK
V4L2_CAP_RDS_OUTPUT = V4l2Cap.RDS_OUTPUT
V4L2_CAP_VIDEO_CAPTURE_MPLANE = V4l2Cap.VIDEO_CAPTURE_MPLANE
V4L2_CAP_VIDEO_OUTPUT_MPLANE = V4l2Cap.VIDEO_OUTPUT_MPLANE
V4L2_CAP_VIDEO_M2M_MPLANE = V4l2Cap.VIDEO_M2M_MPLANE
V4L2_CAP_VIDEO_M2M = V4l2Cap.VIDEO_M2M
V4L2_CAP_TUNER = V4l2Cap.TUNER
V4L2_CAP_AUDIO = V4l2Cap.AUDIO
V4L2_CAP_RADIO = V4l2Cap.RADIO
V4L2_CAP_MODULATOR = V4l2Cap.MODULATOR
V4L2_CAP_SDR_CAPTURE = V4l2Cap.SDR_CAPTURE
V4L2_CAP_EXT_PIX_FORMAT = V4l2Cap.EXT_PIX_FORMAT
V4L2_CAP_SDR_OUTPUT = V4l2Cap.SDR_OUTPUT
V4L2_CAP_META_CAPTURE = V4l2Cap.META_CAPTURE
V4L2_CAP_READWRITE = V4l2Cap.READWRITE
V4L2_CAP_STREAMING = V4l2Cap.STREAMING
V4L2_CAP_META_OUTPUT = V4l2Cap.META_OUTPUT
V4L2_CAP_TOUCH = V4l2Cap.TOUCH
V4L2_CAP_IO_MC = V4l2Cap.IO_MC
V4L2_CAP_DEVICE_CAPS = V4l2Cap.DEVICE_CAPS


class V4l2FmtFlag(enum.IntFlag):
    """V4L2_FMT_FLAG_*: ``v4l2_fmtdesc.flags``."""

    NONE = 0
    COMPRESSED = 0x0001
    EMULATED = 0x0002
    CONTINUOUS_BYTESTREAM = 0x0004
    DYN_RESOLUTION = 0x0008
    ENC_CAP_FRAME_INTERVAL = 0x0010
    CSC_COLORSPACE = 0x0020
    CSC_XFER_FUNC = 0x0040
    CSC_YCBCR_ENC = 0x0080
    CSC_HSV_ENC = CSC_YCBCR_ENC
    CSC_QUANTIZATION = 0x0100


V4L2_FMT_FLAG_COMPRESSED = V4l2FmtFlag.COMPRESSED
V4L2_FMT_FLAG_EMULATED = V4l2FmtFlag.EMULATED
V4L2_FMT_FLAG_CONTINUOUS_BYTESTREAM = V4l2FmtFlag.CONTINUOUS_BYTESTREAM
V4L2_FMT_FLAG_DYN_RESOLUTION = V4l2FmtFlag.DYN_RESOLUTION
V4L2_FMT_FLAG_ENC_CAP_FRAME_INTERVAL = V4l2FmtFlag.ENC_CAP_FRAME_INTERVAL
V4L2_FMT_FLAG_CSC_COLORSPACE = V4l2FmtFlag.CSC_COLORSPACE
V4L2_FMT_FLAG_CSC_XFER_FUNC = V4l2FmtFlag.CSC_XFER_FUNC
V4L2_FMT_FLAG_CSC_YCBCR_ENC = V4l2FmtFlag.CSC_YCBCR_ENC
V4L2_FMT_FLAG_CSC_HSV_ENC = V4l2FmtFlag.CSC_HSV_ENC
V4L2_FMT_FLAG_CSC_QUANTIZATION = V4l2FmtFlag.CSC_QUANTIZATION


class V4l2FrmSizeType(enum.IntEnum):
    """enum v4l2_frmsizetypes: which member of ``v4l2_frmsizeenum``'s union is valid."""

    DISCRETE = 1
    CONTINUOUS = 2
    STEPWISE = 3


V4L2_FRMSIZE_TYPE_DISCRETE = V4l2FrmSizeType.DISCRETE
V4L2_FRMSIZE_TYPE_CONTINUOUS = V4l2FrmSizeType.CONTINUOUS
V4L2_FRMSIZE_TYPE_STEPWISE = V4l2FrmSizeType.STEPWISE


class V4l2MemoryFlag(enum.IntFlag):
    """V4L2_MEMORY_FLAG_*: ``flags`` of ``v4l2_requestbuffers`` and ``v4l2_create_buffers``."""

    NONE = 0
    NON_COHERENT = 1 << 0


V4L2_MEMORY_FLAG_NON_COHERENT = V4l2MemoryFlag.NON_COHERENT


class V4l2BufCap(enum.IntFlag):
    """V4L2_BUF_CAP_*: ``capabilities`` returned by VIDIOC_REQBUFS and VIDIOC_CREATE_BUFS."""

    NONE = 0
    SUPPORTS_MMAP = 1 << 0
    SUPPORTS_USERPTR = 1 << 1
    SUPPORTS_DMABUF = 1 << 2
    SUPPORTS_REQUESTS = 1 << 3
    SUPPORTS_ORPHANED_BUFS = 1 << 4
    SUPPORTS_M2M_HOLD_CAPTURE_BUF = 1 << 5
    SUPPORTS_MMAP_CACHE_HINTS = 1 << 6
    #: Linux 6.8.
    SUPPORTS_MAX_NUM_BUFFERS = 1 << 7
    #: Linux 6.10.
    SUPPORTS_REMOVE_BUFS = 1 << 8


V4L2_BUF_CAP_SUPPORTS_MMAP = V4l2BufCap.SUPPORTS_MMAP
V4L2_BUF_CAP_SUPPORTS_USERPTR = V4l2BufCap.SUPPORTS_USERPTR
V4L2_BUF_CAP_SUPPORTS_DMABUF = V4l2BufCap.SUPPORTS_DMABUF
V4L2_BUF_CAP_SUPPORTS_REQUESTS = V4l2BufCap.SUPPORTS_REQUESTS
V4L2_BUF_CAP_SUPPORTS_ORPHANED_BUFS = V4l2BufCap.SUPPORTS_ORPHANED_BUFS
V4L2_BUF_CAP_SUPPORTS_M2M_HOLD_CAPTURE_BUF = V4l2BufCap.SUPPORTS_M2M_HOLD_CAPTURE_BUF
V4L2_BUF_CAP_SUPPORTS_MMAP_CACHE_HINTS = V4l2BufCap.SUPPORTS_MMAP_CACHE_HINTS
V4L2_BUF_CAP_SUPPORTS_MAX_NUM_BUFFERS = V4l2BufCap.SUPPORTS_MAX_NUM_BUFFERS
V4L2_BUF_CAP_SUPPORTS_REMOVE_BUFS = V4l2BufCap.SUPPORTS_REMOVE_BUFS


class V4l2BufFlag(enum.IntFlag):
    """V4L2_BUF_FLAG_*: ``v4l2_buffer.flags``.

    TIMESTAMP_* and TSTAMP_SRC_* are small enumerations inside their MASK fields; the zero ones
    (TIMESTAMP_UNKNOWN, TSTAMP_SRC_EOF) are the module-level aliases of NONE.
    """

    NONE = 0
    MAPPED = 0x00000001
    QUEUED = 0x00000002
    DONE = 0x00000004
    KEYFRAME = 0x00000008
    PFRAME = 0x00000010
    BFRAME = 0x00000020
    ERROR = 0x00000040
    IN_REQUEST = 0x00000080
    TIMECODE = 0x00000100
    M2M_HOLD_CAPTURE_BUF = 0x00000200
    PREPARED = 0x00000400
    NO_CACHE_INVALIDATE = 0x00000800
    NO_CACHE_CLEAN = 0x00001000
    TIMESTAMP_MASK = 0x0000E000
    TIMESTAMP_MONOTONIC = 0x00002000
    TIMESTAMP_COPY = 0x00004000
    TSTAMP_SRC_MASK = 0x00070000
    TSTAMP_SRC_SOE = 0x00010000
    LAST = 0x00100000
    REQUEST_FD = 0x00800000


V4L2_BUF_FLAG_MAPPED = V4l2BufFlag.MAPPED
V4L2_BUF_FLAG_QUEUED = V4l2BufFlag.QUEUED
V4L2_BUF_FLAG_DONE = V4l2BufFlag.DONE
V4L2_BUF_FLAG_KEYFRAME = V4l2BufFlag.KEYFRAME
V4L2_BUF_FLAG_PFRAME = V4l2BufFlag.PFRAME
V4L2_BUF_FLAG_BFRAME = V4l2BufFlag.BFRAME
V4L2_BUF_FLAG_ERROR = V4l2BufFlag.ERROR
V4L2_BUF_FLAG_IN_REQUEST = V4l2BufFlag.IN_REQUEST
V4L2_BUF_FLAG_TIMECODE = V4l2BufFlag.TIMECODE
V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF = V4l2BufFlag.M2M_HOLD_CAPTURE_BUF
V4L2_BUF_FLAG_PREPARED = V4l2BufFlag.PREPARED
V4L2_BUF_FLAG_NO_CACHE_INVALIDATE = V4l2BufFlag.NO_CACHE_INVALIDATE
V4L2_BUF_FLAG_NO_CACHE_CLEAN = V4l2BufFlag.NO_CACHE_CLEAN
V4L2_BUF_FLAG_TIMESTAMP_MASK = V4l2BufFlag.TIMESTAMP_MASK
V4L2_BUF_FLAG_TIMESTAMP_UNKNOWN = V4l2BufFlag.NONE
V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC = V4l2BufFlag.TIMESTAMP_MONOTONIC
V4L2_BUF_FLAG_TIMESTAMP_COPY = V4l2BufFlag.TIMESTAMP_COPY
V4L2_BUF_FLAG_TSTAMP_SRC_MASK = V4l2BufFlag.TSTAMP_SRC_MASK
V4L2_BUF_FLAG_TSTAMP_SRC_EOF = V4l2BufFlag.NONE
V4L2_BUF_FLAG_TSTAMP_SRC_SOE = V4l2BufFlag.TSTAMP_SRC_SOE
V4L2_BUF_FLAG_LAST = V4l2BufFlag.LAST
V4L2_BUF_FLAG_REQUEST_FD = V4l2BufFlag.REQUEST_FD


# --- capability and format enumeration -----------------------------------------------------------


class v4l2_capability(ctypes.Structure):
    """Argument of VIDIOC_QUERYCAP (``capabilities``/``device_caps`` are V4L2_CAP_*).

    .. code-block:: c

        struct v4l2_capability {
                __u8    driver[16];
                __u8    card[32];
                __u8    bus_info[32];
                __u32   version;
                __u32   capabilities;
                __u32   device_caps;
                __u32   reserved[3];
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_capability"
    _fields_ = (
        ("driver", ctypes.c_uint8 * 16),
        ("card", ctypes.c_uint8 * 32),
        ("bus_info", ctypes.c_uint8 * 32),
        ("version", ctypes.c_uint32),
        ("capabilities", ctypes.c_uint32),
        ("device_caps", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    )


class v4l2_fmtdesc(ctypes.Structure):
    """Argument of VIDIOC_ENUM_FMT (``flags`` are V4L2_FMT_FLAG_*).

    .. code-block:: c

        struct v4l2_fmtdesc {
                __u32   index;
                __u32   type;
                __u32   flags;
                __u8    description[32];
                __u32   pixelformat;
                __u32   mbus_code;
                __u32   reserved[3];
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_fmtdesc"
    _fields_ = (
        ("index", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("description", ctypes.c_uint8 * 32),
        ("pixelformat", ctypes.c_uint32),
        ("mbus_code", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    )


class v4l2_frmsize_discrete(ctypes.Structure):
    """A discrete frame size of VIDIOC_ENUM_FRAMESIZES.

    .. code-block:: c

        struct v4l2_frmsize_discrete {
                __u32   width;
                __u32   height;
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_frmsize_discrete"
    _fields_ = (("width", ctypes.c_uint32), ("height", ctypes.c_uint32))


class v4l2_frmsize_stepwise(ctypes.Structure):
    """A stepwise (or continuous: steps of 1) frame size range of VIDIOC_ENUM_FRAMESIZES.

    .. code-block:: c

        struct v4l2_frmsize_stepwise {
                __u32   min_width;
                __u32   max_width;
                __u32   step_width;
                __u32   min_height;
                __u32   max_height;
                __u32   step_height;
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_frmsize_stepwise"
    _fields_ = (
        ("min_width", ctypes.c_uint32),
        ("max_width", ctypes.c_uint32),
        ("step_width", ctypes.c_uint32),
        ("min_height", ctypes.c_uint32),
        ("max_height", ctypes.c_uint32),
        ("step_height", ctypes.c_uint32),
    )


class _v4l2_frmsizeenum_size(ctypes.Union):
    _fields_ = (("discrete", v4l2_frmsize_discrete), ("stepwise", v4l2_frmsize_stepwise))


class v4l2_frmsizeenum(ctypes.Structure):
    """Argument of VIDIOC_ENUM_FRAMESIZES: ``type`` (V4L2_FRMSIZE_TYPE_*) picks the union member.

    .. code-block:: c

        struct v4l2_frmsizeenum {
                __u32   index;
                __u32   pixel_format;
                __u32   type;
                union {
                        struct v4l2_frmsize_discrete    discrete;
                        struct v4l2_frmsize_stepwise    stepwise;
                };
                __u32   reserved[2];
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_frmsizeenum"
    _anonymous_ = ("_size",)
    _fields_ = (
        ("index", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("_size", _v4l2_frmsizeenum_size),
        ("reserved", ctypes.c_uint32 * 2),
    )


# --- formats -------------------------------------------------------------------------------------


class v4l2_rect(ctypes.Structure):
    """A rectangle (of struct v4l2_window and v4l2_clip).

    .. code-block:: c

        struct v4l2_rect {
                __s32   left;
                __s32   top;
                __u32   width;
                __u32   height;
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_rect"
    _fields_ = (
        ("left", ctypes.c_int32),
        ("top", ctypes.c_int32),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
    )


class v4l2_clip(ctypes.Structure):
    """A clipping rectangle of an overlay window, in a linked list.

    .. code-block:: c

        struct v4l2_clip {
                struct v4l2_rect        c;
                struct v4l2_clip        *next;
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_clip"


v4l2_clip._fields_ = (("c", v4l2_rect), ("next", ctypes.POINTER(v4l2_clip)))


class v4l2_window(ctypes.Structure):
    """Overlay window format; its pointers are what make ``v4l2_format.fmt`` 8-byte aligned.

    .. code-block:: c

        struct v4l2_window {
                struct v4l2_rect        w;
                __u32                   field;
                __u32                   chromakey;
                struct v4l2_clip        *clips;
                __u32                   clipcount;
                void                    *bitmap;
                __u8                    global_alpha;
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_window"
    _fields_ = (
        ("w", v4l2_rect),
        ("field", ctypes.c_uint32),
        ("chromakey", ctypes.c_uint32),
        ("clips", ctypes.POINTER(v4l2_clip)),
        ("clipcount", ctypes.c_uint32),
        ("bitmap", ctypes.c_void_p),
        ("global_alpha", ctypes.c_uint8),
    )


class _v4l2_pix_format_enc(ctypes.Union):
    _fields_ = (("ycbcr_enc", ctypes.c_uint32), ("hsv_enc", ctypes.c_uint32))


class v4l2_pix_format(ctypes.Structure):
    """Single-planar image format (``v4l2_format.fmt.pix``).

    .. code-block:: c

        struct v4l2_pix_format {
                __u32   width;
                __u32   height;
                __u32   pixelformat;
                __u32   field;          /* enum v4l2_field */
                __u32   bytesperline;
                __u32   sizeimage;
                __u32   colorspace;     /* enum v4l2_colorspace */
                __u32   priv;
                __u32   flags;
                union {
                        __u32   ycbcr_enc;
                        __u32   hsv_enc;
                };
                __u32   quantization;
                __u32   xfer_func;
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_pix_format"
    _anonymous_ = ("_enc",)
    _fields_ = (
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("pixelformat", ctypes.c_uint32),
        ("field", ctypes.c_uint32),
        ("bytesperline", ctypes.c_uint32),
        ("sizeimage", ctypes.c_uint32),
        ("colorspace", ctypes.c_uint32),
        ("priv", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("_enc", _v4l2_pix_format_enc),
        ("quantization", ctypes.c_uint32),
        ("xfer_func", ctypes.c_uint32),
    )


class v4l2_plane_pix_format(ctypes.Structure):
    """Per-plane format of a multi-planar format; packed in C (20 bytes).

    .. code-block:: c

        struct v4l2_plane_pix_format {
                __u32   sizeimage;
                __u32   bytesperline;
                __u16   reserved[6];
        } __attribute__ ((packed));
    """

    _c_type_: ClassVar[str] = "struct v4l2_plane_pix_format"
    _pack_ = 1
    _layout_ = "ms"  # Python 3.14+ asks for it with _pack_; no bitfields, so same as gcc's
    _fields_ = (
        ("sizeimage", ctypes.c_uint32),
        ("bytesperline", ctypes.c_uint32),
        ("reserved", ctypes.c_uint16 * 6),
    )


class _v4l2_pix_format_mplane_enc(ctypes.Union):
    _fields_ = (("ycbcr_enc", ctypes.c_uint8), ("hsv_enc", ctypes.c_uint8))


class v4l2_pix_format_mplane(ctypes.Structure):
    """Multi-planar image format (``v4l2_format.fmt.pix_mp``); packed in C (192 bytes).

    .. code-block:: c

        struct v4l2_pix_format_mplane {
                __u32                           width;
                __u32                           height;
                __u32                           pixelformat;
                __u32                           field;
                __u32                           colorspace;
                struct v4l2_plane_pix_format    plane_fmt[VIDEO_MAX_PLANES];
                __u8                            num_planes;
                __u8                            flags;
                union {
                        __u8                    ycbcr_enc;
                        __u8                    hsv_enc;
                };
                __u8                            quantization;
                __u8                            xfer_func;
                __u8                            reserved[7];
        } __attribute__ ((packed));
    """

    _c_type_: ClassVar[str] = "struct v4l2_pix_format_mplane"
    _pack_ = 1
    _layout_ = "ms"  # Python 3.14+ asks for it with _pack_; no bitfields, so same as gcc's
    _anonymous_ = ("_enc",)
    _fields_ = (
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("pixelformat", ctypes.c_uint32),
        ("field", ctypes.c_uint32),
        ("colorspace", ctypes.c_uint32),
        ("plane_fmt", v4l2_plane_pix_format * VIDEO_MAX_PLANES),
        ("num_planes", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("_enc", _v4l2_pix_format_mplane_enc),
        ("quantization", ctypes.c_uint8),
        ("xfer_func", ctypes.c_uint8),
        ("reserved", ctypes.c_uint8 * 7),
    )


class _v4l2_format_fmt(ctypes.Union):
    # The C union also has vbi, sliced, sdr and meta; raw_data[200] covers their size and
    # v4l2_window's pointers give the union (and so struct v4l2_format) its 8-byte alignment.
    _fields_ = (
        ("pix", v4l2_pix_format),
        ("pix_mp", v4l2_pix_format_mplane),
        ("win", v4l2_window),
        ("raw_data", ctypes.c_uint8 * 200),
    )


class v4l2_format(ctypes.Structure):
    """Argument of VIDIOC_G_FMT, VIDIOC_S_FMT and VIDIOC_TRY_FMT (208 bytes on 64-bit).

    ``type`` (V4L2_BUF_TYPE_*) picks the member of ``fmt``: ``pix`` for VIDEO_CAPTURE/OUTPUT,
    ``pix_mp`` for the _MPLANE types. The vbi, sliced, sdr and meta members are not declared here.

    .. code-block:: c

        struct v4l2_format {
                __u32    type;
                union {
                        struct v4l2_pix_format          pix;
                        struct v4l2_pix_format_mplane   pix_mp;
                        struct v4l2_window              win;
                        struct v4l2_vbi_format          vbi;
                        struct v4l2_sliced_vbi_format   sliced;
                        struct v4l2_sdr_format          sdr;
                        struct v4l2_meta_format         meta;
                        __u8    raw_data[200];
                } fmt;
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_format"
    _fields_ = (("type", ctypes.c_uint32), ("fmt", _v4l2_format_fmt))


# --- buffers -------------------------------------------------------------------------------------


class v4l2_requestbuffers(ctypes.Structure):
    """Argument of VIDIOC_REQBUFS (``flags`` are V4L2_MEMORY_FLAG_*, a single byte).

    .. code-block:: c

        struct v4l2_requestbuffers {
                __u32   count;
                __u32   type;           /* enum v4l2_buf_type */
                __u32   memory;         /* enum v4l2_memory */
                __u32   capabilities;
                __u8    flags;
                __u8    reserved[3];
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_requestbuffers"
    _fields_ = (
        ("count", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("memory", ctypes.c_uint32),
        ("capabilities", ctypes.c_uint32),
        ("flags", ctypes.c_uint8),
        ("reserved", ctypes.c_uint8 * 3),
    )


class v4l2_create_buffers(ctypes.Structure):
    """Argument of VIDIOC_CREATE_BUFS (``format`` sits at offset 16: v4l2_format is 8-aligned).

    Linux 6.8 turned ``reserved[0]`` into ``__u32 max_num_buffers`` (valid with
    V4L2_BUF_CAP_SUPPORTS_MAX_NUM_BUFFERS); the 6.1 layout is declared here, so read it as
    ``reserved[0]``.

    .. code-block:: c

        struct v4l2_create_buffers {
                __u32                   index;
                __u32                   count;
                __u32                   memory;
                struct v4l2_format      format;
                __u32                   capabilities;
                __u32                   flags;
                __u32                   reserved[6];
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_create_buffers"
    _fields_ = (
        ("index", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        ("memory", ctypes.c_uint32),
        ("format", v4l2_format),
        ("capabilities", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 6),
    )


class _v4l2_plane_m(ctypes.Union):
    _fields_ = (
        ("mem_offset", ctypes.c_uint32),
        ("userptr", ctypes.c_ulong),
        ("fd", ctypes.c_int32),
    )


class v4l2_plane(ctypes.Structure):
    """One plane of a multi-planar v4l2_buffer (``m.fd`` for V4L2_MEMORY_DMABUF).

    .. code-block:: c

        struct v4l2_plane {
                __u32                   bytesused;
                __u32                   length;
                union {
                        __u32           mem_offset;
                        unsigned long   userptr;
                        __s32           fd;
                } m;
                __u32                   data_offset;
                __u32                   reserved[11];
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_plane"
    _fields_ = (
        ("bytesused", ctypes.c_uint32),
        ("length", ctypes.c_uint32),
        ("m", _v4l2_plane_m),
        ("data_offset", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 11),
    )


class v4l2_timecode(ctypes.Structure):
    """SMPTE timecode of a v4l2_buffer.

    .. code-block:: c

        struct v4l2_timecode {
                __u32   type;
                __u32   flags;
                __u8    frames;
                __u8    seconds;
                __u8    minutes;
                __u8    hours;
                __u8    userbits[4];
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_timecode"
    _fields_ = (
        ("type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("frames", ctypes.c_uint8),
        ("seconds", ctypes.c_uint8),
        ("minutes", ctypes.c_uint8),
        ("hours", ctypes.c_uint8),
        ("userbits", ctypes.c_uint8 * 4),
    )


class _timeval(ctypes.Structure):
    # struct timeval of <sys/time.h> (not a V4L2 type, so not in C_STRUCTS; its size and place are
    # still checked through v4l2_buffer's timestamp and timecode offsets).
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _v4l2_buffer_m(ctypes.Union):
    _fields_ = (
        ("offset", ctypes.c_uint32),
        ("userptr", ctypes.c_ulong),
        ("planes", ctypes.POINTER(v4l2_plane)),
        ("fd", ctypes.c_int32),
    )


class _v4l2_buffer_request(ctypes.Union):
    _fields_ = (("request_fd", ctypes.c_int32), ("reserved", ctypes.c_uint32))


class v4l2_buffer(ctypes.Structure):
    """Argument of VIDIOC_QUERYBUF, VIDIOC_QBUF and VIDIOC_DQBUF (88 bytes on 64-bit).

    For V4L2_MEMORY_DMABUF set ``m.fd`` (single-planar) or point ``m.planes`` at ``length``
    v4l2_plane (multi-planar).

    .. code-block:: c

        struct v4l2_buffer {
                __u32                   index;
                __u32                   type;
                __u32                   bytesused;
                __u32                   flags;
                __u32                   field;
                struct timeval          timestamp;
                struct v4l2_timecode    timecode;
                __u32                   sequence;
                __u32                   memory;
                union {
                        __u32           offset;
                        unsigned long   userptr;
                        struct v4l2_plane *planes;
                        __s32           fd;
                } m;
                __u32                   length;
                __u32                   reserved2;
                union {
                        __s32           request_fd;
                        __u32           reserved;
                };
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_buffer"
    _anonymous_ = ("_request",)
    _fields_ = (
        ("index", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("bytesused", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("field", ctypes.c_uint32),
        ("timestamp", _timeval),
        ("timecode", v4l2_timecode),
        ("sequence", ctypes.c_uint32),
        ("memory", ctypes.c_uint32),
        ("m", _v4l2_buffer_m),
        ("length", ctypes.c_uint32),
        ("reserved2", ctypes.c_uint32),
        ("_request", _v4l2_buffer_request),
    )


class v4l2_exportbuffer(ctypes.Structure):
    """Argument of VIDIOC_EXPBUF: export a buffer plane as a dma-buf fd (``flags``: O_CLOEXEC...).

    .. code-block:: c

        struct v4l2_exportbuffer {
                __u32   type; /* enum v4l2_buf_type */
                __u32   index;
                __u32   plane;
                __u32   flags;
                __s32   fd;
                __u32   reserved[11];
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_exportbuffer"
    _fields_ = (
        ("type", ctypes.c_uint32),
        ("index", ctypes.c_uint32),
        ("plane", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("fd", ctypes.c_int32),
        ("reserved", ctypes.c_uint32 * 11),
    )


# --- controls, codec commands and events (mem-to-mem codecs) --------------------------------------

#: The first control id of the user class (``V4L2_CTRL_CLASS_USER | 0x900``); drivers number their
#: private controls from here (vim2m: ``V4L2_CID_USER_BASE + 0x1000`` is its transaction time).
V4L2_CID_USER_BASE = 0x00980900


class V4l2EncCmd(enum.IntEnum):
    """V4L2_ENC_CMD_*: commands of VIDIOC_ENCODER_CMD (STOP drains the encoder)."""

    START = 0
    STOP = 1
    PAUSE = 2
    RESUME = 3


class V4l2DecCmd(enum.IntEnum):
    """V4L2_DEC_CMD_*: commands of VIDIOC_DECODER_CMD (STOP drains the decoder)."""

    START = 0
    STOP = 1
    PAUSE = 2
    RESUME = 3
    FLUSH = 4


class V4l2EventType(enum.IntEnum):
    """V4L2_EVENT_*: event types for VIDIOC_SUBSCRIBE_EVENT / VIDIOC_DQEVENT."""

    ALL = 0
    VSYNC = 1
    EOS = 2
    CTRL = 3
    FRAME_SYNC = 4
    SOURCE_CHANGE = 5
    MOTION_DET = 6


#: ``v4l2_event_src_change.changes``: the stream's resolution (or format) changed.
V4L2_EVENT_SRC_CH_RESOLUTION = 1 << 0


class v4l2_control(ctypes.Structure):
    """Argument of VIDIOC_G_CTRL and VIDIOC_S_CTRL: one control's id and value.

    .. code-block:: c

        struct v4l2_control {
                __u32                id;
                __s32                value;
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_control"
    _fields_ = (("id", ctypes.c_uint32), ("value", ctypes.c_int32))


class _v4l2_encoder_cmd_raw(ctypes.Structure):
    _fields_ = (("data", ctypes.c_uint32 * 8),)


class _v4l2_encoder_cmd_u(ctypes.Union):
    _fields_ = (("raw", _v4l2_encoder_cmd_raw),)


class v4l2_encoder_cmd(ctypes.Structure):
    """Argument of VIDIOC_ENCODER_CMD and VIDIOC_TRY_ENCODER_CMD (zero it before use).

    .. code-block:: c

        struct v4l2_encoder_cmd {
                __u32 cmd;
                __u32 flags;
                union {
                        struct {
                                __u32 data[8];
                        } raw;
                };
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_encoder_cmd"
    _anonymous_ = ("_u",)
    _fields_ = (("cmd", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("_u", _v4l2_encoder_cmd_u))


class _v4l2_decoder_cmd_stop(ctypes.Structure):
    _fields_ = (("pts", ctypes.c_uint64),)


class _v4l2_decoder_cmd_start(ctypes.Structure):
    _fields_ = (("speed", ctypes.c_int32), ("format", ctypes.c_uint32))


class _v4l2_decoder_cmd_raw(ctypes.Structure):
    _fields_ = (("data", ctypes.c_uint32 * 16),)


class _v4l2_decoder_cmd_u(ctypes.Union):
    _fields_ = (
        ("stop", _v4l2_decoder_cmd_stop),
        ("start", _v4l2_decoder_cmd_start),
        ("raw", _v4l2_decoder_cmd_raw),
    )


class v4l2_decoder_cmd(ctypes.Structure):
    """Argument of VIDIOC_DECODER_CMD and VIDIOC_TRY_DECODER_CMD (zero it before use; 72 bytes:
    the union holds a ``__u64``, so it starts at offset 8).

    .. code-block:: c

        struct v4l2_decoder_cmd {
                __u32 cmd;
                __u32 flags;
                union {
                        struct {
                                __u64 pts;
                        } stop;
                        struct {
                                __s32 speed;
                                __u32 format;
                        } start;
                        struct {
                                __u32 data[16];
                        } raw;
                };
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_decoder_cmd"
    _anonymous_ = ("_u",)
    _fields_ = (("cmd", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("_u", _v4l2_decoder_cmd_u))


class v4l2_event_src_change(ctypes.Structure):
    """Payload of V4L2_EVENT_SOURCE_CHANGE (``changes``: V4L2_EVENT_SRC_CH_*).

    .. code-block:: c

        struct v4l2_event_src_change {
                __u32 changes;
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_event_src_change"
    _fields_ = (("changes", ctypes.c_uint32),)


class _v4l2_event_u(ctypes.Union):
    # The C union also has vsync, ctrl, frame_sync and motion_det; data[64] covers their size and
    # ctrl's __s64 gives the union its 8-byte alignment, declared here by _align.
    _fields_ = (
        ("src_change", v4l2_event_src_change),
        ("data", ctypes.c_uint8 * 64),
        ("_align", ctypes.c_int64),
    )


class _timespec(ctypes.Structure):
    # struct timespec of <time.h> (not a V4L2 type; its place is checked through v4l2_event).
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class v4l2_event(ctypes.Structure):
    """Argument of VIDIOC_DQEVENT (136 bytes on 64-bit).

    .. code-block:: c

        struct v4l2_event {
                __u32                           type;
                union {
                        struct v4l2_event_vsync         vsync;
                        struct v4l2_event_ctrl          ctrl;
                        struct v4l2_event_frame_sync    frame_sync;
                        struct v4l2_event_src_change    src_change;
                        struct v4l2_event_motion_det    motion_det;
                        __u8                            data[64];
                } u;
                __u32                           pending;
                __u32                           sequence;
                struct timespec                 timestamp;
                __u32                           id;
                __u32                           reserved[8];
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_event"
    _fields_ = (
        ("type", ctypes.c_uint32),
        ("u", _v4l2_event_u),
        ("pending", ctypes.c_uint32),
        ("sequence", ctypes.c_uint32),
        ("timestamp", _timespec),
        ("id", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 8),
    )


class v4l2_event_subscription(ctypes.Structure):
    """Argument of VIDIOC_SUBSCRIBE_EVENT and VIDIOC_UNSUBSCRIBE_EVENT.

    .. code-block:: c

        struct v4l2_event_subscription {
                __u32                           type;
                __u32                           id;
                __u32                           flags;
                __u32                           reserved[5];
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_event_subscription"
    _fields_ = (
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 5),
    )


class _v4l2_mbus_framefmt_enc(ctypes.Union):
    _fields_ = (("ycbcr_enc", ctypes.c_uint16), ("hsv_enc", ctypes.c_uint16))


# --- sub-device pad formats (linux/v4l2-subdev.h, linux/v4l2-mediabus.h) --------------------------

#: ``enum v4l2_subdev_format_whence``: the format applied to the device (not a TRY format).
V4L2_SUBDEV_FORMAT_ACTIVE = 1
#: ``MEDIA_BUS_FMT_*`` codes (linux/media-bus-format.h) used with vimc's pipeline.
MEDIA_BUS_FMT_RGB888_1X24 = 0x100A
MEDIA_BUS_FMT_SBGGR8_1X8 = 0x3001
MEDIA_BUS_FMT_SRGGB8_1X8 = 0x3014


class v4l2_mbus_framefmt(ctypes.Structure):
    """The format of one media-bus pad (48 bytes).

    .. code-block:: c

        struct v4l2_mbus_framefmt {
                __u32                   width;
                __u32                   height;
                __u32                   code;
                __u32                   field;
                __u32                   colorspace;
                union {
                        __u16                   ycbcr_enc;
                        __u16                   hsv_enc;
                };
                __u16                   quantization;
                __u16                   xfer_func;
                __u16                   flags;
                __u16                   reserved[10];
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_mbus_framefmt"
    _anonymous_ = ("_enc",)
    _fields_ = (
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("code", ctypes.c_uint32),
        ("field", ctypes.c_uint32),
        ("colorspace", ctypes.c_uint32),
        ("_enc", _v4l2_mbus_framefmt_enc),
        ("quantization", ctypes.c_uint16),
        ("xfer_func", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("reserved", ctypes.c_uint16 * 10),
    )


class v4l2_subdev_format(ctypes.Structure):
    """Argument of VIDIOC_SUBDEV_G_FMT / VIDIOC_SUBDEV_S_FMT on a /dev/v4l-subdev* node.

    Declared as in Linux 6.1; 6.3 turned ``reserved[0]`` into ``__u32 stream`` (0: the default
    stream), with the same size.

    .. code-block:: c

        struct v4l2_subdev_format {
                __u32 which;
                __u32 pad;
                struct v4l2_mbus_framefmt format;
                __u32 reserved[8];
        };
    """

    _c_type_: ClassVar[str] = "struct v4l2_subdev_format"
    _fields_ = (
        ("which", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("format", v4l2_mbus_framefmt),
        ("reserved", ctypes.c_uint32 * 8),
    )


# --- ioctl numbers -------------------------------------------------------------------------------

_V = "V"

VIDIOC_QUERYCAP = _IOR(_V, 0, v4l2_capability)
VIDIOC_ENUM_FMT = _IOWR(_V, 2, v4l2_fmtdesc)
VIDIOC_G_FMT = _IOWR(_V, 4, v4l2_format)
VIDIOC_S_FMT = _IOWR(_V, 5, v4l2_format)
VIDIOC_REQBUFS = _IOWR(_V, 8, v4l2_requestbuffers)
VIDIOC_QUERYBUF = _IOWR(_V, 9, v4l2_buffer)
VIDIOC_QBUF = _IOWR(_V, 15, v4l2_buffer)
VIDIOC_EXPBUF = _IOWR(_V, 16, v4l2_exportbuffer)
VIDIOC_DQBUF = _IOWR(_V, 17, v4l2_buffer)
#: The argument is the buffer type (V4L2_BUF_TYPE_*) as a C ``int``.
VIDIOC_STREAMON = _IOW(_V, 18, ctypes.c_int)
VIDIOC_STREAMOFF = _IOW(_V, 19, ctypes.c_int)
VIDIOC_TRY_FMT = _IOWR(_V, 64, v4l2_format)
VIDIOC_ENUM_FRAMESIZES = _IOWR(_V, 74, v4l2_frmsizeenum)
VIDIOC_CREATE_BUFS = _IOWR(_V, 92, v4l2_create_buffers)
VIDIOC_G_CTRL = _IOWR(_V, 27, v4l2_control)
VIDIOC_S_CTRL = _IOWR(_V, 28, v4l2_control)
VIDIOC_ENCODER_CMD = _IOWR(_V, 77, v4l2_encoder_cmd)
VIDIOC_TRY_ENCODER_CMD = _IOWR(_V, 78, v4l2_encoder_cmd)
VIDIOC_DQEVENT = _IOR(_V, 89, v4l2_event)
VIDIOC_SUBSCRIBE_EVENT = _IOW(_V, 90, v4l2_event_subscription)
VIDIOC_UNSUBSCRIBE_EVENT = _IOW(_V, 91, v4l2_event_subscription)
VIDIOC_DECODER_CMD = _IOWR(_V, 96, v4l2_decoder_cmd)
VIDIOC_TRY_DECODER_CMD = _IOWR(_V, 97, v4l2_decoder_cmd)
#: Sub-device node ioctls (same 'V' type, numbers shared with VIDIOC_G_FMT's neighbours).
VIDIOC_SUBDEV_G_FMT = _IOWR(_V, 4, v4l2_subdev_format)
VIDIOC_SUBDEV_S_FMT = _IOWR(_V, 5, v4l2_subdev_format)


C_STRUCTS = (
    v4l2_capability,
    v4l2_fmtdesc,
    v4l2_frmsize_discrete,
    v4l2_frmsize_stepwise,
    v4l2_frmsizeenum,
    v4l2_rect,
    v4l2_clip,
    v4l2_window,
    v4l2_pix_format,
    v4l2_plane_pix_format,
    v4l2_pix_format_mplane,
    v4l2_format,
    v4l2_requestbuffers,
    v4l2_create_buffers,
    v4l2_plane,
    v4l2_timecode,
    v4l2_buffer,
    v4l2_exportbuffer,
    v4l2_control,
    v4l2_encoder_cmd,
    v4l2_decoder_cmd,
    v4l2_event_src_change,
    v4l2_event,
    v4l2_event_subscription,
    v4l2_mbus_framefmt,
    v4l2_subdev_format,
)

#: Newer than the Linux 6.1 headers: MAX_NUM_BUFFERS came with 6.8, REMOVE_BUFS with 6.10.
C_OPTIONAL: frozenset[str] = frozenset(
    {"V4L2_BUF_CAP_SUPPORTS_MAX_NUM_BUFFERS", "V4L2_BUF_CAP_SUPPORTS_REMOVE_BUFS"}
)

C_CONSTANTS: dict[str, int] = {
    "VIDEO_MAX_PLANES": VIDEO_MAX_PLANES,
    "V4L2_PIX_FMT_RGB565": V4L2_PIX_FMT_RGB565,
    "V4L2_PIX_FMT_BGR24": V4L2_PIX_FMT_BGR24,
    "V4L2_PIX_FMT_RGB24": V4L2_PIX_FMT_RGB24,
    "V4L2_PIX_FMT_BGR32": V4L2_PIX_FMT_BGR32,
    "V4L2_PIX_FMT_ABGR32": V4L2_PIX_FMT_ABGR32,
    "V4L2_PIX_FMT_XBGR32": V4L2_PIX_FMT_XBGR32,
    "V4L2_PIX_FMT_RGB32": V4L2_PIX_FMT_RGB32,
    "V4L2_PIX_FMT_ARGB32": V4L2_PIX_FMT_ARGB32,
    "V4L2_PIX_FMT_XRGB32": V4L2_PIX_FMT_XRGB32,
    "V4L2_PIX_FMT_GREY": V4L2_PIX_FMT_GREY,
    "V4L2_PIX_FMT_YUYV": V4L2_PIX_FMT_YUYV,
    "V4L2_PIX_FMT_UYVY": V4L2_PIX_FMT_UYVY,
    "V4L2_PIX_FMT_NV12": V4L2_PIX_FMT_NV12,
    "V4L2_PIX_FMT_NV21": V4L2_PIX_FMT_NV21,
    "V4L2_PIX_FMT_NV16": V4L2_PIX_FMT_NV16,
    "V4L2_PIX_FMT_NV12M": V4L2_PIX_FMT_NV12M,
    "V4L2_PIX_FMT_YUV420": V4L2_PIX_FMT_YUV420,
    "V4L2_PIX_FMT_YVU420": V4L2_PIX_FMT_YVU420,
    "V4L2_PIX_FMT_YUV420M": V4L2_PIX_FMT_YUV420M,
    "V4L2_PIX_FMT_MJPEG": V4L2_PIX_FMT_MJPEG,
    "V4L2_PIX_FMT_H264": V4L2_PIX_FMT_H264,
    "V4L2_PIX_FMT_PRIV_MAGIC": V4L2_PIX_FMT_PRIV_MAGIC,
    **{f"V4L2_FIELD_{m.name}": m for m in V4l2Field},
    **{f"V4L2_BUF_TYPE_{m.name}": m for m in V4l2BufType},
    **{f"V4L2_MEMORY_{m.name}": m for m in V4l2Memory},
    **{f"V4L2_CAP_{m.name}": m for m in V4l2Cap.__members__.values() if m.name != "NONE"},
    **{f"V4L2_FMT_FLAG_{n}": m for n, m in V4l2FmtFlag.__members__.items() if n != "NONE"},
    **{f"V4L2_FRMSIZE_TYPE_{m.name}": m for m in V4l2FrmSizeType},
    "V4L2_MEMORY_FLAG_NON_COHERENT": V4L2_MEMORY_FLAG_NON_COHERENT,
    **{f"V4L2_BUF_CAP_{m.name}": m for m in V4l2BufCap.__members__.values() if m.name != "NONE"},
    **{f"V4L2_BUF_FLAG_{n}": m for n, m in V4l2BufFlag.__members__.items() if n != "NONE"},
    "V4L2_BUF_FLAG_TIMESTAMP_UNKNOWN": V4L2_BUF_FLAG_TIMESTAMP_UNKNOWN,
    "V4L2_BUF_FLAG_TSTAMP_SRC_EOF": V4L2_BUF_FLAG_TSTAMP_SRC_EOF,
    "VIDIOC_QUERYCAP": VIDIOC_QUERYCAP,
    "VIDIOC_ENUM_FMT": VIDIOC_ENUM_FMT,
    "VIDIOC_G_FMT": VIDIOC_G_FMT,
    "VIDIOC_S_FMT": VIDIOC_S_FMT,
    "VIDIOC_TRY_FMT": VIDIOC_TRY_FMT,
    "VIDIOC_REQBUFS": VIDIOC_REQBUFS,
    "VIDIOC_CREATE_BUFS": VIDIOC_CREATE_BUFS,
    "VIDIOC_QUERYBUF": VIDIOC_QUERYBUF,
    "VIDIOC_QBUF": VIDIOC_QBUF,
    "VIDIOC_DQBUF": VIDIOC_DQBUF,
    "VIDIOC_EXPBUF": VIDIOC_EXPBUF,
    "VIDIOC_STREAMON": VIDIOC_STREAMON,
    "VIDIOC_STREAMOFF": VIDIOC_STREAMOFF,
    "VIDIOC_ENUM_FRAMESIZES": VIDIOC_ENUM_FRAMESIZES,
    "V4L2_CID_USER_BASE": V4L2_CID_USER_BASE,
    **{f"V4L2_ENC_CMD_{m.name}": m for m in V4l2EncCmd},
    **{f"V4L2_DEC_CMD_{m.name}": m for m in V4l2DecCmd},
    **{f"V4L2_EVENT_{m.name}": m for m in V4l2EventType},
    "V4L2_EVENT_SRC_CH_RESOLUTION": V4L2_EVENT_SRC_CH_RESOLUTION,
    "VIDIOC_G_CTRL": VIDIOC_G_CTRL,
    "VIDIOC_S_CTRL": VIDIOC_S_CTRL,
    "VIDIOC_ENCODER_CMD": VIDIOC_ENCODER_CMD,
    "VIDIOC_TRY_ENCODER_CMD": VIDIOC_TRY_ENCODER_CMD,
    "VIDIOC_DQEVENT": VIDIOC_DQEVENT,
    "VIDIOC_SUBSCRIBE_EVENT": VIDIOC_SUBSCRIBE_EVENT,
    "VIDIOC_UNSUBSCRIBE_EVENT": VIDIOC_UNSUBSCRIBE_EVENT,
    "VIDIOC_DECODER_CMD": VIDIOC_DECODER_CMD,
    "VIDIOC_TRY_DECODER_CMD": VIDIOC_TRY_DECODER_CMD,
    "V4L2_SUBDEV_FORMAT_ACTIVE": V4L2_SUBDEV_FORMAT_ACTIVE,
    "MEDIA_BUS_FMT_RGB888_1X24": MEDIA_BUS_FMT_RGB888_1X24,
    "MEDIA_BUS_FMT_SBGGR8_1X8": MEDIA_BUS_FMT_SBGGR8_1X8,
    "MEDIA_BUS_FMT_SRGGB8_1X8": MEDIA_BUS_FMT_SRGGB8_1X8,
    "VIDIOC_SUBDEV_G_FMT": VIDIOC_SUBDEV_G_FMT,
    "VIDIOC_SUBDEV_S_FMT": VIDIOC_SUBDEV_S_FMT,
}
