"""devalloc and GStreamer: caps strings (pure, :mod:`devalloc.gst.caps`) and, with GStreamer's
Python bindings installed, a bridge between devalloc buffers and GstBuffers
(:mod:`devalloc.gst.bridge`).

Example:
    >>> from devalloc.gst import constraints_from_caps
    >>> constraints_from_caps("video/x-raw, format=NV12", "sink").pairs
    ((842094158, 0),)

Importing this package does not import GStreamer; only :mod:`devalloc.gst.bridge` does.
"""

from __future__ import annotations

from .caps import CapsStructure as CapsStructure
from .caps import constraints_from_caps as constraints_from_caps
from .caps import parse_caps as parse_caps
