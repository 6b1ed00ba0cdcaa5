"""The copy path on the full kernel: vimc captures RGB24, vim2m converts it to RGB565 for vkms.

vimc's ``RGB/YUV Capture`` node captures RGB3 (V4L2 RGB24, DRM BGR888); vkms' planes scan out
ARGB8888, XRGB8888, XRGB16161616, ARGB16161616 and RGB565, so one buffer cannot serve both and
negotiation proposes a copy path. :func:`devalloc.v4l2.m2m.propose_converted_path` negotiates each
side together with vim2m's queues (OUTPUT: RGB565, BGR888, RGB888; CAPTURE: those and YUYV),
which picks RGB565 for the display side; then vimc captures into the first buffer set, vim2m
imports it on its OUTPUT queue and writes the second set imported on its CAPTURE queue, and the
pixels at the far end are checked against the captured ones.

vimc's default media pipeline does not stream: "Sensor A" sends MEDIA_BUS_FMT_RGB888_1X24 while
"Debayer A" expects Bayer (SRGGB8_1X8), and STREAMON on either capture node fails link
validation with EPIPE (the pipeline spans both: Sensor A feeds Debayer A and Raw Capture 0 over
immutable links). The ``vimc_rgb_pipeline`` fixture configures what ``media-ctl`` would: Sensor A
and Debayer A's sink to SRGGB8_1X8 640x480, Raw Capture 0 to the matching Bayer format (RGGB),
and puts the defaults back afterwards.

vim2m in Linux 6.12 writes RGB565 pixel pairs with the colour of the first pixel of each pair
(``copy_two_pixels()`` never advances its r/g/b pointers for RGB565 output): the far-end pixels
are compared exactly with that model (tests/kernel/_pixels.py) and, for the even pixels, with
the true RGB24 -> RGB565 conversion. Frames per second of the capture and converter loops are
printed as ``BENCH-JSON:`` lines (run pytest with -s).
"""

from __future__ import annotations

import contextlib
import errno
import json
import operator
import os
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from devalloc._fd import FdResource, ioctl, open_fd
from devalloc.buffer import Buffer
from devalloc.constraints import Constraints, load_constraints
from devalloc.devices.discover import Discovery, DrmInfo, discover
from devalloc.errors import KernelError, NoPlanError
from devalloc.formats import DRM_FORMAT_MOD_LINEAR, lookup_format
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.negotiate import NegotiationError, negotiate, propose_copy_path
from devalloc.uapi import videodev2 as uapi
from devalloc.uapi.videodev2 import V4l2BufType
from devalloc.v4l2 import DmabufPlane, V4l2Device
from devalloc.v4l2.m2m import (
    Converter,
    M2mSession,
    converter_misfits,
    find_converter,
    propose_converted_path,
    v4l2_node_by_name,
)

from ._pixels import diff_stats, rgb24_to_rgb565, vim2m_rgb24_to_rgb565

pytestmark = [pytest.mark.kernel, pytest.mark.needs("vimc", "vim2m", "system_heap")]

W, H = 640, 480
CAPTURE = V4l2BufType.VIDEO_CAPTURE
RGB_CAPTURE, RAW_CAPTURE = "RGB/YUV Capture", "Raw Capture 0"
#: vim2m.c: V4L2_CID_TRANS_TIME_MSEC, the simulated time per job (default_transtime, 40 ms).
TRANS_TIME = uapi.V4L2_CID_USER_BASE + 0x1000
CHECKED_FRAMES = 2
TIMED_FRAMES = 8
CONVERSIONS = 20
#: The 75% colour bars of the vimc sensor's test pattern, left to right, as RGB.
BARS = (
    (191, 191, 191),
    (191, 191, 0),
    (0, 191, 191),
    (0, 191, 0),
    (191, 0, 191),
    (191, 0, 0),
    (0, 0, 191),
    (0, 0, 0),
)


def bench(record: dict[str, object]) -> None:
    """Print one benchmark record for the lead to collect (the VM's checkout is read-only)."""
    line = json.dumps({"bench": "fullkernel-loops", "size": f"{W}x{H}", **record}, sort_keys=True)
    print(f"BENCH-JSON: {line}")


# --- vimc's media pipeline (what media-ctl -V would do) -------------------------------------------


def subdev_nodes(sysfs: str = "/sys") -> dict[str, str]:
    """/dev/v4l-subdev* by their sysfs names ("Sensor A", "Debayer A", "Scaler", ...)."""
    base = os.path.join(sysfs, "class", "video4linux")
    found: dict[str, str] = {}
    for entry in sorted(os.listdir(base)):
        if entry.startswith("v4l-subdev"):
            with open(os.path.join(base, entry, "name"), encoding="utf-8") as f:
                found.setdefault(f.read().strip(), os.path.join("/dev", entry))
    return found


def pad_format(
    entity: str, pad: int, fmt: uapi.v4l2_mbus_framefmt | None = None
) -> uapi.v4l2_mbus_framefmt:
    """VIDIOC_SUBDEV_G_FMT (``fmt`` None) or S_FMT on the ACTIVE format of ``entity``'s pad."""
    path = subdev_nodes()[entity]
    arg = uapi.v4l2_subdev_format(which=uapi.V4L2_SUBDEV_FORMAT_ACTIVE, pad=pad)
    if fmt is not None:
        arg.format = fmt
    request, name = (
        (uapi.VIDIOC_SUBDEV_G_FMT, "VIDIOC_SUBDEV_G_FMT")
        if fmt is None
        else (uapi.VIDIOC_SUBDEV_S_FMT, "VIDIOC_SUBDEV_S_FMT")
    )
    with FdResource(
        open_fd(path, os.O_RDWR, what=f"{entity} sub-device"), description=entity
    ) as node:
        ioctl(node.fileno(), request, arg, name=name, what=f"pad {pad} of {entity}", path=path)
    return uapi.v4l2_mbus_framefmt.from_buffer_copy(bytes(arg.format))


def bayer_format(code: int, width: int = W, height: int = H) -> uapi.v4l2_mbus_framefmt:
    return uapi.v4l2_mbus_framefmt(width=width, height=height, code=code, field=1)


@pytest.fixture
def vimc_rgb_pipeline() -> Iterator[None]:
    """Sensor A -> Debayer A -> Scaler -> RGB/YUV Capture set up to stream RGB24 640x480; the
    boot-time formats are put back afterwards, on every path."""
    saved = [
        (entity, pad, pad_format(entity, pad))
        for entity, pad in (("Sensor A", 0), ("Debayer A", 0))
    ]
    with V4l2Device(v4l2_node_by_name(RAW_CAPTURE)) as raw:
        raw_saved = raw.get_format(CAPTURE)
    try:
        for entity, pad, _ in saved:
            got = pad_format(entity, pad, bayer_format(uapi.MEDIA_BUS_FMT_SRGGB8_1X8))
            assert (got.code, got.width, got.height) == (uapi.MEDIA_BUS_FMT_SRGGB8_1X8, W, H)
        with V4l2Device(v4l2_node_by_name(RAW_CAPTURE)) as raw:
            assert raw.set_format(CAPTURE, "RGGB", W, H).fourcc == "RGGB"
        yield
    finally:
        for entity, pad, fmt in saved:
            pad_format(entity, pad, fmt)
        with V4l2Device(v4l2_node_by_name(RAW_CAPTURE)) as raw:
            raw.set_format(CAPTURE, raw_saved.pixelformat, raw_saved.width, raw_saved.height)


# --- shared fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def found() -> Discovery:
    return discover()


@pytest.fixture
def heap() -> Iterator[DmaHeap]:
    with DmaHeap("/dev/dma_heap/system") as h:
        yield h


def vimc_constraints(found: Discovery) -> Constraints:
    """vimc's capture queue as discovered, narrowed to the pipeline's bus format: the Scaler's
    source pad sends RGB888_1X24, which only the RGB3 (DRM BGR888) capture format matches;
    discovery asks the video node (TRY_FMT accepts BGR3 and BA24 too), not the media graph."""
    discovered = found.find("RGB/YUV-Capture").usage("capture")
    bgr888 = (lookup_format("BGR888").fourcc, DRM_FORMAT_MOD_LINEAR)
    assert bgr888 in discovered.pairs
    return replace(
        discovered,
        pairs=(bgr888,),
        description=discovered.description + "; narrowed to the media pipeline's RGB888_1X24",
    )


def vkms_constraints(found: Discovery) -> Constraints:
    return found.find("vkms").usage("primary")


def vim2m_converter(found: Discovery) -> Converter:
    info = found.find("vim2m")
    return Converter.from_usages(info.usages, "output", "capture", path=v4l2_node_by_name("vim2m"))


def read(buf: Buffer, size: int) -> bytes:
    with buf.cpu_access("r") as view:
        return bytes(view[:size])


# --- vimc -----------------------------------------------------------------------------------------


def test_vimc_default_pipeline_does_not_stream(heap: DmaHeap) -> None:
    sensor = pad_format("Sensor A", 0)
    debayer = pad_format("Debayer A", 0)
    assert sensor.code == uapi.MEDIA_BUS_FMT_RGB888_1X24
    assert debayer.code == uapi.MEDIA_BUS_FMT_SRGGB8_1X8
    with V4l2Device(v4l2_node_by_name(RGB_CAPTURE)) as cam:
        fmt = cam.get_format(CAPTURE)
        assert (fmt.fourcc, fmt.width, fmt.height) == ("RGB3", W, H)
        with heap.allocate(fmt.sizeimage) as buf, cam.dmabuf_queue(CAPTURE, 1) as queue:
            queue.queue(0, [DmabufPlane(buf)])
            with pytest.raises(KernelError) as info:
                queue.start()
            assert info.value.errno == errno.EPIPE
            assert not queue.streaming


def test_vimc_captures_colour_bars_once_the_pipeline_is_configured(
    vimc_rgb_pipeline: None, heap: DmaHeap
) -> None:
    with V4l2Device(v4l2_node_by_name(RGB_CAPTURE)) as cam, contextlib.ExitStack() as stack:
        fmt = cam.set_format(CAPTURE, "RGB3", W, H)
        assert fmt.planes[0].bytesperline == W * 3
        bufs = [stack.enter_context(heap.allocate(fmt.sizeimage)) for _ in range(2)]
        with cam.dmabuf_queue(CAPTURE, 2) as queue:
            for i, buf in enumerate(bufs):
                queue.queue(i, [DmabufPlane(buf)])
            queue.start()
            frame = queue.dequeue(timeout=20)
        assert frame.bytesused == (fmt.sizeimage,)
        data = read(bufs[frame.index], fmt.sizeimage)
    row = data[W * 3 * (H // 2) : W * 3 * (H // 2 + 1)]
    centres = [tuple(row[3 * x : 3 * x + 3]) for x in range(W // 16, W, W // 8)]
    assert centres == list(BARS)


# --- the plan -------------------------------------------------------------------------------------


@pytest.mark.needs("vkms")
def test_the_copy_path_plan_names_vim2m_as_the_converter(found: Discovery) -> None:
    vimc, vkms, vim2m = vimc_constraints(found), vkms_constraints(found), vim2m_converter(found)
    with pytest.raises(NegotiationError) as info:
        negotiate([vimc, vkms], W, H)
    copy = info.value.copy_path
    assert copy is not None
    assert copy.source_devices == (vimc.label,)
    assert copy.source.format.name == "BGR888"
    assert copy.destination.format.name in ("ARGB8888", "XRGB8888")  # vkms' favourites
    # The plain copy path does not know vim2m, and vim2m cannot write that destination.
    assert find_converter(copy.source, copy.destination, [vim2m]) is None
    (reason,) = converter_misfits(vim2m, copy.source, copy.destination)
    assert "vim2m:capture" in reason
    assert copy.destination.format.name in reason

    choice = propose_converted_path([vimc], [vkms], [vim2m], W, H)
    assert choice is not None
    assert choice.converter.name == "vim2m"
    assert (choice.source.format.name, choice.destination.format.name) == ("BGR888", "RGB565")
    assert choice.source_devices == (vimc.label,)
    assert choice.destination_devices == (vkms.label,)
    assert choice.source.layout.planes[0].pitch == W * 3
    assert choice.destination.layout.planes[0].pitch == W * 2
    assert choice.describe() == (
        "{RGB/YUV-Capture:capture} -> vim2m (BG24 -> RG16, 921600 -> 614400 bytes/frame) "
        "-> {vkms:primary}"
    )
    confirmed = find_converter(choice.source, choice.destination, [vim2m])
    assert confirmed is not None
    assert confirmed.converter is vim2m
    # The bundled profiles say the same as the live devices.
    profile_vim2m = Converter.from_usages(load_constraints("vim2m"), "input", "output")
    assert set(profile_vim2m.accepts.pairs) == set(vim2m.accepts.pairs)
    assert set(profile_vim2m.produces.pairs) == set(vim2m.produces.pairs)
    assert (vim2m.accepts.max_width, vim2m.accepts.max_height) == (640, 480)
    assert (profile_vim2m.accepts.max_width, profile_vim2m.accepts.max_height) == (640, 480)
    (profile_vimc,) = load_constraints("vimc:capture")
    assert set(profile_vimc.pairs) == set(found.find("RGB/YUV-Capture").usage("capture").pairs)
    (profile_vkms,) = load_constraints("vkms:primary")
    assert set(profile_vkms.pairs) == set(vkms.pairs)
    by_profile = propose_converted_path(
        load_constraints("vimc:capture"), [profile_vkms], [profile_vim2m], W, H
    )
    assert by_profile is not None
    assert by_profile.destination.format.name == "RGB565"


@pytest.mark.needs("vkms")
def test_a_plan_beyond_vim2ms_limits_is_refused(found: Discovery) -> None:
    vimc, vkms, vim2m = vimc_constraints(found), vkms_constraints(found), vim2m_converter(found)
    assert propose_converted_path([vimc], [vkms], [vim2m], 800, 600) is None
    copy = propose_copy_path([vimc, vkms], 800, 600)
    assert copy is not None
    reasons = " ".join(converter_misfits(vim2m, copy.source, copy.destination))
    assert "640" in reasons
    # The device itself clamps such a format: the session refutes the plan.
    big = negotiate([vimc], 800, 600)
    with (
        M2mSession(v4l2_node_by_name("vim2m")) as conv,
        pytest.raises(NoPlanError, match="640x480"),
    ):
        conv.set_format_for_plan("output", big)


# --- the copy, for real ---------------------------------------------------------------------------


@pytest.mark.needs("vkms")
def test_vimc_to_vim2m_to_rgb565_pixels(
    vimc_rgb_pipeline: None, heap: DmaHeap, found: Discovery
) -> None:
    choice = propose_converted_path(
        [vimc_constraints(found)], [vkms_constraints(found)], [vim2m_converter(found)], W, H
    )
    assert choice is not None
    src_size, dst_size = choice.source.size or 0, choice.destination.size or 0
    slots = 3
    rates: dict[str, float] = {}
    odd_differences = 0
    with contextlib.ExitStack() as stack:
        first = [stack.enter_context(heap.allocate(src_size)) for _ in range(slots)]
        second = [stack.enter_context(heap.allocate(dst_size)) for _ in range(slots)]
        cam = stack.enter_context(V4l2Device(v4l2_node_by_name(RGB_CAPTURE)))
        conv = stack.enter_context(M2mSession(choice.converter.path or ""))
        pitch = choice.source.layout.planes[0].pitch
        fmt = cam.set_format(CAPTURE, "RGB3", W, H, bytesperline=[pitch])
        assert (fmt.fourcc, fmt.planes[0].bytesperline, fmt.sizeimage) == ("RGB3", pitch, src_size)
        assert conv.set_format_for_plan("output", choice.source).fourcc == "RGB3"
        assert conv.set_format_for_plan("capture", choice.destination).fourcc == "RGBP"
        conv.attach("output", first)  # the capture buffers, on the converter's OUTPUT queue
        conv.attach("capture", second)
        conv.start()
        camq = stack.enter_context(cam.dmabuf_queue(CAPTURE, slots))
        for i, buf in enumerate(first):
            camq.queue(i, [DmabufPlane(buf)])
        camq.start()
        # Correctness: every byte at the far end, for the first frames.
        for k in range(CHECKED_FRAMES):
            frame = camq.dequeue(timeout=20)
            assert frame.bytesused == (src_size,)
            i, j = frame.index, k % slots
            job = conv.run_job(i, j, timeout=10)
            assert (job.output.index, job.capture.index) == (i, j)
            assert job.capture.bytesused == (dst_size,)
            rgb24, rgb565 = read(first[i], src_size), read(second[j], dst_size)
            model = vim2m_rgb24_to_rgb565(rgb24)
            assert rgb565 == model, f"frame {k}: {diff_stats(rgb565, model)}"
            exact = rgb24_to_rgb565(rgb24)
            assert rgb565[0::4] == exact[0::4]  # even pixels: the exact conversion
            assert rgb565[1::4] == exact[1::4]
            odd_got = memoryview(rgb565).cast("H")[1::2]
            odd_want = memoryview(exact).cast("H")[1::2]
            odd_differences += sum(map(operator.ne, odd_got, odd_want))
            bars = rgb565[W * 2 * (H // 2) : W * 2 * (H // 2 + 1)]
            centres = [bars[2 * x : 2 * x + 2] for x in range(W // 16, W, W // 8)]
            assert centres == [rgb24_to_rgb565(bytes(c)) for c in BARS]
            camq.queue(i, [DmabufPlane(first[i])])
        # Throughput, without the checks: capture alone, then capture and convert.
        for converting in (False, True):
            stamps: list[float] = []
            for k in range(TIMED_FRAMES):
                frame = camq.dequeue(timeout=20)
                if converting:
                    conv.run_job(frame.index, k % slots, timeout=10)
                stamps.append(time.monotonic())
                camq.queue(frame.index, [DmabufPlane(first[frame.index])])
            rates["vim2m" if converting else "vimc"] = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        camq.stop()
        # The converter alone, at the driver's simulated job time and at 1 ms.
        default_ms = conv.get_control(TRANS_TIME)
        for ms in (default_ms, 1):
            assert conv.set_control(TRANS_TIME, ms) == ms
            t = time.monotonic()
            for n in range(CONVERSIONS):
                conv.run_job(n % slots, n % slots, timeout=10)
            rates[f"{ms} ms"] = CONVERSIONS / (time.monotonic() - t)
    print(f"odd pixels unlike the exact conversion (vim2m repeats even ones): {odd_differences}")
    bench({"loop": "vimc-capture-rgb24", "fps": round(rates["vimc"], 2), "frames": TIMED_FRAMES})
    bench(
        {
            "loop": "vimc-capture+vim2m-convert",
            "fps": round(rates["vim2m"], 2),
            "frames": TIMED_FRAMES,
        }
    )
    for ms in (default_ms, 1):
        bench(
            {
                "loop": "vim2m-convert-rgb24-to-rgb565",
                "transtime_ms": ms,
                "fps": round(rates[f"{ms} ms"], 2),
                "frames": CONVERSIONS,
            }
        )
    assert default_ms == 40  # vim2m.default_transtime


@pytest.mark.needs("vkms", "kms")
def test_the_converted_buffer_becomes_a_vkms_framebuffer(heap: DmaHeap, found: Discovery) -> None:
    from devalloc.drm.kms import KmsDevice

    choice = propose_converted_path(
        [vimc_constraints(found)], [vkms_constraints(found)], [vim2m_converter(found)], W, H
    )
    assert choice is not None
    card = found.find("vkms")
    assert isinstance(card, DrmInfo)
    assert card.card is not None
    with (
        heap.allocate(choice.destination.size or 0) as buf,
        KmsDevice(card.card) as kms,
        kms.framebuffer([buf], choice.destination.layout) as fb,
    ):
        assert fb.fourcc == lookup_format("RGB565").fourcc
        out = kms.find_output(mode=f"{W}x{H}")
        with kms.mode_blob(out.mode) as mode:
            request = kms.request().modeset(out, mode).show(out.primary, fb, out.crtc)
            kms.commit(request, test_only=True, allow_modeset=True)
