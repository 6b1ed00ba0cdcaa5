"""V4L2 DMABUF streaming on vivid: S_FMT, REQBUFS, QBUF, STREAMON, DQBUF, STREAMOFF, REQBUFS(0).

vivid's capture node (default input: a webcam, test pattern 75% colour bars) fills dma-bufs from
the system heap, udmabuf and vgem; its output node consumes them. A buffer one page short of
sizeimage is refused by QBUF with EINVAL, and releasing the queue (REQBUFS 0) afterwards leaves
the device free for S_FMT (which is EBUSY while buffer slots exist). vivid grants at least two
slots, and its output keeps the newest buffer until another one is queued (for loopback).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from devalloc.buffer import Buffer
from devalloc.drm import DrmDevice
from devalloc.errors import (
    BusyError,
    ClosedResourceError,
    InvalidArgumentError,
    KernelError,
    TimedOutError,
    UsageError,
)
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.heaps.memfd import MemfdHeap
from devalloc.heaps.udmabuf import Memfd, UdmabufDevice
from devalloc.uapi.videodev2 import V4l2BufCap, V4l2BufType
from devalloc.v4l2 import (
    DmabufPlane,
    V4l2Device,
    V4l2ImageFormat,
    v4l2_node_name,
    v4l2_nodes_of_driver,
)

from ..conftest import require

pytestmark = pytest.mark.kernel

CAPTURE = V4l2BufType.VIDEO_CAPTURE
OUTPUT = V4l2BufType.VIDEO_OUTPUT
WIDTH, HEIGHT = 640, 480
#: YUYV 640x480: 2 bytes per pixel, no padding in vivid.
PITCH, SIZEIMAGE = 1280, 614400
PAGE = 4096
#: System-heap buffers are 1 MiB: the heap serves that as one order-8 block, which is physically
#: contiguous, so these tests also hold when vivid runs on vb2-dma-contig (vivid.allocators=1).
HEAP_BUFFER = 1 << 20
ALLOCATORS = "/sys/module/vivid/parameters/allocators"


def _vivid_dma_contig() -> bool:
    try:
        with open(ALLOCATORS, encoding="ascii") as f:
            return f.read().strip().split(",")[0] == "1"
    except OSError:
        return False


#: udmabuf and vgem buffers are scattered: vb2-dma-contig refuses them (tests/kernel/test_verify.py
#: checks that), so these captures need vivid's default vmalloc allocator.
default_allocator = pytest.mark.skipif(
    _vivid_dma_contig(),
    reason="boot option: needs vivid's default allocator; this VM has vivid.allocators=1",
)


def vivid_node(name: str) -> str:
    nodes = [n for n in v4l2_nodes_of_driver("vivid") if v4l2_node_name(n) == name]
    require(bool(nodes), f"no {name} node (modprobe vivid)")
    require(os.access(nodes[0], os.R_OK | os.W_OK), f"{nodes[0]} is not accessible")
    return nodes[0]


@pytest.fixture
def capture() -> Iterator[V4l2Device]:
    with V4l2Device(vivid_node("vivid-000-vid-cap")) as dev:
        yield dev


@pytest.fixture
def output() -> Iterator[V4l2Device]:
    with V4l2Device(vivid_node("vivid-000-vid-out")) as dev:
        yield dev


def set_yuyv(dev: V4l2Device, buf_type: V4l2BufType = CAPTURE) -> V4l2ImageFormat:
    fmt = dev.set_format(buf_type, "YUYV", WIDTH, HEIGHT)
    assert (fmt.fourcc, fmt.width, fmt.height) == ("YUYV", WIDTH, HEIGHT)
    assert fmt.planes[0].bytesperline == PITCH
    assert fmt.planes[0].sizeimage == SIZEIMAGE
    return fmt


def assert_test_pattern(buf: Buffer) -> None:
    """The frame is vivid's colour bars: not zeros, several luma levels across a middle row,
    and the last row written too (the whole frame, not only its top)."""
    with buf.cpu_access("r") as view:
        frame = bytes(view[:SIZEIMAGE])
    assert frame.count(0) != SIZEIMAGE, "the captured frame is all zeros"
    middle = frame[PITCH * (HEIGHT // 2) : PITCH * (HEIGHT // 2 + 1)]
    lumas = set(middle[0::2])  # YUYV: Y at even bytes
    assert len(lumas) >= 4, f"a row of colour bars has several luma levels, got {sorted(lumas)}"
    last = frame[PITCH * (HEIGHT - 1) :]
    assert last.count(0) != PITCH, "the last row was not written"


def capture_frames(dev: V4l2Device, buffers: list[Buffer], frames: int) -> list[int]:
    """Capture ``frames`` frames round-robin into ``buffers``; return the sequence numbers."""
    sequences: list[int] = []
    with dev.dmabuf_queue(CAPTURE, len(buffers)) as queue:
        assert queue.count >= len(buffers)  # vivid grants at least 2
        for i, buf in enumerate(buffers):
            queue.queue(i, [DmabufPlane(buf)])
        queue.start()
        assert queue.streaming
        for n in range(frames):
            frame = queue.dequeue(timeout=10)
            assert not frame.error
            assert frame.bytesused == (SIZEIMAGE,)
            assert_test_pattern(buffers[frame.index])
            sequences.append(frame.sequence)
            if n + len(buffers) < frames:
                queue.queue(frame.index, [DmabufPlane(buffers[frame.index])])
    assert not queue.streaming
    return sequences


def test_s_fmt_yuyv_640x480_gives_the_documented_pitch_and_size(capture: V4l2Device) -> None:
    set_yuyv(capture)
    assert capture.get_format(CAPTURE).planes[0].sizeimage == SIZEIMAGE


def test_capture_queue_imports_dma_bufs(capture: V4l2Device) -> None:
    caps = capture.buffer_capabilities(CAPTURE)
    assert caps & V4l2BufCap.SUPPORTS_DMABUF
    granted = capture.request_buffers(CAPTURE, 2)
    assert granted.count == 2
    assert granted.supports_dmabuf
    assert capture.request_buffers(CAPTURE, 0).count == 0


def test_capture_into_system_heap_buffers(capture: V4l2Device, system_heap: DmaHeap) -> None:
    set_yuyv(capture)
    buffers = [system_heap.allocate(HEAP_BUFFER) for _ in range(2)]
    try:
        sequences = capture_frames(capture, buffers, 4)
    finally:
        for buf in buffers:
            buf.close()
    assert sequences == sorted(sequences)
    # vivid numbers frames from its thread's clock: on a heavily loaded TCG host two buffers can be
    # filled in one tick and carry the same number (seen: [0, 0, 2, 4]); the stream still advances.
    assert sequences[-1] > sequences[0]


@default_allocator
def test_capture_into_udmabuf(capture: V4l2Device, udmabuf: UdmabufDevice) -> None:
    set_yuyv(capture)
    with Memfd(SIZEIMAGE) as memfd, udmabuf.create(memfd, 0, SIZEIMAGE) as buf:
        assert buf.info().exp_name == "udmabuf"
        capture_frames(capture, [buf], 2)


@default_allocator
def test_capture_into_vgem_exported_buffer(capture: V4l2Device, vgem: DrmDevice) -> None:
    set_yuyv(capture)
    with vgem.create_dumb(WIDTH, HEIGHT, 16) as dumb, vgem.export(dumb) as buf:
        assert dumb.layout.pitch == PITCH
        assert buf.size >= SIZEIMAGE
        capture_frames(capture, [buf], 2)


def test_one_page_short_buffer_is_refused_and_the_device_stays_usable(
    capture: V4l2Device, system_heap: DmaHeap
) -> None:
    set_yuyv(capture)
    with system_heap.allocate(SIZEIMAGE - PAGE) as short, system_heap.allocate(HEAP_BUFFER) as good:
        with capture.dmabuf_queue(CAPTURE, 1) as queue:
            with pytest.raises(InvalidArgumentError) as info:
                queue.queue(0, [DmabufPlane(short)])
            assert info.value.operation == "VIDIOC_QBUF"
            assert "610304 bytes" in str(info.value)
            # Slots exist: the format is locked until REQBUFS(0).
            with pytest.raises(BusyError):
                capture.set_format(CAPTURE, "YUYV", WIDTH, HEIGHT)
        with pytest.raises(ClosedResourceError):
            queue.queue(0, [DmabufPlane(good)])
        set_yuyv(capture)  # REQBUFS(0) ran: S_FMT works again
        capture_frames(capture, [good], 1)


def test_dequeue_fails_fast_when_nothing_can_arrive(
    capture: V4l2Device, system_heap: DmaHeap
) -> None:
    set_yuyv(capture)
    with capture.dmabuf_queue(CAPTURE, 1) as queue:
        with pytest.raises(InvalidArgumentError):  # not streaming
            queue.dequeue(timeout=10)
        queue.start()
        started = time.monotonic()
        with pytest.raises(KernelError) as info:  # streaming, but no buffer queued
            queue.dequeue(timeout=10)
        assert time.monotonic() - started < 5
        assert "POLLERR" in str(info.value)


def test_output_queue_returns_a_buffer_once_another_is_pending(
    output: V4l2Device, system_heap: DmaHeap
) -> None:
    """vivid's output keeps the newest buffer (for loopback): one queued buffer never comes back;
    with the same dma-buf in a second slot, the first slot does."""
    set_yuyv(output, OUTPUT)
    with system_heap.allocate(HEAP_BUFFER) as buf:
        with buf.cpu_access("w") as view:
            view[:SIZEIMAGE] = bytes([0x80]) * SIZEIMAGE
        with output.dmabuf_queue(OUTPUT, 2) as queue:
            image = DmabufPlane(buf, bytesused=SIZEIMAGE)
            queue.queue(0, [image])
            queue.start()
            with pytest.raises(TimedOutError):
                queue.dequeue(timeout=1)
            queue.queue(1, [image])
            frame = queue.dequeue(timeout=10)
            assert frame.index == 0
            assert not frame.error


def test_bad_planes_are_refused_before_the_kernel(
    capture: V4l2Device, system_heap: DmaHeap
) -> None:
    set_yuyv(capture)
    with (
        MemfdHeap().allocate(SIZEIMAGE) as memfd_buf,
        system_heap.allocate(HEAP_BUFFER) as buf,
        capture.dmabuf_queue(CAPTURE, 1) as queue,
    ):
        with pytest.raises(UsageError, match="not a dma-buf"):
            queue.queue(0, [DmabufPlane(memfd_buf)])
        with pytest.raises(UsageError, match="single-planar"):
            queue.queue(0, [DmabufPlane(buf), DmabufPlane(buf)])
        with pytest.raises(UsageError, match="no data_offset"):
            queue.queue(0, [DmabufPlane(buf, data_offset=PAGE)])
        queue.queue(0, [DmabufPlane(buf)])  # the slot is still free: nothing reached QBUF
