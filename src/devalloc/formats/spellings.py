"""Every spelling of a format or a modifier that other tools print or take.

Example:
    >>> spell = format_spellings("XRGB8888")
    >>> spell["macro"], spell["fourcc"], spell["gstreamer"], spell["v4l2"]
    ('DRM_FORMAT_XRGB8888', 'XR24', 'BGRx', ['XBGR32'])
    >>> m = modifier_spellings(0x0800000000000051)
    >>> m["modetest"], m["devalloc"]
    ('ARM_BLOCK_SIZE=16x16,MODE=YTR|SPARSE', 'ARM_AFBC(16x16,YTR,SPARSE)')

:func:`~devalloc.formats.lookup_format` and :func:`~devalloc.formats.parse_modifier` read each of
these back; the pairs test checks that for every format and every bundled modifier.
"""

from __future__ import annotations

from .fourcc import PixelFormat, lookup_format
from .gstreamer import gst_format_name
from .libdrm import libdrm_exact, libdrm_vendor, modetest_name
from .modifier import MODIFIER_MACROS, Modifier, parse_modifier
from .v4l2 import drm_to_v4l2

__all__ = ["format_spellings", "modifier_spellings"]

_MACRO_BY_VALUE: dict[int, str] = {}
for _name, _value in MODIFIER_MACROS.items():
    _MACRO_BY_VALUE.setdefault(_value, _name)


def format_spellings(fmt: str | int | PixelFormat) -> dict[str, object]:
    """A format's names: ``drm`` (``NV12``), ``macro`` (``DRM_FORMAT_NV12``), ``fourcc``
    (its characters), ``fourcc_hex``, ``gstreamer`` (None where GStreamer has no name for it
    with LINEAR) and ``v4l2`` (V4L2 names of the same layout, single-planar first)."""
    found = lookup_format(fmt)
    return {
        "drm": found.name,
        "macro": f"DRM_FORMAT_{found.name}",
        "fourcc": found.fourcc_str,
        "fourcc_hex": f"{found.fourcc:#010x}",
        "gstreamer": gst_format_name(found),
        "v4l2": [v.name for v in drm_to_v4l2(found)],
    }


def modifier_spellings(modifier: str | int | Modifier) -> dict[str, object]:
    """A modifier's names: ``devalloc`` (:func:`~devalloc.formats.modifier_name`), ``modetest``
    (libdrm's vendor and name as modetest and weston print them), ``modetest_exact`` (that name
    reads back to this value), ``vendor`` (libdrm's vendor name, None for an unknown id),
    ``macro`` (the object-like ``drm_fourcc.h`` macro, None where there is none) and ``hex``."""
    mod = parse_modifier(modifier)
    return {
        "devalloc": mod.name,
        "modetest": modetest_name(mod.value),
        "modetest_exact": libdrm_exact(mod.value),
        "vendor": libdrm_vendor(mod.value),
        "macro": _MACRO_BY_VALUE.get(mod.value),
        "hex": mod.hex,
    }
