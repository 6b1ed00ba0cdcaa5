"""Codecs on the full kernel: vicodec's stateful FWHT encoder and decoder, and visl, fed dma-bufs.

The round trip: YUV420 frames drawn by the CPU in system-heap dma-bufs (negotiated from the
encoder's discovered constraints) go to ``stateful-encoder``'s OUTPUT queue; its CAPTURE queue
writes FWHT frames into a second set of dma-bufs, which ``stateful-decoder`` imports on its
OUTPUT queue as they are (the same dma-bufs on two devices); the decoder learns the stream's
format from the FWHT header (V4L2_EVENT_SOURCE_CHANGE) and writes NV12 frames into a third set
(negotiated from the decoder's discovered constraints). The decoded pixels are compared with the
drawn ones.

Error bound: FWHT is lossy (an 8x8 Walsh-Hadamard transform whose coefficients are shifted right
by 2..10 bits and dropped when within the quantizer ``qp``, 20 by default). A flat 8x8 block is
coded intra with its DC coefficient only, which survives unless the value is within 1 of 128, so
the flat half of each test frame must come back exactly. The smooth ramp in the other half loses
its small AC coefficients and P-frame deltas: the error there is measured, printed and bounded
by :data:`RAMP_MAX_ERROR`.

visl is a stateless decoder that does not decode: it fills each CAPTURE buffer with a test
pattern and debug text. Without the request API (not used here: its codec controls would travel
in a media request per buffer) it still runs one job per OUTPUT buffer, which shows both of its
(multi-planar) queues importing dma-bufs.

Frames per second of the codec loops are printed as ``BENCH-JSON:`` lines (run pytest with -s).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from devalloc.buffer import Buffer
from devalloc.constraints import load_constraints
from devalloc.devices.discover import V4l2Info, discover_v4l2
from devalloc.errors import ClosedResourceError, KernelError, NoPlanError, UsageError
from devalloc.formats import DRM_FORMAT_MOD_LINEAR, LayoutRules, lookup_format
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.negotiate import negotiate
from devalloc.uapi.videodev2 import V4l2BufFlag, V4l2BufType, V4l2EventType, V4l2FmtFlag
from devalloc.v4l2.m2m import M2mSession, v4l2_node_by_name, v4l2_nodes_by_name

from ._pixels import codec_frame, diff_stats, nv12_to_planes, yuv420_planes

pytestmark = [pytest.mark.kernel, pytest.mark.needs("vicodec", "system_heap")]

W, H = 640, 480
FRAMES = 12  # more than vicodec's default GOP size (10), so a second I-frame comes
SLOTS = 4
GOP = 10  # vicodec-core.c: V4L2_CID_MPEG_VIDEO_GOP_SIZE defaults to 10
#: ``sizeof(struct fwht_cframe_hdr)``: vicodec adds it to the worst-case FWHT frame size.
FWHT_HEADER = 44
#: Largest absolute and mean error allowed in the ramp half of a frame. The ramp rises by at most
#: 1 level every 4 pixels: an 8x8 block spans at most 3 levels, and an intra block whose AC
#: coefficients are all quantized away decodes to its mean, at most 2 off. FWHT is deterministic
#: and so are the frames: measured on Linux 6.12.117, max 2 and mean 0.53 to 0.58 in every plane
#: of all 12 frames (P-frames included).
RAMP_MAX_ERROR = 2
RAMP_MAX_MEAN = 0.75

ENCODER, DECODER, STATELESS = "stateful-encoder", "stateful-decoder", "stateless-decoder"
NV12_SIZE = W * H * 3 // 2


def bench(record: dict[str, object]) -> None:
    """Print one benchmark record for the lead to collect (the VM's checkout is read-only)."""
    line = json.dumps({"bench": "fullkernel-loops", "size": f"{W}x{H}", **record}, sort_keys=True)
    print(f"BENCH-JSON: {line}")


@pytest.fixture(scope="module")
def v4l2_infos() -> dict[str, V4l2Info]:
    return {info.name: info for info in discover_v4l2()}


@pytest.fixture
def heap() -> Iterator[DmaHeap]:
    with DmaHeap("/dev/dma_heap/system") as h:
        yield h


def allocate(stack: contextlib.ExitStack, heap: DmaHeap, size: int, count: int) -> list[Buffer]:
    return [stack.enter_context(heap.allocate(size)) for _ in range(count)]


def write(buf: Buffer, data: bytes) -> None:
    with buf.cpu_access("w") as view:
        view[: len(data)] = data


def read(buf: Buffer, size: int) -> bytes:
    with buf.cpu_access("r") as view:
        return bytes(view[:size])


# --- nodes, formats, constraints ------------------------------------------------------------------


def test_vicodec_nodes_are_single_planar_mem_to_mem_devices() -> None:
    nodes = v4l2_nodes_by_name()
    for name in (ENCODER, DECODER, STATELESS):
        assert name in nodes, f"vicodec node {name} is missing: {sorted(nodes)}"
        with M2mSession(nodes[name]) as session:
            assert session.caps.driver == "vicodec"
            assert session.name == name
            assert not session.caps.is_multiplanar  # vicodec.multiplanar=0 by default
            assert session.types == {
                "output": V4l2BufType.VIDEO_OUTPUT,
                "capture": V4l2BufType.VIDEO_CAPTURE,
            }
        assert session.closed


def test_encoder_and_decoder_formats_mirror_each_other() -> None:
    with (
        M2mSession(v4l2_node_by_name(ENCODER)) as enc,
        M2mSession(v4l2_node_by_name(DECODER)) as dec,
    ):
        raw_in = [d.fourcc for d in enc.formats("output")]
        raw_out = [d.fourcc for d in dec.formats("capture")]
        (enc_fwht,) = enc.formats("capture")
        (dec_fwht,) = dec.formats("output")
    assert raw_in == raw_out
    assert raw_in[:4] == ["YU12", "YV12", "422P", "NV12"]
    assert len(raw_in) == 28
    assert enc_fwht.fourcc == dec_fwht.fourcc == "FWHT"
    assert enc_fwht.compressed
    assert dec_fwht.compressed
    # vicodec-core.c enum_fmt: only the stateful decoder's bitstream is flagged as a stream whose
    # resolution may change and that may be cut anywhere.
    stream_flags = V4l2FmtFlag.DYN_RESOLUTION | V4l2FmtFlag.CONTINUOUS_BYTESTREAM
    assert dec_fwht.flags & stream_flags == stream_flags
    assert not enc_fwht.flags & stream_flags


def test_vicodec_constraints_are_learned_from_both_queues(
    v4l2_infos: dict[str, V4l2Info],
) -> None:
    enc, dec = v4l2_infos[ENCODER], v4l2_infos[DECODER]
    raw_in, raw_out = enc.usage("output"), dec.usage("capture")
    assert (raw_in.access, raw_out.access) == ("read", "write")
    # The bitstream queues have no DRM format: they are listed, not turned into constraints.
    for info, usage in ((enc, "capture"), (dec, "output")):
        queue = info.queue(usage)
        assert [f.v4l2 for f in queue.formats] == ["FWHT"]
        assert queue.formats[0].reason.startswith("compressed")
        assert queue.dmabuf is True
        with pytest.raises(UsageError, match="has no usage"):
            info.usage(usage)
    # Both raw queues offer the same 24 formats with a DRM twin (HSV3/HSV4, RGB4/BGR4 have none).
    assert raw_in.pairs == raw_out.pairs
    assert len(raw_in.pairs) == 24
    for c in (raw_in, raw_out):
        assert c.layout.pitch_align == 1  # vicodec: bytesperline = width * bytesperline_mult
        assert (c.layout.height_align, c.layout.extra_rows) == (1, 0)
        assert (c.max_width, c.max_height) == (4096, 2160)  # MAX_WIDTH, MAX_HEIGHT
        assert c.buffers == "single"
    # The bundled profile agrees with the live device on everything it states.
    profile = {c.usage: c for c in load_constraints("vicodec")}
    assert set(profile["encoder-input"].pairs) == set(raw_in.pairs)
    assert set(profile["decoder-output"].pairs) == set(raw_out.pairs)
    for stated in profile.values():
        assert (stated.max_width, stated.max_height) == (4096, 2160)
        assert stated.layout.pitch_align == 1
        assert stated.buffers == "single"


def test_try_fmt_and_g_fmt_match_the_negotiated_layouts(v4l2_infos: dict[str, V4l2Info]) -> None:
    raw_in = v4l2_infos[ENCODER].usage("output")
    with (
        M2mSession(v4l2_node_by_name(ENCODER)) as enc,
        M2mSession(v4l2_node_by_name(DECODER)) as dec,
    ):
        for fourcc, name in (("YU12", "YUV420"), ("NV12", "NV12"), ("YUYV", "YUYV")):
            plan = negotiate([raw_in], W, H, [name])
            got = enc.try_format("output", fourcc, W, H)
            assert (got.fourcc, got.width, got.height) == (fourcc, W, H)
            assert got.planes[0].bytesperline == plan.layout.planes[0].pitch
            assert got.sizeimage == plan.layout.size
        # vicodec codes sizes as vic_round_dim(): the size divided by the chroma subsampling,
        # rounded up to 8, times the subsampling; for 4:2:0 multiples of 16. The smallest frame is
        # MIN_WIDTH x MIN_HEIGHT = 640x360, coded 640x368; 1920x1080 is coded 1920x1088.
        small = enc.try_format("output", "YU12", 100, 100)
        assert (small.width, small.height) == (640, 368)
        full_hd = enc.try_format("output", "YU12", 1920, 1080)
        assert (full_hd.width, full_hd.height, full_hd.sizeimage) == (
            1920,
            1088,
            1920 * 1088 * 3 // 2,
        )
        print(f"discovery learned height_align {raw_in.layout.height_align} for the encoder input")
        # A plan without row alignment is refuted by the device; one with 16-row alignment holds
        # the coded rows and is taken.
        unaligned = negotiate([replace(raw_in, layout=LayoutRules())], 1920, 1080, ["YUV420"])
        with pytest.raises(NoPlanError, match="1920x1088, more than the 1080 rows"):
            enc.set_format_for_plan("output", unaligned)
        aligned = replace(raw_in, layout=LayoutRules(height_align=16))
        plan = negotiate([aligned], 1920, 1080, ["YUV420"])
        got = enc.set_format_for_plan("output", plan)
        assert (got.height, got.sizeimage) == (1088, plan.size)
        # After S_FMT on the encoder's OUTPUT, G_FMT on its CAPTURE gives the bitstream buffer
        # size: the worst case, 4 bytes per pixel plus the frame header, as on the decoder.
        enc.set_format("output", "YU12", W, H)
        fwht = enc.get_format("capture")
        assert fwht.fourcc == "FWHT"
        assert fwht.sizeimage == W * H * 4 + FWHT_HEADER
        assert dec.try_format("output", "FWHT", W, H).sizeimage == fwht.sizeimage


# --- the round trip -------------------------------------------------------------------------------


def test_fwht_round_trip_through_dma_bufs_on_both_queues_of_both_devices(
    heap: DmaHeap, v4l2_infos: dict[str, V4l2Info]
) -> None:
    raw_in = v4l2_infos[ENCODER].usage("output")
    raw_out = v4l2_infos[DECODER].usage("capture")
    src_plan = negotiate([raw_in], W, H, ["YUV420"], cpu_access="w")
    dst_plan = negotiate([raw_out], W, H, ["NV12"], cpu_access="r")
    assert (src_plan.size, dst_plan.size) == (NV12_SIZE, NV12_SIZE)
    frames = [codec_frame(W, H, k) for k in range(FRAMES)]
    encode_s = decode_s = 0.0
    sizes: list[int] = []
    keyframes: list[bool] = []
    worst_ramp = 0
    with contextlib.ExitStack() as stack:
        raw = allocate(stack, heap, src_plan.size or 0, SLOTS)
        pictures = allocate(stack, heap, dst_plan.size or 0, SLOTS)
        enc = stack.enter_context(M2mSession(v4l2_node_by_name(ENCODER)))
        dec = stack.enter_context(M2mSession(v4l2_node_by_name(DECODER)))
        enc.set_format_for_plan("output", src_plan)
        fwht = enc.get_format("capture")
        bitstream = allocate(stack, heap, fwht.sizeimage, SLOTS)
        assert dec.set_format("output", "FWHT", W, H).sizeimage == fwht.sizeimage
        # Before any stream the decoder's CAPTURE format is its default, 1280x720.
        default = dec.get_format("capture")
        assert (default.width, default.height) == (1280, 720)

        enc.attach("output", raw)
        enc.attach("capture", bitstream)
        enc.start()
        dec.subscribe(V4l2EventType.SOURCE_CHANGE)
        dec_in = dec.attach("output", bitstream)  # the encoder's CAPTURE dma-bufs, as they are

        def encode(k: int) -> int:
            nonlocal encode_s
            slot = k % SLOTS
            write(raw[slot], frames[k])
            started = time.monotonic()
            job = enc.run_job(slot, slot, timeout=10)
            encode_s += time.monotonic() - started
            assert (job.output.index, job.capture.index) == (slot, slot)
            assert not job.capture.error
            (size,) = job.capture.bytesused
            assert 0 < size <= fwht.sizeimage
            sizes.append(size)
            return size

        # The stateful-decoder dance: bitstream first, the stream's format from the event.
        dec_in.queue(0, encode(0))
        dec.start("output")
        need = dec.wait_source_change(timeout=10)
        # vicodec picks the first raw format with the header's subsampling (4:2:0, 3 planes).
        assert (need.fourcc, need.width, need.height) == ("YU12", W, H)
        dec.unsubscribe(V4l2EventType.SOURCE_CHANGE)
        got = dec.set_format_for_plan("capture", dst_plan)  # NV12: the same subsampling
        assert (got.fourcc, got.sizeimage) == ("NV12", NV12_SIZE)
        dec_out = dec.attach("capture", pictures)
        for slot in range(SLOTS):
            dec_out.queue(slot)
        started = time.monotonic()
        dec.start("capture")

        for k in range(FRAMES):
            slot = k % SLOTS
            if k:
                dec_in.queue(slot, encode(k))
                started = time.monotonic()
            picture = dec_out.dequeue(timeout=10)
            done = dec_in.dequeue(timeout=10)
            decode_s += time.monotonic() - started
            assert done.index == slot
            assert not picture.error
            assert picture.bytesused == (NV12_SIZE,)
            assert picture.sequence == k
            keyframes.append(bool(picture.flags & V4l2BufFlag.KEYFRAME))
            assert bool(picture.flags & (V4l2BufFlag.KEYFRAME | V4l2BufFlag.PFRAME))
            y, u, v = nv12_to_planes(read(pictures[picture.index], NV12_SIZE), W, H)
            y0, u0, v0 = yuv420_planes(frames[k], W, H)
            for name, out, ref, width in (
                ("Y", y, y0, W),
                ("U", u, u0, W // 2),
                ("V", v, v0, W // 2),
            ):
                flat = len(ref) // 2  # the top half: whole 8x8 blocks in every plane
                changed = diff_stats(out[:flat], ref[:flat])
                assert out[:flat] == ref[:flat], f"frame {k} plane {name}: flat blocks: {changed}"
                ramp = diff_stats(out[flat:], ref[flat:])
                print(f"frame {k:2d} {name}: ramp error max {ramp.max} mean {ramp.mean:.3f}")
                worst_ramp = max(worst_ramp, ramp.max)
                assert ramp.max <= RAMP_MAX_ERROR, f"frame {k} plane {name} ({width} wide): {ramp}"
                assert ramp.mean <= RAMP_MAX_MEAN, f"frame {k} plane {name}: {ramp}"
            dec_out.queue(picture.index)

        # Drain both: STOP, then a buffer flagged LAST, then DQBUF answers EPIPE.
        last = enc.drain("encoder", timeout=10)[-1]
        assert last.flags & V4l2BufFlag.LAST
        with pytest.raises(KernelError) as info:
            enc.queue("capture").dequeue(timeout=2)
        assert info.value.errno == errno.EPIPE
        last = dec.drain("decoder", timeout=10)[-1]
        assert last.flags & V4l2BufFlag.LAST

    print(f"FWHT frame sizes (bytes): {sizes}; keyframes: {keyframes}")
    assert keyframes[0]
    assert keyframes[GOP]
    assert not any(keyframes[1:GOP])
    assert len(set(sizes)) > 1
    print(f"worst ramp error {worst_ramp} (bound {RAMP_MAX_ERROR})")
    bench({"loop": "vicodec-encode", "fps": round(FRAMES / encode_s, 2), "frames": FRAMES})
    bench({"loop": "vicodec-decode", "fps": round(FRAMES / decode_s, 2), "frames": FRAMES})
    bench(
        {
            "loop": "vicodec-encode+decode",
            "fps": round(FRAMES / (encode_s + decode_s), 2),
            "frames": FRAMES,
        }
    )


# --- the session's error paths --------------------------------------------------------------------


def test_a_buffer_smaller_than_sizeimage_is_refused_before_the_kernel(heap: DmaHeap) -> None:
    with M2mSession(v4l2_node_by_name(ENCODER)) as enc:
        fmt = enc.set_format("output", "YU12", W, H)
        with heap.allocate(fmt.sizeimage - 4096) as short, heap.allocate(fmt.sizeimage) as ok:
            with pytest.raises(UsageError, match=f"sizeimage is {fmt.sizeimage}"):
                enc.attach("output", [ok, short])
            queue = enc.attach("output", [ok])  # nothing was left attached
            assert queue.count == 1
            queue.queue(0)
            with pytest.raises(UsageError, match="already queued"):
                queue.queue(0)
            with pytest.raises(UsageError, match=r"slots 0\.\.0"):
                queue.queue(1)
            with pytest.raises(UsageError, match="already has buffers"):
                enc.attach("output", [ok])
    with pytest.raises(ClosedResourceError):
        enc.attach("output", [])


def test_a_payload_longer_than_the_buffer_is_refused_by_the_kernel(heap: DmaHeap) -> None:
    with M2mSession(v4l2_node_by_name(DECODER)) as dec:
        fmt = dec.set_format("output", "FWHT", W, H)
        with heap.allocate(fmt.sizeimage) as buf:
            queue = dec.attach("output", [buf])
            with pytest.raises(KernelError) as info:
                queue.queue(0, bytesused=buf.size + 1)
            assert info.value.errno == errno.EINVAL
            assert queue.queued == frozenset()
            dec.detach("output")
            assert dec.attach("output", [buf]).count == 1  # the slots were freed


@pytest.mark.needs("vivid")
def test_a_node_that_is_not_mem_to_mem_is_refused() -> None:
    with pytest.raises(UsageError, match="not a mem-to-mem device"):
        M2mSession(v4l2_node_by_name("vivid-000-vid-cap"))


# --- visl -----------------------------------------------------------------------------------------

VISL_CODED = ["SFWH", "MG2S", "VP8F", "VP9F", "S264", "S265", "AV1F"]


@pytest.mark.needs("visl")
def test_visl_offers_bitstreams_in_and_yuv_out(v4l2_infos: dict[str, V4l2Info]) -> None:
    info = v4l2_infos["visl"]
    assert info.caps is not None
    assert info.caps.is_multiplanar
    out_q = info.queue("output")
    assert [f.v4l2 for f in out_q.formats] == VISL_CODED
    assert all(f.drm is None and f.reason.startswith("compressed") for f in out_q.formats)
    capture = info.usage("capture")
    assert [f.v4l2 for f in info.queue("capture").formats] == ["NV12", "YU12"]
    linear = DRM_FORMAT_MOD_LINEAR
    assert capture.pairs == (
        (lookup_format("NV12").fourcc, linear),
        (lookup_format("YUV420").fourcc, linear),
    )
    assert capture.access == "write"
    assert capture.buffers == "single"


@pytest.mark.needs("visl")
def test_visl_runs_jobs_with_dma_bufs_on_both_queues(
    heap: DmaHeap, v4l2_infos: dict[str, V4l2Info]
) -> None:
    plan = negotiate([v4l2_infos["visl"].usage("capture")], W, H, ["NV12"], cpu_access="r")
    jobs = 12
    with contextlib.ExitStack() as stack:
        session = stack.enter_context(M2mSession(v4l2_node_by_name("visl")))
        assert session.types["output"] == V4l2BufType.VIDEO_OUTPUT_MPLANE
        coded = session.set_format("output", "SFWH", W, H)
        assert coded.sizeimage == W * H * 3  # visl: max(256 KiB, width * height * 3)
        got = session.set_format_for_plan("capture", plan)
        assert (got.fourcc, len(got.planes)) == ("NV12", 1)
        bits = allocate(stack, heap, coded.sizeimage, 2)
        pictures = allocate(stack, heap, plan.size or 0, 2)
        session.attach("output", bits)
        session.attach("capture", pictures)
        session.start()
        started = time.monotonic()
        for k in range(jobs):
            job = session.run_job(k % 2, k % 2, bytesused=4096, timeout=10)
            assert job.output.bytesused == (4096,)
            assert job.capture.bytesused == (plan.size,)
            assert job.capture.sequence == k
        elapsed = time.monotonic() - started
        # The last row is below visl's text: its test pattern, 75% colour bars: 8 flat bars.
        data = read(pictures[(jobs - 1) % 2], plan.size or 0)
        last_row = data[W * (H - 1) : W * H]
        changes = sum(1 for a, b in itertools.pairwise(last_row) if a != b)
        assert len(set(last_row)) == 8, sorted(set(last_row))
        assert changes == 7
    bench({"loop": "visl-job", "fps": round(jobs / elapsed, 2), "frames": jobs})
