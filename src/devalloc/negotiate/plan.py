"""What negotiation produces: a :class:`Plan` (with its provenance); the records it is made of
(:class:`Conflict`, :class:`Provenance`, ...) live in :mod:`devalloc.negotiate.records` and are
re-exported here.

Example:
    >>> from devalloc.constraints import Constraints
    >>> from devalloc.formats import fourcc_code
    >>> from devalloc.negotiate import negotiate
    >>> cam = Constraints("cam", "capture", ((fourcc_code("NV12"), 0),), access="write")
    >>> plan = negotiate([cam], 64, 64)
    >>> Plan.from_json(plan.to_json()) == plan
    True
    >>> plan.drm_format, plan.gst_caps["raw"]
    ('NV12', 'video/x-raw,format=NV12,width=64,height=64')

A plan is a frozen dataclass with a lossless ``to_json``/``from_json`` pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..constraints import MemoryRules, _Table, modifier_text
from ..errors import UsageError
from ..formats import (
    DRM_FORMAT_MOD_INVALID,
    MAX_DIMENSION,
    Layout,
    Modifier,
    PixelFormat,
    drm_format_string,
    gst_caps,
    layout,
    lookup_format,
    parse_modifier,
)
from .explain import explain_plan
from .records import APPLICATION as APPLICATION
from .records import CachePolicy as CachePolicy
from .records import CombinedRules as CombinedRules
from .records import Conflict as Conflict
from .records import CpuMapping as CpuMapping
from .records import Provenance as Provenance
from .records import ProvenanceValue as ProvenanceValue
from .records import SyncPolicy as SyncPolicy
from .records import no_location, strings

__all__ = ["Plan", "heap_hint"]  # and the records above, re-exported for older imports


def heap_hint(memory: MemoryRules) -> str:
    """What kind of heap serves memory with these properties (a hint for people; the heap
    registry chooses by properties).

    Example:
        >>> heap_hint(MemoryRules(contiguous=True, dma_bits=32))
        'a CMA heap below 4 GiB (contiguous, 32-bit DMA)'
    """
    if memory.protected:
        return "a protected (secure) heap"
    if memory.location not in ("system", "any"):
        return f"device-local memory {memory.location} (allocated and exported by that device)"
    below = ""
    if memory.dma_bits < 64:
        reach = 1 << memory.dma_bits
        units = next(
            (u, s) for u, s in ((30, "GiB"), (20, "MiB"), (10, "KiB"), (0, "B")) if reach >> u
        )
        below = f" below {reach >> units[0]} {units[1]}"
    if memory.contiguous:
        return f"a CMA heap{below} (contiguous, {memory.dma_bits}-bit DMA)"
    if below:
        return f"a heap with memory{below} ({memory.dma_bits}-bit DMA)"
    return "the system heap (any pages)"


@dataclass(frozen=True)
class Plan:
    """One buffer every device can use: format, modifier, layout, memory and cache policy.

    Attributes:
        format: the pixel format.
        modifier: the format modifier.
        width: width in pixels.
        height: height in pixels.
        layout: the plane layout under ``rules.layout`` (``size`` None when the modifier's layout
            is vendor-private: the exporter decides).
        rules: the combined layout rules and limits.
        memory: the combined memory requirements (``cpu_access`` includes the application's).
        cache: how the CPU maps the buffer and whether it must sync.
        devices: the labels of the devices sharing the buffer, sorted.
        provenance: where every combined value comes from.
        count: how many buffers of this plan the parties need (the ``count`` provenance record
            says how it was combined); 1 for plans made before counts were negotiated.
    """

    format: PixelFormat
    modifier: Modifier
    width: int
    height: int
    layout: Layout
    rules: CombinedRules
    memory: MemoryRules
    cache: CachePolicy
    devices: tuple[str, ...]
    provenance: tuple[Provenance, ...] = ()
    count: int = 1

    @property
    def size(self) -> int | None:
        """Total bytes (None when the exporter decides)."""
        return self.layout.size

    @property
    def heap_hint(self) -> str:
        """What kind of heap serves this plan's memory (see :func:`heap_hint`)."""
        return heap_hint(self.memory)

    @property
    def drm_format(self) -> str | None:
        """GStreamer's drm-format string (``NV12:0x0100000000000002``; ``NV12`` for LINEAR), None
        for the INVALID modifier."""
        if self.modifier.value == DRM_FORMAT_MOD_INVALID:
            return None
        return drm_format_string(self.format, self.modifier)

    @property
    def gst_caps(self) -> dict[str, str | None]:
        """GStreamer caps for this plan's buffers: ``raw`` (``video/x-raw,format=<GStreamer
        name>,...``, only for a LINEAR plan whose format GStreamer names) and ``dma_drm`` (1.24's
        ``video/x-raw(memory:DMABuf),format=DMA_DRM,drm-format=...``); None where the modifier
        is INVALID. The strides and offsets travel in each buffer's GstVideoMeta
        (:mod:`devalloc.gst`)."""
        if self.modifier.value == DRM_FORMAT_MOD_INVALID:
            return {"raw": None, "dma_drm": None}
        caps = gst_caps(self.format, self.modifier, self.width, self.height)
        return {"raw": caps["raw"], "dma_drm": caps["dma_drm"]}

    def find(self, attribute: str) -> Provenance | None:
        """The provenance record of ``attribute``, if the plan has one."""
        return next((p for p in self.provenance if p.attribute == attribute), None)

    def explain(self) -> list[str]:
        """Human lines saying why the plan is what it is, one per combined rule."""
        return explain_plan(self)

    def to_json(self) -> dict[str, object]:
        """The plan as JSON: format, modifier, GStreamer's drm-format and caps, size, planes (as
        ``devalloc layout --json``), memory, cache, devices, the combined rules and the
        provenance."""
        lay = self.layout
        return {
            "format": self.format.name,
            "fourcc": self.format.fourcc_str,
            "modifier": modifier_text(self.modifier.value),
            "modifier_value": self.modifier.hex,
            "drm_format": self.drm_format,
            "gstreamer": self.gst_caps,
            "size": {"width": self.width, "height": self.height, "bytes": lay.size},
            "planes": [
                {"offset": p.offset, "pitch": p.pitch, "size": p.size, "buffer": p.buffer}
                for p in lay.planes
            ],
            "buffer_sizes": list(lay.buffer_sizes),
            "opaque": lay.opaque,
            "layout_note": lay.note,
            "memory": self.memory.to_json(),
            "cache": self.cache.to_json(),
            "heap_hint": self.heap_hint,
            "devices": list(self.devices),
            "rules": self.rules.to_json(),
            "provenance": [p.to_json() for p in self.provenance],
            "count": self.count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Plan:
        """Read what :meth:`to_json` wrote; the layout is recomputed and must match.

        Raises:
            UsageError: a missing or unknown key, an invalid value, or planes that do not match
                the layout the rules give.
        """
        table = _Table(data, ("plan",), no_location)
        fmt = lookup_format(table.text("format", required=True))
        by_name = table.text("modifier")
        by_value = table.text("modifier_value")
        modifier = parse_modifier(by_value or by_name)
        if by_name and parse_modifier(by_name) != modifier:
            raise table.fail("modifier", f"{by_name!r} does not match modifier_value {by_value}")
        table.text("fourcc")
        size = table.table("size")
        if size is None:
            raise UsageError("plan JSON: missing key plan.size")
        width = size.integer("width", 0, 1, MAX_DIMENSION)
        height = size.integer("height", 0, 1, MAX_DIMENSION)
        written_bytes = size.get("bytes")
        size.finish()
        rules_table = table.get("rules")
        if not isinstance(rules_table, Mapping):
            raise UsageError("plan JSON: plan.rules must be a table")
        rules = CombinedRules.from_json(rules_table, fmt.planes)
        lay = layout(fmt, width, height, modifier, rules.layout)
        planes = [
            {"offset": p.offset, "pitch": p.pitch, "size": p.size, "buffer": p.buffer}
            for p in lay.planes
        ]
        if table.get("planes") != planes or written_bytes != lay.size:
            raise UsageError(
                f"plan JSON: planes/size do not match the layout of {fmt.name} {width}x{height}"
                " under its rules"
            )
        for derived in ("buffer_sizes", "opaque", "layout_note", "heap_hint", "drm_format"):
            table.get(derived)
        table.get("gstreamer")
        memory = table.get("memory")
        cache = table.get("cache")
        if not isinstance(memory, Mapping) or not isinstance(cache, Mapping):
            raise UsageError("plan JSON: plan.memory and plan.cache must be tables")
        provenance = table.list_of("provenance", dict, "a provenance record")
        count = table.integer("count", 1, 1, 1 << 16)
        made = cls(
            fmt,
            modifier,
            width,
            height,
            lay,
            rules,
            MemoryRules.from_json(memory),
            CachePolicy.from_json(cache),
            strings(table, "devices"),
            tuple(Provenance.from_json(p) for p in provenance),
            count,
        )
        table.finish()
        return made
