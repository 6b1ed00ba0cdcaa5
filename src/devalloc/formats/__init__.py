"""Pixel formats, format modifiers and plane layouts: pure functions over frozen dataclasses.

Example:
    >>> from devalloc.formats import LayoutRules, layout, lookup_format, parse_modifier
    >>> lookup_format("nv12").planes
    2
    >>> str(parse_modifier(0x0100000000000002))
    'I915_Y_TILED'
    >>> layout("NV12", 1920, 1080, rules=LayoutRules(height_align=16)).size
    3133440
    >>> lookup_format("BGRx").name, str(parse_modifier("INTEL_Y_TILED"))
    ('XRGB8888', 'I915_Y_TILED')

Nothing here does I/O: the CLI and the negotiation layer call these with what they read.
"""

from __future__ import annotations

from .fourcc import FORMATS as FORMATS
from .fourcc import PixelFormat as PixelFormat
from .fourcc import format_names as format_names
from .fourcc import fourcc_code as fourcc_code
from .fourcc import fourcc_to_str as fourcc_to_str
from .fourcc import lookup_format as lookup_format
from .gstreamer import GST_FORMATS as GST_FORMATS
from .gstreamer import drm_format_string as drm_format_string
from .gstreamer import gst_caps as gst_caps
from .gstreamer import gst_format_name as gst_format_name
from .gstreamer import gst_to_drm as gst_to_drm
from .gstreamer import parse_drm_format as parse_drm_format
from .helpers import format_table as format_table
from .helpers import parse_size as parse_size
from .layout import MAX_DIMENSION as MAX_DIMENSION
from .layout import MAX_SIZE as MAX_SIZE
from .layout import Layout as Layout
from .layout import LayoutRules as LayoutRules
from .layout import PlaneLayout as PlaneLayout
from .layout import layout as layout
from .libdrm import libdrm_name as libdrm_name
from .libdrm import libdrm_vendor as libdrm_vendor
from .libdrm import modetest_name as modetest_name
from .modifier import DRM_FORMAT_MOD_INVALID as DRM_FORMAT_MOD_INVALID
from .modifier import DRM_FORMAT_MOD_LINEAR as DRM_FORMAT_MOD_LINEAR
from .modifier import INVALID as INVALID
from .modifier import LINEAR as LINEAR
from .modifier import Modifier as Modifier
from .modifier import Vendor as Vendor
from .modifier import fourcc_mod_code as fourcc_mod_code
from .modifier import modifier_name as modifier_name
from .modifier import parse_modifier as parse_modifier
from .spellings import format_spellings as format_spellings
from .spellings import modifier_spellings as modifier_spellings
from .v4l2 import V4L2_FORMATS as V4L2_FORMATS
from .v4l2 import V4l2Format as V4l2Format
from .v4l2 import drm_to_v4l2 as drm_to_v4l2
from .v4l2 import v4l2_fourcc as v4l2_fourcc
from .v4l2 import v4l2_to_drm as v4l2_to_drm
