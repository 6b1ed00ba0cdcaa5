"""What negotiation produces: a :class:`Plan` (with its provenance) or :class:`Conflict` items.

Example:
    >>> from devalloc.constraints import Constraints
    >>> from devalloc.formats import fourcc_code
    >>> from devalloc.negotiate import negotiate
    >>> cam = Constraints("cam", "capture", ((fourcc_code("NV12"), 0),), access="write")
    >>> plan = negotiate([cam], 64, 64)
    >>> Plan.from_json(plan.to_json()) == plan
    True
    >>> Conflict("location", ("a:x", "b:y"), ("system", "vram:card0"), "...").to_json()["values"]
    ['system', 'vram:card0']

Everything here is a frozen dataclass with a lossless ``to_json``/``from_json`` pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, cast

from ..constraints import (
    BUFFERS_VALUES,
    Buffers,
    MemoryRules,
    _Table,
    modifier_text,
)
from ..errors import UsageError
from ..formats import (
    MAX_DIMENSION,
    Layout,
    LayoutRules,
    Modifier,
    PixelFormat,
    layout,
    lookup_format,
    parse_modifier,
)
from ..formats.layout import MAX_ALIGN, MAX_SIZE

__all__ = [
    "APPLICATION",
    "CachePolicy",
    "CombinedRules",
    "Conflict",
    "CpuMapping",
    "Plan",
    "Provenance",
    "ProvenanceValue",
    "SyncPolicy",
    "heap_hint",
]

#: How conflicts and provenance name the caller (its candidate formats, size and CPU access).
APPLICATION: Final = "application"

CpuMapping = Literal["cached", "write-combined", "none"]
SyncPolicy = Literal["required", "recommended", "not-needed"]
ProvenanceValue = int | str | bool | None

_CPU_MAPPINGS: Final[tuple[CpuMapping, ...]] = ("cached", "write-combined", "none")
_SYNC_POLICIES: Final[tuple[SyncPolicy, ...]] = ("required", "recommended", "not-needed")


def _no_location(path: tuple[str, ...]) -> str:
    return ""


def _strings(table: _Table, key: str) -> tuple[str, ...]:
    return tuple(table.list_of(key, str, "a string"))


@dataclass(frozen=True)
class Conflict:
    """Why no single buffer fits: one attribute on which the devices (or the application) disagree.

    Attributes:
        attribute: what conflicts: ``format``, ``modifier``, ``width``, ``height``, ``location``,
            ``protected``, ``buffers``, ``pitch``, ``alignment`` or ``layout``.
        devices: the parties involved (``device:usage`` labels, or ``"application"``).
        values: each party's value, as text, aligned with ``devices``.
        message: one line naming the problem, the parties and their values.
        suggestion: what could resolve it (a copy, relaxing a rule, another heap).
    """

    attribute: str
    devices: tuple[str, ...]
    values: tuple[str, ...]
    message: str
    suggestion: str = ""

    def __post_init__(self) -> None:
        if len(self.devices) != len(self.values):
            raise UsageError(
                f"conflict on {self.attribute}: {len(self.devices)} devices but"
                f" {len(self.values)} values"
            )

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, object]:
        """``{attribute, devices, values, message, suggestion}``."""
        return {
            "attribute": self.attribute,
            "devices": list(self.devices),
            "values": list(self.values),
            "message": self.message,
            "suggestion": self.suggestion,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Conflict:
        """Read what :meth:`to_json` wrote.

        Raises:
            UsageError: a missing or unknown key, or a value of the wrong type.
        """
        table = _Table(data, ("conflict",), _no_location)
        made = cls(
            table.text("attribute", required=True),
            _strings(table, "devices"),
            _strings(table, "values"),
            table.text("message", required=True),
            table.text("suggestion"),
        )
        table.finish()
        return made


@dataclass(frozen=True)
class Provenance:
    """Where one combined number or requirement of a plan comes from.

    Attributes:
        attribute: the combined rule (``pitch_align``, ``plane_align[1]``, ``contiguous``, ...).
        value: its combined value.
        rule: how it was combined: ``lcm``, ``max``, ``min``, ``or``, ``all``, ``union``,
            ``agree``, ``rank`` or ``policy``.
        forced_by: the parties that determined the value (empty when nobody asked for more
            than the default).
        inputs: every party's own value, in label order.
        note: anything else worth saying (e.g. an alignment raised to meet a minimum pitch).
    """

    attribute: str
    value: ProvenanceValue
    rule: str
    forced_by: tuple[str, ...] = ()
    inputs: tuple[tuple[str, ProvenanceValue], ...] = ()
    note: str = ""

    def to_json(self) -> dict[str, object]:
        """``{attribute, value, rule, forced_by, inputs: {label: value}, note}``."""
        return {
            "attribute": self.attribute,
            "value": self.value,
            "rule": self.rule,
            "forced_by": list(self.forced_by),
            "inputs": dict(self.inputs),
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Provenance:
        """Read what :meth:`to_json` wrote."""
        table = _Table(data, ("provenance",), _no_location)
        value = table.get("value")
        if not isinstance(value, int | str | bool | None):
            raise table.fail("value", f"must be a number, text, true/false or null, not {value!r}")
        inputs_table = table.table("inputs")
        inputs: list[tuple[str, ProvenanceValue]] = []
        if inputs_table is not None:
            for label in inputs_table.data:
                item = inputs_table.get(label)
                if not isinstance(item, int | str | bool | None):
                    raise inputs_table.fail(label, f"must be a scalar, not {item!r}")
                inputs.append((label, item))
        made = cls(
            table.text("attribute", required=True),
            value,
            table.text("rule", required=True),
            _strings(table, "forced_by"),
            tuple(inputs),
            table.text("note"),
        )
        table.finish()
        return made


@dataclass(frozen=True)
class CachePolicy:
    """How the CPU should map the buffer and whether it must bracket access with
    ``DMA_BUF_IOCTL_SYNC``.

    Attributes:
        cpu_mapping: ``"cached"``, ``"write-combined"`` or ``"none"`` (the CPU does not map it).
        sync: ``"required"``, ``"recommended"`` or ``"not-needed"``.
        reason: why, in one sentence.
    """

    cpu_mapping: CpuMapping
    sync: SyncPolicy
    reason: str

    def __post_init__(self) -> None:
        if self.cpu_mapping not in _CPU_MAPPINGS:
            raise UsageError(f"cache cpu_mapping is one of {', '.join(_CPU_MAPPINGS)}")
        if self.sync not in _SYNC_POLICIES:
            raise UsageError(f"cache sync is one of {', '.join(_SYNC_POLICIES)}")

    def to_json(self) -> dict[str, object]:
        """``{cpu_mapping, sync, reason}``."""
        return {"cpu_mapping": self.cpu_mapping, "sync": self.sync, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> CachePolicy:
        """Read what :meth:`to_json` wrote."""
        table = _Table(data, ("cache",), _no_location)
        made = cls(
            cast(CpuMapping, table.choice("cpu_mapping", _CPU_MAPPINGS, "none")),
            cast(SyncPolicy, table.choice("sync", _SYNC_POLICIES, "not-needed")),
            table.text("reason"),
        )
        table.finish()
        return made


@dataclass(frozen=True)
class CombinedRules:
    """Every device's layout rules and limits combined into one set.

    Attributes:
        layout: the combined layout rules the plan's layout was computed with (``multi_buffer``
            is True when the buffers are one per plane).
        buffers: ``"single"`` or ``"per-plane"`` (``"single"`` when every device says ``any``).
        min_pitch: the largest of the devices' minimum pitches.
        max_pitch: the smallest of their maximum pitches (None: no limit).
        max_width: the smallest maximum width (None: no limit).
        max_height: the smallest maximum height (None: no limit).
    """

    layout: LayoutRules
    buffers: Buffers
    min_pitch: int = 0
    max_pitch: int | None = None
    max_width: int | None = None
    max_height: int | None = None

    def to_json(self) -> dict[str, object]:
        """The layout rules' fields plus ``buffers`` and the limits."""
        return {
            **self.layout.to_json(),
            "buffers": self.buffers,
            "min_pitch": self.min_pitch,
            "max_pitch": self.max_pitch,
            "max_width": self.max_width,
            "max_height": self.max_height,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object], planes: int = 1) -> CombinedRules:
        """Read what :meth:`to_json` wrote (``planes``: the format's plane count, which decides
        whether ``per-plane`` means one buffer per plane)."""
        table = _Table(data, ("rules",), _no_location)
        aligns = table.list_of("plane_pitch_align", int, "an integer")
        buffers = cast(Buffers, table.choice("buffers", BUFFERS_VALUES, "single"))
        rules = LayoutRules(
            pitch_align=table.integer("pitch_align", 1, 1, MAX_ALIGN),
            plane_pitch_align=tuple(aligns),
            height_align=table.integer("height_align", 1, 1, MAX_ALIGN),
            offset_align=table.integer("offset_align", 1, 1, MAX_ALIGN),
            size_align=table.integer("size_align", 1, 1, MAX_ALIGN),
            extra_rows=table.integer("extra_rows", 0, 0, MAX_DIMENSION),
            min_size=table.integer("min_size", 0, 0, MAX_SIZE),
            multi_buffer=buffers == "per-plane" and planes > 1,
        )
        made = cls(
            rules,
            buffers,
            table.integer("min_pitch", 0, 0, MAX_ALIGN),
            table.optional_integer("max_pitch", 1, MAX_SIZE),
            table.optional_integer("max_width", 1, MAX_DIMENSION),
            table.optional_integer("max_height", 1, MAX_DIMENSION),
        )
        table.finish()
        return made


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

    @property
    def size(self) -> int | None:
        """Total bytes (None when the exporter decides)."""
        return self.layout.size

    @property
    def heap_hint(self) -> str:
        """What kind of heap serves this plan's memory (see :func:`heap_hint`)."""
        return heap_hint(self.memory)

    def find(self, attribute: str) -> Provenance | None:
        """The provenance record of ``attribute``, if the plan has one."""
        return next((p for p in self.provenance if p.attribute == attribute), None)

    def explain(self) -> list[str]:
        """Human lines saying why the plan is what it is, one per combined rule."""
        from .explain import explain_plan

        return explain_plan(self)

    def to_json(self) -> dict[str, object]:
        """The plan as JSON: format, modifier, size, planes (as ``devalloc layout --json``),
        memory, cache, devices, the combined rules and the provenance."""
        lay = self.layout
        return {
            "format": self.format.name,
            "fourcc": self.format.fourcc_str,
            "modifier": modifier_text(self.modifier.value),
            "modifier_value": self.modifier.hex,
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
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Plan:
        """Read what :meth:`to_json` wrote; the layout is recomputed and must match.

        Raises:
            UsageError: a missing or unknown key, an invalid value, or planes that do not match
                the layout the rules give.
        """
        table = _Table(data, ("plan",), _no_location)
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
        for derived in ("buffer_sizes", "opaque", "layout_note", "heap_hint"):
            table.get(derived)
        memory = table.get("memory")
        cache = table.get("cache")
        if not isinstance(memory, Mapping) or not isinstance(cache, Mapping):
            raise UsageError("plan JSON: plan.memory and plan.cache must be tables")
        provenance = table.list_of("provenance", dict, "a provenance record")
        made = cls(
            fmt,
            modifier,
            width,
            height,
            lay,
            rules,
            MemoryRules.from_json(memory),
            CachePolicy.from_json(cache),
            _strings(table, "devices"),
            tuple(Provenance.from_json(p) for p in provenance),
        )
        table.finish()
        return made
