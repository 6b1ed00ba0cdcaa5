"""devalloc.drm.kms without a KMS device: modes and their blob bytes, the fourcc-list blob, atomic
request packing (with a property table standing in for the kernel's), writeback constraints, the
test pattern and the pixel comparison, and out-fence waiting on a pipe."""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc.drm import DrmPlane
from devalloc.drm.kms import (
    AtomicRequest,
    Connector,
    Crtc,
    Mode,
    OutFence,
    Output,
    compare_xrgb8888,
    draw_pattern,
    parse_fourcc_list,
    pattern_row,
    writeback_constraints,
)
from devalloc.errors import TimedOutError, UsageError
from devalloc.formats import fourcc_code
from devalloc.formats.modifier import DRM_FORMAT_MOD_LINEAR
from devalloc.uapi import drm as uapi

from .conftest import assert_fd_closed

XR24 = fourcc_code("XR24")
AR24 = fourcc_code("AR24")

#: VESA 1024x768@60 (what vkms's drm_add_modes_noedid lists), preferred.
XGA = Mode(
    name="1024x768",
    clock=65000,
    hdisplay=1024,
    hsync_start=1048,
    hsync_end=1184,
    htotal=1344,
    hskew=0,
    vdisplay=768,
    vsync_start=771,
    vsync_end=777,
    vtotal=806,
    vscan=0,
    vrefresh=60,
    flags=int(uapi.DRM_MODE_FLAG_NHSYNC | uapi.DRM_MODE_FLAG_NVSYNC),
    type=int(uapi.DRM_MODE_TYPE_PREFERRED | uapi.DRM_MODE_TYPE_DRIVER),
)


# --- modes ---------------------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
modes = st.builds(
    Mode,
    name=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=31),
    clock=u32,
    hdisplay=u16,
    hsync_start=u16,
    hsync_end=u16,
    htotal=u16,
    hskew=u16,
    vdisplay=u16,
    vsync_start=u16,
    vsync_end=u16,
    vtotal=u16,
    vscan=u16,
    vrefresh=u32,
    flags=u32,
    type=u32,
)


@given(modes)
def test_mode_round_trips_through_its_blob_bytes(mode: Mode) -> None:
    data = mode.to_bytes()
    assert len(data) == ctypes.sizeof(uapi.drm_mode_modeinfo) == 68
    assert Mode.from_bytes(data) == mode


def test_mode_bytes_are_the_c_layout() -> None:
    data = XGA.to_bytes()
    clock, hdisplay = struct.unpack_from("<IH", data, 0)
    assert (clock, hdisplay) == (65000, 1024)
    assert struct.unpack_from("<H", data, 14)[0] == 768  # vdisplay after 5 u16 of horizontal
    vrefresh, flags, mode_type = struct.unpack_from("<III", data, 24)
    assert (vrefresh, flags, mode_type) == (60, XGA.flags, XGA.type)
    assert data[36:44] == b"1024x768" and data[44:] == bytes(24)  # noqa: PT018


def test_mode_from_bytes_wants_exactly_one_modeinfo() -> None:
    with pytest.raises(ValueError, match="68-byte drm_mode_modeinfo, not 67 bytes"):
        Mode.from_bytes(XGA.to_bytes()[:-1])
    with pytest.raises(ValueError, match="not 136 bytes"):
        Mode.from_bytes(XGA.to_bytes() * 2)


@pytest.mark.parametrize(
    ("field", "value"),
    [("hdisplay", 1 << 16), ("clock", -1), ("vrefresh", 1 << 32), ("flags", True)],
)
def test_mode_fields_that_do_not_fit_are_refused(field: str, value: int) -> None:
    mode = Mode(**{**XGA.__dict__, field: value})
    with pytest.raises(UsageError, match=f"{field}=.* does not fit"):
        mode.to_bytes()


def test_mode_name_must_leave_room_for_the_nul() -> None:
    Mode(**{**XGA.__dict__, "name": "x" * 31}).to_bytes()
    with pytest.raises(UsageError, match="longer than 31 bytes"):
        Mode(**{**XGA.__dict__, "name": "x" * 32}).to_bytes()


def test_mode_refresh_is_computed_like_the_kernel() -> None:
    assert XGA.refresh_hz == pytest.approx(65_000_000 / (1344 * 806))
    assert round(XGA.refresh_hz) == XGA.vrefresh
    interlaced = Mode(**{**XGA.__dict__, "flags": int(uapi.DRM_MODE_FLAG_INTERLACE)})
    assert interlaced.refresh_hz == pytest.approx(2 * XGA.refresh_hz)
    doubled = Mode(**{**XGA.__dict__, "flags": int(uapi.DRM_MODE_FLAG_DBLSCAN)})
    assert doubled.refresh_hz == pytest.approx(XGA.refresh_hz / 2)
    assert Mode(**{**XGA.__dict__, "vscan": 3}).refresh_hz == pytest.approx(XGA.refresh_hz / 3)
    assert Mode(**{**XGA.__dict__, "vscan": 1}).refresh_hz == XGA.refresh_hz
    assert Mode(**{**XGA.__dict__, "htotal": 0}).refresh_hz == 0.0


def test_mode_size_preferred_and_text() -> None:
    assert XGA.size == (1024, 768)
    assert XGA.preferred
    assert not Mode(**{**XGA.__dict__, "type": int(uapi.DRM_MODE_TYPE_DRIVER)}).preferred
    assert str(XGA) == "1024x768@60"


# --- blobs and connectors ------------------------------------------------------------------------


@given(st.lists(u32, max_size=20))
def test_fourcc_list_blob_decodes_in_order(codes: list[int]) -> None:
    assert parse_fourcc_list(struct.pack(f"<{len(codes)}I", *codes)) == tuple(codes)


def test_fourcc_list_blob_must_be_whole_u32s() -> None:
    with pytest.raises(ValueError, match="6 bytes is not a whole number"):
        parse_fourcc_list(b"XR24AR")


def _connector(ctype: int, **kw: object) -> Connector:
    base: dict[str, object] = {"id": 40, "type": ctype, "type_id": 1, "connection": "connected"}
    return Connector(**{**base, **kw})  # type: ignore[arg-type]


def test_connector_names_follow_the_kernel() -> None:
    virtual = _connector(uapi.DRM_MODE_CONNECTOR_VIRTUAL)
    assert virtual.name == "Virtual-1"
    assert not virtual.is_writeback
    assert virtual.connected
    wb = _connector(uapi.DRM_MODE_CONNECTOR_WRITEBACK, type_id=2, connection="unknown")
    assert wb.name == "Writeback-2"
    assert wb.is_writeback
    assert not wb.connected
    assert _connector(uapi.DrmModeConnector.HDMIA).name == "HDMI-A-1"
    assert _connector(99).name == "type99-1"


def test_preferred_mode_falls_back_to_the_first() -> None:
    other = Mode(**{**XGA.__dict__, "name": "800x600", "type": 0})
    assert _connector(15, modes=(other, XGA)).preferred_mode == XGA
    assert _connector(15, modes=(other,)).preferred_mode == other
    assert _connector(15).preferred_mode is None


def test_writeback_constraints_keep_known_formats_linear_at_the_mode_size() -> None:
    unknown = fourcc_code("ZZZZ")
    wb = _connector(uapi.DRM_MODE_CONNECTOR_WRITEBACK, writeback_formats=(XR24, unknown, AR24))
    c = writeback_constraints("vkms", wb, XGA)
    assert c.label == "vkms:writeback"
    assert c.pairs == ((XR24, DRM_FORMAT_MOD_LINEAR), (AR24, DRM_FORMAT_MOD_LINEAR))
    assert (c.max_width, c.max_height) == (1024, 768)
    assert c.access == "write"
    with pytest.raises(UsageError, match=r"lists no format devalloc knows .*ZZZZ"):
        writeback_constraints("vkms", _connector(18, writeback_formats=(unknown,)), XGA)
    with pytest.raises(UsageError, match=r"Virtual-1.*not a writeback"):
        writeback_constraints("vkms", _connector(15, writeback_formats=(XR24,)), XGA)


# --- atomic requests -----------------------------------------------------------------------------

#: Property ids by (object type, name): the kernel's table, as OBJ_GETPROPERTIES would give it.
PROPS = {
    (int(uapi.DRM_MODE_OBJECT_CRTC), "ACTIVE"): 20,
    (int(uapi.DRM_MODE_OBJECT_CRTC), "MODE_ID"): 21,
    (int(uapi.DRM_MODE_OBJECT_CONNECTOR), "CRTC_ID"): 22,
    (int(uapi.DRM_MODE_OBJECT_CONNECTOR), "WRITEBACK_FB_ID"): 23,
    (int(uapi.DRM_MODE_OBJECT_CONNECTOR), "WRITEBACK_OUT_FENCE_PTR"): 24,
    **{
        (int(uapi.DRM_MODE_OBJECT_PLANE), name): 30 + i
        for i, name in enumerate(
            [
                "FB_ID",
                "CRTC_ID",
                "SRC_X",
                "SRC_Y",
                "SRC_W",
                "SRC_H",
                "CRTC_X",
                "CRTC_Y",
                "CRTC_W",
                "CRTC_H",
            ]
        )
    },
}
PROP_NAMES = {v: k[1] for k, v in PROPS.items()}


def _resolve(obj_id: int, obj_type: int, name: str) -> int:
    try:
        return PROPS[(obj_type, name)]
    except KeyError:
        raise UsageError(f"KMS object {obj_id} has no property {name!r}") from None


CRTC = Crtc(id=37, index=0)
PRIMARY = DrmPlane(31, "primary", 1, 0, 0, (XR24,), ((XR24, 0),), True)
OVERLAY = DrmPlane(33, "overlay", 1, 0, 0, (XR24,), ((XR24, 0),), True)
VIRTUAL = _connector(uapi.DRM_MODE_CONNECTOR_VIRTUAL, id=39)
WRITEBACK = _connector(uapi.DRM_MODE_CONNECTOR_WRITEBACK, id=41)
OUTPUT = Output(VIRTUAL, CRTC, PRIMARY, XGA, overlays=(OVERLAY,))


class _Fb:
    """What :meth:`AtomicRequest.show` reads of a framebuffer."""

    def __init__(self, fb_id: int, width: int, height: int) -> None:
        self.fb_id, self.width, self.height = fb_id, width, height


def _settings(req: AtomicRequest) -> dict[int, dict[str, int]]:
    objs, counts, props, values = req.pack()
    assert len(objs) == len(counts)
    assert len(props) == len(values) == sum(counts) == len(req)
    out: dict[int, dict[str, int]] = {}
    i = 0
    for obj, n in zip(objs, counts, strict=True):
        out[obj] = {
            PROP_NAMES[p]: v for p, v in zip(props[i : i + n], values[i : i + n], strict=True)
        }
        i += n
    return out


def test_request_packs_objects_in_first_set_order_and_keeps_the_last_value() -> None:
    req = AtomicRequest(_resolve)
    req.set(CRTC, "ACTIVE", 1).set(VIRTUAL, "CRTC_ID", 37).set(CRTC, "ACTIVE", 0)
    objs, counts, props, values = req.pack()
    assert (objs, counts, props, values) == ([37, 39], [1, 1], [20, 22], [0, 37])
    assert req.describe() == "CRTC 37: ACTIVE=0; connector 39 (Virtual-1): CRTC_ID=37"
    assert AtomicRequest(_resolve).describe() == "nothing"


def test_show_sets_the_plane_rectangles_in_16_16_source_pixels() -> None:
    req = AtomicRequest(_resolve).show(PRIMARY, _Fb(50, 1024, 768), CRTC)  # type: ignore[arg-type]
    assert _settings(req)[31] == {
        "FB_ID": 50,
        "CRTC_ID": 37,
        "SRC_X": 0,
        "SRC_Y": 0,
        "SRC_W": 1024 << 16,
        "SRC_H": 768 << 16,
        "CRTC_X": 0,
        "CRTC_Y": 0,
        "CRTC_W": 1024,
        "CRTC_H": 768,
    }
    moved = AtomicRequest(_resolve).show(
        OVERLAY,
        _Fb(51, 256, 128),  # type: ignore[arg-type]
        CRTC,
        src=(8, 4, 64, 32),
        dst=(-10, 20, 128, 64),
    )
    got = _settings(moved)[33]
    assert (got["SRC_X"], got["SRC_Y"], got["SRC_W"], got["SRC_H"]) == (
        8 << 16,
        4 << 16,
        64 << 16,
        32 << 16,
    )
    assert got["CRTC_X"] == (1 << 64) - 10  # signed: two's complement in the __u64 value
    assert (got["CRTC_Y"], got["CRTC_W"], got["CRTC_H"]) == (20, 128, 64)


@pytest.mark.parametrize("value", [1 << 64, -(1 << 63) - 1, True, 1.5])
def test_values_outside_64_bits_are_refused(value: object) -> None:
    with pytest.raises(UsageError, match=r"ACTIVE=.* is not a 64-bit value"):
        AtomicRequest(_resolve).set(CRTC, "ACTIVE", value)  # type: ignore[arg-type]


def test_unknown_property_comes_from_the_resolver() -> None:
    with pytest.raises(UsageError, match="no property 'GAMMA_LUT'"):
        AtomicRequest(_resolve).set(CRTC, "GAMMA_LUT", 0)


def test_source_rectangle_must_fit_16_16() -> None:
    with pytest.raises(UsageError, match="SRC_W=65536"):
        AtomicRequest(_resolve).show(PRIMARY, _Fb(50, 1 << 16, 4), CRTC)  # type: ignore[arg-type]


def test_writeback_asks_for_an_out_fence_and_disable_detaches_everything() -> None:
    req = AtomicRequest(_resolve).writeback(WRITEBACK, _Fb(52, 1024, 768), CRTC)  # type: ignore[arg-type]
    wb = _settings(req)[41]
    assert (wb["CRTC_ID"], wb["WRITEBACK_FB_ID"]) == (37, 52)
    slot = ctypes.c_int32.from_address(wb["WRITEBACK_OUT_FENCE_PTR"])
    assert slot.value == -1  # the kernel writes the sync_file fd there
    assert "WRITEBACK_OUT_FENCE_PTR=&fence" in req.describe()
    with pytest.raises(UsageError, match=r"Virtual-1.*not a writeback"):
        req.writeback(VIRTUAL, _Fb(52, 1024, 768), CRTC)  # type: ignore[arg-type]

    off = AtomicRequest(_resolve).disable(OUTPUT, planes=[OVERLAY], connectors=[WRITEBACK])
    assert _settings(off) == {
        31: {"FB_ID": 0, "CRTC_ID": 0},
        33: {"FB_ID": 0, "CRTC_ID": 0},
        39: {"CRTC_ID": 0},
        41: {"CRTC_ID": 0},
        37: {"MODE_ID": 0, "ACTIVE": 0},
    }


# --- the test pattern and the comparison ---------------------------------------------------------


def test_pattern_pixels_differ_from_their_neighbours() -> None:
    rows = [pattern_row(y, 300) for y in (0, 1, 255, 256)]
    for row in rows:
        pixels = [bytes(row[4 * x : 4 * x + 3]) for x in range(300)]
        assert all(a != b for a, b in itertools.pairwise(pixels))
        assert row[3::4] == bytes(300)  # X is 0
    assert len({bytes(r) for r in rows}) == 4
    # 256 columns apart differ in red, 256 rows apart too.
    assert rows[0][0:3] != rows[0][1024:1027]
    assert rows[0] != rows[3]
    assert pattern_row(5, 10, seed=1) != pattern_row(5, 10)


@settings(max_examples=50)
@given(
    st.integers(1, 40),
    st.integers(1, 30),
    st.integers(0, 24),
    st.integers(0, 17),
    st.integers(0, 3),
)
def test_draw_pattern_writes_rows_at_the_pitch_and_leaves_padding(
    width: int, height: int, padding: int, offset: int, seed: int
) -> None:
    pitch = 4 * width + padding
    image = bytearray(b"\xee") * (offset + pitch * height + 3)
    draw_pattern(image, width, height, pitch, offset=offset, seed=seed)
    assert image[:offset] == b"\xee" * offset
    for y in range(height):
        start = offset + y * pitch
        assert image[start : start + 4 * width] == pattern_row(y, width, seed)
        assert image[start + 4 * width : start + pitch] == b"\xee" * padding
    assert (
        compare_xrgb8888(
            image,
            image,
            width,
            height,
            expected_pitch=pitch,
            actual_pitch=pitch,
            expected_offset=offset,
            actual_offset=offset,
        )
        is None
    )


def test_draw_pattern_over_256_rows_and_columns() -> None:
    width, height = 600, 520
    image = bytearray(4 * width * height)
    draw_pattern(image, width, height, 4 * width, seed=3)
    for y in (0, 255, 256, 300, 511, 512, 519):
        assert image[4 * width * y : 4 * width * (y + 1)] == pattern_row(y, width, 3)


@settings(max_examples=60)
@given(
    st.integers(1, 30),
    st.integers(1, 20),
    st.integers(0, 12),
    st.data(),
)
def test_compare_finds_the_first_changed_channel_and_ignores_x(
    width: int, height: int, padding: int, data: st.DataObject
) -> None:
    pitch_a, pitch_b = 4 * width, 4 * width + padding
    a = bytearray(pitch_a * height)
    b = bytearray(pitch_b * height)
    draw_pattern(a, width, height, pitch_a)
    draw_pattern(b, width, height, pitch_b)
    for row in range(height):  # X differs: ignored
        b[row * pitch_b + 3 : row * pitch_b + 4 * width : 4] = b"\xff" * width
    assert (
        compare_xrgb8888(a, b, width, height, expected_pitch=pitch_a, actual_pitch=pitch_b) is None
    )
    x = data.draw(st.integers(0, width - 1))
    y = data.draw(st.integers(0, height - 1))
    channel = data.draw(st.integers(0, 2))
    b[y * pitch_b + 4 * x + channel] ^= 0x80
    diff = compare_xrgb8888(a, b, width, height, expected_pitch=pitch_a, actual_pitch=pitch_b)
    assert diff is not None
    assert (diff.count, diff.rows, diff.first) == (1, 1, (x, y))
    expected_rgb = tuple(a[y * pitch_a + 4 * x + i] for i in (2, 1, 0))
    assert diff.expected == expected_rgb
    changed = list(expected_rgb)
    changed[2 - channel] ^= 0x80
    assert diff.actual == tuple(changed)
    assert f"first at ({x}, {y})" in str(diff)


def test_compare_counts_every_differing_pixel() -> None:
    a = bytearray(4 * 8 * 4)
    b = bytearray(a)
    for x, y in ((1, 0), (7, 0), (0, 3)):
        b[4 * (8 * y + x)] = 1
    diff = compare_xrgb8888(a, b, 8, 4, expected_pitch=32, actual_pitch=32)
    assert diff is not None
    assert (diff.count, diff.rows, diff.first) == (3, 2, (1, 0))


@pytest.mark.parametrize(
    ("size", "width", "height", "pitch", "offset", "match"),
    [
        (64, 4, 4, 15, 0, "pitch 15 is shorter than a 4-pixel"),
        (63, 4, 4, 16, 0, "needs 64 bytes; the buffer has 63"),
        (64, 4, 4, 16, 1, "needs 65 bytes"),
        (64, -1, 4, 16, 0, "cannot draw a -1x4 image"),
    ],
)
def test_images_that_do_not_fit_are_refused(
    size: int, width: int, height: int, pitch: int, offset: int, match: str
) -> None:
    with pytest.raises(UsageError, match=match):
        draw_pattern(bytearray(size), width, height, pitch, offset=offset)
    if width >= 0:
        with pytest.raises(UsageError, match=match.replace("draw", "compare")):
            compare_xrgb8888(
                bytearray(size),
                bytearray(size),
                width,
                height,
                expected_pitch=pitch,
                actual_pitch=pitch,
                expected_offset=offset,
            )


# --- out-fences (a pipe's read end stands for a sync_file: both poll POLLIN when ready) -----------


@pytest.fixture
def pipe() -> Iterator[tuple[OutFence, int]]:
    r, w = os.pipe2(os.O_CLOEXEC)
    fence = OutFence(r, description="test fence")
    try:
        yield fence, w
    finally:
        fence.close()
        os.close(w)


def test_out_fence_waits_until_readable(pipe: tuple[OutFence, int]) -> None:
    fence, w = pipe
    assert not fence.signaled()
    with pytest.raises(TimedOutError, match=r"test fence did not signal within 0.05 s") as err:
        fence.wait(0.05)
    assert err.value.errno == errno.ETIMEDOUT
    os.write(w, b"x")
    assert fence.signaled()
    assert 0 <= fence.wait(1.0) < 1.0


def test_out_fence_owns_its_fd(pipe: tuple[OutFence, int]) -> None:
    fence, _ = pipe
    fd = fence.fileno()
    fence.close()
    assert_fd_closed(fd)
    fence.close()
