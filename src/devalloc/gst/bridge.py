"""devalloc buffers <-> GstBuffers (needs GStreamer's Python bindings: ``scripts/setup.sh --gst``).

Example (a memfd-backed frame through ``videoconvert``)::

    from devalloc.gst.bridge import Gst, to_gst_buffer, from_gst_buffer, raw_caps
    gst_buffer = to_gst_buffer(buffers, plan.layout)          # fd/dma-buf memory + GstVideoMeta
    appsrc.set_caps(Gst.Caps.from_string(raw_caps(plan.layout)))
    appsrc.emit("push-buffer", gst_buffer)
    ...
    with from_gst_buffer(sample.get_buffer(), sample.get_caps()) as frame:
        frame.buffers[0].planes(...)                           # devalloc owns dups of the fds

devalloc -> GStreamer: each of a frame's devalloc buffers becomes one GstMemory over a duplicate
of its fd (``GstDmaBufAllocator`` for a dma-buf, ``GstFdAllocator`` for a memfd), so the
GstBuffer lives on its own after the devalloc buffers close; a GstVideoMeta carries the layout's
plane offsets (counted across the memories, as GStreamer counts them) and pitches, so padded
layouts need no copy. GStreamer 1.22 (Debian 12) names formats in raw caps only, so a pair needs
a GStreamer format name (every LINEAR format GStreamer knows, and ``NV12_4L4``/``NV12_64Z32``).

GStreamer -> devalloc: a GstBuffer whose memories are dma-bufs (``v4l2src io-mode=dmabuf``,
decoders) or fds becomes a :class:`GstFrame`: one devalloc Buffer per memory, each owning a
duplicate of the memory's fd, and a Layout read from the GstVideoMeta (or from the caps' video
info where the buffer has none), so devalloc can verify, account and CPU-access them.

Not provided: a GstBufferPool that upstream elements allocate from through the ALLOCATION query.
On 1.22 from Python neither way to answer that query is clean (both tried): a pad probe sees the
query through PyGObject's wrapper, which holds a second reference, so
``gst_query_add_allocation_pool`` fails its ``gst_query_is_writable`` assertion (a CRITICAL);
and an element written in Python (a GstBaseSink with ``do_propose_allocation``) makes GStreamer
log "The created element should be floating, this is probably caused by faulty bindings" (a
CRITICAL) when it is created. Making either work would mean reaching into refcounts. A small C
element (a sink or a pass-through that proposes a pool of devalloc-made dma-bufs), or newer
bindings that hand vfuncs and probes writable mini-objects, would make it possible. Pushing
through ``appsrc`` needs none of that.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..buffer import Buffer
from ..errors import UsageError
from ..formats import (
    Layout,
    Modifier,
    PixelFormat,
    PlaneLayout,
    gst_format_name,
    gst_to_drm,
    layout,
)

try:
    import gi

    for _namespace in ("Gst", "GstApp", "GstVideo", "GstAllocators"):
        gi.require_version(_namespace, "1.0")
    from gi.repository import Gst, GstAllocators, GstApp, GstVideo
except (ImportError, ValueError) as _exc:  # ValueError: a typelib is missing
    raise ImportError(
        f"devalloc.gst.bridge needs GStreamer's Python bindings ({_exc}); install them with"
        " scripts/setup.sh --gst (Debian: python3-gst-1.0, gir1.2-gst-plugins-base-1.0)"
    ) from _exc

if not Gst.is_initialized():
    Gst.init(None)

__all__ = [
    "Gst",
    "GstAllocators",
    "GstApp",
    "GstFrame",
    "GstVideo",
    "from_gst_buffer",
    "raw_caps",
    "to_gst_buffer",
]

_MAX_PLANES = 4


def _dup(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0)


def _gst_format(lay: Layout) -> Any:
    name = gst_format_name(lay.format, lay.modifier)
    if name is None:
        raise UsageError(
            f"GStreamer {Gst.version_string()} has no raw-caps name for {lay.format.name} with"
            f" {lay.modifier.name}: give the frame a format GStreamer names (devalloc formats"
            " shows them) or LINEAR"
        )
    return GstVideo.VideoFormat.from_string(name)


def raw_caps(lay: Layout, framerate: str = "0/1") -> str:
    """The raw caps of frames with this layout (``video/x-raw,format=NV12,...``).

    Raises:
        UsageError: GStreamer has no name for the layout's (format, modifier).
    """
    name = gst_format_name(lay.format, lay.modifier)
    if name is None:
        _gst_format(lay)
    return f"video/x-raw,format={name},width={lay.width},height={lay.height},framerate={framerate}"


def to_gst_buffer(buffers: Buffer | Sequence[Buffer], lay: Layout | None = None) -> Any:
    """A GstBuffer over the memory of ``buffers`` (one per buffer of the layout) with a
    GstVideoMeta of the layout's planes.

    Args:
        buffers: the frame's devalloc buffers (one, or one per plane for a multi-buffer layout).
        lay: the frame's layout; default: the layout attached to the first buffer.

    Raises:
        UsageError: no layout, an opaque layout, the wrong number of buffers, a buffer smaller
            than its part of the layout, or a pair GStreamer cannot name.
    """
    items = [buffers] if isinstance(buffers, Buffer) else list(buffers)
    if not items or not all(isinstance(b, Buffer) for b in items):
        raise UsageError(f"to_gst_buffer takes devalloc Buffers, not {buffers!r:.80}")
    lay = lay if lay is not None else items[0].layout
    if not isinstance(lay, Layout):
        raise UsageError("to_gst_buffer needs the frame's Layout (none given or attached)")
    if lay.opaque or not lay.planes:
        raise UsageError(f"the {lay.format.name} layout is opaque: GStreamer needs plane offsets")
    if len(lay.planes) > _MAX_PLANES:
        raise UsageError(f"GStreamer frames have at most {_MAX_PLANES} planes")
    sizes = lay.buffer_sizes or (max(p.end for p in lay.planes),)
    if len(items) != len(sizes):
        raise UsageError(f"the {lay.format.name} layout has {len(sizes)} buffers, not {len(items)}")
    for i, (item, size) in enumerate(zip(items, sizes, strict=True)):
        if item.size < size:
            raise UsageError(f"buffer {i} has {item.size} bytes; the layout needs {size}")
    video_format = _gst_format(lay)
    gst_buffer = Gst.Buffer.new()
    starts = []
    start = 0
    for item, size in zip(items, sizes, strict=True):
        fd = _dup(item.fileno())
        try:
            if item.is_dmabuf:
                memory = GstAllocators.DmaBufAllocator.alloc(_DMABUF, fd, size)
            else:
                memory = GstAllocators.FdAllocator.alloc(
                    _FD, fd, size, GstAllocators.FdMemoryFlags.NONE
                )
        except BaseException:
            os.close(fd)
            raise
        if memory is None:
            os.close(fd)
            raise UsageError(f"GStreamer could not wrap {item.description} ({size} bytes)")
        gst_buffer.append_memory(memory)  # the memory owns fd now
        starts.append(start)
        start += size
    offsets = [starts[p.buffer] + p.offset for p in lay.planes]
    strides = [p.pitch for p in lay.planes]
    padding = [0] * (_MAX_PLANES - len(offsets))
    meta = GstVideo.buffer_add_video_meta_full(
        gst_buffer,
        GstVideo.VideoFrameFlags.NONE,
        video_format,
        lay.width,
        lay.height,
        len(offsets),
        offsets + padding,
        strides + padding,
    )
    if meta is None:
        raise UsageError(f"GStreamer refused the video meta of the {lay.format.name} layout")
    return gst_buffer


_DMABUF = GstAllocators.DmaBufAllocator.new()
_FD = GstAllocators.FdAllocator.new()


@dataclass
class GstFrame:
    """A GstBuffer's memories as devalloc Buffers, with the frame's layout.

    Attributes:
        buffers: one Buffer per GstMemory that holds a plane (each owns a duplicate fd).
        layout: the planes: offsets into those buffers (``buffer`` names which), pitches.
    """

    buffers: tuple[Buffer, ...]
    layout: Layout

    def close(self) -> None:
        """Close every buffer (the GstBuffer keeps its own fds)."""
        for item in self.buffers:
            item.close()

    def __enter__(self) -> GstFrame:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _meta_geometry(
    gst_buffer: Any, caps: Any
) -> tuple[PixelFormat, Modifier, int, int, list[int], list[int], str]:
    meta = GstVideo.buffer_get_video_meta(gst_buffer)
    if meta is not None:
        name = GstVideo.VideoFormat.to_string(meta.format)
        count = meta.n_planes
        width, height = meta.width, meta.height
        offsets, strides = list(meta.offset[:count]), list(meta.stride[:count])
    else:
        if caps is None:
            raise UsageError("the GstBuffer has no GstVideoMeta: give its caps too")
        info = GstVideo.VideoInfo.new_from_caps(caps)
        if info is None:
            raise UsageError(f"caps {caps.to_string()!r:.100} are not raw video caps")
        name = GstVideo.VideoFormat.to_string(info.finfo.format)
        count = info.finfo.n_planes
        width, height = info.width, info.height
        offsets, strides = list(info.offset[:count]), list(info.stride[:count])
    fmt, modifier = gst_to_drm(name)
    source = "GstVideoMeta" if meta is not None else "caps"
    return fmt, modifier, width, height, offsets, strides, source


def from_gst_buffer(gst_buffer: Any, caps: Any = None) -> GstFrame:
    """devalloc Buffers (duplicate fds) over the fd or dma-buf memories of ``gst_buffer``.

    Args:
        gst_buffer: a Gst.Buffer (from ``appsink``, a pad probe, ...).
        caps: its caps (a Gst.Caps), needed only when the buffer has no GstVideoMeta.

    Raises:
        UsageError: a plane lies in memory that is neither a dma-buf nor an fd (system memory),
            a format GStreamer does not map to DRM, or planes that cross memories.
    """
    fmt, modifier, width, height, offsets, strides, source = _meta_geometry(gst_buffer, caps)
    default = layout(fmt, width, height, modifier)
    if default.opaque:
        raise UsageError(f"{fmt.name} with {modifier.name}: devalloc cannot lay out its planes")
    memories: dict[int, int] = {}  # GstBuffer memory index -> devalloc buffer index
    planes = []
    buffers: list[Buffer] = []
    try:
        for i, (offset, stride) in enumerate(zip(offsets, strides, strict=True)):
            rows = default.planes[i].rows
            found, index, length, skip = gst_buffer.find_memory(offset, max(1, stride * rows))
            if not found or length != 1:
                raise UsageError(f"plane {i} of the GstBuffer is not inside one memory")
            if index not in memories:
                memories[index] = len(buffers)
                buffers.append(_adopt_memory(gst_buffer.peek_memory(index), index))
            memory = gst_buffer.peek_memory(index)
            planes.append(
                PlaneLayout(memory.offset + skip, stride, stride * rows, rows, memories[index])
            )
        sizes = tuple(b.size for b in buffers)
        frame_layout = Layout(
            fmt,
            width,
            height,
            modifier,
            tuple(planes),
            sum(sizes),
            sizes,
            multi_buffer=len(buffers) > 1,
            note=f"from a GstBuffer (planes from its {source})",
        )
        for i, item in enumerate(buffers):
            item.attach_layout(frame_layout, buffer=i)
    except BaseException:
        for item in buffers:
            item.close()
        raise
    return GstFrame(tuple(buffers), frame_layout)


def _adopt_memory(memory: Any, index: int) -> Buffer:
    if GstAllocators.is_dmabuf_memory(memory):
        return Buffer.from_fd(GstAllocators.dmabuf_memory_get_fd(memory))
    if GstAllocators.is_fd_memory(memory):
        fd = _dup(GstAllocators.fd_memory_get_fd(memory))
        return Buffer(fd, exporter="GStreamer fd memory", dmabuf=False)
    raise UsageError(
        f"memory {index} of the GstBuffer is {getattr(memory.allocator, 'mem_type', '?')!r}"
        " memory, not a dma-buf"
        " or an fd: devalloc can adopt only fd-backed memory"
    )
