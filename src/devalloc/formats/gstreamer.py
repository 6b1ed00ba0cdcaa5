"""GStreamer's names for DRM formats, its drm-format strings and caps (pure; no GStreamer needed).

Example:
    >>> gst_format_name("XRGB8888"), gst_to_drm("RGBA")[0].name
    ('BGRx', 'ABGR8888')
    >>> drm_format_string("NV12", 0x0100000000000002), drm_format_string("NV12", 0)
    ('NV12:0x0100000000000002', 'NV12')
    >>> fmt, mod = parse_drm_format("NV12:0x0100000000000002")
    >>> fmt.name, str(mod)
    ('NV12', 'I915_Y_TILED')
    >>> gst_caps("NV12", 0, 64, 48)["raw"]
    'video/x-raw,format=NV12,width=64,height=48'

GStreamer names video formats by the order of bytes in memory (``BGRx``: blue first), DRM by a
little-endian word read from the top bit (``XRGB8888``), so the same memory is ``BGRx`` to one and
``XRGB8888`` to the other. The table is GStreamer's own (``format_map`` in gst-plugins-base
``video-info-dma.c``, 1.26), which ``gst_video_dma_drm_fourcc_from_format`` and
``gst_video_dma_drm_format_to_gst_format`` read: it pairs some GStreamer formats with a
modifier (``NV12_4L4`` is NV12 with ``VIVANTE_TILED``). Since 1.24, ``video/x-raw(memory:DMABuf),
format=DMA_DRM`` caps carry a ``drm-format`` string, the fourcc's four characters and, for a
modifier other than LINEAR, ``:0x`` and 16 hex digits (``NV12:0x0100000000000002``).
"""

from __future__ import annotations

from types import MappingProxyType

from ..errors import UsageError
from .fourcc import PixelFormat, fourcc_to_str, lookup_format
from .modifier import (
    DRM_FORMAT_MOD_INVALID,
    DRM_FORMAT_MOD_LINEAR,
    DRM_FORMAT_MOD_SAMSUNG_64_32_TILE,
    DRM_FORMAT_MOD_VIVANTE_TILED,
    Modifier,
    parse_modifier,
)

__all__ = [
    "GST_FORMATS",
    "drm_format_string",
    "gst_caps",
    "gst_format_name",
    "gst_to_drm",
    "parse_drm_format",
]

# GStreamer format -> (DRM format name, modifier), in GStreamer's table order.
_TABLE: tuple[tuple[str, str, int], ...] = (
    ("YUY2", "YUYV", DRM_FORMAT_MOD_LINEAR),
    ("YVYU", "YVYU", DRM_FORMAT_MOD_LINEAR),
    ("UYVY", "UYVY", DRM_FORMAT_MOD_LINEAR),
    ("VYUY", "VYUY", DRM_FORMAT_MOD_LINEAR),
    ("VUYA", "AYUV", DRM_FORMAT_MOD_LINEAR),
    ("NV12", "NV12", DRM_FORMAT_MOD_LINEAR),
    ("NV12_4L4", "NV12", DRM_FORMAT_MOD_VIVANTE_TILED),
    ("NV12_64Z32", "NV12", DRM_FORMAT_MOD_SAMSUNG_64_32_TILE),
    ("NV21", "NV21", DRM_FORMAT_MOD_LINEAR),
    ("NV16", "NV16", DRM_FORMAT_MOD_LINEAR),
    ("NV61", "NV61", DRM_FORMAT_MOD_LINEAR),
    ("NV24", "NV24", DRM_FORMAT_MOD_LINEAR),
    ("YUV9", "YUV410", DRM_FORMAT_MOD_LINEAR),
    ("YVU9", "YVU410", DRM_FORMAT_MOD_LINEAR),
    ("Y41B", "YUV411", DRM_FORMAT_MOD_LINEAR),
    ("I420", "YUV420", DRM_FORMAT_MOD_LINEAR),
    ("YV12", "YVU420", DRM_FORMAT_MOD_LINEAR),
    ("Y42B", "YUV422", DRM_FORMAT_MOD_LINEAR),
    ("Y444", "YUV444", DRM_FORMAT_MOD_LINEAR),
    ("RGB16", "RGB565", DRM_FORMAT_MOD_LINEAR),
    ("BGR16", "BGR565", DRM_FORMAT_MOD_LINEAR),
    ("RGB", "BGR888", DRM_FORMAT_MOD_LINEAR),
    ("BGR", "RGB888", DRM_FORMAT_MOD_LINEAR),
    ("RGBA", "ABGR8888", DRM_FORMAT_MOD_LINEAR),
    ("RGBx", "XBGR8888", DRM_FORMAT_MOD_LINEAR),
    ("BGRA", "ARGB8888", DRM_FORMAT_MOD_LINEAR),
    ("BGRx", "XRGB8888", DRM_FORMAT_MOD_LINEAR),
    ("ARGB", "BGRA8888", DRM_FORMAT_MOD_LINEAR),
    ("xRGB", "BGRX8888", DRM_FORMAT_MOD_LINEAR),
    ("ABGR", "RGBA8888", DRM_FORMAT_MOD_LINEAR),
    ("xBGR", "RGBX8888", DRM_FORMAT_MOD_LINEAR),
    ("Y410", "Y410", DRM_FORMAT_MOD_LINEAR),
    ("Y412_LE", "Y412", DRM_FORMAT_MOD_LINEAR),
    ("Y210", "Y210", DRM_FORMAT_MOD_LINEAR),
    ("Y212_LE", "Y212", DRM_FORMAT_MOD_LINEAR),
    ("NV12_10LE40_4L4", "NV15", DRM_FORMAT_MOD_VIVANTE_TILED),
    ("P010_10LE", "P010", DRM_FORMAT_MOD_LINEAR),
    ("P012_LE", "P012", DRM_FORMAT_MOD_LINEAR),
    ("BGR10A2_LE", "ARGB2101010", DRM_FORMAT_MOD_LINEAR),
)

#: GStreamer video format name -> (DRM format, modifier), as GStreamer pairs them.
GST_FORMATS: MappingProxyType[str, tuple[PixelFormat, Modifier]] = MappingProxyType(
    {gst: (lookup_format(drm), Modifier(mod)) for gst, drm, mod in _TABLE}
)
_BY_PAIR = {(fmt.fourcc, mod.value): gst for gst, (fmt, mod) in GST_FORMATS.items()}


def gst_to_drm(name: str) -> tuple[PixelFormat, Modifier]:
    """The DRM format and modifier of a GStreamer video format name (case as GStreamer writes it).

    Raises:
        UsageError: GStreamer has no DRM equivalent for that name.
    """
    found = GST_FORMATS.get(name.strip()) if isinstance(name, str) else None
    if found is None:
        raise UsageError(
            f"{name!r} is not a GStreamer video format with a DRM equivalent"
            f" (those are: {', '.join(GST_FORMATS)})"
        )
    return found


def gst_format_name(
    fmt: str | int | PixelFormat, modifier: int | str | Modifier = DRM_FORMAT_MOD_LINEAR
) -> str | None:
    """GStreamer's name for a (format, modifier) pair (``gst_video_dma_drm_format_to_gst_format``),
    or None where GStreamer has none (``DMA_DRM`` caps name such pairs by drm-format only)."""
    return _BY_PAIR.get((lookup_format(fmt).fourcc, parse_modifier(modifier).value))


def drm_format_string(fmt: str | int | PixelFormat, modifier: int | str | Modifier) -> str:
    """GStreamer's drm-format string (``gst_video_dma_drm_fourcc_to_string``).

    Raises:
        UsageError: the modifier is INVALID (GStreamer has no string for it).
    """
    code = fourcc_to_str(lookup_format(fmt).fourcc)
    value = parse_modifier(modifier).value
    if value == DRM_FORMAT_MOD_INVALID:
        raise UsageError("a drm-format string needs a modifier; INVALID (no modifier) has none")
    return code if value == DRM_FORMAT_MOD_LINEAR else f"{code}:0x{value:016x}"


def parse_drm_format(text: str) -> tuple[PixelFormat, Modifier]:
    """Read a (format, modifier) pair: GStreamer's drm-format ``NV12:0x0100000000000002`` (and
    ``NV12`` for LINEAR), or any spelling of a format and of a modifier joined by a colon
    (``XRGB8888:INTEL_Y_TILED``), or a GStreamer format name (``NV12_4L4``, ``BGRx``).

    Raises:
        UsageError: either half is not known; the message names which.
    """
    if not isinstance(text, str):
        raise UsageError(f"a drm-format is text such as NV12:0x0100000000000002, not {text!r:.80}")
    head, colon, tail = text.partition(":")
    if not colon:
        if text.strip() in GST_FORMATS:
            return GST_FORMATS[text.strip()]
        return lookup_format(text), Modifier(DRM_FORMAT_MOD_LINEAR)
    try:
        fmt = lookup_format(head)
    except UsageError as exc:
        raise UsageError(f"drm-format {text!r}: {exc}") from None
    try:
        modifier = parse_modifier(tail)
    except UsageError as exc:
        raise UsageError(f"drm-format {text!r}: {exc}") from None
    if modifier.value == DRM_FORMAT_MOD_INVALID:
        raise UsageError(f"drm-format {text!r}: INVALID is no modifier a buffer can have")
    return fmt, modifier


def gst_caps(
    fmt: str | int | PixelFormat, modifier: int | str | Modifier, width: int, height: int
) -> dict[str, str | None]:
    """Caps strings for a buffer of that pair and size.

    Returns:
        ``raw``: ``video/x-raw,format=<GStreamer name>,...`` for a LINEAR pair GStreamer names,
        else None; ``dma_drm``: the 1.24 form ``video/x-raw(memory:DMABuf),format=DMA_DRM,
        drm-format=...``; ``drm_format``: the drm-format string alone.
    """
    drm_format = drm_format_string(fmt, modifier)
    size = f"width={int(width)},height={int(height)}"
    name = gst_format_name(fmt, modifier)
    linear = parse_modifier(modifier).value == DRM_FORMAT_MOD_LINEAR
    # A fourcc shorter than four characters ends in spaces ("R8  "): quoted, as caps need.
    quoted = f'(string)"{drm_format}"' if " " in drm_format else drm_format
    return {
        "raw": f"video/x-raw,format={name},{size}" if name is not None and linear else None,
        "dma_drm": f"video/x-raw(memory:DMABuf),format=DMA_DRM,drm-format={quoted},{size}",
        "drm_format": drm_format,
    }
