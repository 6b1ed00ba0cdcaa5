"""Small pure helpers for the command line: the format table and ``WxH`` sizes.

Example:
    >>> parse_size("1920x1080")
    (1920, 1080)
    >>> row = format_table()[0]
    >>> sorted(row)[:3]
    ['block_bytes', 'block_h', 'block_w']
"""

from __future__ import annotations

import re

from ..errors import UsageError
from .fourcc import FORMATS
from .layout import MAX_DIMENSION
from .spellings import format_spellings
from .v4l2 import drm_to_v4l2

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """Read ``"WIDTHxHEIGHT"`` (``"1920x1080"``).

    Raises:
        UsageError: not of that form, a zero dimension, or one above the largest accepted.
    """
    if not isinstance(text, str):
        raise UsageError(f"a size is text like 1920x1080, not {text!r}")
    match = _SIZE.match(text)
    if match is None:
        raise UsageError(f"size {text!r} is not WIDTHxHEIGHT with positive integers (1920x1080)")
    width, height = int(match.group(1)), int(match.group(2))
    for name, value in (("width", width), ("height", height)):
        if value == 0:
            raise UsageError(f"size {text!r}: the {name} must be at least 1")
        if value > MAX_DIMENSION:
            raise UsageError(f"size {text!r}: the {name} is above the largest, {MAX_DIMENSION}")
    return width, height


def format_table() -> list[dict[str, object]]:
    """Every known format as a JSON-friendly dict (``devalloc formats --json``), with the V4L2
    formats of the same layout, GStreamer's name and every spelling (:func:`format_spellings`)."""
    rows: list[dict[str, object]] = []
    for fmt in FORMATS.values():
        row = fmt.to_dict()
        row["v4l2"] = [v.name for v in drm_to_v4l2(fmt)]
        spellings = format_spellings(fmt)
        row["gstreamer"] = spellings["gstreamer"]
        row["spellings"] = spellings
        rows.append(row)
    return rows
