"""The layout engine: known answers and properties over every format and rule."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc.errors import UsageError
from devalloc.formats import (
    FORMATS,
    Layout,
    LayoutRules,
    drm_to_v4l2,
    format_table,
    layout,
    lookup_format,
    parse_size,
    v4l2_to_drm,
)


def planes(lay: Layout) -> list[tuple[int, int, int]]:
    return [(p.offset, p.pitch, p.size) for p in lay.planes]


def test_nv12_1080p_pitch_64() -> None:
    lay = layout("NV12", 1920, 1080, rules=LayoutRules(pitch_align=64))
    assert planes(lay) == [(0, 1920, 1920 * 1080), (1920 * 1080, 1920, 1920 * 540)]
    assert lay.size == 1920 * 1080 * 3 // 2


def test_nv12_height_align_and_extra_rows() -> None:
    lay = layout("NV12", 1920, 1080, rules=LayoutRules(height_align=64, extra_rows=16))
    assert [p.rows for p in lay.planes] == [1104, 552]
    assert lay.size == 1920 * 1104 * 3 // 2


def test_nv12_256_byte_pitch() -> None:
    lay = layout("NV12", 1000, 10, rules=LayoutRules(pitch_align=256))
    assert [p.pitch for p in lay.planes] == [1024, 1024]


def test_yuv420_odd_sizes_round_up() -> None:
    lay = layout("YUV420", 5, 3)
    assert planes(lay) == [(0, 5, 15), (15, 3, 6), (21, 3, 6)]
    assert lay.size == 27


def test_yuv420_chroma_pitch_follows_aligned_luma() -> None:
    lay = layout("YUV420", 1920, 1080, rules=LayoutRules(pitch_align=256))
    assert [p.pitch for p in lay.planes] == [2048, 1024, 1024]


def test_p010_and_yuyv() -> None:
    assert planes(layout("P010", 1920, 1080)) == [
        (0, 3840, 3840 * 1080),
        (3840 * 1080, 3840, 3840 * 540),
    ]
    assert planes(layout("YUYV", 640, 480)) == [(0, 1280, 1280 * 480)]
    assert layout("YUYV", 641, 1).planes[0].pitch == 1284


def test_packed_blocks() -> None:
    assert layout("NV15", 1920, 2).planes[0].pitch == 2400
    assert layout("Y0L0", 4, 4).planes[0].pitch == 8  # two 8-byte 2x2 blocks per two rows
    assert layout("C1", 9, 1).planes[0].pitch == 2


def test_offsets_and_size_alignment() -> None:
    rules = LayoutRules(offset_align=4096, size_align=65536, min_size=1 << 20)
    lay = layout("NV12", 100, 100, rules=rules)
    assert lay.planes[1].offset == 12288
    assert lay.size == 1 << 20


def test_multi_buffer() -> None:
    lay = layout("NV12", 1920, 1080, rules=LayoutRules(multi_buffer=True))
    assert [(p.buffer, p.offset) for p in lay.planes] == [(0, 0), (1, 0)]
    assert lay.buffer_sizes == (1920 * 1080, 1920 * 540)
    assert lay.multi_buffer


def test_intel_x_tiled() -> None:
    lay = layout("XRGB8888", 1000, 100, "I915_X_TILED")
    assert lay.planes[0].pitch == 4096
    assert lay.planes[0].rows == 104
    assert lay.size == 4096 * 104


def test_intel_y_tiled_nv12() -> None:
    lay = layout("NV12", 1920, 1080, 0x0100000000000002)
    assert [p.pitch for p in lay.planes] == [1920, 1920]
    assert [p.rows for p in lay.planes] == [1088, 544]
    assert all(p.offset % 4096 == 0 for p in lay.planes)


def test_vendor_private_is_opaque() -> None:
    lay = layout("ABGR8888", 64, 64, "ARM_AFBC(16x16,SPARSE)")
    assert lay.opaque
    assert lay.planes == ()
    assert lay.size is None
    assert "exporter decides" in lay.note


def test_to_json() -> None:
    data = layout("NV12", 2, 2).to_json()
    assert data["format"] == "NV12"
    assert data["fourcc"] == 0x3231564E
    assert data["modifier"] == "0x0000000000000000"
    assert (data["width"], data["height"], data["size"]) == (2, 2, 6)
    assert data["planes"] == [
        {"offset": 0, "pitch": 2, "size": 4, "buffer": 0},
        {"offset": 4, "pitch": 2, "size": 2, "buffer": 0},
    ]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("NV12", 0, 10), "width"),
        (("NV12", 10, -5), "height"),
        (("NV13", 10, 10), "NV12"),
        (("NV12", 10, 10, "NOT_A_MOD"), "modifier"),
        (("NV12", True, 10), "width"),
    ],
)
def test_bad_inputs(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        layout(*args)  # type: ignore[arg-type]


def test_bad_rules() -> None:
    for kwargs in ({"pitch_align": 0}, {"extra_rows": -1}, {"plane_pitch_align": (0,)}):
        with pytest.raises(UsageError):
            LayoutRules(**kwargs)


def test_absurd_size_refused() -> None:
    with pytest.raises(UsageError, match="2\\^48"):
        layout("ABGR16161616", 1 << 20, 1, rules=LayoutRules(height_align=1 << 30))


def test_lookup() -> None:
    assert lookup_format("nv12") is lookup_format("NV12") is lookup_format(0x3231564E)
    assert lookup_format("XR24").name == "XRGB8888"
    assert lookup_format("R8").fourcc_str == "R8"
    with pytest.raises(UsageError, match="closest known: NV12"):
        lookup_format("NV1")


def test_v4l2_pairs() -> None:
    assert v4l2_to_drm("NV12M").drm.name == "NV12"
    assert v4l2_to_drm("YU12").drm.name == "YUV420"
    assert v4l2_to_drm("RGB24").drm.name == "BGR888"
    assert [f.name for f in drm_to_v4l2("YUV420")] == ["YUV420", "YUV420M"]
    with pytest.raises(UsageError):
        v4l2_to_drm("MJPEG")


def test_parse_size() -> None:
    assert parse_size("1920x1080") == (1920, 1080)
    for bad in ("0x0", "-5x3", "1920x", "x1080", "10x10x10", "99999999x1", "1e3x5"):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_format_table() -> None:
    table = format_table()
    assert len(table) == len(FORMATS)
    nv12 = next(row for row in table if row["name"] == "NV12")
    assert nv12["v4l2"] == ["NV12", "NV12M"]
    xrgb = next(row for row in table if row["name"] == "XRGB8888")
    assert xrgb["gstreamer"] == "BGRx"
    assert xrgb["spellings"] == {
        "drm": "XRGB8888",
        "macro": "DRM_FORMAT_XRGB8888",
        "fourcc": "XR24",
        "fourcc_hex": "0x34325258",
        "gstreamer": "BGRx",
        "v4l2": ["XBGR32"],
    }


RULES = st.builds(
    LayoutRules,
    pitch_align=st.sampled_from([1, 2, 4, 16, 64, 256, 3, 48]),
    plane_pitch_align=st.lists(st.sampled_from([1, 2, 32, 128, 6]), max_size=3).map(tuple),
    height_align=st.sampled_from([1, 2, 16, 64]),
    offset_align=st.sampled_from([1, 64, 4096]),
    size_align=st.sampled_from([1, 4096]),
    extra_rows=st.integers(0, 64),
    min_size=st.integers(0, 1 << 16),
    multi_buffer=st.booleans(),
)
NAMES = st.sampled_from(sorted(FORMATS))
DIM = st.integers(1, 4100)


def check(lay: Layout, rules: LayoutRules) -> None:
    fmt = lay.format
    assert len(lay.planes) == fmt.planes
    assert lay.size is not None
    assert lay.size == sum(lay.buffer_sizes)
    spans = sorted((p.buffer, p.offset, p.end) for p in lay.planes)
    for (b1, _s1, e1), (b2, s2, _e2) in itertools.pairwise(spans):
        assert b1 != b2 or e1 <= s2, "planes overlap"
    for i, p in enumerate(lay.planes):
        assert p.pitch % rules.plane_align(i) == 0
        width = lay.width if i == 0 else math.ceil(lay.width / fmt.hsub)
        need = math.ceil(math.ceil(width / fmt.block_w[i]) * fmt.block_bytes[i] / fmt.block_h[i])
        assert p.pitch >= need
        assert p.buffer < len(lay.buffer_sizes)
        assert lay.buffer_sizes[p.buffer] >= p.end
        if i and not rules.multi_buffer:
            assert p.offset % rules.offset_align == 0
    assert all(size % rules.size_align == 0 and size >= rules.min_size for size in lay.buffer_sizes)


@settings(max_examples=300, deadline=None)
@given(NAMES, DIM, DIM, RULES)
def test_layout_properties(name: str, width: int, height: int, rules: LayoutRules) -> None:
    check(layout(name, width, height, rules=rules), rules)


@settings(max_examples=200, deadline=None)
@given(NAMES, DIM, DIM, st.integers(0, 300), st.integers(0, 300), RULES)
def test_layout_is_monotonic(
    name: str, width: int, height: int, dw: int, dh: int, rules: LayoutRules
) -> None:
    small = layout(name, width, height, rules=rules)
    big = layout(name, width + dw, height + dh, rules=rules)
    assert small.size is not None
    assert big.size is not None
    assert big.size >= small.size
    for a, b in zip(small.planes, big.planes, strict=True):
        assert b.pitch >= a.pitch
        assert b.size >= a.size


@settings(max_examples=100, deadline=None)
@given(NAMES, DIM, DIM, st.sampled_from(["I915_X_TILED", "I915_Y_TILED", "I915_4_TILED"]))
def test_intel_tiling_properties(name: str, width: int, height: int, modifier: str) -> None:
    lay = layout(name, width, height, modifier)
    tile_w, tile_h = (512, 8) if modifier == "I915_X_TILED" else (128, 32)
    check(lay, LayoutRules())
    assert all(p.pitch % tile_w == 0 and p.rows % tile_h == 0 for p in lay.planes)


def test_a_huge_unknown_format_name_is_refused_short_and_without_suggestions() -> None:
    """difflib over a 100,000-character name took seconds; the message must stay one short line."""
    from devalloc.formats.fourcc import MAX_SUGGEST_LENGTH, closest_names

    assert closest_names("N" * (MAX_SUGGEST_LENGTH + 1), ["NV12", "NV21"]) == []
    assert closest_names("NV1", ["NV12", "NV21"]) == ["NV12", "NV21"]
    with pytest.raises(UsageError) as info:
        lookup_format("Q" * 100_000)
    assert len(str(info.value)) < 300
    assert "100000 characters" in str(info.value)
