"""KMS display for real on vkms: planes become display Constraints, a negotiated dma-heap buffer is
scanned out through an atomic commit, and the writeback connector captures the output into a
second negotiated buffer whose pixels are compared with what was drawn.

Example:
    $ bash tests/vm/run.sh --kernel full -- -m kernel tests/kernel/test_kms.py
    $ bash tests/vm/run.sh --kernel full --append vkms.enable_overlay=1 \\
          -- -m kernel tests/kernel/test_kms.py

Every test needs a KMS card (``@pytest.mark.needs("vkms", "kms")``): on the stock kernel (vgem
only) they skip with the capability reason. The overlay test needs ``vkms.enable_overlay=1`` on
the kernel command line and skips with that reason otherwise.

What vkms does (drivers/gpu/drm/vkms, Linux 6.12): each plane's pixels are read into 16 bits per
channel (an 8-bit value v becomes v * 257), blended in plane order over an opaque black
background, and the writeback converts back with rounding (v * 257 / 257 = v), so XRGB8888 in,
XRGB8888 out is exact in R, G and B; the X byte of the capture is 0xff. A writeback framebuffer
must have the CRTC mode's exact size (vkms_wb_atomic_check). Virtual-1 and Writeback-1 cannot
share the one CRTC (the encoder clone check refuses it), so the writeback tests drive the CRTC
from the writeback connector alone; and they wait, after each out-fence, for vkms to clean the
writeback job up (seen in debugfs), because of a race in vkms described at :func:`_capture`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Callable, Iterator

import pytest

from devalloc.buffer import Buffer
from devalloc.constraints import Constraints, CpuAccess
from devalloc.devices.discover import DrmInfo, discover_drm
from devalloc.drm import DrmPlane, Framebuffer
from devalloc.drm.kms import (
    AtomicRequest,
    KmsDevice,
    Mode,
    Output,
    PropertyBlob,
    compare_xrgb8888,
    draw_pattern,
    pattern_row,
    writeback_constraints,
)
from devalloc.errors import (
    InvalidArgumentError,
    NoDeviceError,
    NoPlanError,
    NoSpaceError,
    NotFoundError,
    UsageError,
)
from devalloc.formats import fourcc_code, layout
from devalloc.formats.modifier import DRM_FORMAT_MOD_LINEAR
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.negotiate import Plan, negotiate
from devalloc.uapi import drm as uapi_drm

from ..conftest import assert_fd_closed, capability

pytestmark = [pytest.mark.kernel, pytest.mark.needs("vkms", "kms")]

XR24 = fourcc_code("XR24")
AR24 = fourcc_code("AR24")
#: vkms's default mode (XRES_DEF x YRES_DEF in vkms_drv.h), marked preferred on Virtual-1.
DEFAULT_SIZE = (1024, 768)
OVERLAY_PARAM = "/sys/module/vkms/parameters/enable_overlay"
FENCE_TIMEOUT = 10.0


def _vkms_card() -> str:
    cards = [n for n in capability("vkms").nodes if os.path.basename(n).startswith("card")]
    assert len(cards) == 1, f"vkms nodes: {capability('vkms').nodes}"
    return cards[0]


def _vkms_info() -> DrmInfo:
    card = _vkms_card()
    found = [d for d in discover_drm() if d.card == card]
    assert len(found) == 1, f"discovery found {[d.card for d in discover_drm()]}, not {card}"
    return found[0]


def _overlay_enabled() -> bool:
    try:
        with open(OVERLAY_PARAM, encoding="ascii") as f:
            return f.read().strip() in ("Y", "1")
    except OSError:
        return False


@pytest.fixture
def kms() -> Iterator[KmsDevice]:
    with KmsDevice(_vkms_card()) as dev:
        yield dev


@pytest.fixture
def info() -> DrmInfo:
    return _vkms_info()


@pytest.fixture
def heap(system_heap: DmaHeap) -> DmaHeap:
    return system_heap


@contextlib.contextmanager
def lit(kms: KmsDevice, out: Output, cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """Disable the output when the block ends, whatever happened in it."""
    try:
        yield
    finally:
        if cleanup is not None:
            cleanup()
        else:
            kms.disable(out)
        (crtc,) = [c for c in kms.crtcs() if c.id == out.crtc.id]
        assert not crtc.active, "the CRTC was left on"
        assert crtc.mode is None, "the CRTC kept its mode"


def _plan(constraints: list[Constraints], cpu: CpuAccess) -> Plan:
    width, height = DEFAULT_SIZE
    plan = negotiate(constraints, width, height, ["XRGB8888"], cpu_access=cpu)
    assert plan.format.name == "XRGB8888"
    assert plan.modifier.value == DRM_FORMAT_MOD_LINEAR
    assert plan.layout.size is not None
    return plan


def _pitch(plan: Plan) -> int:
    return plan.layout.planes[0].pitch


def _draw(buf: Buffer, plan: Plan, seed: int) -> None:
    with buf.cpu_access("w") as view:
        draw_pattern(view, plan.width, plan.height, _pitch(plan), seed=seed)


def _fill(buf: Buffer, byte: int) -> None:
    with buf.cpu_access("w") as view:
        view[:] = bytes([byte]) * len(view)


def _expected(plan: Plan, seed: int) -> bytearray:
    image = bytearray(_pitch(plan) * plan.height)
    draw_pattern(image, plan.width, plan.height, _pitch(plan), seed=seed)
    return image


def _mismatch(
    expected: bytes | bytearray, expected_pitch: int, buf: Buffer, plan: Plan
) -> str | None:
    with buf.cpu_access("r") as view:
        diff = compare_xrgb8888(
            expected,
            view,
            plan.width,
            plan.height,
            expected_pitch=expected_pitch,
            actual_pitch=_pitch(plan),
        )
    return None if diff is None else str(diff)


DEBUG_DRI = "/sys/kernel/debug/dri"


def _debugfs_framebuffers() -> str:
    """vkms's debugfs ``framebuffer`` file (drm_framebuffer_info: every framebuffer with its
    refcount)."""
    for entry in sorted(os.listdir(DEBUG_DRI)):
        path = os.path.join(DEBUG_DRI, entry)
        try:
            with open(os.path.join(path, "name"), encoding="ascii") as f:
                if not f.read().startswith("vkms "):
                    continue
            with open(os.path.join(path, "framebuffer"), encoding="ascii") as f:
                return f.read()
        except OSError:
            continue
    raise AssertionError(f"no vkms framebuffer file under {DEBUG_DRI}")


def _refcount(fb: Framebuffer) -> int:
    text = _debugfs_framebuffers()
    match = re.search(rf"framebuffer\[{fb.fb_id}\]:\n(?:\t.*\n)*?\t+refcount=(\d+)", text)
    assert match, f"framebuffer {fb.fb_id} not in debugfs:\n{text}"
    return int(match.group(1))


def _capture(
    kms: KmsDevice, req: AtomicRequest, wb_fb: Framebuffer, *, allow_modeset: bool = False
) -> float:
    """Commit a request with a writeback, wait for its out-fence, then until vkms has cleaned the
    job up; returns the seconds the fence took.

    The second wait works around a race in vkms (6.12): the out-fence signals before the job's
    deferred cleanup (vkms_wb_cleanup_job) runs, and that cleanup turns the composer off. A
    writeback committed in between is then never composed and its fence never signals (nor does
    any later one: drm_writeback_signal_completion completes the oldest queued job). The cleanup
    drops the job's framebuffer references, so the framebuffer's refcount (debugfs) going back to
    what it was says it ran.
    """
    idle = _refcount(wb_fb)
    (fence,) = kms.commit(req, allow_modeset=allow_modeset)
    with fence:
        fd = fence.fileno()
        waited = fence.wait(FENCE_TIMEOUT)
        assert fence.signaled()
    assert_fd_closed(fd)
    deadline = time.monotonic() + FENCE_TIMEOUT
    while _refcount(wb_fb) != idle:
        assert time.monotonic() < deadline, "vkms never cleaned the writeback job up"
        time.sleep(0.002)
    return waited


# --- objects, modes, properties ------------------------------------------------------------------


def test_virtual_connector_crtc_and_writeback_connector_are_found(kms: KmsDevice) -> None:
    card = os.path.basename(_vkms_card())
    out = kms.find_output()
    assert out.connector.name == "Virtual-1"
    assert out.connector.connected
    assert os.path.isdir(f"/sys/class/drm/{card}-{out.connector.name}")
    assert out.mode.size == DEFAULT_SIZE
    assert out.mode.preferred
    assert abs(out.mode.refresh_hz - out.mode.vrefresh) < 1
    assert out.primary.type == "primary"
    assert out.primary.possible_crtcs & (1 << out.crtc.index)
    assert all(p.type == "cursor" for p in out.cursors)
    wb = kms.find_writeback(out.crtc)
    assert wb.name == "Writeback-1"
    assert wb.is_writeback
    assert os.path.isdir(f"/sys/class/drm/{card}-{wb.name}")
    assert XR24 in wb.writeback_formats
    # Without the client capability the kernel hides the writeback connector.
    with KmsDevice(_vkms_card(), writeback=False) as plain:
        assert [c.name for c in plain.connectors()] == [out.connector.name]
        with pytest.raises(NoDeviceError, match="no writeback connector"):
            plain.find_writeback(out.crtc)
    with pytest.raises(UsageError, match=r"no connector 'HDMI-A-9'.*Virtual-1"):
        kms.find_output("HDMI-A-9")
    with pytest.raises(UsageError, match="no mode '123x45'"):
        kms.find_output(mode="123x45")
    with pytest.raises(UsageError, match=r"has no property 'NO_SUCH'.*ACTIVE"):
        kms.request().set(out.crtc, "NO_SUCH", 1)


def test_mode_blob_round_trips_and_is_destroyed(kms: KmsDevice) -> None:
    out = kms.find_output()
    blob = kms.mode_blob(out.mode)
    with blob:
        assert Mode.from_bytes(kms.get_blob(blob.blob_id)) == out.mode
    assert blob.closed
    with pytest.raises(NotFoundError, match=f"read property blob {blob.blob_id}"):
        kms.get_blob(blob.blob_id)
    blob.close()  # idempotent


def test_forgotten_blob_is_destroyed_by_the_garbage_collector(kms: KmsDevice) -> None:
    blob: PropertyBlob | None = kms.create_blob(b"devalloc")
    assert blob is not None
    blob_id = blob.blob_id
    assert kms.get_blob(blob_id) == b"devalloc"
    with pytest.warns(ResourceWarning, match=f"property blob {blob_id}"):
        blob = None  # the last reference: the finalizer runs now
    with pytest.raises(NotFoundError):
        kms.get_blob(blob_id)


# --- 1. planes become display constraints --------------------------------------------------------


def _in_formats(kms: KmsDevice, plane: DrmPlane) -> list[tuple[int, int]]:
    """A plane's IN_FORMATS read by property name, independently of discovery."""
    blob_id = kms.property_value(plane, "IN_FORMATS")
    assert blob_id, f"plane {plane.id} has no IN_FORMATS blob"
    return uapi_drm.parse_in_formats(kms.get_blob(blob_id))


def test_primary_and_cursor_planes_become_display_constraints(
    kms: KmsDevice, info: DrmInfo
) -> None:
    planes = kms.planes()
    by_type = {t: [p for p in planes if p.type == t] for t in ("primary", "overlay", "cursor")}
    assert by_type["primary"]
    assert by_type["cursor"]
    usages = {u.usage: u for u in info.usages}
    expected_types = {"primary", "cursor"} | ({"overlay"} if _overlay_enabled() else set())
    assert set(usages) == expected_types
    assert bool(by_type["overlay"]) == _overlay_enabled()
    for kind in ("primary", "cursor"):
        usage = info.usage(kind)
        pairs = dict.fromkeys(pair for p in by_type[kind] for pair in _in_formats(kms, p))
        assert usage.pairs == tuple(pairs)
        assert (XR24, DRM_FORMAT_MOD_LINEAR) in usage.pairs
        assert (AR24, DRM_FORMAT_MOD_LINEAR) in usage.pairs
        assert usage.access == "read"
    assert info.usage("primary").max_width == kms.resources().max_width
    cursor_w = kms.get_cap(uapi_drm.DRM_CAP_CURSOR_WIDTH)
    cursor_h = kms.get_cap(uapi_drm.DRM_CAP_CURSOR_HEIGHT)
    assert (info.usage("cursor").max_width, info.usage("cursor").max_height) == (
        cursor_w,
        cursor_h,
    )
    # The cursor limit is real for negotiation: a cursor-sized buffer fits, a bigger one does not.
    negotiate([info.usage("cursor")], cursor_w, cursor_h, ["ARGB8888"])
    with pytest.raises(NoPlanError):
        negotiate([info.usage("cursor")], cursor_w + 1, cursor_h, ["ARGB8888"])


# --- 2. a negotiated buffer on the primary plane --------------------------------------------------


def test_framebuffer_of_a_negotiated_buffer_releases_its_gem_handles(
    kms: KmsDevice, info: DrmInfo, heap: DmaHeap
) -> None:
    plan = _plan([info.usage("primary")], "w")
    assert plan.layout.size is not None
    with heap.allocate(plan.layout.size) as buf:
        with kms.import_buffer(buf) as probe:
            number = probe.handle
        assert not kms.handle_exists(number)
        with kms.framebuffer([buf], plan.layout) as fb:
            assert fb.fb_id in kms.resources().fb_ids
            assert fb.modifier == plan.modifier.value  # ADDFB2 with DRM_MODE_FB_MODIFIERS
            assert (fb.width, fb.height, fb.fourcc) == (plan.width, plan.height, XR24)
            # The import got the same handle number and GEM_CLOSE released it after ADDFB2.
            assert not kms.handle_exists(number)
        assert fb.fb_id not in kms.resources().fb_ids
        # On the error path too: a modifier vkms does not list is refused, nothing remains.
        tiled = layout("XRGB8888", plan.width, plan.height, "I915_X_TILED")
        with pytest.raises(InvalidArgumentError, match=r"ADDFB2|framebuffer") as refused:
            kms.framebuffer([buf], tiled)
        assert refused.value.errno == errno.EINVAL
        assert not kms.handle_exists(number)
    with pytest.raises(UsageError, match="needs 1 buffer"):
        kms.framebuffer([], plan.layout)


def test_primary_plane_scans_out_a_negotiated_dma_heap_buffer(
    kms: KmsDevice, info: DrmInfo, heap: DmaHeap
) -> None:
    out = kms.find_output()
    assert out.mode.size == DEFAULT_SIZE
    plan = _plan([info.usage("primary")], "w")
    assert _pitch(plan) >= 4 * plan.width
    assert plan.layout.size is not None
    (before,) = [c for c in kms.crtcs() if c.id == out.crtc.id]
    assert not before.active, "the CRTC is already on (another client?)"
    with contextlib.ExitStack() as stack:
        bufs = [stack.enter_context(heap.allocate(plan.layout.size)) for _ in range(2)]
        fbs = [stack.enter_context(kms.framebuffer([b], plan.layout)) for b in bufs]
        mode = stack.enter_context(kms.mode_blob(out.mode))
        for seed, buf in enumerate(bufs):
            _draw(buf, plan, seed=seed)
        req = kms.request().modeset(out, mode).show(out.primary, fbs[0], out.crtc)
        # A modeset needs ALLOW_MODESET even to be tested.
        with pytest.raises(InvalidArgumentError, match=r"TEST_ONLY\).*ACTIVE=1"):
            kms.commit(req, test_only=True)
        assert kms.commit(req, test_only=True, allow_modeset=True) == []
        (tested,) = [c for c in kms.crtcs() if c.id == out.crtc.id]
        assert not tested.active, "TEST_ONLY changed the state"
        # The kernel checks the plane's source against the framebuffer, in a test too
        # (drm_atomic_plane_check: "Invalid source coordinates" is ENOSPC).
        bad = kms.request().modeset(out, mode)
        bad.show(out.primary, fbs[0], out.crtc, src=(0, 0, plan.width + 1, plan.height))
        with pytest.raises(NoSpaceError) as refused:
            kms.commit(bad, test_only=True, allow_modeset=True)
        assert refused.value.errno == errno.ENOSPC
        with lit(kms, out):
            assert kms.commit(req, allow_modeset=True) == []
            (crtc,) = [c for c in kms.crtcs() if c.id == out.crtc.id]
            assert crtc.active
            assert crtc.mode == out.mode
            shown = kms.get_plane(out.primary.id)
            assert (shown.fb_id, shown.crtc_id) == (fbs[0].fb_id, out.crtc.id)
            assert kms.property_value(out.connector, "CRTC_ID") == out.crtc.id
            # Page flips (no modeset): blocking commits, each returns after the next vblank.
            frames = 30
            start = time.monotonic()
            for n in range(1, frames + 1):
                assert kms.commit(kms.request().show(out.primary, fbs[n % 2], out.crtc)) == []
            flips = frames / (time.monotonic() - start)
            assert kms.get_plane(out.primary.id).fb_id == fbs[frames % 2].fb_id
        assert kms.get_plane(out.primary.id).fb_id == 0
        assert kms.property_value(out.connector, "CRTC_ID") == 0
    assert all(fb.closed for fb in fbs)
    assert mode.closed
    print(f"\nkms: {out.mode} on {info.name}: {flips:.1f} page flips/s (blocking atomic commits)")


# --- 3. writeback: the output captured into a second negotiated buffer ---------------------------


def _writeback_plan(kms: KmsDevice, info: DrmInfo, out: Output) -> Plan:
    wb = kms.find_writeback(out.crtc)
    constraints = writeback_constraints(info.name, wb, out.mode)
    assert (XR24, DRM_FORMAT_MOD_LINEAR) in constraints.pairs
    return _plan([constraints], "r")


def test_virtual_and_writeback_connectors_cannot_share_the_crtc(
    kms: KmsDevice, info: DrmInfo, heap: DmaHeap
) -> None:
    """Finding: 6.12.117 refuses Virtual-1 and Writeback-1 on vkms's one CRTC, with or without a
    writeback framebuffer: the encoder clone check of drm_atomic_helper_check_modeset fails (with
    drm.debug=0x15: "crtc38 failed valid clone check for mask 0x3"; vkms does not declare its two
    encoders clones). So the writeback connector drives the CRTC alone, as igt's kms_writeback
    does."""
    out = kms.find_output()
    wb = kms.find_writeback(out.crtc)
    plan = _plan([info.usage("primary")], "w")
    assert plan.layout.size is not None
    with (
        heap.allocate(plan.layout.size) as buf,
        kms.framebuffer([buf], plan.layout) as fb,
        kms.mode_blob(out.mode) as mode,
    ):
        req = kms.request().modeset(out, mode).show(out.primary, fb, out.crtc)
        req.set(wb, "CRTC_ID", out.crtc.id)
        with pytest.raises(InvalidArgumentError):
            kms.commit(req, test_only=True, allow_modeset=True)
        alone = kms.find_output(wb.name, mode=out.mode)
        assert alone.connector == wb
        wb_req = kms.request().modeset(alone, mode).show(out.primary, fb, out.crtc)
        assert kms.commit(wb_req, test_only=True, allow_modeset=True) == []


@pytest.mark.needs("debugfs")
def test_writeback_captures_the_primary_plane_pixel_for_pixel(
    kms: KmsDevice, info: DrmInfo, heap: DmaHeap
) -> None:
    virtual = kms.find_output()
    wb = kms.find_writeback(virtual.crtc)
    out = kms.find_output(wb.name, mode=virtual.mode)  # the writeback connector drives the CRTC
    assert out.mode.size == DEFAULT_SIZE
    plan = _plan([info.usage("primary")], "w")
    wb_plan = _writeback_plan(kms, info, out)
    assert plan.layout.size is not None
    assert wb_plan.layout.size is not None
    with contextlib.ExitStack() as stack:
        bufs = [stack.enter_context(heap.allocate(plan.layout.size)) for _ in range(2)]
        fbs = [stack.enter_context(kms.framebuffer([b], plan.layout)) for b in bufs]
        wb_buf = stack.enter_context(heap.allocate(wb_plan.layout.size))
        wb_fb = stack.enter_context(kms.framebuffer([wb_buf], wb_plan.layout))
        mode = stack.enter_context(kms.mode_blob(out.mode))
        for seed, buf in enumerate(bufs):
            _draw(buf, plan, seed=seed)
        _fill(wb_buf, 0x5A)
        expected = [_expected(plan, seed) for seed in range(2)]
        with lit(kms, out):
            req = kms.request().modeset(out, mode).show(out.primary, fbs[0], out.crtc)
            req.writeback(wb, wb_fb, out.crtc)
            assert kms.commit(req, test_only=True, allow_modeset=True) == []  # no fence
            waited = _capture(kms, req, wb_fb, allow_modeset=True)
            # What was drawn came back: R, G and B exact, X ignored.
            assert _mismatch(expected[0], _pitch(plan), wb_buf, wb_plan) is None
            # ... and the comparison tells frames apart.
            assert _mismatch(expected[1], _pitch(plan), wb_buf, wb_plan) is not None
            with wb_buf.cpu_access("r") as view:
                assert view[3] == 0xFF, "vkms writes X as 0xff"

            # Page flips with a writeback each: the capture follows the frame shown.
            frames = 20
            start = time.monotonic()
            for n in range(1, frames + 1):
                flip = kms.request().show(out.primary, fbs[n % 2], out.crtc)
                _capture(kms, flip.writeback(wb, wb_fb, out.crtc), wb_fb)
            with_wb = frames / (time.monotonic() - start)
            assert _mismatch(expected[frames % 2], _pitch(plan), wb_buf, wb_plan) is None
    print(
        f"\nkms: {out.mode} on {info.name} through {wb.name}: {with_wb:.1f} commits/s with a "
        f"writeback each (out-fence and job cleanup waited); first writeback fence after "
        f"{waited * 1000:.1f} ms"
    )


def test_writeback_refuses_a_framebuffer_of_another_size(
    kms: KmsDevice, info: DrmInfo, heap: DmaHeap
) -> None:
    virtual = kms.find_output()
    wb = kms.find_writeback(virtual.crtc)
    out = kms.find_output(wb.name, mode=virtual.mode)
    plan = _plan([info.usage("primary")], "w")
    small = layout("XRGB8888", 640, 480)
    assert plan.layout.size is not None
    assert small.size is not None
    with (
        heap.allocate(plan.layout.size) as buf,
        kms.framebuffer([buf], plan.layout) as fb,
        heap.allocate(small.size) as wb_buf,
        kms.framebuffer([wb_buf], small) as wb_fb,
        kms.mode_blob(out.mode) as mode,
    ):
        req = kms.request().modeset(out, mode).show(out.primary, fb, out.crtc)
        req.writeback(wb, wb_fb, out.crtc)
        with pytest.raises(InvalidArgumentError, match="WRITEBACK_FB_ID") as refused:
            kms.commit(req, test_only=True, allow_modeset=True)
        assert refused.value.errno == errno.EINVAL
    with pytest.raises(UsageError, match="not a writeback"):
        kms.request().writeback(virtual.connector, fb, out.crtc)


# --- overlay planes (vkms.enable_overlay=1) -------------------------------------------------------


@pytest.mark.needs("debugfs")
def test_overlay_plane_constraints_and_composition(
    kms: KmsDevice, info: DrmInfo, heap: DmaHeap
) -> None:
    if not _overlay_enabled():
        pytest.skip(
            f"boot option: vkms overlay planes are off ({OVERLAY_PARAM} is not Y): boot with "
            "--append vkms.enable_overlay=1"
        )
    virtual = kms.find_output()
    assert virtual.overlays, "vkms.enable_overlay=1 but no overlay plane on the CRTC"
    usage = info.usage("overlay")
    pairs = dict.fromkeys(pair for p in virtual.overlays for pair in _in_formats(kms, p))
    assert usage.pairs == tuple(pairs)
    assert (XR24, DRM_FORMAT_MOD_LINEAR) in usage.pairs

    wb = kms.find_writeback(virtual.crtc)
    out = kms.find_output(wb.name, mode=virtual.mode)
    plan = _plan([info.usage("primary")], "w")
    wb_plan = _writeback_plan(kms, info, out)
    ov_w, ov_h, ov_x, ov_y = 256, 128, 96, 40
    ov_plan = negotiate([usage], ov_w, ov_h, ["XRGB8888"], cpu_access="w")
    assert plan.layout.size
    assert wb_plan.layout.size
    assert ov_plan.layout.size
    ov_pitch = ov_plan.layout.planes[0].pitch
    with contextlib.ExitStack() as stack:
        buf = stack.enter_context(heap.allocate(plan.layout.size))
        fb = stack.enter_context(kms.framebuffer([buf], plan.layout))
        ov_buf = stack.enter_context(heap.allocate(ov_plan.layout.size))
        ov_fb: Framebuffer = stack.enter_context(kms.framebuffer([ov_buf], ov_plan.layout))
        wb_buf = stack.enter_context(heap.allocate(wb_plan.layout.size))
        wb_fb = stack.enter_context(kms.framebuffer([wb_buf], wb_plan.layout))
        mode: PropertyBlob = stack.enter_context(kms.mode_blob(out.mode))
        _draw(buf, plan, seed=0)
        with ov_buf.cpu_access("w") as view:
            draw_pattern(view, ov_w, ov_h, ov_pitch, seed=7)
        _fill(wb_buf, 0x5A)
        overlay = out.overlays[0]

        def off() -> None:
            kms.disable(out, planes=[overlay])

        with lit(kms, out, off):
            req = kms.request().modeset(out, mode).show(out.primary, fb, out.crtc)
            req.show(overlay, ov_fb, out.crtc, dst=(ov_x, ov_y, ov_w, ov_h))
            req.writeback(wb, wb_fb, out.crtc)
            _capture(kms, req, wb_fb, allow_modeset=True)
        expected = _expected(plan, seed=0)
        pitch = _pitch(plan)
        for y in range(ov_h):
            start = (ov_y + y) * pitch + 4 * ov_x
            expected[start : start + 4 * ov_w] = pattern_row(y, ov_w, seed=7)
        assert _mismatch(expected, pitch, wb_buf, wb_plan) is None
