"""The records negotiation produces and shares: :class:`Conflict`, :class:`Provenance`,
:class:`CachePolicy` and :class:`CombinedRules` (no negotiation logic; every other module of the
package may import this one, and it imports none of them).

Example:
    >>> Conflict("location", ("a:x", "b:y"), ("system", "vram:card0"), "...").to_json()["values"]
    ['system', 'vram:card0']
    >>> Provenance.from_json(Provenance("contiguous", True, "or").to_json()).value
    True

Everything here is a frozen dataclass with a lossless ``to_json``/``from_json`` pair.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, cast

from ..constraints import BUFFERS_VALUES, Buffers, _layout_from_table, _Table
from ..errors import UsageError
from ..formats import MAX_DIMENSION, LayoutRules
from ..formats.layout import MAX_ALIGN, MAX_SIZE

__all__ = [
    "APPLICATION",
    "CachePolicy",
    "CombinedRules",
    "Conflict",
    "CpuMapping",
    "Provenance",
    "ProvenanceValue",
    "SyncPolicy",
    "no_location",
    "strings",
]

#: How conflicts and provenance name the caller (its candidate formats, size and CPU access).
APPLICATION: Final = "application"

CpuMapping = Literal["cached", "write-combined", "none"]
SyncPolicy = Literal["required", "recommended", "not-needed"]
ProvenanceValue = int | str | bool | None

_CPU_MAPPINGS: Final[tuple[CpuMapping, ...]] = ("cached", "write-combined", "none")
_SYNC_POLICIES: Final[tuple[SyncPolicy, ...]] = ("required", "recommended", "not-needed")


def no_location(path: tuple[str, ...]) -> str:
    """No file location for JSON input (the :class:`_Table` locator)."""
    return ""


def strings(table: _Table, key: str) -> tuple[str, ...]:
    """``key``'s list of strings, as a tuple."""
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
        table = _Table(data, ("conflict",), no_location)
        made = cls(
            table.text("attribute", required=True),
            strings(table, "devices"),
            strings(table, "values"),
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
        table = _Table(data, ("provenance",), no_location)
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
            strings(table, "forced_by"),
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
        table = _Table(data, ("cache",), no_location)
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
        table = _Table(data, ("rules",), no_location)
        buffers = cast(Buffers, table.choice("buffers", BUFFERS_VALUES, "single"))
        rules = dataclasses.replace(
            _layout_from_table(table), multi_buffer=buffers == "per-plane" and planes > 1
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
