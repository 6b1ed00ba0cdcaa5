"""Verified import: hand buffers to each live device and report, per device, what the kernel said.

Example:
    >>> found = discover()                                                  # doctest: +SKIP
    >>> cam, gpu = found.find("vivid-000-vid-cap"), found.find("vgem")      # doctest: +SKIP
    >>> with heap.allocate(plan.layout.size) as buf:                        # doctest: +SKIP
    ...     for verdict in verify(plan, [buf], [cam, gpu]):
    ...         print(verdict)
    vivid-000-vid-cap:capture: ok (1 frame in 0.31 s)
    vgem:import: ok

Negotiation on paper is not enough: a modifier both sides list can still be refused, and a
device's need for physically contiguous memory is invisible to V4L2. :func:`verify` really
imports the buffers:

- V4L2: VIDIOC_S_FMT to the plan's format, size and pitches, REQBUFS(V4L2_MEMORY_DMABUF), QBUF of
  every image (the dma-buf fd and its length; multi-planar queues: per-plane fds, lengths and
  data offsets), STREAMON, DQBUF of ``frames`` frames (poll with a timeout), STREAMOFF and
  REQBUFS(0), which also runs after a failure so the device stays usable. Output queues get at
  least two slots (one image then fills both): drivers may hold the newest output buffer until
  another follows, as vivid does for loopback.
- DRM: PRIME_FD_TO_HANDLE of every buffer; on KMS devices ADDFB2 with the plan's pitches,
  offsets and modifier (DRM_MODE_FB_MODIFIERS when the driver takes modifiers), then RMFB;
  GEM_CLOSE at the end. Devices without KMS (vgem) only import.

A failure becomes a :class:`Verdict` with the errno, the call and, where /dev/kmsg is readable,
the kernel's own lines. When the failure has a known cause the verdict names what was learned and
gives the device's constraints with it applied, for re-negotiation:

- ``"size"``: QBUF EINVAL with a buffer shorter than the driver's sizeimage (vb2's "invalid
  dmabuf length"); the learned constraints set ``layout.min_size`` to that sizeimage (valid for
  this format and size).
- ``"contiguous"``: QBUF EFAULT although the buffer is long enough: the driver maps dma-bufs
  with vb2-dma-contig and the memory is scattered ("contiguous chunk is too small"); the learned
  constraints need contiguous memory.
- ``"modifier"``: ADDFB2 EINVAL for a non-linear modifier, or for a (format, modifier) pair the
  device's planes do not list; the learned constraints drop that pair.

Only kernel failures become verdicts: a plan and buffers that do not fit each other raise
UsageError before any device is touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..buffer import Buffer
from ..constraints import Constraints
from ..drm import DrmDevice, GemHandle
from ..errors import KernelError, UsageError
from ..formats import Layout
from ..formats.fourcc import fourcc_to_str
from ..formats.modifier import DRM_FORMAT_MOD_LINEAR
from ..uapi.videodev2 import V4l2BufType
from ..v4l2 import DmabufPlane, DmabufQueue, V4l2Device, V4l2ImageFormat
from .discover import DeviceInfo, DrmInfo, V4l2FormatInfo, V4l2Info, V4l2QueueInfo
from .kmsg import KernelLog
from .learn import v4l2_single_planar_layout

__all__ = [
    "LEARNED_KINDS",
    "CaptureStats",
    "PlanLike",
    "Target",
    "Verdict",
    "capture_loop",
    "verify",
]

#: What a failed verification can teach, by name.
LEARNED_KINDS = ("size", "contiguous", "modifier")
#: Kernel log lines kept per verdict.
_LOG_LINES = 8


class PlanLike(Protocol):
    """What :func:`verify` needs of a plan (``devalloc.negotiate.Plan`` has it): its layout."""

    @property
    def layout(self) -> Layout:
        """The buffer's format, size, modifier and per-plane offsets and pitches."""
        ...


#: A device (every usage it has) or a (device, usage) pair.
Target = DeviceInfo | tuple[DeviceInfo, str]
#: One image: a dma-buf holding every plane, or one dma-buf per plane (multi-buffer layouts).
Image = Buffer | Sequence[Buffer]


@dataclass(frozen=True)
class Verdict:
    """What one device said about the buffers in one usage.

    Attributes:
        device: the device id.
        usage: the usage verified.
        ok: every buffer imported (and, for V4L2, the frames came back).
        operation: the call that failed (``"VIDIOC_QBUF"``), "" when ok or refused before any
            call.
        errno: the kernel's error number (None when ok or refused before any call).
        message: what happened, in one line.
        learned: the named cause (:data:`LEARNED_KINDS`), None when unknown or ok.
        constraints: the usage's constraints with the learned rule applied (None unless
            ``learned``).
        kernel_log: what the kernel logged meanwhile (empty when /dev/kmsg is not readable).
        frames: frames dequeued (V4L2).
        seconds: how long the device took, start to finish.
        written: for capture, whether the last frame's first plane holds any non-zero byte
            (None when not checked).
    """

    device: str
    usage: str
    ok: bool
    operation: str = ""
    errno: int | None = None
    message: str = ""
    learned: str | None = None
    constraints: Constraints | None = None
    kernel_log: tuple[str, ...] = ()
    frames: int = 0
    seconds: float = 0.0
    written: bool | None = None

    @property
    def label(self) -> str:
        """``"device:usage"``."""
        return f"{self.device}:{self.usage}"

    def __str__(self) -> str:
        if self.ok:
            extra = ""
            if self.frames:
                extra = f" ({self.frames} frame{'s' if self.frames > 1 else ''}"
                extra += f" in {self.seconds:.2f} s)"
            return f"{self.label}: ok{extra}"
        learned = f" [learned: {self.learned}]" if self.learned else ""
        return f"{self.label}: FAILED: {self.message}{learned}"

    def to_json(self) -> dict[str, object]:
        """Every field; ``constraints`` as ``Constraints.to_json()``."""
        return {
            "device": self.device,
            "usage": self.usage,
            "ok": self.ok,
            "operation": self.operation,
            "errno": self.errno,
            "errno_name": errno.errorcode.get(self.errno, "") if self.errno else "",
            "message": self.message,
            "learned": self.learned,
            "constraints": self.constraints.to_json() if self.constraints else None,
            "kernel_log": list(self.kernel_log),
            "frames": self.frames,
            "seconds": round(self.seconds, 6),
            "written": self.written,
        }

    @classmethod
    def from_json(cls, data: object) -> Verdict:
        """Read what :meth:`to_json` wrote (``errno_name`` is derived and ignored; missing
        optional keys take their defaults).

        Raises:
            UsageError: not an object, an unknown key, or a value of the wrong type.
        """
        if not isinstance(data, Mapping):
            raise UsageError(f"a verdict is a JSON object, not {data!r:.80}")
        unknown = sorted(str(k) for k in data if k not in _VERDICT_KEYS)
        if unknown:
            raise UsageError(f"a verdict has no field {unknown[0]!r:.40}")

        def want(key: str, kinds: tuple[type, ...], default: object) -> object:
            value = data.get(key, default)
            if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
                raise UsageError(f"verdict {key} is not {' or '.join(k.__name__ for k in kinds)}")
            return value

        for key in ("device", "usage", "ok"):
            if key not in data:
                raise UsageError(f"a verdict names its {key}")
        log = want("kernel_log", (list,), [])
        assert isinstance(log, list)
        if not all(isinstance(line, str) for line in log):
            raise UsageError("verdict kernel_log is a list of strings")
        raw = want("constraints", (dict, type(None)), None)
        return cls(
            device=str(want("device", (str,), "")),
            usage=str(want("usage", (str,), "")),
            ok=bool(want("ok", (bool,), False)),
            operation=str(want("operation", (str,), "")),
            errno=_optional_int(want("errno", (int, type(None)), None)),
            message=str(want("message", (str,), "")),
            learned=_optional_str(want("learned", (str, type(None)), None)),
            constraints=Constraints.from_json(raw) if isinstance(raw, dict) else None,
            kernel_log=tuple(log),
            frames=int(want("frames", (int,), 0)),  # type: ignore[call-overload]
            seconds=float(want("seconds", (int, float), 0.0)),  # type: ignore[arg-type]
            written=_optional_bool(want("written", (bool, type(None)), None)),
        )


_VERDICT_KEYS = frozenset(
    {
        "device",
        "usage",
        "ok",
        "operation",
        "errno",
        "errno_name",
        "message",
        "learned",
        "constraints",
        "kernel_log",
        "frames",
        "seconds",
        "written",
    }
)


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _optional_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _images(layout: Layout, buffers: Sequence[Image]) -> list[tuple[Buffer, ...]]:
    if not buffers:
        raise UsageError("verify needs at least one buffer")
    wanted = len(layout.buffer_sizes) if layout.multi_buffer else 1
    images: list[tuple[Buffer, ...]] = []
    for i, item in enumerate(buffers):
        image = (item,) if isinstance(item, Buffer) else tuple(item)
        if len(image) != wanted:
            raise UsageError(
                f"image {i} has {len(image)} buffers; the plan's {layout.format.name} layout "
                f"needs {wanted} ({'one per plane' if layout.multi_buffer else 'one'})"
            )
        for buf in image:
            if not isinstance(buf, Buffer):
                raise UsageError(f"image {i}: {buf!r} is not a Buffer")
            if not buf.is_dmabuf:
                raise UsageError(f"image {i}: {buf.description} is not a dma-buf: no device can")
            buf.fileno()  # ClosedResourceError now rather than half-way through
        images.append(image)
    return images


def _targets(devices: Sequence[Target]) -> list[tuple[DeviceInfo, str | None]]:
    found: list[tuple[DeviceInfo, str | None]] = []
    for item in devices:
        if isinstance(item, tuple):
            device, usage = item
            found.append((device, usage))
        elif not item.usages:
            found.append((item, None))
        else:
            found.extend((item, c.usage) for c in item.usages)
    return found


def _constraints_of(device: DeviceInfo, usage: str) -> Constraints | None:
    return next((c for c in device.usages if c.usage == usage), None)


def _learned_size(c: Constraints | None, size: int) -> Constraints | None:
    if c is None:
        return None
    rules = dataclasses.replace(c.layout, min_size=max(c.layout.min_size, size))
    return dataclasses.replace(c, layout=rules)


def _learned_contiguous(c: Constraints | None) -> Constraints | None:
    if c is None:
        return None
    memory = dataclasses.replace(c.memory, contiguous=True, max_segments=1)
    return dataclasses.replace(c, memory=memory)


def _learned_modifier(c: Constraints | None, pair: tuple[int, int]) -> Constraints | None:
    if c is None:
        return None
    pairs = tuple(p for p in c.pairs if p != pair)
    return dataclasses.replace(c, pairs=pairs) if pairs else None


def _log_tail(log: KernelLog) -> tuple[str, ...]:
    lines = [line for line in log.new_lines() if line]
    return tuple(lines[-_LOG_LINES:])


def _fail(
    device: str,
    usage: str,
    message: str,
    *,
    exc: KernelError | None = None,
    started: float,
    log: KernelLog | None = None,
    learned: str | None = None,
    constraints: Constraints | None = None,
    frames: int = 0,
) -> Verdict:
    return Verdict(
        device,
        usage,
        False,
        operation=(exc.operation or "") if exc else "",
        errno=exc.errno if exc else None,
        message=message,
        learned=learned,
        constraints=constraints,
        kernel_log=_log_tail(log) if log else (),
        frames=frames,
        seconds=time.monotonic() - started,
    )


# --- V4L2 ----------------------------------------------------------------------------------------


def _pick_format(queue: V4l2QueueInfo, layout: Layout) -> V4l2FormatInfo | str:
    """The queue's V4L2 format for the plan's DRM format and buffer arrangement, or why none."""
    candidates = [f for f in queue.formats if f.drm is not None and f.drm == layout.format]
    if not candidates:
        return f"the {queue.usage} queue does not offer {layout.format.name}"
    one_plane = layout.format.planes == 1
    for f in candidates:
        if one_plane or f.multi_planar == layout.multi_buffer:
            return f
    want = "one buffer per plane" if layout.multi_buffer else "all planes in one buffer"
    have = ", ".join(f.v4l2 for f in candidates)
    return (
        f"the {queue.usage} queue has no {layout.format.name} variant with {want} (it has {have})"
    )


def _layout_mismatch(layout: Layout, got: V4l2ImageFormat, multi_api: bool) -> str:
    """Why the driver's S_FMT answer does not describe the plan's buffer, "" when it does."""
    plan_pitches = tuple(p.pitch for p in layout.planes)
    if layout.multi_buffer or (multi_api and len(got.planes) > 1):
        driver = tuple(p.bytesperline for p in got.planes)
        if driver != plan_pitches[: len(driver)]:
            return f"the driver's pitches are {list(driver)}, the plan's {list(plan_pitches)}"
        return ""
    bpl = got.planes[0].bytesperline
    offsets, pitches = v4l2_single_planar_layout(layout.format, got.height, bpl)
    plan_offsets = tuple(p.offset for p in layout.planes)
    if pitches != plan_pitches or offsets != plan_offsets:
        return (
            f"the driver lays {layout.format.name} out with pitches {list(pitches)} at offsets "
            f"{list(offsets)}; the plan has pitches {list(plan_pitches)} at {list(plan_offsets)}"
        )
    return ""


def _v4l2_planes(
    layout: Layout, image: tuple[Buffer, ...], got: V4l2ImageFormat, output: bool
) -> list[DmabufPlane]:
    planes: list[DmabufPlane] = []
    if len(got.planes) == 1:
        used = got.planes[0].sizeimage if output else 0
        return [DmabufPlane(image[0], bytesused=min(used, image[0].size))]
    for i, fmt_plane in enumerate(got.planes):
        plan_plane = layout.planes[i]
        buf = image[plan_plane.buffer] if layout.multi_buffer else image[0]
        offset = 0 if layout.multi_buffer else plan_plane.offset
        used = offset + fmt_plane.sizeimage if output else 0
        planes.append(DmabufPlane(buf, data_offset=offset, bytesused=min(used, buf.size)))
    return planes


def _written(image: tuple[Buffer, ...], used: int) -> bool:
    buf = image[0]
    n = min(used or buf.size, buf.size)
    with buf.cpu_access("r") as view:
        data = bytes(view[:n])
    return data.count(0) != n


def _classify_qbuf(
    exc: KernelError, image: tuple[Buffer, ...], got: V4l2ImageFormat
) -> tuple[str | None, str, int]:
    """(learned, explanation, sizeimage) for a failed QBUF."""
    needed = [p.sizeimage for p in got.planes]
    sizes = [b.size for b in image]
    short = any(s < n for s, n in zip(sizes, needed, strict=False)) or (
        len(image) == 1 and sizes[0] < sum(needed)
    )
    need = max(needed) if len(image) > 1 else sum(needed)
    if exc.errno == errno.EINVAL and short:
        return (
            "size",
            f"a buffer of {min(sizes)} bytes is shorter than the {need} bytes (sizeimage) the "
            f"driver needs for {got.fourcc} {got.width}x{got.height} (vb2: invalid dmabuf length)",
            need,
        )
    if exc.errno == errno.EFAULT and not short:
        return (
            "contiguous",
            "the driver could not map the dma-buf although it is long enough: it needs "
            "physically contiguous memory (vb2-dma-contig) and the buffer is scattered",
            need,
        )
    return None, "", need


def _verify_v4l2(
    info: V4l2Info,
    usage: str,
    layout: Layout,
    images: list[tuple[Buffer, ...]],
    frames: int,
    timeout: float,
) -> Verdict:
    started = time.monotonic()
    try:
        queue = info.queue(usage)
    except UsageError as exc:
        return _fail(info.name, usage, str(exc), started=started)
    constraints = _constraints_of(info, usage)
    if queue.dmabuf is False:
        return _fail(
            info.name,
            usage,
            f"the {usage} queue of {info.path} does not import dma-bufs "
            "(no V4L2_BUF_CAP_SUPPORTS_DMABUF)",
            started=started,
        )
    if layout.modifier.value != DRM_FORMAT_MOD_LINEAR:
        return _fail(
            info.name,
            usage,
            f"V4L2 buffers are linear; the plan's modifier is {layout.modifier.name}",
            started=started,
        )
    chosen = _pick_format(queue, layout)
    if isinstance(chosen, str):
        return _fail(info.name, usage, chosen, started=started)
    buf_type = V4l2BufType(queue.buf_type)
    output = usage == "output"
    multi_api = queue.multi_planar_api
    pitches = [p.pitch for p in layout.planes]
    requested = pitches if (multi_api and chosen.multi_planar) else pitches[:1]
    with KernelLog() as log:
        try:
            with V4l2Device(info.path) as dev:
                return _stream(
                    dev, info, usage, layout, images, chosen, buf_type, requested,
                    frames, timeout, output, multi_api, constraints, log, started,
                )  # fmt: skip
        except KernelError as exc:
            return _fail(info.name, usage, str(exc), exc=exc, started=started, log=log)


def _stream(
    dev: V4l2Device,
    info: V4l2Info,
    usage: str,
    layout: Layout,
    images: list[tuple[Buffer, ...]],
    chosen: V4l2FormatInfo,
    buf_type: V4l2BufType,
    pitches: list[int],
    frames: int,
    timeout: float,
    output: bool,
    multi_api: bool,
    constraints: Constraints | None,
    log: KernelLog,
    started: float,
) -> Verdict:
    got = dev.set_format(buf_type, chosen.code, layout.width, layout.height, bytesperline=pitches)
    if (got.width, got.height, got.pixelformat) != (layout.width, layout.height, chosen.code):
        return _fail(
            info.name,
            usage,
            f"the driver set {got.fourcc} {got.width}x{got.height} when asked for "
            f"{chosen.v4l2} {layout.width}x{layout.height}",
            started=started,
            log=log,
        )
    mismatch = _layout_mismatch(layout, got, multi_api)
    if mismatch:
        return _fail(info.name, usage, mismatch, started=started, log=log)
    count = 0
    written: bool | None = None
    # Output drivers may keep the newest buffer until another one follows (vivid does, for
    # loopback), so an output queue always gets at least two slots: a single image fills both.
    wanted = max(len(images), 2) if output else len(images)
    with dev.dmabuf_queue(buf_type, wanted) as queue:
        slots = min(queue.count, wanted)
        owner = [i % len(images) for i in range(slots)]  # the image in each slot
        for index in range(slots):
            image = images[owner[index]]
            try:
                queue.queue(index, _v4l2_planes(layout, image, got, output))
            except KernelError as exc:
                learned, why, need = _classify_qbuf(exc, image, got)
                learned_c = None
                if learned == "size":
                    learned_c = _learned_size(constraints, need)
                elif learned == "contiguous":
                    learned_c = _learned_contiguous(constraints)
                message = f"QBUF of image {owner[index]} failed: {exc}"
                if why:
                    message += f": {why}"
                return _fail(
                    info.name,
                    usage,
                    message,
                    exc=exc,
                    started=started,
                    log=log,
                    learned=learned,
                    constraints=learned_c,
                )
        queue.start()
        try:
            for n in range(frames):
                frame = queue.dequeue(timeout)
                count += 1
                image = images[owner[frame.index]]
                if not output and n == frames - 1:
                    written = _written(image, frame.bytesused[0])
                # Capture re-queues only while frames are still missing, so the last frames
                # stay in their buffers; output always re-queues (the driver keeps one).
                more = n + 1 < frames if output else n + slots < frames
                if more:
                    queue.queue(frame.index, _v4l2_planes(layout, image, got, output))
        except KernelError as exc:
            return _fail(
                info.name,
                usage,
                f"streaming stopped after {count} frame(s): {exc}",
                exc=exc,
                started=started,
                log=log,
                frames=count,
            )
    return Verdict(
        info.name,
        usage,
        True,
        message=f"{count} frame(s) of {got.fourcc} {got.width}x{got.height} via DMABUF",
        kernel_log=_log_tail(log),
        frames=count,
        seconds=time.monotonic() - started,
        written=written,
    )


# --- DRM -----------------------------------------------------------------------------------------


def _verify_drm(
    info: DrmInfo, usage: str, layout: Layout, images: list[tuple[Buffer, ...]]
) -> Verdict:
    started = time.monotonic()
    constraints = _constraints_of(info, usage)
    node = info.card if info.kms else (info.render or info.card)
    if node is None:
        return _fail(info.name, usage, f"{info.name} has no device node", started=started)
    pair = (layout.format.fourcc, layout.modifier.value)
    if info.kms and layout.opaque:
        return _fail(
            info.name,
            usage,
            f"the plan's {layout.modifier.name} layout is the exporter's: devalloc has no "
            "pitches and offsets to give ADDFB2",
            started=started,
        )
    with KernelLog() as log:
        try:
            with DrmDevice(node) as dev:
                for n, image in enumerate(images):
                    with contextlib.ExitStack() as stack:
                        handles: list[GemHandle] = [
                            stack.enter_context(dev.import_buffer(buf)) for buf in image
                        ]
                        if info.kms:
                            verdict = _addfb2(
                                info, usage, dev, layout, handles, pair, constraints, log, started
                            )
                            if verdict is not None:
                                return dataclasses.replace(
                                    verdict, message=f"image {n}: {verdict.message}"
                                )
        except KernelError as exc:
            hint = ""
            if exc.operation == "DRM_IOCTL_PRIME_FD_TO_HANDLE" and exc.errno == errno.EINVAL:
                hint = (
                    ": the driver cannot import foreign dma-bufs (it may scan out only from "
                    "its own memory)"
                )
            return _fail(info.name, usage, f"{exc}{hint}", exc=exc, started=started, log=log)
        steps = "PRIME import, ADDFB2 and RMFB" if info.kms else "PRIME import"
        return Verdict(
            info.name,
            usage,
            True,
            message=f"{len(images)} image(s): {steps}",
            kernel_log=_log_tail(log),
            seconds=time.monotonic() - started,
        )


def _addfb2(
    info: DrmInfo,
    usage: str,
    dev: DrmDevice,
    layout: Layout,
    handles: list[GemHandle],
    pair: tuple[int, int],
    constraints: Constraints | None,
    log: KernelLog,
    started: float,
) -> Verdict | None:
    linear = layout.modifier.value == DRM_FORMAT_MOD_LINEAR
    modifier: int | None = layout.modifier.value if info.addfb2_modifiers else None
    if modifier is None and not linear:
        return _fail(
            info.name,
            usage,
            f"{info.driver} takes no explicit modifiers (no DRM_CAP_ADDFB2_MODIFIERS); the plan "
            f"needs {layout.modifier.name}",
            started=started,
            log=log,
            learned="modifier",
            constraints=_learned_modifier(constraints, pair),
        )
    planes = layout.planes
    try:
        fb = dev.add_framebuffer(
            layout.width,
            layout.height,
            layout.format.fourcc,
            [handles[p.buffer] if layout.multi_buffer else handles[0] for p in planes],
            [p.pitch for p in planes],
            [p.offset for p in planes],
            modifier,
        )
    except KernelError as exc:
        listed = any(pair in p.pairs for p in info.planes)
        if exc.errno == errno.EINVAL and (not linear or not listed):
            why = (
                f"{fourcc_to_str(pair[0])} with {layout.modifier.name} is not in any plane's "
                "IN_FORMATS"
                if not listed
                else f"the driver refuses {layout.modifier.name} framebuffers"
            )
            return _fail(
                info.name,
                usage,
                f"{exc}: {why}",
                exc=exc,
                started=started,
                log=log,
                learned="modifier",
                constraints=_learned_modifier(constraints, pair),
            )
        return _fail(
            info.name,
            usage,
            f"{exc} (the driver refused the size, a pitch or an offset)",
            exc=exc,
            started=started,
            log=log,
        )
    fb.close()
    return None


# --- entry points --------------------------------------------------------------------------------


def verify(
    plan: PlanLike | Layout,
    buffers: Sequence[Image],
    devices: Sequence[Target],
    *,
    frames: int = 1,
    timeout: float = 5.0,
) -> list[Verdict]:
    """Import ``buffers`` into every device and report per device and usage.

    Args:
        plan: the plan the buffers were allocated for (or just its layout).
        buffers: the images: each a dma-buf :class:`~devalloc.buffer.Buffer` holding every
            plane, or (multi-buffer layouts) a sequence of one Buffer per plane. The buffers
            stay the caller's; devices take their own references while they use them.
        devices: discovered devices (every usage of each is verified) or (device, usage) pairs.
        frames: frames to dequeue on V4L2 queues (at least 1; buffers are re-queued as needed).
        timeout: seconds to wait for each frame.

    Returns:
        One :class:`Verdict` per device and usage, in the order given.

    Raises:
        UsageError: buffers that do not fit the plan, closed or non-dma-buf buffers, a bad
            ``frames`` or ``timeout``, or an unknown kind of device.
    """
    layout = plan if isinstance(plan, Layout) else plan.layout
    if not isinstance(layout, Layout):
        raise UsageError(f"verify needs a plan with a layout, not {plan!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise UsageError(f"frames must be a positive integer, not {frames!r}")
    if not timeout > 0:
        raise UsageError(f"timeout must be positive seconds, not {timeout!r}")
    images = _images(layout, buffers)
    verdicts: list[Verdict] = []
    for device, usage in _targets(devices):
        if usage is None:
            verdicts.append(
                _fail(
                    device.name,
                    "-",
                    f"{device.name} has no usage to verify",
                    started=time.monotonic(),
                )
            )
        elif isinstance(device, V4l2Info):
            verdicts.append(_verify_v4l2(device, usage, layout, images, frames, timeout))
        elif isinstance(device, DrmInfo):
            verdicts.append(_verify_drm(device, usage, layout, images))
        else:
            raise UsageError(f"verify takes discovered DRM or V4L2 devices, not {device!r}")
    return verdicts


@dataclass(frozen=True)
class CaptureStats:
    """What a capture loop measured.

    Attributes:
        device: the device id.
        frames: frames dequeued.
        seconds: from STREAMON to the last DQBUF.
        first_frame: from STREAMON to the first DQBUF (start-up latency).
        dropped: sequence numbers the driver skipped (frames it had no free buffer for).
        errors: frames flagged V4L2_BUF_FLAG_ERROR.
    """

    device: str
    frames: int
    seconds: float
    first_frame: float
    dropped: int
    errors: int

    @property
    def fps(self) -> float:
        """Steady-state frames per second: the frames after the first over the time after it
        (0.0 with fewer than two frames)."""
        span = self.seconds - self.first_frame
        return (self.frames - 1) / span if self.frames > 1 and span > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        """Every field and ``fps``."""
        return {
            "device": self.device,
            "frames": self.frames,
            "seconds": round(self.seconds, 6),
            "first_frame": round(self.first_frame, 6),
            "fps": round(self.fps, 3),
            "dropped": self.dropped,
            "errors": self.errors,
        }


def capture_loop(
    device: V4l2Info,
    plan: PlanLike | Layout,
    buffers: Sequence[Image],
    *,
    seconds: float = 2.0,
    timeout: float = 5.0,
) -> CaptureStats:
    """Capture into ``buffers`` (re-queued round-robin) for about ``seconds``; measure the rate.

    Raises:
        UsageError: the device cannot capture the plan (the message says why), bad arguments.
        KernelError: a streaming call failed.
    """
    layout = plan if isinstance(plan, Layout) else plan.layout
    images = _images(layout, buffers)
    if not seconds > 0:
        raise UsageError(f"seconds must be positive, not {seconds!r}")
    queue_info = device.queue("capture")
    chosen = _pick_format(queue_info, layout)
    if isinstance(chosen, str):
        raise UsageError(f"{device.name}: {chosen}")
    buf_type = V4l2BufType(queue_info.buf_type)
    pitches = [p.pitch for p in layout.planes]
    if not (queue_info.multi_planar_api and chosen.multi_planar):
        pitches = pitches[:1]
    with V4l2Device(device.path) as dev:
        got = dev.set_format(
            buf_type, chosen.code, layout.width, layout.height, bytesperline=pitches
        )
        mismatch = _layout_mismatch(layout, got, queue_info.multi_planar_api)
        if mismatch or (got.width, got.height) != (layout.width, layout.height):
            raise UsageError(f"{device.name} cannot capture the plan: {mismatch or got}")
        with dev.dmabuf_queue(buf_type, len(images)) as queue:
            return _run_loop(queue, device.name, layout, images, got, seconds, timeout)


def _run_loop(
    queue: DmabufQueue,
    name: str,
    layout: Layout,
    images: list[tuple[Buffer, ...]],
    got: V4l2ImageFormat,
    seconds: float,
    timeout: float,
) -> CaptureStats:
    slots = min(queue.count, len(images))
    for index in range(slots):
        queue.queue(index, _v4l2_planes(layout, images[index], got, False))
    queue.start()
    started = time.monotonic()
    frames = dropped = errors = 0
    first = 0.0
    last: int | None = None
    elapsed = 0.0
    while elapsed < seconds:
        frame = queue.dequeue(timeout)
        elapsed = time.monotonic() - started
        if frames == 0:
            first = elapsed
        frames += 1
        errors += frame.error
        if last is not None and frame.sequence > last + 1:
            dropped += frame.sequence - last - 1
        last = frame.sequence
        queue.queue(frame.index, _v4l2_planes(layout, images[frame.index], got, False))
    return CaptureStats(name, frames, elapsed, first, dropped, errors)
