"""Host tests of the device layer's pure rules: layout learning from TRY_FMT answers, planes and
queues -> Constraints, kernel-log records, verify's input checks, and discovery on fake trees."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc.cli import main
from devalloc.constraints import Constraints
from devalloc.devices.discover import Discovery, device_id, discover, discover_drm, discover_v4l2
from devalloc.devices.kmsg import KernelLog, parse_record
from devalloc.devices.learn import (
    MAX_LEARNED_ALIGN,
    LearnedLayout,
    TrySample,
    combine_rules,
    import_usage,
    kms_usages,
    learn_layout,
    v4l2_single_planar_layout,
    v4l2_usage,
)
from devalloc.devices.verify import Verdict, verify
from devalloc.errors import UsageError
from devalloc.formats import (
    FORMATS,
    V4L2_FORMATS,
    LayoutRules,
    PixelFormat,
    fourcc_code,
    layout,
    lookup_format,
)
from devalloc.formats.modifier import DRM_FORMAT_MOD_LINEAR
from devalloc.heaps.memfd import MemfdHeap

from .conftest import open_fds

LINEAR = DRM_FORMAT_MOD_LINEAR
#: Widths and heights that expose alignment: odd ones, and ones that are not.
SIZES = ((640, 480), (1280, 720), (322, 242), (321, 241), (33, 17), (17, 9), (1, 1))


def _sample(fmt: PixelFormat, width: int, height: int, rules: LayoutRules) -> TrySample:
    """What a driver that follows ``rules`` exactly would answer."""
    lay = layout(fmt, width, height, rules=rules)
    planes = lay.planes if rules.multi_buffer else lay.planes[:1]
    pitches = tuple(p.pitch for p in planes)
    return TrySample(width, height, pitches, lay.buffer_sizes)


# --- learn_layout -------------------------------------------------------------------------------

ALL_FORMATS = sorted(FORMATS.values(), key=lambda f: f.name)


@settings(max_examples=300, deadline=None)
@given(
    fmt=st.sampled_from(ALL_FORMATS),
    pitch_shift=st.integers(0, 9),
    height_shift=st.integers(0, 5),
    multi=st.booleans(),
)
def test_learned_rules_reproduce_a_rule_following_driver(
    fmt: PixelFormat, pitch_shift: int, height_shift: int, multi: bool
) -> None:
    truth = LayoutRules(
        pitch_align=1 << pitch_shift, height_align=1 << height_shift, multi_buffer=multi
    )
    samples = [_sample(fmt, w, h, truth) for w, h in SIZES]
    learned = learn_layout(fmt, samples, multi_buffer=multi)
    # The learned rules explain the driver exactly (pitch and every buffer size) ...
    assert all(learned.exact), (learned.rules, learned.note)
    # ... and never claim more than the truth: both alignments divide the true ones.
    assert (1 << pitch_shift) % learned.rules.pitch_align == 0
    assert (1 << height_shift) % learned.rules.height_align == 0
    assert learned.rules.multi_buffer is multi


@pytest.mark.parametrize("align", [1, 2, 4, 16, 64, 256, 4096])
def test_pitch_alignment_is_identified_exactly_from_odd_widths(align: int) -> None:
    # One byte per pixel and width 1 (natural pitch 1): the first power of two that fits is
    # the true alignment, whatever the other sizes hide.
    r8 = lookup_format("R8")
    rules = LayoutRules(pitch_align=align)
    learned = learn_layout(r8, [_sample(r8, w, h, rules) for w, h in SIZES])
    assert learned.rules.pitch_align == align
    assert learned.rules.height_align == 1


def test_yuyv_64_byte_pitch_and_16_row_alignment() -> None:
    yuyv = lookup_format("YUYV")
    samples = [
        TrySample(640, 480, (1280,), (1280 * 480,)),
        TrySample(322, 242, (704,), (704 * 256,)),  # 644 -> 704; 242 rows -> 256
        TrySample(17, 9, (64,), (64 * 16,)),
    ]
    learned = learn_layout(yuyv, samples)
    assert (learned.rules.pitch_align, learned.rules.height_align) == (64, 16)
    assert learned.exact == (True, True, True)
    assert "aligned to 64 bytes" in learned.note
    assert "aligned to 16" in learned.note


def test_driver_that_truncates_partial_pixels_keeps_devalloc_pitch() -> None:
    # vivid: YUYV at 321 wide gets 642 bytes per line (devalloc: 644, whole pixel pairs).
    yuyv = lookup_format("YUYV")
    samples = [TrySample(640, 480, (1280,), (614400,)), TrySample(321, 241, (642,), (154722,))]
    learned = learn_layout(yuyv, samples)
    assert learned.rules.pitch_align == 1
    assert learned.exact == (True, False)
    assert "pitch 642 is below devalloc's minimum 644" in learned.note
    # devalloc's layout under the learned rules is never smaller than the driver's image.
    lay = layout(yuyv, 321, 241, rules=learned.rules)
    assert lay.size is not None
    assert lay.size >= 154722


def test_pitches_no_power_of_two_explains_fall_back_to_their_common_factor() -> None:
    # RGB888 (3 bytes) with the width aligned to 16 pixels: 17 px -> 32 px -> 96 bytes.
    rgb = lookup_format("RGB888")
    samples = [
        TrySample(w, h, (-(-w // 16) * 16 * 3,), (-(-w // 16) * 16 * 3 * h,))
        for w, h in ((17, 9), (33, 17), (640, 480))
    ]
    learned = learn_layout(rgb, samples)
    # gcd(96, 144, 1920) = 48: every pitch is a multiple of 16, the largest such power of two.
    assert learned.rules.pitch_align == 16
    assert "no power-of-two alignment" in learned.note


def test_extra_rows_when_no_row_alignment_covers_the_image() -> None:
    # A driver that adds 3 rows to every image, whatever its height.
    r8 = lookup_format("R8")
    samples = [TrySample(w, h, (w,), (w * (h + 3),)) for w, h in ((64, 64), (64, 1), (64, 127))]
    learned = learn_layout(r8, samples)
    assert learned.rules.extra_rows == 3
    assert learned.rules.height_align == 1
    assert all(learned.exact)


def test_sizeimage_beyond_any_rule_is_reported() -> None:
    r8 = lookup_format("R8")
    learned = learn_layout(r8, [TrySample(16, 16, (16,), (1 << 20,))])
    assert "exceeds devalloc's layout" in learned.note
    assert learned.exact == (False,)


def test_learn_layout_refuses_bad_input() -> None:
    nv12 = lookup_format("NV12")
    with pytest.raises(UsageError, match="no TRY_FMT answers"):
        learn_layout(nv12, [])
    with pytest.raises(UsageError, match="has 1 planes, expected 2"):
        learn_layout(nv12, [TrySample(64, 64, (64,), (6144,))], multi_buffer=True)


def test_duplicate_samples_are_dropped() -> None:
    r8 = lookup_format("R8")
    s = TrySample(320, 180, (320,), (57600,))
    assert learn_layout(r8, [s, s, s]).samples == (s,)


def test_combine_rules_takes_lcm_and_most_rows() -> None:
    r8 = lookup_format("R8")

    def learned(rules: LayoutRules) -> LearnedLayout:
        return LearnedLayout(r8, False, rules, (), ())

    combined = combine_rules(
        [
            learned(LayoutRules(pitch_align=16, height_align=2)),
            learned(LayoutRules(pitch_align=64, extra_rows=3)),
            learned(LayoutRules(pitch_align=1, height_align=16, extra_rows=1)),
        ]
    )
    assert combined == LayoutRules(pitch_align=64, height_align=16, extra_rows=3)
    assert combine_rules([]) == LayoutRules()


# --- the single-planar V4L2 layout --------------------------------------------------------------


def test_single_planar_offsets_of_nv12_and_yuv420() -> None:
    assert v4l2_single_planar_layout(lookup_format("NV12"), 480, 640) == (
        (0, 307200),
        (640, 640),
    )
    assert v4l2_single_planar_layout(lookup_format("YUV420"), 480, 640) == (
        (0, 307200, 384000),
        (640, 320, 320),
    )
    assert v4l2_single_planar_layout(lookup_format("YUYV"), 480, 1280) == ((0,), (1280,))


SINGLE_PLANAR_MULTIPLANE = [
    f.drm for f in V4L2_FORMATS.values() if not f.multi_planar and f.drm.planes > 1
]


@pytest.mark.parametrize("fmt", SINGLE_PLANAR_MULTIPLANE, ids=lambda f: f.name)
@pytest.mark.parametrize(("width", "height"), [(640, 480), (1920, 1080), (64, 4)])
def test_single_planar_layout_is_devalloc_layout_at_whole_chroma_sizes(
    fmt: PixelFormat, width: int, height: int
) -> None:
    lay = layout(fmt, width, height)
    offsets, pitches = v4l2_single_planar_layout(fmt, height, lay.planes[0].pitch)
    assert offsets == tuple(p.offset for p in lay.planes)
    assert pitches == tuple(p.pitch for p in lay.planes)


# --- planes and queues -> Constraints ------------------------------------------------------------

XR24, AR24, NV12 = fourcc_code("XR24"), fourcc_code("AR24"), fourcc_code("NV12")
UNKNOWN = fourcc_code("ZZZZ")
Y_TILED = 0x0100000000000002


def test_kms_usages_one_per_plane_type_with_the_union_of_pairs() -> None:
    planes = [
        ("overlay", [(NV12, LINEAR), (XR24, LINEAR)]),
        ("primary", [(XR24, LINEAR), (XR24, Y_TILED), (UNKNOWN, LINEAR)]),
        ("cursor", [(AR24, LINEAR)]),
        ("overlay", [(XR24, LINEAR), (AR24, LINEAR)]),
    ]
    usages, unmapped = kms_usages(
        "card", "drv", planes, max_width=4096, max_height=0, cursor_size=(64, 64)
    )
    assert [c.usage for c in usages] == ["primary", "overlay", "cursor"]
    primary, overlay, cursor = usages
    assert primary.pairs == ((XR24, LINEAR), (XR24, Y_TILED))
    assert overlay.pairs == ((NV12, LINEAR), (XR24, LINEAR), (AR24, LINEAR))
    assert "2 overlay planes" in overlay.description
    assert (primary.max_width, primary.max_height) == (4096, None)
    assert (cursor.max_width, cursor.max_height) == (64, 64)
    assert all(c.access == "read" and c.device == "card" for c in usages)
    assert unmapped == [UNKNOWN]


def test_kms_plane_without_known_formats_gives_no_usage() -> None:
    usages, unmapped = kms_usages(
        "card", "drv", [("primary", [(UNKNOWN, LINEAR)])], max_width=None, max_height=None
    )
    assert usages == []
    assert unmapped == [UNKNOWN]


def test_import_usage_is_every_known_format_linear_and_round_trips() -> None:
    c = import_usage("vgem", "vgem")
    assert c.label == "vgem:import"
    assert c.pairs == tuple((f.fourcc, LINEAR) for f in FORMATS.values())
    assert c.memory.contiguous is False
    assert Constraints.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_v4l2_usage_buffers_access_and_rules() -> None:
    nv12, yuyv = lookup_format("NV12"), lookup_format("YUYV")
    r8 = lookup_format("R8")
    learned = [LearnedLayout(r8, False, LayoutRules(pitch_align=32), (), ())]

    def usage(formats: list[tuple[PixelFormat, bool]], name: str = "capture") -> Constraints:
        made = v4l2_usage(
            "cam", name, formats, learned, max_width=1920, max_height=None, description="d"
        )
        assert made is not None
        return made

    single = usage([(yuyv, False), (nv12, False)])
    assert single.buffers == "single"
    assert single.access == "write"
    assert single.layout.pitch_align == 32
    assert single.pairs == ((yuyv.fourcc, LINEAR), (nv12.fourcc, LINEAR))
    assert (single.max_width, single.max_height) == (1920, None)
    assert usage([(yuyv, False), (nv12, True)], "output").buffers == "per-plane"
    assert usage([(yuyv, False), (nv12, True)], "output").access == "read"
    both = usage([(nv12, False), (nv12, True)])
    assert both.buffers == "any"
    assert both.pairs == ((nv12.fourcc, LINEAR),)
    assert (
        v4l2_usage("cam", "capture", [], [], max_width=None, max_height=None, description="")
        is None
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vivid-000-vid-cap", "vivid-000-vid-cap"),
        ("HD Webcam: HD Webcam", "HD-Webcam-HD-Webcam"),
        ("  ", "video7"),
        (":", "video7"),
    ],
)
def test_device_id_is_a_constraints_name(text: str, expected: str) -> None:
    assert device_id(text, "video7") == expected
    Constraints(device_id(text, "video7"), "capture", ((XR24, LINEAR),))


# --- kernel log records --------------------------------------------------------------------------


def test_parse_kmsg_record() -> None:
    record = b"3,1234,5678901,-;contiguous chunk is too small 1048576/1843200\n"
    assert parse_record(record) == "contiguous chunk is too small 1048576/1843200"
    continued = b"6,1,2,-;first line\n SUBSYSTEM=drm\n DEVICE=c226:0\n"
    assert parse_record(continued) == "first line"
    assert parse_record(b"no header") == "no header"


def test_kernel_log_unavailable_is_quiet(tmp_path: Path) -> None:
    with KernelLog(str(tmp_path / "absent")) as log:
        assert not log.available
        assert log.new_lines() == []
        assert "cannot read" in log.reason


def test_kernel_log_reads_only_what_comes_after_it(tmp_path: Path) -> None:
    # A FIFO stands in for /dev/kmsg's one-record-per-read interface well enough to show that
    # the reader starts at the end and stops (non-blocking) when nothing is left.
    path = tmp_path / "log"
    os.mkfifo(path)
    writer = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        before = open_fds()
        log = KernelLog(str(path))
        assert not log.available  # a FIFO cannot seek: the log says so rather than lying
        assert "cannot seek" in log.reason
        log.close()
        assert open_fds() == before
    finally:
        os.close(writer)


# --- verify's input checks -----------------------------------------------------------------------


def test_verify_refuses_buffers_devices_cannot_import() -> None:
    lay = layout("YUYV", 64, 64)
    with MemfdHeap().allocate(lay.size or 0) as buf:
        with pytest.raises(UsageError, match="is not a dma-buf"):
            verify(lay, [buf], [])
        with pytest.raises(UsageError, match="frames must be a positive integer"):
            verify(lay, [buf], [], frames=0)
        with pytest.raises(UsageError, match="timeout must be positive"):
            verify(lay, [buf], [], timeout=0)
    with pytest.raises(UsageError, match="at least one buffer"):
        verify(lay, [], [])
    multi = layout("NV12", 64, 64, rules=LayoutRules(multi_buffer=True))
    with MemfdHeap().allocate(8192) as buf, pytest.raises(UsageError, match="needs 2"):
        verify(multi, [buf], [])


def test_verdict_text_and_json() -> None:
    ok = Verdict("vivid-000-vid-cap", "capture", True, frames=3, seconds=0.5, written=True)
    assert str(ok) == "vivid-000-vid-cap:capture: ok (3 frames in 0.50 s)"
    learned = Constraints("cam", "capture", ((XR24, LINEAR),))
    failed = Verdict(
        "cam",
        "capture",
        False,
        operation="VIDIOC_QBUF",
        errno=14,
        message="QBUF failed",
        learned="contiguous",
        constraints=learned,
    )
    assert str(failed) == "cam:capture: FAILED: QBUF failed [learned: contiguous]"
    data = json.loads(json.dumps(failed.to_json()))
    assert data["errno_name"] == "EFAULT"
    assert Constraints.from_json(data["constraints"]) == learned


# --- discovery on fake trees, and the CLI --------------------------------------------------------


def test_discovery_of_an_empty_machine(tmp_path: Path) -> None:
    found = discover(str(tmp_path / "dev"), str(tmp_path / "sys"))
    assert found == Discovery()
    assert found.constraints() == []
    with pytest.raises(UsageError, match="no discovered device named 'vgem'; found: none"):
        found.find("vgem")


def test_node_that_is_not_a_device_is_listed_with_the_reason(tmp_path: Path) -> None:
    dri = tmp_path / "dri"
    dri.mkdir()
    (dri / "card0").write_bytes(b"")
    (dri / "renderD128").write_bytes(b"")
    (tmp_path / "video0").write_bytes(b"")
    before = open_fds()
    drm = discover_drm(str(dri), str(tmp_path / "sys"))
    v4l2 = discover_v4l2(str(tmp_path), str(tmp_path / "sys"))
    assert open_fds() == before
    assert len(drm) == 2  # no sysfs: each node is its own device
    for info in drm:
        assert info.version is None
        assert not info.usages
        assert any("DRM_IOCTL_VERSION" in p or "ENOTTY" in p for p in info.problems), info
    assert [v.name for v in v4l2] == ["video0"]
    assert v4l2[0].caps is None
    assert "ENOTTY" in v4l2[0].problems[0]


def test_cli_devices_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["devices", "--dev", str(tmp_path), "--sysfs", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "DRM devices: none" in out
    assert "V4L2 devices: none" in out
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"drm": [], "v4l2": []}


def test_max_learned_align_bounds_the_fallback() -> None:
    # A 1 MiB pitch for a 3-pixel row: no alignment up to the maximum explains it.
    r8 = lookup_format("R8")
    learned = learn_layout(r8, [TrySample(3, 1, (1 << 20,), (1 << 20,))])
    assert learned.rules.pitch_align == MAX_LEARNED_ALIGN
    assert "no power-of-two alignment" in learned.note
