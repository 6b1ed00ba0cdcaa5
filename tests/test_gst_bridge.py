"""The GStreamer bridge: padded devalloc frames through appsrc ! videoconvert ! appsink, every
output pixel checked; GstBuffers back into devalloc Buffers (issue 15, part 3).

On the host the frames are memfds (GStreamer fd memory); tests/kernel/test_gst_kernel.py runs the
same checks on system-heap dma-bufs and adopts vivid's dma-bufs from v4l2src. GStreamer missing:
skip, unless DEVALLOC_STRICT=1 (CI installs it: scripts/setup.sh --dev).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from devalloc.buffer import Buffer
from devalloc.errors import UsageError
from devalloc.formats import Layout, LayoutRules, layout
from devalloc.heaps.memfd import MemfdHeap

try:
    from devalloc.gst import bridge
except ImportError as exc:
    if os.environ.get("DEVALLOC_STRICT") == "1":
        raise
    pytest.skip(f"GStreamer's Python bindings are not installed: {exc}", allow_module_level=True)

Gst = bridge.Gst

Allocate = Callable[[int], Buffer]

# Padding everywhere: rows wider than the image, rows past its height, a gap before each plane.
PADDED = LayoutRules(pitch_align=128, height_align=16, offset_align=4096, extra_rows=3)
PADDING_BYTE = 0xEE


def y_value(row: int, col: int) -> int:
    return (row * 7 + col * 3 + 1) % 251


def u_value(row: int, col: int) -> int:
    return (row * 5 + col * 11 + 40) % 253


def v_value(row: int, col: int) -> int:
    return (row * 13 + col * 2 + 90) % 241


def allocate_frame(lay: Layout, allocate: Allocate) -> list[Buffer]:
    sizes = lay.buffer_sizes
    buffers = [allocate(size) for size in sizes]
    for i, item in enumerate(buffers):
        item.attach_layout(lay, buffer=i)
    return buffers


def fill_nv12(buffers: Sequence[Buffer], lay: Layout) -> None:
    """Y and interleaved UV from the value functions; every other byte is PADDING_BYTE."""
    w, h = lay.width, lay.height
    y_plane, uv_plane = lay.planes
    for index, item in enumerate(buffers):
        data = bytearray([PADDING_BYTE]) * item.size
        if y_plane.buffer == index:
            for r in range(h):
                start = y_plane.offset + r * y_plane.pitch
                data[start : start + w] = bytes(y_value(r, c) for c in range(w))
        if uv_plane.buffer == index:
            for r in range((h + 1) // 2):
                start = uv_plane.offset + r * uv_plane.pitch
                row = bytearray()
                for c in range((w + 1) // 2):
                    row += bytes((u_value(r, c), v_value(r, c)))
                data[start : start + len(row)] = row
        with item.cpu_access("w") as view:
            view[:] = data


def fill_bgrx(buffers: Sequence[Buffer], lay: Layout) -> None:
    """DRM XRGB8888 = GStreamer BGRx: bytes B, G, R, X per pixel."""
    (item,) = buffers
    (plane,) = lay.planes
    data = bytearray([PADDING_BYTE]) * item.size
    for r in range(lay.height):
        start = plane.offset + r * plane.pitch
        data[start : start + 4 * lay.width] = b"".join(
            bytes((u_value(r, c), v_value(r, c), y_value(r, c), 0x5A)) for c in range(lay.width)
        )
    with item.cpu_access("w") as view:
        view[:] = data


def convert(gst_buffer: Any, caps: str, out_format: str) -> tuple[bytes, Any]:
    """Push one buffer through videoconvert; the output's bytes and its GstVideoInfo."""
    pipeline = Gst.parse_launch(
        f"appsrc name=src caps={caps} format=time ! videoconvert"
        f" ! video/x-raw,format={out_format} ! appsink name=sink sync=false"
    )
    try:
        src, sink = pipeline.get_by_name("src"), pipeline.get_by_name("sink")
        assert pipeline.set_state(Gst.State.PLAYING) != Gst.StateChangeReturn.FAILURE
        assert src.emit("push-buffer", gst_buffer) == Gst.FlowReturn.OK
        src.emit("end-of-stream")
        sample = sink.emit("try-pull-sample", 10 * Gst.SECOND)
        assert sample is not None, "videoconvert produced no frame"
        out = sample.get_buffer()
        info = bridge.GstVideo.VideoInfo.new_from_caps(sample.get_caps())
        meta = bridge.GstVideo.buffer_get_video_meta(out)
        if meta is not None:  # a meta's strides and offsets win over the caps' defaults
            for i in range(meta.n_planes):
                info.stride[i], info.offset[i] = meta.stride[i], meta.offset[i]
        return out.extract_dup(0, out.get_size()), info
    finally:
        pipeline.set_state(Gst.State.NULL)


def check_i420(data: bytes, info: Any, w: int, h: int) -> None:
    stride, offset = list(info.stride), list(info.offset)
    for r in range(h):
        row = data[offset[0] + r * stride[0] : offset[0] + r * stride[0] + w]
        assert row == bytes(y_value(r, c) for c in range(w)), f"Y row {r}"
    for r in range((h + 1) // 2):
        for plane, value in ((1, u_value), (2, v_value)):
            start = offset[plane] + r * stride[plane]
            row = data[start : start + (w + 1) // 2]
            assert row == bytes(value(r, c) for c in range((w + 1) // 2)), f"plane {plane} row {r}"


def check_rgba(data: bytes, info: Any, w: int, h: int) -> None:
    stride, offset = info.stride[0], info.offset[0]
    for r in range(h):
        row = data[offset + r * stride : offset + r * stride + 4 * w]
        # R, G, B from the source's B, G, R; the source's x byte is undefined, so alpha is not
        # checked (videoconvert 1.22 copies it through).
        rgb = b"".join(row[4 * c : 4 * c + 3] for c in range(w))
        assert rgb == b"".join(
            bytes((y_value(r, c), v_value(r, c), u_value(r, c))) for c in range(w)
        ), f"row {r}"


def nv12_through_videoconvert(allocate: Allocate, rules: LayoutRules = PADDED) -> None:
    lay = layout("NV12", 100, 50, rules=rules)
    buffers = allocate_frame(lay, allocate)
    try:
        fill_nv12(buffers, lay)
        gst_buffer = bridge.to_gst_buffer(buffers, lay)
    finally:
        for item in buffers:
            item.close()
    # The GstBuffer owns duplicates: the devalloc buffers are closed before GStreamer reads.
    data, info = convert(gst_buffer, bridge.raw_caps(lay), "I420")
    check_i420(data, info, lay.width, lay.height)


def bgrx_through_videoconvert(allocate: Allocate) -> None:
    lay = layout("XRGB8888", 37, 21, rules=PADDED)
    buffers = allocate_frame(lay, allocate)
    with buffers[0]:
        fill_bgrx(buffers, lay)
        gst_buffer = bridge.to_gst_buffer(buffers[0])
    data, info = convert(gst_buffer, bridge.raw_caps(lay), "RGBA")
    check_rgba(data, info, lay.width, lay.height)


def round_trip(allocate: Allocate) -> None:
    """devalloc -> appsrc ! identity ! appsink -> devalloc: the same memory and layout."""
    lay = layout("NV12", 64, 30, rules=PADDED)
    buffers = allocate_frame(lay, allocate)
    fill_nv12(buffers, lay)
    with buffers[0] as original, original.cpu_access("r") as view:
        expected = bytes(view)
        gst_buffer = bridge.to_gst_buffer(buffers, lay)
    pipeline = Gst.parse_launch(
        f"appsrc name=src caps={bridge.raw_caps(lay)} ! identity ! appsink name=sink sync=false"
    )
    try:
        pipeline.set_state(Gst.State.PLAYING)
        pipeline.get_by_name("src").emit("push-buffer", gst_buffer)
        sample = pipeline.get_by_name("sink").emit("try-pull-sample", 10 * Gst.SECOND)
        assert sample is not None
        with bridge.from_gst_buffer(sample.get_buffer()) as frame:
            (adopted,) = frame.buffers
            assert [(p.offset, p.pitch, p.buffer) for p in frame.layout.planes] == [
                (p.offset, p.pitch, p.buffer) for p in lay.planes
            ]
            assert frame.layout.format == lay.format
            assert (frame.layout.width, frame.layout.height) == (lay.width, lay.height)
            with adopted.cpu_access("r") as view:
                assert bytes(view[: len(expected)]) == expected
            fd = adopted.fileno()
        assert adopted.closed
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(fd)
    finally:
        pipeline.set_state(Gst.State.NULL)


def _memfds() -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("/memfd:"):
                count += 1
        except OSError:
            pass
    return count


@pytest.fixture
def memfd_allocate() -> Iterator[Allocate]:
    heap = MemfdHeap()
    before = _memfds()
    yield heap.allocate
    # Every duplicate handed to GStreamer is closed once its GstBuffer is gone.
    import gc

    gc.collect()
    assert _memfds() == before


def test_nv12_padded_through_videoconvert(memfd_allocate: Allocate) -> None:
    nv12_through_videoconvert(memfd_allocate)


def test_nv12_one_buffer_per_plane(memfd_allocate: Allocate) -> None:
    rules = LayoutRules(pitch_align=64, height_align=4, multi_buffer=True, size_align=4096)
    nv12_through_videoconvert(memfd_allocate, rules)


def test_bgrx_padded_through_videoconvert(memfd_allocate: Allocate) -> None:
    bgrx_through_videoconvert(memfd_allocate)


def test_round_trip_back_to_devalloc(memfd_allocate: Allocate) -> None:
    round_trip(memfd_allocate)


def test_system_memory_is_not_adopted() -> None:
    gst_buffer = Gst.Buffer.new_wrapped(bytes(64 * 48 * 3 // 2))
    caps = Gst.Caps.from_string("video/x-raw,format=NV12,width=64,height=48")
    with pytest.raises(UsageError, match="not a dma-buf or an fd"):
        bridge.from_gst_buffer(gst_buffer, caps)
    with pytest.raises(UsageError, match="no GstVideoMeta: give its caps"):
        bridge.from_gst_buffer(gst_buffer)


def test_wrong_frames_are_usage_errors(memfd_allocate: Allocate) -> None:
    lay = layout("NV12", 64, 48)
    with memfd_allocate(lay.buffer_sizes[0] // 2) as small:
        with pytest.raises(UsageError, match="the layout needs"):
            bridge.to_gst_buffer(small, lay)
        with pytest.raises(UsageError, match="needs the frame's Layout"):
            bridge.to_gst_buffer(small)
        with pytest.raises(UsageError, match="has 1 buffers, not 2"):
            bridge.to_gst_buffer([small, small], lay)
    nv15 = layout("NV15", 64, 48)
    with (
        memfd_allocate(nv15.buffer_sizes[0]) as item,
        pytest.raises(UsageError, match="no raw-caps name for NV15"),
    ):
        bridge.to_gst_buffer(item, nv15)


def test_plan_caps_are_caps_gstreamer_reads() -> None:
    from devalloc.constraints import Constraints
    from devalloc.formats import fourcc_code
    from devalloc.gst import constraints_from_caps
    from devalloc.negotiate import negotiate

    pairs = ((fourcc_code("NV12"), 0x0100000000000002), (fourcc_code("XR24"), 0))
    cam = Constraints("cam", "capture", pairs)
    for formats in (["NV12"], ["XRGB8888"], ["R8"]):
        cam_r8 = Constraints("cam", "capture", (*pairs, (fourcc_code("R8"), 0)))
        plan = negotiate([cam_r8 if formats == ["R8"] else cam], 64, 48, formats)
        for text in plan.gst_caps.values():
            if text is None:
                continue
            caps = Gst.Caps.from_string(text)
            assert caps is not None, text
            # GStreamer's own serialisation reads back to the plan's pair.
            back = constraints_from_caps(caps.to_string(), "gst")
            assert back.pairs == ((plan.format.fourcc, plan.modifier.value),)
