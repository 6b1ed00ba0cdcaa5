"""What one device needs of a buffer for one usage, and the device files that declare it.

Example:
    >>> from devalloc.formats import LayoutRules, fourcc_code
    >>> display = Constraints(
    ...     device="rk3399-vop",
    ...     usage="primary",
    ...     pairs=((fourcc_code("XR24"), 0), (fourcc_code("NV12"), 0)),
    ...     layout=LayoutRules(pitch_align=64),
    ...     max_width=4096,
    ...     memory=MemoryRules(contiguous=True, dma_bits=32),
    ...     access="read",
    ... )
    >>> display.label, display.memory.max_segments
    ('rk3399-vop:primary', 1)
    >>> display.to_json()["pairs"]
    [['XRGB8888', 'LINEAR'], ['NV12', 'LINEAR']]
    >>> Constraints.from_json(display.to_json()) == display
    True

A :class:`Constraints` is one device in one usage: the (format, modifier) pairs it accepts in
preference order, the layout rules it imposes (``devalloc.formats.LayoutRules``), pitch and size
limits, whether it wants one buffer or one per plane, and what it needs of the memory
(:class:`MemoryRules`). :func:`load_device_file` reads a device file (TOML, see
``docs/negotiation.md``) into a :class:`DeviceProfile`; :func:`load_constraints` reads
``FILE[:USAGE]``, where FILE is a path or the name of a bundled profile.

Everything here is pure apart from reading the TOML file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Final, Literal, TypeVar, cast

from ._toml import key_lines, parse_toml, path_kind, read_text_file, shown
from .errors import UsageError
from .formats import (
    MAX_DIMENSION,
    LayoutRules,
    lookup_format,
    modifier_name,
    parse_modifier,
)
from .formats.layout import MAX_ALIGN, MAX_SIZE

__all__ = [
    "BUFFERS_VALUES",
    "CPU_ACCESS_VALUES",
    "DEVICE_ACCESS_VALUES",
    "MAX_BUFFER_COUNT",
    "BufferCounts",
    "Buffers",
    "Constraints",
    "CpuAccess",
    "DeviceAccess",
    "DeviceProfile",
    "MemoryRules",
    "cpu_access_union",
    "format_text",
    "load_constraints",
    "load_device_file",
    "loads_device",
    "modifier_text",
]

CpuAccess = Literal["none", "r", "w", "rw"]
DeviceAccess = Literal["read", "write", "read-write"]
Buffers = Literal["single", "per-plane", "any"]

CPU_ACCESS_VALUES: Final[tuple[CpuAccess, ...]] = ("none", "r", "w", "rw")
DEVICE_ACCESS_VALUES: Final[tuple[DeviceAccess, ...]] = ("read", "write", "read-write")
BUFFERS_VALUES: Final[tuple[Buffers, ...]] = ("single", "per-plane", "any")

#: Narrowest and widest DMA address reach accepted, in bits.
MIN_DMA_BITS: Final = 12
MAX_DMA_BITS: Final = 64
_U64: Final = (1 << 64) - 1
#: Most buffers a device, an application or a plan may count.
MAX_BUFFER_COUNT: Final = 1 << 16
_NAME = re.compile(r"^[^\s:]+$")
_LOCATION = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")


def cpu_access_union(*values: CpuAccess) -> CpuAccess:
    """The CPU access that covers every one of ``values`` (``"r"`` and ``"w"`` give ``"rw"``)."""
    read = any("r" in v for v in values)
    write = any("w" in v for v in values)
    if read and write:
        return "rw"
    if read:
        return "r"
    return "w" if write else "none"


_MODIFIER_TEXT: dict[int, str] = {}


def modifier_text(value: int) -> str:
    """A modifier as text: its name when :func:`parse_modifier` reads the name back to the same
    value, else ``0x%016x``."""
    text = _MODIFIER_TEXT.get(value)
    if text is None:
        name = modifier_name(value)
        try:
            text = name if parse_modifier(name).value == value else f"0x{value:016x}"
        except UsageError:
            text = f"0x{value:016x}"
        _MODIFIER_TEXT[value] = text
    return text


def format_text(fourcc: int) -> str:
    """A format's DRM name (``"NV12"``) from its fourcc code."""
    return lookup_format(fourcc).name


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class MemoryRules:
    """What a device needs of the memory behind a buffer.

    Attributes:
        contiguous: physically contiguous (a device without an IOMMU).
        max_segments: most scatter-gather segments the device takes (None: unlimited). A
            contiguous buffer is one segment, so ``contiguous`` makes this 1.
        dma_bits: the device's DMA address reach in bits (32: the memory must lie below 4 GiB).
        location: ``"system"``, ``"any"``, or a device-local memory id such as ``"vram:card0"``.
        protected: the buffer must be protected (secure) memory.
        coherent: the device snoops CPU caches (no cache maintenance is needed for it).
        cpu_access: the CPU access this usage needs.

    Raises:
        UsageError: a value of the wrong type or out of range (the message names the field).
    """

    contiguous: bool = False
    max_segments: int | None = None
    dma_bits: int = 64
    location: str = "system"
    protected: bool = False
    coherent: bool = False
    cpu_access: CpuAccess = "none"

    def __post_init__(self) -> None:
        for name in ("contiguous", "protected", "coherent"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"memory.{name} is true or false, not {getattr(self, name)!r}")
        if self.max_segments is not None:
            if not _is_int(self.max_segments) or self.max_segments < 1:
                raise UsageError(
                    f"memory.max_segments is a positive integer or None, not {self.max_segments!r}"
                )
            if self.contiguous and self.max_segments != 1:
                raise UsageError(
                    f"memory.max_segments {self.max_segments} contradicts contiguous memory,"
                    " which is one segment"
                )
        elif self.contiguous:
            object.__setattr__(self, "max_segments", 1)
        if not _is_int(self.dma_bits) or not MIN_DMA_BITS <= self.dma_bits <= MAX_DMA_BITS:
            raise UsageError(
                f"memory.dma_bits is an integer from {MIN_DMA_BITS} to {MAX_DMA_BITS},"
                f" not {self.dma_bits!r}"
            )
        if not isinstance(self.location, str) or not _LOCATION.match(self.location):
            raise UsageError(
                'memory.location is "system", "any" or a device-local memory id such as'
                f' "vram:card0", not {self.location!r}'
            )
        if self.cpu_access not in CPU_ACCESS_VALUES:
            raise UsageError(
                f"memory.cpu_access is one of {', '.join(CPU_ACCESS_VALUES)},"
                f" not {self.cpu_access!r}"
            )

    def to_json(self) -> dict[str, object]:
        """The rules as JSON (every field, by name)."""
        return {
            "contiguous": self.contiguous,
            "max_segments": self.max_segments,
            "dma_bits": self.dma_bits,
            "location": self.location,
            "protected": self.protected,
            "coherent": self.coherent,
            "cpu_access": self.cpu_access,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> MemoryRules:
        """Read what :meth:`to_json` wrote (missing keys take their defaults).

        Raises:
            UsageError: an unknown key or an invalid value.
        """
        table = _Table(data, ("memory",), _no_location)
        rules = _memory_from_table(table)
        table.finish()
        return rules


@dataclass(frozen=True)
class BufferCounts:
    """How many buffers one party holds at once, and the bounds it puts on the total (the
    "camping" counts of Fuchsia's sysmem).

    Attributes:
        holds: buffers this party keeps at once in steady state (a decoder's reference frames
            plus the one it decodes into, a display's front buffer plus the pending flip, a
            V4L2 driver's minimum queued buffers); 0 when it keeps none between uses.
        min_count: the fewest buffers the party accepts in total (0: no minimum).
        max_count: the most buffers the party accepts in total (None: no limit).

    Example:
        >>> BufferCounts(holds=2, min_count=3).to_json()
        {'holds': 2, 'min_count': 3, 'max_count': None}

    Raises:
        UsageError: a value that is not an integer in range, or bounds that contradict each other
            (``min_count`` above ``max_count``, ``holds`` above ``max_count``).
    """

    holds: int = 0
    min_count: int = 0
    max_count: int | None = None

    def __post_init__(self) -> None:
        for name in ("holds", "min_count"):
            value = getattr(self, name)
            if not _is_int(value) or not 0 <= value <= MAX_BUFFER_COUNT:
                raise UsageError(
                    f"{name} is an integer from 0 to {MAX_BUFFER_COUNT}, not {value!r}"
                )
        high = self.max_count
        if high is not None:
            if not _is_int(high) or not 1 <= high <= MAX_BUFFER_COUNT:
                raise UsageError(
                    f"max_count is None or an integer from 1 to {MAX_BUFFER_COUNT}, not {high!r}"
                )
            if self.min_count > high:
                raise UsageError(f"min_count {self.min_count} is above max_count {high}")
            if self.holds > high:
                raise UsageError(f"holds {self.holds} is above max_count {high}")

    @property
    def stated(self) -> bool:
        """The party says anything about counts (not every field at its default)."""
        return self != BufferCounts()

    def describe(self) -> str:
        """``"holds 2, min 3, max 32"`` (only the fields that say something; ``"-"`` if none)."""
        parts = [f"holds {self.holds}"] if self.holds else []
        if self.min_count:
            parts.append(f"min {self.min_count}")
        if self.max_count is not None:
            parts.append(f"max {self.max_count}")
        return ", ".join(parts) or "-"

    def to_json(self) -> dict[str, object]:
        """``{holds, min_count, max_count}``."""
        return {"holds": self.holds, "min_count": self.min_count, "max_count": self.max_count}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> BufferCounts:
        """Read what :meth:`to_json` wrote (missing keys take their defaults).

        Raises:
            UsageError: an unknown key or an invalid value.
        """
        table = _Table(data, ("counts",), _no_location)
        counts = _counts_from_table(table)
        table.finish()
        return counts


@dataclass(frozen=True)
class Constraints:
    """One device in one usage: what a buffer must be for it.

    Attributes:
        device: the device's id (``"rk3399-vop"``).
        usage: what the device does with the buffer (``"primary"``).
        pairs: the (DRM fourcc code, modifier value) pairs it accepts, favourite first.
        layout: layout rules (alignments, extra rows, minimum size); ``multi_buffer`` must stay
            False: whether planes share a buffer is ``buffers``.
        buffers: ``"single"`` (every plane in one dma-buf), ``"per-plane"`` (one dma-buf per
            plane) or ``"any"``.
        min_pitch: smallest pitch (bytes per row) of every plane.
        max_pitch: largest pitch of every plane (None: no limit).
        max_width: largest image width in pixels (None: no limit).
        max_height: largest image height in pixels (None: no limit).
        memory: what it needs of the memory.
        access: how the device uses the buffer: ``"read"``, ``"write"`` or ``"read-write"``.
        description: free text.
        counts: how many buffers the device holds at once and its bounds on the total.

    Raises:
        UsageError: an invalid field; the message names ``device:usage`` and the field.
    """

    device: str
    usage: str
    pairs: tuple[tuple[int, int], ...]
    layout: LayoutRules = field(default_factory=LayoutRules)
    buffers: Buffers = "any"
    min_pitch: int = 0
    max_pitch: int | None = None
    max_width: int | None = None
    max_height: int | None = None
    memory: MemoryRules = field(default_factory=MemoryRules)
    access: DeviceAccess = "read-write"
    description: str = ""
    counts: BufferCounts = field(default_factory=BufferCounts)

    def __post_init__(self) -> None:
        for name in ("device", "usage"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _NAME.match(value):
                raise UsageError(
                    f"constraints {name} is a non-empty name without spaces or ':', not {value!r}"
                )
        label = self.label
        object.__setattr__(self, "pairs", self._checked_pairs(label))
        if not isinstance(self.layout, LayoutRules):
            raise UsageError(f"{label}: layout is a LayoutRules, not {self.layout!r}")
        if self.layout.multi_buffer:
            raise UsageError(
                f"{label}: layout.multi_buffer is not used in constraints;"
                ' say buffers = "per-plane"'
            )
        if self.buffers not in BUFFERS_VALUES:
            raise UsageError(
                f"{label}: buffers is one of {', '.join(BUFFERS_VALUES)}, not {self.buffers!r}"
            )
        if not _is_int(self.min_pitch) or not 0 <= self.min_pitch <= MAX_ALIGN:
            raise UsageError(
                f"{label}: min_pitch is an integer from 0 to {MAX_ALIGN}, not {self.min_pitch!r}"
            )
        limits = (
            ("max_pitch", MAX_SIZE),
            ("max_width", MAX_DIMENSION),
            ("max_height", MAX_DIMENSION),
        )
        for name, high in limits:
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or not 1 <= value <= high):
                raise UsageError(
                    f"{label}: {name} is None or an integer from 1 to {high}, not {value!r}"
                )
        if self.max_pitch is not None and self.max_pitch < self.min_pitch:
            raise UsageError(
                f"{label}: max_pitch {self.max_pitch} is below min_pitch {self.min_pitch}"
            )
        if not isinstance(self.memory, MemoryRules):
            raise UsageError(f"{label}: memory is a MemoryRules, not {self.memory!r}")
        if self.access not in DEVICE_ACCESS_VALUES:
            raise UsageError(
                f"{label}: access is one of {', '.join(DEVICE_ACCESS_VALUES)}, not {self.access!r}"
            )
        if not isinstance(self.description, str):
            raise UsageError(f"{label}: description is text, not {self.description!r}")
        if not isinstance(self.counts, BufferCounts):
            raise UsageError(f"{label}: counts is a BufferCounts, not {self.counts!r}")

    def _checked_pairs(self, label: str) -> tuple[tuple[int, int], ...]:
        if isinstance(self.pairs, str | bytes) or not isinstance(self.pairs, Iterable):
            raise UsageError(
                f"{label}: pairs is a sequence of (fourcc, modifier), not {self.pairs!r}"
            )
        pairs: list[tuple[int, int]] = []
        seen: set[tuple[int, int]] = set()
        for i, pair in enumerate(self.pairs):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise UsageError(f"{label}: pairs[{i}] is a (fourcc, modifier) pair, not {pair!r}")
            fourcc, modifier = pair
            if not _is_int(fourcc) or not _is_int(modifier):
                raise UsageError(f"{label}: pairs[{i}] holds two integers, not {pair!r}")
            try:
                lookup_format(fourcc)
            except UsageError as exc:
                raise UsageError(f"{label}: pairs[{i}]: {exc}") from None
            if not 0 <= modifier <= _U64:
                raise UsageError(f"{label}: pairs[{i}]: modifier {modifier} is not a 64-bit value")
            key = (fourcc, modifier)
            if key in seen:
                raise UsageError(
                    f"{label}: pairs[{i}] repeats {format_text(fourcc)} {modifier_text(modifier)}"
                )
            seen.add(key)
            pairs.append(key)
        if not pairs:
            raise UsageError(f"{label}: at least one (format, modifier) pair is needed")
        return tuple(pairs)

    @property
    def label(self) -> str:
        """``"device:usage"``, how explanations name this constraint."""
        return f"{self.device}:{self.usage}"

    @cached_property
    def positions(self) -> dict[tuple[int, int], int]:
        """Each accepted pair -> its position in :attr:`pairs` (0 = favourite)."""
        return {pair: i for i, pair in enumerate(self.pairs)}

    @cached_property
    def fourccs(self) -> dict[int, int]:
        """Each accepted fourcc -> the position of its first pair."""
        found: dict[int, int] = {}
        for i, (fourcc, _mod) in enumerate(self.pairs):
            found.setdefault(fourcc, i)
        return found

    @property
    def writes(self) -> bool:
        """The device writes into the buffer (access ``write`` or ``read-write``)."""
        return self.access != "read"

    @property
    def reads(self) -> bool:
        """The device reads the buffer (access ``read`` or ``read-write``)."""
        return self.access != "write"

    def to_json(self) -> dict[str, object]:
        """Every field as JSON; formats by name, modifiers by name (or ``0x%016x``)."""
        return {
            "device": self.device,
            "usage": self.usage,
            "description": self.description,
            "access": self.access,
            "pairs": [[format_text(f), modifier_text(m)] for f, m in self.pairs],
            "layout": self.layout.to_json(),
            "buffers": self.buffers,
            "min_pitch": self.min_pitch,
            "max_pitch": self.max_pitch,
            "max_width": self.max_width,
            "max_height": self.max_height,
            "memory": self.memory.to_json(),
            "counts": self.counts.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Constraints:
        """Read what :meth:`to_json` wrote (formats and modifiers as names or numbers).

        Raises:
            UsageError: an unknown key, a missing one, or an invalid value.
        """
        top = _Table(data, (), _no_location)
        device = top.text("device", required=True)
        usage = top.text("usage", required=True)
        label = f"{device}:{usage}"
        pairs: list[tuple[int, int]] = []
        for i, item in enumerate(top.list_of("pairs", list, "a [format, modifier] pair")):
            if len(item) != 2:
                raise UsageError(f"{label}: pairs[{i}] is [format, modifier], not {item!r}")
            pairs.append(
                (
                    _read_format(item[0], f"{label}: pairs[{i}]"),
                    _read_modifier(item[1], f"{label}: pairs[{i}]"),
                )
            )
        layout_table = top.table("layout")
        rules = _layout_from_table(layout_table) if layout_table else LayoutRules()
        if layout_table:
            layout_table.finish()
        memory_table = top.table("memory")
        memory = _memory_from_table(memory_table) if memory_table else MemoryRules()
        if memory_table:
            memory_table.finish()
        counts_table = top.table("counts")
        counts = _counts_from_table(counts_table) if counts_table else BufferCounts()
        if counts_table:
            counts_table.finish()
        made = cls(
            device=device,
            usage=usage,
            pairs=tuple(pairs),
            layout=rules,
            buffers=cast(Buffers, top.choice("buffers", BUFFERS_VALUES, "any")),
            min_pitch=top.integer("min_pitch", 0, 0, MAX_ALIGN),
            max_pitch=top.optional_integer("max_pitch", 1, MAX_SIZE),
            max_width=top.optional_integer("max_width", 1, MAX_DIMENSION),
            max_height=top.optional_integer("max_height", 1, MAX_DIMENSION),
            memory=memory,
            access=cast(DeviceAccess, top.choice("access", DEVICE_ACCESS_VALUES, "read-write")),
            description=top.text("description"),
            counts=counts,
        )
        top.finish()
        return made


@dataclass(frozen=True)
class DeviceProfile:
    """A device file: one device and its usages.

    Attributes:
        device: the device id.
        description: free text.
        sources: where the constraints come from (public documents, driver files).
        usages: usage name -> its constraints, in file order.
        path: the file it was read from ("" when read from text).
    """

    device: str
    description: str
    sources: tuple[str, ...]
    usages: dict[str, Constraints]
    path: str = ""


# ---------------------------------------------------------------------------------------------
# Reading nested tables (TOML or JSON) with errors that say where.

_T = TypeVar("_T")


def _no_location(path: tuple[str, ...]) -> str:
    return ""


class _Table:
    """A dict read key by key: typed getters, then :meth:`finish` rejects the keys left over."""

    def __init__(
        self, data: object, path: tuple[str, ...], where: Callable[[tuple[str, ...]], str]
    ) -> None:
        self.path = path
        self.where = where
        if not isinstance(data, Mapping):
            raise UsageError(f"{where(path)}{self._dotted(path) or 'the document'} is a table")
        for key in data:
            if not isinstance(key, str):
                raise UsageError(
                    f"{where(path)}{self._dotted(path) or 'the document'} has a key that is"
                    f" not a string: {shown(key)}"
                )
        self.data: Mapping[str, object] = data
        self.used: set[str] = set()

    @staticmethod
    def _dotted(path: tuple[str, ...]) -> str:
        return ".".join(path)

    def name(self, key: str) -> str:
        return self._dotted((*self.path, key))

    def fail(self, key: str, message: str) -> UsageError:
        """An error about ``key`` (prefixed with where it is)."""
        return UsageError(f"{self.where((*self.path, key))}{self.name(key)} {message}")

    def get(self, key: str) -> object | None:
        self.used.add(key)
        return self.data.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str, *, required: bool = False) -> str:
        value = self.get(key)
        if value is None:
            if required:
                raise UsageError(f"{self.where(self.path)}missing key {self.name(key)}")
            return ""
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.get(key)
        if value is None:
            return default
        if not _is_int(value):
            raise self.fail(key, f"must be an integer, not {value!r}")
        assert isinstance(value, int)
        if not low <= value <= high:
            raise self.fail(key, f"must be from {low} to {high}, not {value}")
        return value

    def optional_integer(self, key: str, low: int, high: int) -> int | None:
        if self.get(key) is None:
            return None
        return self.integer(key, 0, low, high)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key)
        if value is None:
            return default
        if value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, not {value!r}")
        assert isinstance(value, str)
        return value

    def list_of(self, key: str, kind: type[_T], what: str) -> list[_T]:
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list of {what}s, not {value!r}")
        for i, item in enumerate(value):
            if not isinstance(item, kind) or (isinstance(item, bool) and kind is not bool):
                raise self.fail(f"{key}", f"[{i}] must be {what}, not {item!r}")
        return cast(list[_T], value)

    def table(self, key: str) -> _Table | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a table, not {value!r}")
        return _Table(value, (*self.path, key), self.where)

    def finish(self) -> None:
        """Reject every key nobody asked for."""
        for key in self.data:
            if key not in self.used:
                known = sorted(self.used)
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise UsageError(
                    f"{self.where((*self.path, key))}unknown key {self.name(key)}{hint}"
                )


def _layout_from_table(table: _Table) -> LayoutRules:
    aligns = table.list_of("plane_pitch_align", int, "an integer")
    for i, align in enumerate(aligns):
        if not 1 <= align <= MAX_ALIGN:
            raise table.fail(
                "plane_pitch_align", f"[{i}] must be from 1 to {MAX_ALIGN}, not {align}"
            )
    return LayoutRules(
        pitch_align=table.integer("pitch_align", 1, 1, MAX_ALIGN),
        plane_pitch_align=tuple(aligns),
        height_align=table.integer("height_align", 1, 1, MAX_ALIGN),
        offset_align=table.integer("offset_align", 1, 1, MAX_ALIGN),
        size_align=table.integer("size_align", 1, 1, MAX_ALIGN),
        extra_rows=table.integer("extra_rows", 0, 0, MAX_DIMENSION),
        min_size=table.integer("min_size", 0, 0, MAX_SIZE),
    )


def _memory_from_table(table: _Table) -> MemoryRules:
    contiguous = table.boolean("contiguous", False)
    max_segments = table.optional_integer("max_segments", 1, 1 << 32)
    if contiguous and max_segments not in (None, 1):
        raise table.fail(
            "max_segments", f"{max_segments} contradicts contiguous = true (one segment)"
        )
    location = table.text("location") if "location" in table else "system"
    if not _LOCATION.match(location):
        raise table.fail(
            "location",
            f'must be "system", "any" or a device-local id such as "vram:card0", not {location!r}',
        )
    return MemoryRules(
        contiguous=contiguous,
        max_segments=max_segments,
        dma_bits=table.integer("dma_bits", 64, MIN_DMA_BITS, MAX_DMA_BITS),
        location=location,
        protected=table.boolean("protected", False),
        coherent=table.boolean("coherent", False),
        cpu_access=cast(CpuAccess, table.choice("cpu_access", CPU_ACCESS_VALUES, "none")),
    )


def _counts_from_table(table: _Table) -> BufferCounts:
    """``holds``, ``min_count`` and ``max_count`` of ``table`` (a usage table of a device file,
    or the ``counts`` table of JSON)."""
    holds = table.integer("holds", 0, 0, MAX_BUFFER_COUNT)
    low = table.integer("min_count", 0, 0, MAX_BUFFER_COUNT)
    high = table.optional_integer("max_count", 1, MAX_BUFFER_COUNT)
    if high is not None and low > high:
        raise table.fail("max_count", f"{high} is below min_count {low}")
    if high is not None and holds > high:
        raise table.fail("max_count", f"{high} is below holds {holds} (the device's own count)")
    return BufferCounts(holds, low, high)


def _read_format(value: object, where: str) -> int:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise UsageError(f"{where}: a format is a name such as NV12, not {value!r}")
    try:
        return lookup_format(value).fourcc
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


def _read_modifier(value: object, where: str) -> int:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise UsageError(f"{where}: a modifier is a name such as LINEAR or 0x..., not {value!r}")
    try:
        return parse_modifier(value).value
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Device files (TOML).


def _locator(source: str, text: str) -> Callable[[tuple[str, ...]], str]:
    lines = key_lines(text)

    def where(path: tuple[str, ...]) -> str:
        for end in range(len(path), 0, -1):
            number = lines.get(path[:end])
            if number is not None:
                return f"{source}:{number}: "
        return f"{source}: "

    return where


def loads_device(text: str, source: str = "<string>") -> DeviceProfile:
    """Read a device file's text (see ``docs/negotiation.md`` for the schema).

    Args:
        text: the TOML text.
        source: the file name used in error messages.

    Raises:
        UsageError: invalid TOML, an unknown key, a wrong type, an unknown format or modifier,
            or an invalid value; the message names the file, the line and the key.
    """
    data, source = parse_toml(text, source, "device file")
    where = _locator(source, text)
    top = _Table(data, (), where)
    device = top.text("device", required=True)
    if not _NAME.match(device):
        raise top.fail("device", f"must be a name without spaces or ':', not {device!r}")
    description = top.text("description")
    sources = tuple(top.list_of("sources", str, "a string"))
    usages_table = top.table("usages")
    if usages_table is None or not usages_table.data:
        top.finish()  # a misspelt [usage.NAME] is reported as the unknown key it is
        raise UsageError(f"{where(('usages',))}{source} declares no [usages.NAME] table")
    usages: dict[str, Constraints] = {}
    for usage in usages_table.data:
        table = usages_table.table(usage)
        assert table is not None
        usages[usage] = _usage_from_table(table, device, usage)
    usages_table.finish()
    top.finish()
    return DeviceProfile(device, description, sources, usages)


def _usage_from_table(table: _Table, device: str, usage: str) -> Constraints:
    if not _NAME.match(usage):
        raise UsageError(f"{table.where(table.path)}usage name {usage!r} has spaces or ':' in it")
    description = table.text("description")
    access = cast(DeviceAccess, table.choice("access", DEVICE_ACCESS_VALUES, "read-write"))
    formats = table.list_of("formats", str, "a format name")
    modifiers = table.list_of("modifiers", str, "a modifier name or 0x... value")
    if "modifiers" in table and "formats" not in table:
        raise table.fail("modifiers", "combines with formats, but the usage has no formats")
    if "modifiers" in table and not modifiers:
        raise table.fail("modifiers", "is empty (leave it out for LINEAR)")
    explicit = table.list_of("pairs", list, "a [format, modifier] pair")
    pairs: list[tuple[int, int]] = []
    for i, item in enumerate(explicit):
        where = f"{table.where((*table.path, 'pairs'))}{table.name('pairs')}[{i}]"
        if len(item) != 2 or not all(isinstance(x, str) for x in item):
            raise UsageError(f"{where} must be [format, modifier] (two strings), not {item!r}")
        pairs.append((_read_format(item[0], where), _read_modifier(item[1], where)))
    fourccs = [
        _read_format(name, f"{table.where((*table.path, 'formats'))}{table.name('formats')}[{i}]")
        for i, name in enumerate(formats)
    ]
    mods = [
        _read_modifier(
            name, f"{table.where((*table.path, 'modifiers'))}{table.name('modifiers')}[{i}]"
        )
        for i, name in enumerate(modifiers or ["LINEAR"])
    ]
    pairs.extend((f, m) for f in fourccs for m in mods)
    unique = tuple(dict.fromkeys(pairs))
    if not unique:
        raise UsageError(
            f"{table.where(table.path)}{'.'.join(table.path)} needs formats or pairs (at least one)"
        )
    layout_table = table.table("layout")
    rules = LayoutRules()
    buffers: str = "any"
    min_pitch = 0
    max_pitch = max_width = max_height = None
    if layout_table is not None:
        rules = _layout_from_table(layout_table)
        buffers = layout_table.choice("buffers", BUFFERS_VALUES, "any")
        min_pitch = layout_table.integer("min_pitch", 0, 0, MAX_ALIGN)
        max_pitch = layout_table.optional_integer("max_pitch", 1, MAX_SIZE)
        max_width = layout_table.optional_integer("max_width", 1, MAX_DIMENSION)
        max_height = layout_table.optional_integer("max_height", 1, MAX_DIMENSION)
        if max_pitch is not None and max_pitch < min_pitch:
            raise layout_table.fail("max_pitch", f"{max_pitch} is below min_pitch {min_pitch}")
        layout_table.finish()
    memory_table = table.table("memory")
    memory = MemoryRules()
    if memory_table is not None:
        memory = _memory_from_table(memory_table)
        memory_table.finish()
    counts = _counts_from_table(table)
    table.finish()
    try:
        return Constraints(
            device=device,
            usage=usage,
            pairs=unique,
            layout=rules,
            buffers=cast(Buffers, buffers),
            min_pitch=min_pitch,
            max_pitch=max_pitch,
            max_width=max_width,
            max_height=max_height,
            memory=memory,
            access=access,
            description=description,
            counts=counts,
        )
    except UsageError as exc:
        raise UsageError(f"{table.where(table.path)}{exc}") from None


def load_device_file(path: str | Path) -> DeviceProfile:
    """Read a device file.

    Raises:
        UsageError: a path of the wrong type or one that cannot name a file, no such file, or
            anything :func:`loads_device` refuses.
        KernelError: the file exists but cannot be read (e.g. permission denied).
    """
    text = read_text_file(path, "device file")
    source = str(path)
    profile = loads_device(text, source)
    return DeviceProfile(
        profile.device, profile.description, profile.sources, profile.usages, source
    )


def _bundled() -> tuple[list[str], Callable[[str], Path]]:
    from . import profiles

    return list(profiles.profile_names()), profiles.profile_path


def _resolve(name: str) -> Path:
    if path_kind(name, "device file") == "file":
        return Path(name)
    names, locate = _bundled()
    if name in names:
        return Path(locate(name))
    if name.endswith(".toml") or "/" in name:
        raise UsageError(f"{shown(name)}: no such device file")
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    listed = ", ".join(names) if names else "none"
    raise UsageError(
        f"no device file or bundled profile named {shown(name)}{hint} (bundled profiles: {listed})"
    )


def load_constraints(spec: str) -> list[Constraints]:
    """Read ``FILE[:USAGE]``: every usage of a device file, or the one named.

    FILE is a path to a device file or the name of a bundled profile
    (``devalloc.profiles.profile_names()``).

    Raises:
        UsageError: not a string, no such file or profile, a path that cannot name a file (too
            long, a NUL), an invalid file, or an unknown usage (the message lists the file's
            usages).
        KernelError: the file exists but cannot be read (e.g. permission denied).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"a device is FILE[:USAGE], not {shown(spec)}")
    name, usage = spec, None
    if ":" in spec:
        try:
            whole = path_kind(spec, "device file")
        except UsageError:  # cannot name a file (too long, a NUL): FILE:USAGE decides
            whole = None
        if whole is None:
            name, _, usage = spec.rpartition(":")
            if not name or not usage:
                raise UsageError(f"a device is FILE[:USAGE], not {shown(spec)}")
    profile = load_device_file(_resolve(name))
    if usage is None:
        return list(profile.usages.values())
    if usage not in profile.usages:
        raise UsageError(
            f"{name}: device {profile.device} has no usage {shown(usage)};"
            f" its usages: {', '.join(profile.usages)}"
        )
    return [profile.usages[usage]]
