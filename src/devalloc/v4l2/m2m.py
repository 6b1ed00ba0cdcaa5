"""Memory-to-memory V4L2 devices (codecs, converters): both queues fed with imported dma-bufs.

Example:
    >>> with DmaHeap("/dev/dma_heap/system") as heap, M2mSession(
    ...     v4l2_node_by_name("vim2m")
    ... ) as conv:                                                       # doctest: +SKIP
    ...     conv.set_format("output", "RGB3", 640, 480)
    ...     conv.set_format("capture", "RGBP", 640, 480)
    ...     src = [heap.allocate(conv.get_format("output").sizeimage) for _ in range(2)]
    ...     dst = [heap.allocate(conv.get_format("capture").sizeimage) for _ in range(2)]
    ...     conv.attach("output", src)
    ...     conv.attach("capture", dst)
    ...     conv.start()
    ...     job = conv.run_job(0, 0, timeout=5)
    ...     job.capture.bytesused
    (614400,)

A mem-to-mem node has two queues on one file: OUTPUT takes the frames the device reads (raw
frames for an encoder or converter, a bitstream for a decoder) and CAPTURE the ones it writes.
:class:`M2mSession` binds one dma-buf to each slot of each queue (V4L2_MEMORY_DMABUF: the kernel
takes its own reference, the caller keeps owning the :class:`~devalloc.buffer.Buffer`), queues and
dequeues them, and carries what codecs need besides: events (VIDIOC_SUBSCRIBE_EVENT / DQEVENT,
for a stateful decoder's V4L2_EVENT_SOURCE_CHANGE), the drain commands (VIDIOC_ENCODER_CMD /
DECODER_CMD with STOP, answered by a buffer flagged LAST) and controls (VIDIOC_S_CTRL).

Stateful decoding follows the kernel's stateful-decoder interface: set the OUTPUT (bitstream)
format, queue bitstream buffers and start OUTPUT; the driver parses the stream header and sends
V4L2_EVENT_SOURCE_CHANGE; :meth:`M2mSession.wait_source_change` returns the CAPTURE format the
stream needs, after which the CAPTURE queue is set up and started.

The copy path (:mod:`devalloc.negotiate.copy`) does not model the device that copies. Here a
:class:`Converter` is a mem-to-mem device described by two constraints (what its OUTPUT queue
accepts, what its CAPTURE queue produces): :func:`find_converter` picks one that can read a
source plan and write a destination plan, and :func:`propose_converted_path` negotiates each side
together with the converter's queue, so that both buffer sets suit it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import math
import os
import select
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Self

from .._fd import ioctl
from ..buffer import Buffer
from ..constraints import Constraints, CpuAccess
from ..errors import (
    ClosedResourceError,
    KernelError,
    NoPlanError,
    UsageError,
    error_from_errno,
)
from ..formats import drm_to_v4l2
from ..negotiate import Plan, try_negotiate
from ..uapi import videodev2 as _uapi
from ..uapi.videodev2 import (
    V4l2BufFlag,
    V4l2BufType,
    V4l2Cap,
    V4l2DecCmd,
    V4l2EncCmd,
    V4l2EventType,
)
from .device import (
    SYSFS_V4L2,
    DmabufPlane,
    DmabufQueue,
    V4l2Caps,
    V4l2Device,
    V4l2FormatDesc,
    V4l2Frame,
    V4l2ImageFormat,
    natural_key,
    v4l2_node_name,
)

__all__ = [
    "ROLES",
    "Converter",
    "ConverterChoice",
    "M2mJob",
    "M2mQueue",
    "M2mSession",
    "Role",
    "V4l2Event",
    "converter_misfits",
    "find_converter",
    "plan_misfits",
    "propose_converted_path",
    "v4l2_node_by_name",
    "v4l2_nodes_by_name",
]

#: A queue of a mem-to-mem device: ``"output"`` (the device reads it) or ``"capture"`` (it
#: writes it), as V4L2 names them.
Role = Literal["output", "capture"]
ROLES: tuple[Role, Role] = ("output", "capture")

_M2M_CAPS = V4l2Cap.VIDEO_M2M | V4l2Cap.VIDEO_M2M_MPLANE


# --- finding nodes -------------------------------------------------------------------------------


def v4l2_nodes_by_name(sysfs: str = "/sys", dev: str = "/dev") -> dict[str, str]:
    """Every /dev/video* node by the name its driver gave it (sysfs ``video4linux/*/name``), e.g.
    ``{"stateful-encoder": "/dev/video0", "vim2m": "/dev/video3"}``. Read from sysfs only; a name
    used twice keeps the lowest node."""
    base = os.path.join(sysfs, SYSFS_V4L2)
    try:
        entries = sorted(os.listdir(base), key=natural_key)
    except OSError:
        return {}
    found: dict[str, str] = {}
    for entry in entries:
        if not entry.startswith("video") or not entry[5:].isdigit():
            continue
        node = os.path.join(dev, entry)
        name = v4l2_node_name(node, sysfs)
        if name and name not in found:
            found[name] = node
    return found


def v4l2_node_by_name(name: str, sysfs: str = "/sys", dev: str = "/dev") -> str:
    """The /dev/video* node named ``name`` by its driver (``"stateful-decoder"``, ``"vim2m"``).

    Raises:
        NoDeviceError: no V4L2 node has that name (the message lists the names there are).
    """
    nodes = v4l2_nodes_by_name(sysfs, dev)
    if name in nodes:
        return nodes[name]
    known = ", ".join(sorted(nodes)) or "none"
    raise error_from_errno(
        errno.ENODEV,
        f"no V4L2 node is named {name!r} in {sysfs}/{SYSFS_V4L2} (names there: {known})",
        operation="find V4L2 node",
    )


# --- events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class V4l2Event:
    """One event taken with VIDIOC_DQEVENT.

    Attributes:
        type: V4L2_EVENT_* (:class:`~devalloc.uapi.videodev2.V4l2EventType` where known).
        sequence: the event counter of this file.
        pending: events still queued after this one.
        changes: ``u.src_change.changes`` of a V4L2_EVENT_SOURCE_CHANGE (0 for other types).
        timestamp: seconds (CLOCK_MONOTONIC).
        id: the object the event is about (a control id; 0 for codec events).
    """

    type: int
    sequence: int
    pending: int
    changes: int
    timestamp: float
    id: int

    @property
    def name(self) -> str:
        """``"SOURCE_CHANGE"``, ``"EOS"``, ... or the number of a private event."""
        try:
            return V4l2EventType(self.type).name
        except ValueError:
            return f"0x{self.type:08x}"

    @property
    def resolution_changed(self) -> bool:
        """A SOURCE_CHANGE event that says the stream's resolution (or format) changed."""
        return self.type == V4l2EventType.SOURCE_CHANGE and bool(
            self.changes & _uapi.V4L2_EVENT_SRC_CH_RESOLUTION
        )


# --- one queue -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class M2mJob:
    """One processed buffer pair: what came back from OUTPUT and from CAPTURE."""

    output: V4l2Frame
    capture: V4l2Frame


class M2mQueue:
    """The DMABUF slots of one queue of an :class:`M2mSession`: slot ``i`` holds ``buffers[i]``.

    Created by :meth:`M2mSession.attach`, which has already set the queue's format. Borrows the
    buffers (the caller keeps owning them; they must outlive the queue) and frees the slots with
    REQBUFS(0) on :meth:`release`. Each slot is one memory plane, which is what single-planar
    queues and the one-plane formats of the multi-planar API use.

    Raises:
        UsageError: no buffers, a format with several memory planes, or a buffer smaller than
            the format's sizeimage (the kernel would refuse it at QBUF with EINVAL).
        KernelError: REQBUFS failed.
    """

    def __init__(
        self,
        device: V4l2Device,
        role: Role,
        buf_type: V4l2BufType,
        fmt: V4l2ImageFormat,
        buffers: Sequence[Buffer],
    ) -> None:
        self.device = device
        self.role: Role = role
        self.buf_type = buf_type
        self.format = fmt
        self._queued: set[int] = set()
        self._queue: DmabufQueue | None = None
        what = (
            f"the {role.upper()} queue of {device.description} "
            f"({fmt.fourcc} {fmt.width}x{fmt.height})"
        )
        if not buffers:
            raise UsageError(f"{what}: attach at least one dma-buf")
        if len(fmt.planes) != 1:
            raise UsageError(
                f"{what}: the format has {len(fmt.planes)} memory planes; M2mQueue binds one "
                "dma-buf per slot"
            )
        need = fmt.planes[0].sizeimage
        for i, buf in enumerate(buffers):
            if buf.size < need:
                raise UsageError(
                    f"{what}: buffer {i} ({buf.description}) has {buf.size} bytes, the format's "
                    f"sizeimage is {need}"
                )
        queue = DmabufQueue(device, buf_type, len(buffers))
        if queue.count < len(buffers):
            granted = queue.count
            queue.release()
            raise error_from_errno(
                errno.ENOBUFS,
                f"{what}: REQBUFS granted {granted} DMABUF slots for {len(buffers)} buffers",
                path=device.path,
                operation="VIDIOC_REQBUFS",
            )
        self._queue = queue
        self.buffers: tuple[Buffer, ...] = tuple(buffers)

    @property
    def count(self) -> int:
        """Slots, one per attached buffer."""
        return len(self.buffers)

    @property
    def streaming(self) -> bool:
        """STREAMON was issued and not undone."""
        return self._queue is not None and self._queue.streaming

    @property
    def queued(self) -> frozenset[int]:
        """Slots handed to the driver and not yet dequeued."""
        return frozenset(self._queued)

    @property
    def free(self) -> tuple[int, ...]:
        """Slots the application holds (not queued), in order."""
        return tuple(i for i in range(self.count) if i not in self._queued)

    def _live(self) -> DmabufQueue:
        if self._queue is None:
            raise ClosedResourceError(
                f"the {self.role.upper()} queue of {self.device.description} was released"
            )
        return self._queue

    def queue(self, index: int, bytesused: int = 0) -> None:
        """QBUF slot ``index`` with its dma-buf. ``bytesused`` is the payload of an OUTPUT
        buffer (0: the whole buffer; a bitstream buffer needs its real length).

        Raises:
            UsageError: no such slot, or it is already queued.
            KernelError: the driver refused the buffer.
        """
        queue = self._live()
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.count:
            raise UsageError(
                f"the {self.role.upper()} queue of {self.device.description} has slots "
                f"0..{self.count - 1}, not {index!r}"
            )
        if index in self._queued:
            raise UsageError(
                f"slot {index} of the {self.role.upper()} queue of {self.device.description} "
                "is already queued"
            )
        if self.role == "capture" and bytesused:
            raise UsageError("bytesused is for OUTPUT buffers; the driver sets CAPTURE payloads")
        queue.queue(index, [DmabufPlane(self.buffers[index], bytesused=bytesused)])
        self._queued.add(index)

    def dequeue(self, timeout: float = 5.0) -> V4l2Frame:
        """Wait up to ``timeout`` seconds for a finished buffer and take it back (DQBUF).

        Raises:
            TimedOutError: nothing finished in time.
            KernelError: DQBUF failed (EPIPE after the buffer flagged LAST).
        """
        frame = self._live().dequeue(timeout)
        self._queued.discard(frame.index)
        return frame

    def start(self) -> None:
        """STREAMON."""
        self._live().start()

    def stop(self) -> None:
        """STREAMOFF (every queued buffer comes back); a no-op when not streaming."""
        queue = self._live()
        try:
            queue.stop()
        finally:
            self._queued.clear()

    def release(self) -> None:
        """STREAMOFF if streaming, then REQBUFS(0); idempotent."""
        queue, self._queue = self._queue, None
        self._queued.clear()
        if queue is not None:
            queue.release()


# --- the session ---------------------------------------------------------------------------------


class M2mSession:
    """One open mem-to-mem V4L2 node with its OUTPUT and CAPTURE queues (see the module doc).

    Owns the device (opened O_RDWR | O_CLOEXEC; every open file of an m2m node is its own
    context) and the queues it attaches; :meth:`close` (also leaving the ``with`` block) stops
    and releases both queues, then closes the node, on every path.

    Args:
        path: the node (``v4l2_node_by_name("vim2m")``).

    Raises:
        UsageError: the node is not a mem-to-mem device.
        KernelError: it could not be opened or queried.
    """

    def __init__(self, path: str) -> None:
        self._queues: dict[Role, M2mQueue] = {}
        with contextlib.ExitStack() as stack:
            device = stack.enter_context(V4l2Device(path))
            caps = device.querycap()
            if not caps.node_caps & _M2M_CAPS:
                raise UsageError(
                    f"{path} ({caps.driver} {v4l2_node_name(path) or caps.card!r}) is not a "
                    f"mem-to-mem device: its capabilities are {caps.node_caps!r}"
                )
            stack.pop_all()
        self.device = device
        self.caps: V4l2Caps = caps
        self.path = path
        self.name = v4l2_node_name(path) or caps.card
        if caps.is_multiplanar:
            self.types: dict[Role, V4l2BufType] = {
                "output": V4l2BufType.VIDEO_OUTPUT_MPLANE,
                "capture": V4l2BufType.VIDEO_CAPTURE_MPLANE,
            }
        else:
            self.types = {"output": V4l2BufType.VIDEO_OUTPUT, "capture": V4l2BufType.VIDEO_CAPTURE}

    # -- resource handling --

    @property
    def closed(self) -> bool:
        """The node is closed."""
        return self.device.closed

    def close(self) -> None:
        """Stop and release both queues (CAPTURE first), then close the node; idempotent. The
        node is closed even when releasing a queue fails (closing it frees the slots too)."""
        try:
            for role in ("capture", "output"):
                queue = self._queues.pop(role, None)
                if queue is not None and not self.device.closed:
                    with contextlib.suppress(KernelError):
                        queue.release()
        finally:
            self.device.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<M2mSession {self.name} {self.path} {self.caps.driver} {state}>"

    def _role(self, role: str) -> Role:
        if role == "output":
            return "output"
        if role == "capture":
            return "capture"
        raise UsageError(f"a mem-to-mem queue is 'output' or 'capture', not {role!r}")

    def _what(self, role: Role) -> str:
        return f"the {role.upper()} queue of {self.name} ({self.path})"

    # -- formats --

    def formats(self, role: Role) -> list[V4l2FormatDesc]:
        """The formats the queue offers (VIDIOC_ENUM_FMT)."""
        return self.device.enum_formats(self.types[self._role(role)])

    def try_format(
        self, role: Role, pixelformat: int | str, width: int, height: int
    ) -> V4l2ImageFormat:
        """What the driver would make of a format on the queue (VIDIOC_TRY_FMT)."""
        return self.device.try_format(self.types[self._role(role)], pixelformat, width, height)

    def set_format(
        self,
        role: Role,
        pixelformat: int | str,
        width: int,
        height: int,
        *,
        bytesperline: Sequence[int] = (),
    ) -> V4l2ImageFormat:
        """Set the queue's format (VIDIOC_S_FMT); the driver may adjust it: compare the result.

        An encoder derives its CAPTURE (bitstream) format from the OUTPUT one, so set OUTPUT
        first there; a decoder's CAPTURE format comes from the stream (see
        :meth:`wait_source_change`).
        """
        return self.device.set_format(
            self.types[self._role(role)], pixelformat, width, height, bytesperline=bytesperline
        )

    def get_format(self, role: Role) -> V4l2ImageFormat:
        """The queue's current format (VIDIOC_G_FMT)."""
        return self.device.get_format(self.types[self._role(role)])

    def set_format_for_plan(self, role: Role, plan: Plan) -> V4l2ImageFormat:
        """Set the queue to a negotiated plan's format, size and pitch, and check that the
        driver's answer fits the plan's buffer: the same pixel format, the plan's first-plane
        pitch, a sizeimage no larger than the buffer, and a coded size at least the plan's whose
        rows the buffer holds (drivers round sizes up: vicodec codes 1920x1080 YUV420 as
        1920x1088, which a plan with 16-row alignment holds and one without does not).

        Raises:
            UsageError: the plan's format has no single-buffer V4L2 equivalent, or the queue does
                not offer it.
            NoPlanError: the driver's format does not fit the plan's buffer (another format, a
                smaller size, more rows, another pitch, or a larger sizeimage): the plan does not
                suit this device after all.
        """
        role = self._role(role)
        offered = {d.pixelformat for d in self.formats(role)}
        candidates = [f for f in drm_to_v4l2(plan.format) if not f.multi_planar]
        chosen = next((f for f in candidates if f.fourcc in offered), None)
        if chosen is None:
            names = ", ".join(f.name for f in candidates) or "none"
            raise UsageError(
                f"{self._what(role)} does not offer {plan.format.name} (V4L2: {names})"
            )
        if plan.layout.opaque or plan.size is None or len(plan.layout.buffer_sizes) != 1:
            raise UsageError(
                f"{self._what(role)}: the plan for {plan.format.name} is not one linear buffer"
            )
        first = plan.layout.planes[0]
        got = self.set_format(
            role, chosen.fourcc, plan.width, plan.height, bytesperline=[first.pitch]
        )
        size = f"{got.fourcc} {got.width}x{got.height}"
        problem = ""
        if got.pixelformat != chosen.fourcc:
            problem = f"asked {chosen.name} ({plan.format.name}), the driver set {got.fourcc}"
        elif got.width < plan.width or got.height < plan.height:
            problem = f"the driver set {size}, smaller than the plan's {plan.width}x{plan.height}"
        elif got.height > first.rows:
            problem = f"the driver set {size}, more than the {first.rows} rows of the plan"
        elif got.planes[0].bytesperline != first.pitch:
            problem = f"asked pitch {first.pitch}, the driver set {got.planes[0].bytesperline}"
        elif got.sizeimage > plan.layout.buffer_sizes[0]:
            problem = (
                f"the driver needs {got.sizeimage} bytes, the plan's buffer has "
                f"{plan.layout.buffer_sizes[0]}"
            )
        if problem:
            raise NoPlanError(f"{self._what(role)} refutes the plan: {problem}")
        return got

    # -- queues --

    def attach(self, role: Role, buffers: Sequence[Buffer]) -> M2mQueue:
        """Give the queue one DMABUF slot per buffer (REQBUFS), with its current format.

        Raises:
            UsageError: a queue is already attached to ``role``, or see :class:`M2mQueue`.
            KernelError: REQBUFS failed (EBUSY: another file owns the queue).
        """
        role = self._role(role)
        if self.device.closed:
            raise ClosedResourceError(f"{self.name} ({self.path}) is closed")
        if role in self._queues:
            raise UsageError(f"{self._what(role)} already has buffers: detach them first")
        fmt = self.get_format(role)
        queue = M2mQueue(self.device, role, self.types[role], fmt, buffers)
        self._queues[role] = queue
        return queue

    def queue(self, role: Role) -> M2mQueue:
        """The attached queue of ``role``.

        Raises:
            UsageError: nothing is attached there.
        """
        role = self._role(role)
        if role not in self._queues:
            raise UsageError(f"{self._what(role)} has no buffers: attach some first")
        return self._queues[role]

    def detach(self, role: Role) -> None:
        """Stop the queue and free its slots (REQBUFS 0); a no-op when nothing is attached."""
        queue = self._queues.pop(self._role(role), None)
        if queue is not None:
            queue.release()

    def start(self, role: Role | None = None) -> None:
        """STREAMON ``role``, or both (OUTPUT first) when None."""
        for r in (self._role(role),) if role is not None else ROLES:
            queue = self.queue(r)
            if not queue.streaming:
                queue.start()

    def stop(self, role: Role | None = None) -> None:
        """STREAMOFF ``role``, or both (CAPTURE first) when None; attached slots are kept."""
        roles: tuple[Role, ...] = (self._role(role),) if role is not None else ("capture", "output")
        for r in roles:
            if r in self._queues:
                self._queues[r].stop()

    def run_job(
        self, output_index: int, capture_index: int, *, bytesused: int = 0, timeout: float = 5.0
    ) -> M2mJob:
        """Process one buffer pair on a device that turns each OUTPUT buffer into one CAPTURE
        buffer (a converter, an encoder): queue both, then take both back.

        Raises:
            TimedOutError: the device did not finish in time.
            KernelError: a QBUF or DQBUF failed.
        """
        out_q, cap_q = self.queue("output"), self.queue("capture")
        cap_q.queue(capture_index)
        out_q.queue(output_index, bytesused)
        capture = cap_q.dequeue(timeout)
        output = out_q.dequeue(timeout)
        return M2mJob(output, capture)

    # -- events --

    def subscribe(self, event: V4l2EventType | int, *, id: int = 0, flags: int = 0) -> None:
        """VIDIOC_SUBSCRIBE_EVENT (e.g. V4L2_EVENT_SOURCE_CHANGE on a stateful decoder).

        Raises:
            KernelError: the driver does not send that event here (EINVAL).
        """
        self._subscription(_uapi.VIDIOC_SUBSCRIBE_EVENT, "VIDIOC_SUBSCRIBE_EVENT", event, id, flags)

    def unsubscribe(self, event: V4l2EventType | int, *, id: int = 0) -> None:
        """VIDIOC_UNSUBSCRIBE_EVENT."""
        self._subscription(_uapi.VIDIOC_UNSUBSCRIBE_EVENT, "VIDIOC_UNSUBSCRIBE_EVENT", event, id, 0)

    def _subscription(self, request: int, name: str, event: int, id: int, flags: int) -> None:
        for label, value in (("event", event), ("id", id), ("flags", flags)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
                raise UsageError(
                    f"{name}: {label} must be a 32-bit unsigned integer, not {value!r}"
                )
        sub = _uapi.v4l2_event_subscription(type=event, id=id, flags=flags)
        verb = "subscribe to" if request == _uapi.VIDIOC_SUBSCRIBE_EVENT else "unsubscribe from"
        self._ioctl(request, sub, name, f"{verb} {_event_name(event)} on {self.name}")

    def dequeue_event(self, timeout: float = 5.0) -> V4l2Event:
        """Wait up to ``timeout`` seconds for a subscribed event and take it (VIDIOC_DQEVENT).

        Raises:
            TimedOutError: no event in time.
            KernelError: DQEVENT failed.
        """
        fd = self.device.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        deadline = time.monotonic() + timeout
        what = f"dequeue an event from {self.name} ({self.path})"
        while True:
            remaining = deadline - time.monotonic()
            ready = poller.poll(max(0, math.ceil(remaining * 1000))) if remaining > 0 else []
            if not ready:
                raise error_from_errno(
                    errno.ETIMEDOUT,
                    f"{what}: no event within {timeout:g} s",
                    path=self.path,
                    operation="VIDIOC_DQEVENT",
                )
            if not ready[0][1] & select.POLLPRI:
                time.sleep(0.001)  # woken for buffers, not events
                continue
            event = _uapi.v4l2_event()
            self._ioctl(_uapi.VIDIOC_DQEVENT, event, "VIDIOC_DQEVENT", what)
            changes = (
                int(event.u.src_change.changes) if event.type == V4l2EventType.SOURCE_CHANGE else 0
            )
            return V4l2Event(
                type=int(event.type),
                sequence=int(event.sequence),
                pending=int(event.pending),
                changes=changes,
                timestamp=int(event.timestamp.tv_sec) + int(event.timestamp.tv_nsec) / 1e9,
                id=int(event.id),
            )

    def wait_source_change(self, timeout: float = 5.0) -> V4l2ImageFormat:
        """Wait for a stateful decoder's V4L2_EVENT_SOURCE_CHANGE (resolution) and return the
        CAPTURE format the stream needs (VIDIOC_G_FMT). Other events are consumed and skipped.
        Subscribe to SOURCE_CHANGE before starting the OUTPUT queue.

        Raises:
            TimedOutError: no such event in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            event = self.dequeue_event(max(0.0, deadline - time.monotonic()))
            if event.resolution_changed:
                return self.get_format("capture")

    # -- codec commands --

    def encoder_command(self, command: V4l2EncCmd, flags: int = 0) -> None:
        """VIDIOC_ENCODER_CMD (STOP: finish the frames queued so far, flag the last one LAST)."""
        arg = _uapi.v4l2_encoder_cmd(cmd=V4l2EncCmd(command), flags=flags)
        what = f"encoder command {V4l2EncCmd(command).name} on {self.name}"
        self._ioctl(_uapi.VIDIOC_ENCODER_CMD, arg, "VIDIOC_ENCODER_CMD", what)

    def decoder_command(self, command: V4l2DecCmd, flags: int = 0) -> None:
        """VIDIOC_DECODER_CMD (STOP: decode what was queued, flag the last frame LAST)."""
        arg = _uapi.v4l2_decoder_cmd(cmd=V4l2DecCmd(command), flags=flags)
        what = f"decoder command {V4l2DecCmd(command).name} on {self.name}"
        self._ioctl(_uapi.VIDIOC_DECODER_CMD, arg, "VIDIOC_DECODER_CMD", what)

    def drain(self, kind: Literal["encoder", "decoder"], timeout: float = 5.0) -> list[V4l2Frame]:
        """Drain a stateful codec: send STOP, then dequeue CAPTURE buffers until the one flagged
        V4L2_BUF_FLAG_LAST (which may carry no payload) and return them all, the LAST one last.
        The driver needs a CAPTURE buffer to flag: when none is queued, the first free slot is.
        OUTPUT buffers the driver finished meanwhile are dequeued too. Afterwards DQBUF on
        CAPTURE fails with EPIPE until the codec is restarted (STREAMOFF/STREAMON or START).

        Raises:
            UsageError: ``kind`` is not encoder or decoder, or CAPTURE has no buffers.
            TimedOutError: no LAST buffer in time.
        """
        if kind not in ("encoder", "decoder"):
            raise UsageError(f"drain an 'encoder' or a 'decoder', not {kind!r}")
        cap_q = self.queue("capture")
        if not cap_q.queued:
            if not cap_q.free:
                raise UsageError(f"{self._what('capture')} has no buffer to take the LAST flag")
            cap_q.queue(cap_q.free[0])
        if kind == "encoder":
            self.encoder_command(V4l2EncCmd.STOP)
        else:
            self.decoder_command(V4l2DecCmd.STOP)
        frames: list[V4l2Frame] = []
        deadline = time.monotonic() + timeout
        while True:
            frame = cap_q.dequeue(max(0.0, deadline - time.monotonic()))
            frames.append(frame)
            if frame.flags & V4l2BufFlag.LAST:
                break
        out_q = self._queues.get("output")
        while out_q is not None and out_q.queued:
            try:
                out_q.dequeue(0.5)
            except KernelError:
                break
        return frames

    # -- controls --

    def set_control(self, control: int, value: int) -> int:
        """VIDIOC_S_CTRL; returns the value the driver kept (it may clamp it)."""
        arg = self._control(control, value)
        what = f"set control 0x{control:08x} to {value} on {self.name}"
        self._ioctl(_uapi.VIDIOC_S_CTRL, arg, "VIDIOC_S_CTRL", what)
        return int(arg.value)

    def get_control(self, control: int) -> int:
        """VIDIOC_G_CTRL: a control's current value."""
        arg = self._control(control, 0)
        what = f"get control 0x{control:08x} of {self.name}"
        self._ioctl(_uapi.VIDIOC_G_CTRL, arg, "VIDIOC_G_CTRL", what)
        return int(arg.value)

    @staticmethod
    def _control(control: int, value: int) -> _uapi.v4l2_control:
        if isinstance(control, bool) or not isinstance(control, int) or not 0 <= control < 1 << 32:
            raise UsageError(f"a control id is a 32-bit unsigned integer, not {control!r}")
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not -(1 << 31) <= value < 1 << 31
        ):
            raise UsageError(f"a control value is a 32-bit signed integer, not {value!r}")
        return _uapi.v4l2_control(id=control, value=value)

    def _ioctl(self, request: int, arg: ctypes.Structure, name: str, what: str) -> None:
        ioctl(self.device.fileno(), request, arg, name=name, what=what, path=self.path)


def _event_name(event: int) -> str:
    try:
        return f"V4L2_EVENT_{V4l2EventType(event).name}"
    except ValueError:
        return f"event 0x{event:08x}"


# --- converters in the copy path -----------------------------------------------------------------


@dataclass(frozen=True)
class Converter:
    """A mem-to-mem device that copies frames from one buffer set into another.

    Attributes:
        name: its device id (``"vim2m"``).
        accepts: what its OUTPUT queue takes (the frames it reads; access ``read``).
        produces: what its CAPTURE queue writes (access ``write``).
        path: its node, when it is a live device.
    """

    name: str
    accepts: Constraints
    produces: Constraints
    path: str | None = None

    def __post_init__(self) -> None:
        if not self.accepts.reads:
            raise UsageError(
                f"converter {self.name}: {self.accepts.label} must read its buffer (access "
                f"{self.accepts.access!r})"
            )
        if not self.produces.writes:
            raise UsageError(
                f"converter {self.name}: {self.produces.label} must write its buffer (access "
                f"{self.produces.access!r})"
            )

    @classmethod
    def from_usages(
        cls,
        usages: Iterable[Constraints],
        accepts: str,
        produces: str,
        *,
        path: str | None = None,
    ) -> Converter:
        """A converter from a device's usages: ``accepts`` and ``produces`` name them (discovery
        calls a mem-to-mem node's queues ``output`` and ``capture``; the bundled profiles
        ``input`` and ``output``).

        Raises:
            UsageError: a usage is missing, or the usages belong to different devices.
        """
        by_usage = {c.usage: c for c in usages}
        devices = {c.device for c in by_usage.values()}
        if len(devices) != 1:
            raise UsageError(
                f"a converter's usages come from one device, not {sorted(devices) or 'none'}"
            )
        device = devices.pop()
        for usage in (accepts, produces):
            if usage not in by_usage:
                raise UsageError(
                    f"device {device} has no usage {usage!r}; its usages: {', '.join(by_usage)}"
                )
        return cls(device, by_usage[accepts], by_usage[produces], path)


def _plan_constraints(plan: Plan) -> Constraints:
    """The plan as one device's constraints: exactly its pair, rules, limits and memory."""
    rules = plan.rules
    return Constraints(
        device="planned",
        usage="buffer",
        pairs=((plan.format.fourcc, plan.modifier.value),),
        layout=replace(rules.layout, multi_buffer=False),
        buffers=rules.buffers,
        min_pitch=rules.min_pitch,
        max_pitch=rules.max_pitch,
        max_width=rules.max_width,
        max_height=rules.max_height,
        memory=plan.memory,
        access="read-write",
    )


def plan_misfits(plan: Plan, constraints: Constraints) -> tuple[str, ...]:
    """Why a buffer made for ``plan`` does not suit ``constraints`` (empty: it does).

    The plan is negotiated together with the constraints (its own rules pinned to its format and
    modifier): a conflict, a layout that would have to change (more pitch or row alignment), or
    memory the plan does not promise (contiguous, a lower DMA limit, protected, another
    location) is a misfit.
    """
    label = constraints.label
    pinned = _plan_constraints(plan)
    if pinned.label == label:
        pinned = replace(pinned, device="planned-buffer")
    result = try_negotiate([pinned, constraints], plan.width, plan.height)
    if not isinstance(result, Plan):
        return tuple(f"{label}: {c.message}" for c in result)
    reasons: list[str] = []
    if result.layout.planes != plan.layout.planes or result.layout.size != plan.layout.size:
        reasons.append(
            f"{label}: the {plan.format.name} layout would change (pitches "
            f"{[p.pitch for p in plan.layout.planes]} -> {[p.pitch for p in result.layout.planes]},"
            f" size {plan.layout.size} -> {result.layout.size})"
        )
    need, have = constraints.memory, plan.memory
    if need.contiguous and not have.contiguous:
        reasons.append(f"{label}: needs contiguous memory, the plan's buffer is not")
    if need.dma_bits < have.dma_bits:
        reasons.append(
            f"{label}: reaches {need.dma_bits}-bit DMA addresses, the plan allows {have.dma_bits}"
        )
    if need.protected != have.protected:
        reasons.append(f"{label}: protected memory {need.protected}, the plan {have.protected}")
    if need.location not in ("any", have.location) and have.location != "any":
        reasons.append(f"{label}: memory location {need.location}, the plan {have.location}")
    return tuple(reasons)


def converter_misfits(converter: Converter, source: Plan, destination: Plan) -> tuple[str, ...]:
    """Why ``converter`` cannot read ``source`` buffers and write ``destination`` buffers (empty:
    it can), checked with :func:`plan_misfits` on both of its queues."""
    if (source.width, source.height) != (destination.width, destination.height):
        # Scaling converters exist, but the plans of a copy path share one size.
        size = f"{source.width}x{source.height} -> {destination.width}x{destination.height}"
        return (f"{converter.name}: the plans differ in size ({size})",)
    return plan_misfits(source, converter.accepts) + plan_misfits(destination, converter.produces)


@dataclass(frozen=True)
class ConverterChoice:
    """A copy path with the device that performs the copy.

    Attributes:
        converter: the mem-to-mem device.
        source: the plan of the buffers it reads (its OUTPUT queue imports them).
        destination: the plan of the buffers it writes (its CAPTURE queue imports them).
        rejected: the converters tried and turned down, with why.
    """

    converter: Converter
    source: Plan
    destination: Plan
    rejected: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def source_devices(self) -> tuple[str, ...]:
        """The devices sharing the source buffers besides the converter."""
        return tuple(d for d in self.source.devices if d != self.converter.accepts.label)

    @property
    def destination_devices(self) -> tuple[str, ...]:
        """The devices sharing the destination buffers besides the converter."""
        return tuple(d for d in self.destination.devices if d != self.converter.produces.label)

    @property
    def bytes_per_frame(self) -> int | None:
        """Bytes the converter reads plus bytes it writes per frame (None: an exporter decides)."""
        if self.source.size is None or self.destination.size is None:
            return None
        return self.source.size + self.destination.size

    def describe(self) -> str:
        """``{vimc:capture} -> vim2m (BG24 -> RG16, 921600 -> 614400 bytes/frame) -> {...}``."""
        src, dst = self.source, self.destination
        return (
            f"{{{', '.join(self.source_devices)}}} -> {self.converter.name} "
            f"({src.format.fourcc_str} -> {dst.format.fourcc_str}, {src.size} -> {dst.size} "
            f"bytes/frame) -> {{{', '.join(self.destination_devices)}}}"
        )

    def to_json(self) -> dict[str, object]:
        """The converter, both plans and the converters turned down."""
        return {
            "converter": self.converter.name,
            "converter_path": self.converter.path,
            "description": self.describe(),
            "source": self.source.to_json(),
            "destination": self.destination.to_json(),
            "rejected": [{"converter": n, "reasons": list(r)} for n, r in self.rejected],
        }


def _sorted_converters(converters: Iterable[Converter]) -> list[Converter]:
    found = sorted(converters, key=lambda c: c.name)
    names = [c.name for c in found]
    if len(set(names)) != len(names):
        raise UsageError(f"converters need distinct names, not {names}")
    return found


def find_converter(
    source: Plan, destination: Plan, converters: Iterable[Converter]
) -> ConverterChoice | None:
    """The first converter (by name) that reads ``source`` buffers and writes ``destination``
    buffers as they were planned (see :func:`converter_misfits`); None when none can. The plans
    usually come from :func:`~devalloc.negotiate.propose_copy_path`, which does not know the
    converter: when this answers None, :func:`propose_converted_path` plans both sides with it.
    """
    rejected: list[tuple[str, tuple[str, ...]]] = []
    for converter in _sorted_converters(converters):
        reasons = converter_misfits(converter, source, destination)
        if not reasons:
            return ConverterChoice(converter, source, destination, tuple(rejected))
        rejected.append((converter.name, reasons))
    return None


def propose_converted_path(
    source: Sequence[Constraints],
    destination: Sequence[Constraints],
    converters: Iterable[Converter],
    width: int,
    height: int,
    formats: Sequence[str | int] | None = None,
    *,
    cpu_access: CpuAccess = "none",
    prefer_uncached: bool = False,
) -> ConverterChoice | None:
    """Plan a copy path whose copy is done by a mem-to-mem converter.

    For each converter the source group is negotiated together with what the converter's OUTPUT
    queue accepts, and the destination group with what its CAPTURE queue produces, so both
    buffer sets suit it. Of the converters for which both sides have a plan, the one that moves
    the fewest bytes per frame wins (then the name). ``formats`` and the CPU options apply to
    both sides, as in :func:`~devalloc.negotiate.propose_copy_path`.

    Returns:
        The choice (with the converters turned down and why), or None when no converter fits.

    Raises:
        UsageError: an empty group, or an invalid request (see
            :func:`~devalloc.negotiate.negotiate`).
    """
    if not source or not destination:
        raise UsageError("a converted copy path needs a source group and a destination group")
    found: list[ConverterChoice] = []
    rejected: list[tuple[str, tuple[str, ...]]] = []
    for converter in _sorted_converters(converters):
        src = try_negotiate(
            [*source, converter.accepts],
            width,
            height,
            formats,
            cpu_access=cpu_access,
            prefer_uncached=prefer_uncached,
        )
        dst = try_negotiate(
            [*destination, converter.produces],
            width,
            height,
            formats,
            cpu_access=cpu_access,
            prefer_uncached=prefer_uncached,
        )
        reasons: list[str] = []
        for side, result in (("source", src), ("destination", dst)):
            if not isinstance(result, Plan):
                reasons.extend(f"{side}: {c.message}" for c in result)
        if reasons or not isinstance(src, Plan) or not isinstance(dst, Plan):
            rejected.append((converter.name, tuple(reasons)))
            continue
        found.append(ConverterChoice(converter, src, dst))
    if not found:
        return None
    best = min(
        found,
        key=lambda c: (c.bytes_per_frame is None, c.bytes_per_frame or 0, c.converter.name),
    )
    others: list[tuple[str, tuple[str, ...]]] = [
        (c.converter.name, ("moves more bytes per frame",)) for c in found if c is not best
    ]
    return replace(best, rejected=tuple(rejected + others))
