"""GStreamer caps strings -> constraints, and plans -> caps (pure; GStreamer is not needed)."""

from __future__ import annotations

import pytest

from devalloc.constraints import Constraints
from devalloc.errors import UsageError
from devalloc.formats import FORMATS, fourcc_code, lookup_format, parse_modifier
from devalloc.gst import constraints_from_caps, parse_caps
from devalloc.negotiate import Plan, negotiate

Y_TILED = 0x0100000000000002


def names(c: Constraints) -> list[tuple[str, int]]:
    return [(lookup_format(f).name, m) for f, m in c.pairs]


def test_raw_caps_use_gstreamer_byte_order_names() -> None:
    c = constraints_from_caps("video/x-raw, format=(string){ BGRx, RGBA, I420, YUY2 }", "sink")
    assert names(c) == [("XRGB8888", 0), ("ABGR8888", 0), ("YUV420", 0), ("YUYV", 0)]
    assert (c.device, c.usage, c.access) == ("sink", "caps", "read-write")


def test_dma_drm_caps_give_pairs_in_order() -> None:
    caps = (
        "video/x-raw(memory:DMABuf), format=(string)DMA_DRM, drm-format=(string){ "
        "NV12:0x0100000000000002, XR24, NV12 }, width=(int)[ 1, 4096 ], height=(int)[ 1, 2304 ]"
    )
    c = constraints_from_caps(caps, "vah264dec", access="write")
    assert names(c) == [("NV12", Y_TILED), ("XRGB8888", 0), ("NV12", 0)]
    assert (c.max_width, c.max_height) == (4096, 2304)


def test_several_structures_union_and_unknown_formats_left_out() -> None:
    caps = (
        "video/x-raw, format=GRAY8; video/x-raw(memory:DMABuf), format=NV12,"
        " width=[ 1, 2147483647 ]; audio/x-raw, format=S16LE"
    )
    c = constraints_from_caps(caps, "el")
    assert names(c) == [("NV12", 0)]
    assert c.max_width is None  # GStreamer's "any width" is no limit


def test_caps_with_nothing_known_say_what_was_left_out() -> None:
    with pytest.raises(UsageError, match=r"left out: GRAY8, audio/x-raw"):
        constraints_from_caps("video/x-raw, format=GRAY8; audio/x-raw", "el")
    with pytest.raises(UsageError, match="ANY name no format"):
        constraints_from_caps("ANY", "el")
    with pytest.raises(UsageError, match="unclosed"):
        parse_caps('video/x-raw, format="NV12')
    with pytest.raises(UsageError, match="has no '='"):
        parse_caps("video/x-raw, format")
    with pytest.raises(UsageError, match="unknown pixel format 'QQQQ'"):
        constraints_from_caps("video/x-raw, format=DMA_DRM, drm-format=QQQQ:0x1", "el")


def test_parse_caps_fields() -> None:
    (s,) = parse_caps('video/x-raw(memory:DMABuf, meta:GstVideoMeta), format="NV12", width=64')
    assert s.name == "video/x-raw"
    assert s.features == ("memory:DMABuf", "meta:GstVideoMeta")
    assert s.fields == {"format": ("NV12",), "width": ("64",)}


@pytest.mark.parametrize(
    ("fmt", "modifier"), [("NV12", 0), ("XRGB8888", 0), ("NV12", Y_TILED), ("R8", 0)]
)
def test_plan_caps_read_back_to_the_plan_pair(fmt: str, modifier: int) -> None:
    cam = Constraints("cam", "capture", ((fourcc_code(FORMATS[fmt].fourcc_str), modifier),))
    plan = negotiate([cam], 64, 48)
    caps = plan.gst_caps
    assert caps["dma_drm"] is not None
    back = constraints_from_caps(caps["dma_drm"], "gst")
    assert back.pairs == ((plan.format.fourcc, plan.modifier.value),)
    if caps["raw"] is not None:
        assert constraints_from_caps(caps["raw"], "gst").pairs == back.pairs
    data = plan.to_json()
    assert data["drm_format"] == plan.drm_format
    assert data["gstreamer"] == caps
    assert Plan.from_json(data) == plan


def test_plan_caps_forms() -> None:
    cam = Constraints("cam", "capture", ((fourcc_code("XR24"), 0), (fourcc_code("NV12"), Y_TILED)))
    linear = negotiate([cam], 640, 480)
    assert linear.drm_format == "XR24"
    assert linear.gst_caps == {
        "raw": "video/x-raw,format=BGRx,width=640,height=480",
        "dma_drm": "video/x-raw(memory:DMABuf),format=DMA_DRM,drm-format=XR24,width=640,height=480",
    }
    tiled = negotiate([cam], 640, 480, ["NV12"])
    assert tiled.modifier == parse_modifier("INTEL_Y_TILED")
    assert tiled.gst_caps["raw"] is None
    assert tiled.drm_format == "NV12:0x0100000000000002"
