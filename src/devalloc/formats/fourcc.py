"""DRM pixel formats (fourccs) with a CPU-addressable linear layout, and their lookup.

Example:
    >>> nv12 = lookup_format("nv12")
    >>> nv12.fourcc_str, nv12.planes, nv12.hsub, nv12.vsub, nv12.block_bytes
    ('NV12', 2, 2, 2, (1, 2))
    >>> lookup_format("XR24").name, lookup_format(0x34325258).name
    ('XRGB8888', 'XRGB8888')

The table follows the kernel's own format table (``drivers/gpu/drm/drm_fourcc.c``): for each plane
the number of bytes of one block and the block's width and height in (plane) pixels, the chroma
subsampling, and whether the format has alpha or is YUV. Formats whose linear layout the header
leaves undefined (``VUY101010``, ``YUV420_8BIT``, ``YUV420_10BIT``) are not in the table; the
header cross-check test names them and every other header format we leave out.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from types import MappingProxyType

from .._toml import shown
from ..errors import UsageError

__all__ = [
    "FORMATS",
    "PixelFormat",
    "format_names",
    "fourcc_code",
    "fourcc_to_str",
    "lookup_format",
]


def fourcc_code(code: str) -> int:
    """The 32-bit fourcc of a four-character code, as the C macro ``fourcc_code(a, b, c, d)``.

    Shorter codes are padded with spaces (``"R8"`` is ``"R8  "``).
    """
    if not isinstance(code, str) or not 1 <= len(code) <= 4 or not code.isascii():
        raise UsageError(f"a fourcc is 1 to 4 ASCII characters, not {code!r:.80}")
    padded = code.ljust(4)
    return sum(ord(ch) << (8 * i) for i, ch in enumerate(padded))


def fourcc_to_str(value: int) -> str:
    """The four characters of a fourcc (the big-endian flag, bit 31, is not part of them).

    Raises:
        UsageError: ``value`` is not a 32-bit integer.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise UsageError(f"a fourcc is a 32-bit unsigned integer, not {value!r:.80}")
    value &= 0x7FFFFFFF
    return "".join(chr((value >> (8 * i)) & 0xFF) for i in range(4))


@dataclass(frozen=True)
class PixelFormat:
    """One DRM pixel format.

    Attributes:
        name: the name after ``DRM_FORMAT_`` (``"NV12"``).
        fourcc: the 32-bit code.
        planes: number of planes.
        block_bytes: bytes of one block, per plane (the kernel's ``char_per_block``; equal to the
            bytes per pixel where the block is 1x1).
        block_w: block width in pixels of that plane, per plane.
        block_h: block height in pixels of that plane, per plane.
        hsub: horizontal chroma subsampling (planes after the first are ``hsub`` times narrower;
            for single-plane YUV, pixels come in groups of ``hsub``).
        vsub: vertical chroma subsampling.
        has_alpha: the format carries an alpha channel.
        is_yuv: the format is YCbCr.
    """

    name: str
    fourcc: int
    planes: int
    block_bytes: tuple[int, ...]
    block_w: tuple[int, ...]
    block_h: tuple[int, ...]
    hsub: int = 1
    vsub: int = 1
    has_alpha: bool = False
    is_yuv: bool = False

    @property
    def fourcc_str(self) -> str:
        """The fourcc as its four characters, trailing spaces removed (``"R8"``)."""
        return fourcc_to_str(self.fourcc).rstrip(" ")

    @property
    def bits_per_pixel(self) -> tuple[float, ...]:
        """Average bits per pixel of each plane (in that plane's own, subsampled, pixels)."""
        return tuple(
            b * 8 / (w * h)
            for b, w, h in zip(self.block_bytes, self.block_w, self.block_h, strict=True)
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly description (used by ``devalloc formats --json``)."""
        return {
            "name": self.name,
            "fourcc": self.fourcc,
            "fourcc_str": self.fourcc_str,
            "planes": self.planes,
            "block_bytes": list(self.block_bytes),
            "block_w": list(self.block_w),
            "block_h": list(self.block_h),
            "hsub": self.hsub,
            "vsub": self.vsub,
            "has_alpha": self.has_alpha,
            "is_yuv": self.is_yuv,
        }


def _rgb(name: str, code: str, cpp: int, *, alpha: bool = False) -> PixelFormat:
    return PixelFormat(name, fourcc_code(code), 1, (cpp,), (1,), (1,), has_alpha=alpha)


def _bits(name: str, code: str, pixels_per_byte: int) -> PixelFormat:
    """A sub-byte format: ``pixels_per_byte`` pixels packed in every byte."""
    return PixelFormat(name, fourcc_code(code), 1, (1,), (pixels_per_byte,), (1,))


def _rgb_a8(name: str, code: str, cpp: int) -> PixelFormat:
    """Two planes: the RGB plane and an 8-bit alpha plane of the same size."""
    return PixelFormat(name, fourcc_code(code), 2, (cpp, 1), (1, 1), (1, 1), has_alpha=True)


def _packed_yuv(
    name: str, code: str, cpp: int, hsub: int = 1, *, alpha: bool = False
) -> PixelFormat:
    return PixelFormat(
        name, fourcc_code(code), 1, (cpp,), (1,), (1,), hsub, 1, has_alpha=alpha, is_yuv=True
    )


def _tiled_yuv(name: str, code: str, *, alpha: bool) -> PixelFormat:
    """Packed 4:2:0 in 2x2 tiles of 8 bytes (Y0L0, X0L0, Y0L2, X0L2)."""
    return PixelFormat(name, fourcc_code(code), 1, (8,), (2,), (2,), 2, 2, alpha, True)


def _semi(
    name: str,
    code: str,
    hsub: int,
    vsub: int,
    luma: tuple[int, int] = (1, 1),
    chroma: tuple[int, int] = (2, 1),
) -> PixelFormat:
    """Two planes: Y, then interleaved CbCr; ``luma``/``chroma`` are (block bytes, block width)."""
    return PixelFormat(
        name,
        fourcc_code(code),
        2,
        (luma[0], chroma[0]),
        (luma[1], chroma[1]),
        (1, 1),
        hsub,
        vsub,
        is_yuv=True,
    )


def _planar(name: str, code: str, hsub: int, vsub: int, cpp: int = 1) -> PixelFormat:
    return PixelFormat(
        name, fourcc_code(code), 3, (cpp,) * 3, (1, 1, 1), (1, 1, 1), hsub, vsub, is_yuv=True
    )


_TABLE: tuple[PixelFormat, ...] = (
    # Colour index, darkness and red: 1, 2 and 4 bits per pixel pack 8, 4 and 2 pixels a byte.
    _bits("C1", "C1", 8),
    _bits("C2", "C2", 4),
    _bits("C4", "C4", 2),
    _rgb("C8", "C8", 1),
    _bits("D1", "D1", 8),
    _bits("D2", "D2", 4),
    _bits("D4", "D4", 2),
    _rgb("D8", "D8", 1),
    _bits("R1", "R1", 8),
    _bits("R2", "R2", 4),
    _bits("R4", "R4", 2),
    _rgb("R8", "R8", 1),
    _rgb("R10", "R10", 2),
    _rgb("R12", "R12", 2),
    _rgb("R16", "R16", 2),
    _rgb("RG88", "RG88", 2),
    _rgb("GR88", "GR88", 2),
    _rgb("RG1616", "RG32", 4),
    _rgb("GR1616", "GR32", 4),
    _rgb("RGB332", "RGB8", 1),
    _rgb("BGR233", "BGR8", 1),
    _rgb("XRGB4444", "XR12", 2),
    _rgb("XBGR4444", "XB12", 2),
    _rgb("RGBX4444", "RX12", 2),
    _rgb("BGRX4444", "BX12", 2),
    _rgb("ARGB4444", "AR12", 2, alpha=True),
    _rgb("ABGR4444", "AB12", 2, alpha=True),
    _rgb("RGBA4444", "RA12", 2, alpha=True),
    _rgb("BGRA4444", "BA12", 2, alpha=True),
    _rgb("XRGB1555", "XR15", 2),
    _rgb("XBGR1555", "XB15", 2),
    _rgb("RGBX5551", "RX15", 2),
    _rgb("BGRX5551", "BX15", 2),
    _rgb("ARGB1555", "AR15", 2, alpha=True),
    _rgb("ABGR1555", "AB15", 2, alpha=True),
    _rgb("RGBA5551", "RA15", 2, alpha=True),
    _rgb("BGRA5551", "BA15", 2, alpha=True),
    _rgb("RGB565", "RG16", 2),
    _rgb("BGR565", "BG16", 2),
    _rgb("RGB888", "RG24", 3),
    _rgb("BGR888", "BG24", 3),
    _rgb("XRGB8888", "XR24", 4),
    _rgb("XBGR8888", "XB24", 4),
    _rgb("RGBX8888", "RX24", 4),
    _rgb("BGRX8888", "BX24", 4),
    _rgb("ARGB8888", "AR24", 4, alpha=True),
    _rgb("ABGR8888", "AB24", 4, alpha=True),
    _rgb("RGBA8888", "RA24", 4, alpha=True),
    _rgb("BGRA8888", "BA24", 4, alpha=True),
    _rgb("XRGB2101010", "XR30", 4),
    _rgb("XBGR2101010", "XB30", 4),
    _rgb("RGBX1010102", "RX30", 4),
    _rgb("BGRX1010102", "BX30", 4),
    _rgb("ARGB2101010", "AR30", 4, alpha=True),
    _rgb("ABGR2101010", "AB30", 4, alpha=True),
    _rgb("RGBA1010102", "RA30", 4, alpha=True),
    _rgb("BGRA1010102", "BA30", 4, alpha=True),
    _rgb("XRGB16161616", "XR48", 8),
    _rgb("XBGR16161616", "XB48", 8),
    _rgb("ARGB16161616", "AR48", 8, alpha=True),
    _rgb("ABGR16161616", "AB48", 8, alpha=True),
    _rgb("XRGB16161616F", "XR4H", 8),
    _rgb("XBGR16161616F", "XB4H", 8),
    _rgb("ARGB16161616F", "AR4H", 8, alpha=True),
    _rgb("ABGR16161616F", "AB4H", 8, alpha=True),
    _rgb("AXBXGXRX106106106106", "AB10", 8, alpha=True),
    # RGB plus a separate 8-bit alpha plane.
    _rgb_a8("XRGB8888_A8", "XRA8", 4),
    _rgb_a8("XBGR8888_A8", "XBA8", 4),
    _rgb_a8("RGBX8888_A8", "RXA8", 4),
    _rgb_a8("BGRX8888_A8", "BXA8", 4),
    _rgb_a8("RGB888_A8", "R8A8", 3),
    _rgb_a8("BGR888_A8", "B8A8", 3),
    _rgb_a8("RGB565_A8", "R5A8", 2),
    _rgb_a8("BGR565_A8", "B5A8", 2),
    # Packed YCbCr. 4:2:2 formats give the bytes per pixel of a two-pixel group (kernel's cpp).
    _packed_yuv("YUYV", "YUYV", 2, 2),
    _packed_yuv("YVYU", "YVYU", 2, 2),
    _packed_yuv("UYVY", "UYVY", 2, 2),
    _packed_yuv("VYUY", "VYUY", 2, 2),
    _packed_yuv("AYUV", "AYUV", 4, alpha=True),
    _packed_yuv("AVUY8888", "AVUY", 4, alpha=True),
    _packed_yuv("XYUV8888", "XYUV", 4),
    _packed_yuv("XVUY8888", "XVUY", 4),
    _packed_yuv("VUY888", "VU24", 3),
    _packed_yuv("Y210", "Y210", 4, 2),
    _packed_yuv("Y212", "Y212", 4, 2),
    _packed_yuv("Y216", "Y216", 4, 2),
    _packed_yuv("Y410", "Y410", 4, alpha=True),
    _packed_yuv("Y412", "Y412", 8, alpha=True),
    _packed_yuv("Y416", "Y416", 8, alpha=True),
    _packed_yuv("XVYU2101010", "XV30", 4),
    _packed_yuv("XVYU12_16161616", "XV36", 8),
    _packed_yuv("XVYU16161616", "XV48", 8),
    _tiled_yuv("Y0L0", "Y0L0", alpha=True),
    _tiled_yuv("X0L0", "X0L0", alpha=False),
    _tiled_yuv("Y0L2", "Y0L2", alpha=True),
    _tiled_yuv("X0L2", "X0L2", alpha=False),
    # Semi-planar: Y plane, then one interleaved CbCr (or CrCb) plane.
    _semi("NV12", "NV12", 2, 2),
    _semi("NV21", "NV21", 2, 2),
    _semi("NV16", "NV16", 2, 1),
    _semi("NV61", "NV61", 2, 1),
    _semi("NV24", "NV24", 1, 1),
    _semi("NV42", "NV42", 1, 1),
    # 10-bit packed: 4 luma samples or 2 CbCr pairs in 5 bytes.
    _semi("NV15", "NV15", 2, 2, (5, 4), (5, 2)),
    _semi("NV20", "NV20", 2, 1, (5, 4), (5, 2)),
    _semi("NV30", "NV30", 1, 1, (5, 4), (5, 2)),
    _semi("P210", "P210", 2, 1, (2, 1), (4, 1)),
    _semi("P010", "P010", 2, 2, (2, 1), (4, 1)),
    _semi("P012", "P012", 2, 2, (2, 1), (4, 1)),
    _semi("P016", "P016", 2, 2, (2, 1), (4, 1)),
    # 3 luma samples in 4 bytes, 3 CbCr pairs in 8 bytes.
    _semi("P030", "P030", 2, 2, (4, 3), (8, 3)),
    # Three planes.
    _planar("Q410", "Q410", 1, 1, 2),
    _planar("Q401", "Q401", 1, 1, 2),
    _planar("S010", "S010", 2, 2, 2),
    _planar("S210", "S210", 2, 1, 2),
    _planar("S410", "S410", 1, 1, 2),
    _planar("S012", "S012", 2, 2, 2),
    _planar("S212", "S212", 2, 1, 2),
    _planar("S412", "S412", 1, 1, 2),
    _planar("S016", "S016", 2, 2, 2),
    _planar("S216", "S216", 2, 1, 2),
    _planar("S416", "S416", 1, 1, 2),
    _planar("YUV410", "YUV9", 4, 4),
    _planar("YVU410", "YVU9", 4, 4),
    _planar("YUV411", "YU11", 4, 1),
    _planar("YVU411", "YV11", 4, 1),
    _planar("YUV420", "YU12", 2, 2),
    _planar("YVU420", "YV12", 2, 2),
    _planar("YUV422", "YU16", 2, 1),
    _planar("YVU422", "YV16", 2, 1),
    _planar("YUV444", "YU24", 1, 1),
    _planar("YVU444", "YV24", 1, 1),
)

#: Every known format by name (``"NV12"``), in the order of the kernel header.
FORMATS: MappingProxyType[str, PixelFormat] = MappingProxyType({f.name: f for f in _TABLE})
_BY_UPPER_NAME = {f.name.upper(): f for f in _TABLE}
_BY_FOURCC = {f.fourcc: f for f in _TABLE}


def format_names() -> list[str]:
    """The names of every known format, in table order."""
    return list(FORMATS)


#: Texts longer than this get no close-match suggestions (names in every table are far shorter).
MAX_SUGGEST_LENGTH = 64


def closest_names(text: str, names: list[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``names`` closest to ``text``: longest common prefix first, then similarity
    (difflib), then table order. A text longer than :data:`MAX_SUGGEST_LENGTH` gets none: no name
    is that long, and difflib's cost grows with the text's length (a 100,000-character name took
    seconds)."""
    if len(text) > MAX_SUGGEST_LENGTH:
        return []
    text = text.upper()

    def prefix(name: str) -> int:
        common = 0
        for a, b in zip(text, name.upper(), strict=False):
            if a != b:
                break
            common += 1
        return common

    scored = []
    for order, name in enumerate(names):
        ratio = difflib.SequenceMatcher(None, text, name.upper()).ratio()
        if ratio >= 0.5:
            scored.append((-prefix(name), -ratio, order, name))
    return [name for *_rest, name in sorted(scored)[:n]]


def _unknown(key: object) -> UsageError:
    from .gstreamer import GST_FORMATS  # builds on this module

    text = str(key).strip()
    close_names = closest_names(text.removeprefix("DRM_FORMAT_"), list(FORMATS))
    hint = f"; closest known: {', '.join(close_names)}" if close_names else ""
    gst = [name for name in GST_FORMATS if name.upper() == text.upper()]
    if gst:
        hint += f"; GStreamer's {gst[0]} (case as written) is DRM {GST_FORMATS[gst[0]][0].name}"
    return UsageError(
        f"unknown pixel format {shown(key)}{hint} (`devalloc formats` lists all {len(_TABLE)})"
    )


def lookup_format(key: str | int | PixelFormat) -> PixelFormat:
    """Find a format by name (case-insensitive), fourcc integer or fourcc string.

    Args:
        key: ``"NV12"``, ``"nv12"``, ``"DRM_FORMAT_NV12"``, ``0x3231564E``, ``"0x3231564e"``,
            the fourcc characters ``"XR24"``, or a :class:`PixelFormat` (returned as is).

    Raises:
        UsageError: the key names no known format; the message suggests the closest names.
    """
    if isinstance(key, PixelFormat):
        return key
    if isinstance(key, bool):
        raise UsageError(f"a pixel format is a name or a fourcc, not {key!r}")
    if isinstance(key, int):
        found = _BY_FOURCC.get(key)
        if found is None and not 0 <= key <= 0xFFFFFFFF:
            raise UsageError(f"a pixel format fourcc is a 32-bit unsigned integer, not {key}")
        if found is None:
            raise UsageError(
                f"unknown pixel format fourcc {key:#010x} ({fourcc_to_str(key)!r})"
                f"{'; big-endian variants are not supported' if key & (1 << 31) else ''}"
            )
        return found
    if not isinstance(key, str):
        raise UsageError(f"a pixel format is a name or a fourcc, not {type(key).__name__}")
    text = key.strip()
    upper = text.upper()
    upper = upper.removeprefix("DRM_FORMAT_")
    if upper in _BY_UPPER_NAME:
        return _BY_UPPER_NAME[upper]
    if upper.startswith("0X"):
        try:
            value = int(text, 16)
        except ValueError:
            raise _unknown(key) from None
        return lookup_format(value)
    if 1 <= len(text) <= 4 and text.isascii():
        found = _BY_FOURCC.get(fourcc_code(text))
        if found is not None:
            return found
    return _other_spelling(text, key)


def _other_spelling(text: str, key: str) -> PixelFormat:
    """GStreamer's names (``BGRx``, ``I420``), V4L2's (``RGB24``, ``V4L2_PIX_FMT_NV12M``, ``RGB3``)
    and GStreamer's drm-format strings of LINEAR pairs (``NV12``, ``NV12:0x0000000000000000``)."""
    from .gstreamer import GST_FORMATS, parse_drm_format  # both build on this module
    from .v4l2 import V4L2_FORMATS, v4l2_to_drm

    if text in GST_FORMATS:
        fmt, modifier = GST_FORMATS[text]
        if not modifier.is_linear:
            raise UsageError(
                f"GStreamer's {text} is {fmt.name} with the modifier {modifier.name}: give the"
                f" format {fmt.name} and that modifier, or the pair as {text} where a drm-format"
                " is taken"
            )
        return fmt
    if ":" in text:
        fmt, modifier = parse_drm_format(text)
        if not modifier.is_linear:
            raise UsageError(
                f"{text!r} is a format with a modifier ({fmt.name}, {modifier.name}); only the"
                " format is asked for here: give the modifier where modifiers are taken"
            )
        return fmt
    upper = text.upper().removeprefix("V4L2_PIX_FMT_")
    if upper in {name.upper() for name in V4L2_FORMATS} or text.upper().startswith("V4L2_PIX_FMT_"):
        return v4l2_to_drm(text).drm
    if len(text) == 4 and text.isascii():
        try:
            return v4l2_to_drm(text).drm
        except UsageError:
            pass
    raise _unknown(key)
