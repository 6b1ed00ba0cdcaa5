"""V4L2 pixel formats and the DRM formats they describe (single- and multi-planar).

Example:
    >>> fmt = v4l2_to_drm("NV12M")
    >>> fmt.drm.name, fmt.multi_planar, fmt.fourcc == v4l2_fourcc("NM12")
    ('NV12', True, True)
    >>> [f.name for f in drm_to_v4l2("NV12")]
    ['NV12', 'NV12M']

Only formats whose memory layout is the same in both worlds are paired. V4L2 names RGB formats by
byte order in memory and DRM by a little-endian word, so V4L2 ``RGB24`` is DRM ``BGR888`` and
V4L2 ``ABGR32`` (``'AR24'``) is DRM ``ARGB8888``. Multi-planar V4L2 formats (``NV12M``,
``YUV420M``, ...) put each plane in its own buffer: the layout engine's multi-buffer mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from ..errors import UsageError
from .fourcc import PixelFormat, closest_names, fourcc_code, lookup_format

__all__ = ["V4L2_FORMATS", "V4l2Format", "drm_to_v4l2", "v4l2_fourcc", "v4l2_to_drm"]


def v4l2_fourcc(code: str) -> int:
    """The V4L2 pixel format code of four characters, as the C macro ``v4l2_fourcc``."""
    if len(code) != 4 or not code.isascii():
        raise UsageError(f"a V4L2 fourcc is 4 ASCII characters, not {code!r}")
    return fourcc_code(code)  # same byte order as DRM's fourcc_code


@dataclass(frozen=True)
class V4l2Format:
    """A V4L2 pixel format paired with the DRM format of the same memory layout.

    Attributes:
        name: the name after ``V4L2_PIX_FMT_`` (``"NV12M"``).
        fourcc: the V4L2 code.
        drm: the DRM format.
        multi_planar: each plane is a separate buffer (the ``...M`` formats).
    """

    name: str
    fourcc: int
    drm: PixelFormat
    multi_planar: bool = False


def _v(name: str, code: str, drm: str, multi_planar: bool = False) -> V4l2Format:
    return V4l2Format(name, v4l2_fourcc(code), lookup_format(drm), multi_planar)


_TABLE: tuple[V4l2Format, ...] = (
    _v("RGB332", "RGB1", "RGB332"),
    _v("ARGB444", "AR12", "ARGB4444"),
    _v("XRGB444", "XR12", "XRGB4444"),
    _v("RGBA444", "RA12", "RGBA4444"),
    _v("RGBX444", "RX12", "RGBX4444"),
    _v("ABGR444", "AB12", "ABGR4444"),
    _v("XBGR444", "XB12", "XBGR4444"),
    _v("BGRA444", "GA12", "BGRA4444"),
    _v("BGRX444", "BX12", "BGRX4444"),
    _v("ARGB555", "AR15", "ARGB1555"),
    _v("XRGB555", "XR15", "XRGB1555"),
    _v("RGBA555", "RA15", "RGBA5551"),
    _v("RGBX555", "RX15", "RGBX5551"),
    _v("ABGR555", "AB15", "ABGR1555"),
    _v("XBGR555", "XB15", "XBGR1555"),
    _v("BGRA555", "BA15", "BGRA5551"),
    _v("BGRX555", "BX15", "BGRX5551"),
    _v("RGB565", "RGBP", "RGB565"),
    _v("BGR24", "BGR3", "RGB888"),
    _v("RGB24", "RGB3", "BGR888"),
    _v("ABGR32", "AR24", "ARGB8888"),
    _v("XBGR32", "XR24", "XRGB8888"),
    _v("BGRA32", "RA24", "RGBA8888"),
    _v("BGRX32", "RX24", "RGBX8888"),
    _v("RGBA32", "AB24", "ABGR8888"),
    _v("RGBX32", "XB24", "XBGR8888"),
    _v("ARGB32", "BA24", "BGRA8888"),
    _v("XRGB32", "BX24", "BGRX8888"),
    _v("GREY", "GREY", "R8"),
    _v("Y10", "Y10 ", "R10"),
    _v("Y12", "Y12 ", "R12"),
    _v("Y16", "Y16 ", "R16"),
    _v("YUYV", "YUYV", "YUYV"),
    _v("YVYU", "YVYU", "YVYU"),
    _v("UYVY", "UYVY", "UYVY"),
    _v("VYUY", "VYUY", "VYUY"),
    _v("YUV24", "YUV3", "VUY888"),
    _v("VUYA32", "VUYA", "AYUV"),
    _v("VUYX32", "VUYX", "XYUV8888"),
    _v("Y210", "Y210", "Y210"),
    _v("Y212", "Y212", "Y212"),
    _v("Y216", "Y216", "Y216"),
    _v("NV12", "NV12", "NV12"),
    _v("NV21", "NV21", "NV21"),
    _v("NV16", "NV16", "NV16"),
    _v("NV61", "NV61", "NV61"),
    _v("NV24", "NV24", "NV24"),
    _v("NV42", "NV42", "NV42"),
    _v("NV15", "NV15", "NV15"),
    _v("P010", "P010", "P010"),
    _v("P012", "P012", "P012"),
    _v("NV12M", "NM12", "NV12", True),
    _v("NV21M", "NM21", "NV21", True),
    _v("NV16M", "NM16", "NV16", True),
    _v("NV61M", "NM61", "NV61", True),
    _v("P012M", "PM12", "P012", True),
    _v("YUV410", "YUV9", "YUV410"),
    _v("YVU410", "YVU9", "YVU410"),
    _v("YUV411P", "411P", "YUV411"),
    _v("YUV420", "YU12", "YUV420"),
    _v("YVU420", "YV12", "YVU420"),
    _v("YUV422P", "422P", "YUV422"),
    _v("YUV420M", "YM12", "YUV420", True),
    _v("YVU420M", "YM21", "YVU420", True),
    _v("YUV422M", "YM16", "YUV422", True),
    _v("YVU422M", "YM61", "YVU422", True),
    _v("YUV444M", "YM24", "YUV444", True),
    _v("YVU444M", "YM42", "YVU444", True),
)

#: Every paired V4L2 format by its V4L2 name.
V4L2_FORMATS: MappingProxyType[str, V4l2Format] = MappingProxyType({f.name: f for f in _TABLE})
_BY_UPPER = {f.name.upper(): f for f in _TABLE}
_BY_FOURCC = {f.fourcc: f for f in _TABLE}


def v4l2_to_drm(key: str | int) -> V4l2Format:
    """The pairing for a V4L2 format, by name (``"NV12M"``, ``"V4L2_PIX_FMT_NV12M"``), V4L2
    fourcc string (``"NM12"``) or code.

    Raises:
        UsageError: not a V4L2 format with a DRM equivalent; the message suggests close names.
    """
    if isinstance(key, int) and not isinstance(key, bool):
        if key in _BY_FOURCC:
            return _BY_FOURCC[key]
        raise UsageError(f"V4L2 format {key:#010x} has no DRM equivalent known to devalloc")
    if not isinstance(key, str):
        raise UsageError(f"a V4L2 format is a name or a fourcc, not {key!r}")
    upper = key.strip().upper().removeprefix("V4L2_PIX_FMT_")
    if upper in _BY_UPPER:
        return _BY_UPPER[upper]
    if len(key) == 4 and key.isascii() and v4l2_fourcc(key) in _BY_FOURCC:
        return _BY_FOURCC[v4l2_fourcc(key)]
    close = closest_names(upper, list(V4L2_FORMATS))
    hint = f"; closest known: {', '.join(close)}" if close else ""
    raise UsageError(f"unknown V4L2 pixel format {key!r} (or it has no DRM equivalent){hint}")


def drm_to_v4l2(key: str | int | PixelFormat) -> list[V4l2Format]:
    """The V4L2 formats with the layout of a DRM format: single-planar first, then multi-planar.

    An empty list means V4L2 has no equivalent that devalloc knows.
    """
    fmt = lookup_format(key)
    found = [f for f in _TABLE if f.drm == fmt]
    return sorted(found, key=lambda f: f.multi_planar)
