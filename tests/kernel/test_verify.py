"""Verified import on live devices: vivid capture/output, vgem, a KMS device where there is one.

Facts checked (Debian's stock 6.12 kernel):

- vivid with its default vmalloc allocator imports system-heap, udmabuf and vgem-exported
  dma-bufs and captures its test pattern into them (YUYV 640x480: pitch 1280, 614400 bytes);
  the same buffers then import into vgem.
- A buffer one page short of sizeimage fails QBUF with EINVAL; the verdict learns "size".
- With ``vivid.allocators=1`` vivid maps dma-bufs with vb2-dma-contig: a scattered buffer fails
  QBUF with EFAULT and the kernel logs "contiguous chunk is too small"; the verdict learns
  "contiguous". Those tests run only in a VM booted with that parameter::

      bash tests/vm/run.sh --append "vivid.allocators=1" -- -m kernel tests/kernel/test_verify.py

  and skip otherwise. Which buffers are scattered is physical luck for most allocations; the
  tests use only deterministic ones: a udmabuf that maps the same memfd pages twice (its second
  half cannot follow its first in physical memory) and a system-heap buffer of exactly 1 MiB,
  which the heap serves as one order-8 block (buffers below 1 MiB come as 64 KiB blocks and
  pages, contiguous only by luck).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable

import pytest

from devalloc.buffer import Buffer
from devalloc.devices.discover import Discovery, DrmInfo, V4l2Info, discover
from devalloc.devices.verify import capture_loop, verify
from devalloc.drm import DrmDevice
from devalloc.formats import Layout, LayoutRules, fourcc_code, layout
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.heaps.udmabuf import Memfd, UdmabufDevice
from devalloc.negotiate import negotiate

from ..conftest import require

pytestmark = pytest.mark.kernel

VIVID_CAPTURE = "vivid-000-vid-cap"
VIVID_OUTPUT = "vivid-000-vid-out"
ALLOCATORS = "/sys/module/vivid/parameters/allocators"
PAGE = 4096
MIB = 1 << 20
YUYV_VGA = layout("YUYV", 640, 480)
YUYV_720P = layout("YUYV", 1280, 720)


def _size(lay: Layout) -> int:
    assert lay.size is not None
    return lay.size


@pytest.fixture(scope="module")
def found() -> Discovery:
    return discover()


def _v4l2(found: Discovery, name: str) -> V4l2Info:
    infos = [d for d in found.v4l2 if d.name == name]
    require(len(infos) == 1, f"no {name} node (modprobe vivid)")
    return infos[0]


def _vgem(found: Discovery) -> DrmInfo:
    infos = [d for d in found.drm if d.driver == "vgem"]
    require(len(infos) == 1, "no vgem device (modprobe vgem)")
    return infos[0]


def _vivid_dma_contig() -> bool:
    try:
        with open(ALLOCATORS, encoding="ascii") as f:
            return f.read().strip().split(",")[0] == "1"
    except OSError:
        return False


needs_dma_contig = pytest.mark.skipif(
    not _vivid_dma_contig(),
    reason=(
        "boot option: needs vivid instance 0 on vb2-dma-contig: run the VM with --append "
        f'"vivid.allocators=1" ({ALLOCATORS} does not start with 1)'
    ),
)
default_allocator = pytest.mark.skipif(
    _vivid_dma_contig(),
    reason="boot option: needs vivid's default allocator; this VM has vivid.allocators=1",
)


def _pattern_written(buf: Buffer, size: int) -> bool:
    with buf.cpu_access("r") as view:
        data = bytes(view[:size])
    return data.count(0) != size


@default_allocator
def test_vivid_captures_into_heap_udmabuf_and_vgem_buffers_then_vgem_imports_them(
    found: Discovery, system_heap: DmaHeap, udmabuf: UdmabufDevice, vgem: DrmDevice
) -> None:
    cam, gpu = _v4l2(found, VIVID_CAPTURE), _vgem(found)
    size = _size(YUYV_VGA)
    with (
        system_heap.allocate(size) as heap_buf,
        Memfd(size) as memfd,
        udmabuf.create(memfd, 0, size) as udma_buf,
        vgem.create_dumb(640, 480, 16) as dumb,
        vgem.export(dumb) as vgem_buf,
    ):
        images = [heap_buf, udma_buf, vgem_buf]
        assert [b.info().exp_name for b in images] == ["system", "udmabuf", "drm"]
        verdicts = verify(YUYV_VGA, images, [cam, gpu], frames=3)
        assert [(v.label, v.ok) for v in verdicts] == [
            (f"{VIVID_CAPTURE}:capture", True),
            (f"{gpu.name}:import", True),
        ], [str(v) for v in verdicts]
        capture = verdicts[0]
        assert capture.frames == 3
        assert capture.written is True
        assert (capture.errno, capture.learned, capture.constraints) == (None, None, None)
        for buf in images:  # one frame went into each of the three
            assert _pattern_written(buf, size), buf.exporter


@default_allocator
def test_discovered_constraints_negotiate_a_plan_that_verifies(
    found: Discovery, system_heap: DmaHeap
) -> None:
    cam, gpu = _v4l2(found, VIVID_CAPTURE), _vgem(found)
    plan = negotiate([cam.usage("capture"), gpu.usage("import")], 640, 480, ["YUYV"])
    assert (plan.format.name, plan.layout.planes[0].pitch, plan.size) == ("YUYV", 1280, 614400)
    with system_heap.allocate(_size(plan.layout)) as buf:
        verdicts = verify(plan, [buf], [cam, gpu])
    assert all(v.ok for v in verdicts), [str(v) for v in verdicts]


def test_buffer_one_page_short_fails_qbuf_and_the_verdict_learns_size(
    found: Discovery, system_heap: DmaHeap
) -> None:
    cam = _v4l2(found, VIVID_CAPTURE)
    size = _size(YUYV_VGA)
    with system_heap.allocate(size - PAGE) as short:
        (verdict,) = verify(YUYV_VGA, [short], [cam])
    assert not verdict.ok
    assert (verdict.operation, verdict.errno, verdict.learned) == (
        "VIDIOC_QBUF",
        errno.EINVAL,
        "size",
    )
    assert f"{size - PAGE} bytes is shorter than the {size} bytes" in verdict.message
    assert verdict.constraints is not None
    assert verdict.constraints.layout.min_size == size
    assert verdict.constraints.pairs == cam.usage("capture").pairs
    # The failed QBUF left the device usable: the next verification captures.
    with system_heap.allocate(MIB if _vivid_dma_contig() else size) as good:
        (again,) = verify(YUYV_VGA, [good], [cam])
    assert again.ok, str(again)


def test_output_node_takes_the_buffer(found: Discovery, system_heap: DmaHeap) -> None:
    out = _v4l2(found, VIVID_OUTPUT)
    with system_heap.allocate(MIB) as buf:
        with buf.cpu_access("w") as view:
            view[:] = b"\x80" * MIB
        (verdict,) = verify(YUYV_VGA, [buf], [out], frames=2)
    assert verdict.ok, str(verdict)
    assert verdict.label == f"{VIVID_OUTPUT}:output"
    assert verdict.frames == 2
    assert verdict.written is None


def test_plan_the_queue_cannot_take_is_reported_without_reaching_qbuf(
    found: Discovery, system_heap: DmaHeap
) -> None:
    cam = _v4l2(found, VIVID_CAPTURE)
    tiled = layout("YUYV", 640, 480, "I915_X_TILED")
    # vivid's largest bytesperline for YUYV is 4 (MAX_ZOOM) x 4096 (MAX_WIDTH) x 2 bytes.
    too_wide = layout("YUYV", 640, 480, rules=LayoutRules(pitch_align=1 << 16))
    with system_heap.allocate(PAGE) as buf:
        (linear_only,) = verify(tiled, [buf], [(cam, "capture")])
        (clamped,) = verify(too_wide, [buf], [cam])
    assert not linear_only.ok
    assert "V4L2 buffers are linear" in linear_only.message
    assert linear_only.errno is None
    assert not clamped.ok
    assert "pitches [32768]" in clamped.message
    assert "the plan has pitches [65536]" in clamped.message
    assert clamped.errno is None


@default_allocator
def test_vivid_honours_a_wider_pitch_from_the_plan(found: Discovery, system_heap: DmaHeap) -> None:
    cam = _v4l2(found, VIVID_CAPTURE)
    padded = layout("YUYV", 640, 480, rules=LayoutRules(pitch_align=4096))
    assert padded.planes[0].pitch == 4096
    with system_heap.allocate(_size(padded)) as buf:
        (verdict,) = verify(padded, [buf], [cam])
        assert verdict.ok, str(verdict)
        with buf.cpu_access("r") as view:
            row = bytes(view[4096 * 240 : 4096 * 240 + 1280])
            gap = bytes(view[4096 * 240 + 1280 : 4096 * 241])
    assert len(set(row[0::2])) >= 4  # colour bars where the plan's row 240 starts
    assert gap.count(0) == len(gap)  # nothing written past the 1280 bytes of the row


@default_allocator
def test_capture_loop_rate(
    found: Discovery,
    system_heap: DmaHeap,
    record_testsuite_property: Callable[[str, object], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    cam = _v4l2(found, VIVID_CAPTURE)
    buffers = [system_heap.allocate(_size(YUYV_VGA)) for _ in range(3)]
    try:
        stats = capture_loop(cam, YUYV_VGA, buffers, seconds=3.0)
    finally:
        for buf in buffers:
            buf.close()
    record_testsuite_property("capture_fps_vivid_yuyv_640x480", round(stats.fps, 3))
    record_testsuite_property("capture_stats_vivid_yuyv_640x480", json.dumps(stats.to_json()))
    with capsys.disabled():
        print(
            f"\ncapture loop: vivid YUYV 640x480 into 3 system-heap dma-bufs: {stats.frames} "
            f"frames in {stats.seconds:.2f} s, {stats.fps:.2f} frames/s steady state, "
            f"first frame after {stats.first_frame:.3f} s, {stats.dropped} dropped"
        )
    assert stats.frames >= 2
    assert stats.errors == 0
    assert stats.fps > 0


# --- KMS (where the kernel has a KMS device: vkms on the full kernel) ---------------------------


def _kms(found: Discovery) -> DrmInfo:
    kms = [d for d in found.drm if d.kms]
    assert kms, "the kms capability is present but discovery found no KMS device"
    return kms[0]


@pytest.mark.needs("kms")
def test_addfb2_takes_a_linear_buffer_and_refuses_an_unlisted_modifier(found: Discovery) -> None:
    info = _kms(found)
    assert info.card is not None
    xr24 = layout("XRGB8888", 640, 480)
    x_tiled = layout("XRGB8888", 640, 480, "I915_X_TILED")
    with DrmDevice(info.card) as dev, dev.create_dumb(640, 480, 32) as dumb:
        assert dumb.layout.pitch == xr24.planes[0].pitch
        with dev.export(dumb) as buf:
            (ok,) = verify(xr24, [buf], [(info, "primary")])
            assert ok.ok, str(ok)
            assert "ADDFB2" in ok.message
            assert _size(x_tiled) <= buf.size
            (refused,) = verify(x_tiled, [buf], [(info, "primary")])
    assert not refused.ok
    assert refused.learned == "modifier"
    if info.addfb2_modifiers:
        assert (refused.operation, refused.errno) == ("DRM_IOCTL_MODE_ADDFB2", errno.EINVAL)
    assert refused.constraints == info.usage("primary")  # the pair was never listed


@pytest.mark.needs("kms")
def test_framebuffer_is_removed_when_closed(found: Discovery) -> None:
    info = _kms(found)
    assert info.card is not None
    with DrmDevice(info.card) as dev, dev.create_dumb(64, 64, 32) as dumb:
        xr24 = fourcc_code("XR24")
        fb = dev.add_framebuffer(64, 64, xr24, [dumb], [dumb.layout.pitch], [0], 0)
        assert fb.fb_id in dev.resources().fb_ids
        fb.close()
        fb.close()
        assert fb.fb_id not in dev.resources().fb_ids


# --- vivid on vb2-dma-contig (vivid.allocators=1) ------------------------------------------------


@needs_dma_contig
def test_contiguous_only_vivid_refuses_scattered_memory_and_the_verdict_learns_it(
    found: Discovery, udmabuf: UdmabufDevice, system_heap: DmaHeap
) -> None:
    cam = _v4l2(found, VIVID_CAPTURE)
    size = _size(YUYV_720P)  # 1843200 bytes
    half = size // 2
    assert half % PAGE == 0
    # The same memfd pages twice: physically discontiguous wherever the kernel put them.
    with Memfd(half) as memfd, udmabuf.create_list([(memfd, 0, half), (memfd, 0, half)]) as buf:
        assert buf.size == size
        (verdict,) = verify(YUYV_720P, [buf], [cam])
    assert not verdict.ok
    assert (verdict.operation, verdict.errno, verdict.learned) == (
        "VIDIOC_QBUF",
        errno.EFAULT,
        "contiguous",
    )
    assert any(
        "contiguous chunk is too small" in line and f"/{size}" in line
        for line in verdict.kernel_log
    ), verdict.kernel_log
    assert verdict.constraints is not None
    assert verdict.constraints.memory.contiguous
    assert verdict.constraints.memory.max_segments == 1
    # Re-negotiating with what was learned asks for contiguous memory.
    assert negotiate([verdict.constraints], 1280, 720, ["YUYV"]).memory.contiguous
    # The device is still usable: a buffer the heap serves as one 1 MiB block passes.
    with system_heap.allocate(MIB) as whole:
        (again,) = verify(YUYV_VGA, [whole], [cam])
    assert again.ok, str(again)
    assert again.written is True


@needs_dma_contig
def test_contiguous_only_vivid_takes_a_1mib_system_heap_buffer(
    found: Discovery, system_heap: DmaHeap
) -> None:
    cam = _v4l2(found, VIVID_CAPTURE)
    buffers = [system_heap.allocate(MIB) for _ in range(2)]
    try:
        (verdict,) = verify(YUYV_VGA, buffers, [cam], frames=3)
    finally:
        for buf in buffers:
            buf.close()
    assert verdict.ok, str(verdict)
    assert verdict.written is True
    assert os.path.exists(ALLOCATORS)
