"""Human explanations of a plan, one line per combined rule, from its provenance.

Example:
    >>> from devalloc.constraints import Constraints, MemoryRules
    >>> from devalloc.formats import LayoutRules, fourcc_code
    >>> from devalloc.negotiate import negotiate
    >>> xr24 = ((fourcc_code("XR24"), 0),)
    >>> gpu = Constraints("gpu", "render", xr24, LayoutRules(pitch_align=64))
    >>> dpy = Constraints("display", "primary", xr24, LayoutRules(pitch_align=16),
    ...                   memory=MemoryRules(contiguous=True))
    >>> lines = negotiate([gpu, dpy], 480, 270).explain()
    >>> for line in lines:
    ...     if line.startswith(("plane 0", "contiguous")):
    ...         print(line)
    plane 0 pitch 1920 aligned to 64 (lcm of display:primary 16, gpu:render 64)
    contiguous: required by display:primary
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..constraints import MemoryRules
from ..formats import Layout, PixelFormat
from .combine import subject
from .records import CachePolicy, Provenance, ProvenanceValue

__all__ = ["Explained", "explain_plan"]


class Explained(Protocol):
    """What an explanation reads of a :class:`~devalloc.negotiate.plan.Plan` (declared here so
    that this module does not import the plan module, which imports it for ``Plan.explain``)."""

    @property
    def format(self) -> PixelFormat: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def layout(self) -> Layout: ...
    @property
    def memory(self) -> MemoryRules: ...
    @property
    def cache(self) -> CachePolicy: ...
    @property
    def heap_hint(self) -> str: ...
    def find(self, attribute: str) -> Provenance | None: ...


def _by(record: Provenance) -> str:
    return ", ".join(record.forced_by)


def _inputs(record: Provenance, skip: Callable[[ProvenanceValue], bool]) -> str:
    return ", ".join(f"{label} {value}" for label, value in record.inputs if not skip(value))


def _lcm_text(record: Provenance) -> str:
    """``(lcm of a 64, b 16)`` listing every party asking for more than 1."""
    parts = _inputs(record, lambda v: v in (1, None))
    return f" (lcm of {parts})" if parts else ""


def _pitch_lines(plan: Explained) -> list[str]:
    lines = []
    if plan.layout.opaque:
        return [
            f"pitch: decided by the exporter ({plan.layout.note}); the devices' pitch"
            " alignment and limits cannot be checked here"
        ]
    for i, plane in enumerate(plan.layout.planes):
        record = plan.find(f"plane_align[{i}]")
        align = record.value if record is not None else 1
        if align == 1 or record is None:
            lines.append(f"plane {i} pitch {plane.pitch}: no device asks for a pitch alignment")
        else:
            lines.append(f"plane {i} pitch {plane.pitch} aligned to {align}{_lcm_text(record)}")
    raised = plan.find("pitch_align")
    if raised is not None and raised.note:
        lines.append(f"pitch alignment {raised.note}")
    return lines


def _limit_line(plan: Explained, record: Provenance) -> str | None:
    name = record.attribute
    if record.value is None or not record.forced_by:
        return None
    if name == "min_pitch":
        return f"every plane's pitch is at least {record.value}: min_pitch of {_by(record)}"
    if name == "max_pitch":
        pitches = ", ".join(str(p.pitch) for p in plan.layout.planes) or "decided by the exporter"
        return f"pitch at most {record.value} ({_by(record)}); the plan's pitches: {pitches}"
    if name == "max_width":
        return f"width {plan.width} within max_width {record.value} of {_by(record)}"
    if name == "max_height":
        return f"height {plan.height} within max_height {record.value} of {_by(record)}"
    return None


def _memory_line(plan: Explained, record: Provenance) -> str | None:
    name, value = record.attribute, record.value
    if name == "contiguous":
        return f"contiguous: required by {_by(record)}" if value else "contiguous: not required"
    if name == "max_segments":
        if value is None:
            return None
        why = " (contiguous)" if plan.memory.contiguous else ""
        return f"at most {value} scatter-gather segment(s){why}: {_by(record)}"
    if name == "dma_bits":
        if not record.forced_by:
            return None
        return f"DMA reach {value} bits: the memory must lie below 2^{value}: {_by(record)}"
    if name == "location":
        if not record.forced_by:
            return "location: any (no device needs a particular memory)"
        return f"location {value}: {_by(record)}"
    if name == "protected":
        return f"protected: required by {_by(record)}" if value else None
    if name == "coherent":
        if value:
            return "coherent: every device snoops CPU caches"
        return "not coherent: " + subject(record.forced_by, "does", "do") + " not snoop CPU caches"
    if name == "cpu_access":
        if value == "none":
            return "CPU access: none"
        return f"CPU access {value}: " + _inputs(record, lambda v: v == "none")
    return None


def explain_plan(plan: Explained) -> list[str]:
    """Why ``plan`` is what it is: the pair, each combined rule and who forced it, the memory,
    the cache policy and a heap hint."""
    lines: list[str] = []
    pair = plan.find("pair")
    if pair is not None:
        positions = _inputs(pair, lambda v: False)
        lines.append(f"{pair.value}: {pair.note} ({positions})")
    skipped = plan.find("skipped")
    if skipped is not None:
        lines.append(skipped.note)
    lines.extend(_pitch_lines(plan))
    height = plan.find("height_align")
    extra = plan.find("extra_rows")
    rows = plan.layout.planes[0].rows if plan.layout.planes else None
    if height is not None and height.value != 1:
        rows_text = f" -> {rows} rows" if rows is not None else ""
        lines.append(
            f"height {plan.height} aligned to {height.value}{_lcm_text(height)}{rows_text}"
        )
    if extra is not None and extra.forced_by:
        lines.append(f"{extra.value} extra row(s): {_by(extra)}")
    offset = plan.find("offset_align")
    if offset is not None and offset.value != 1 and plan.format.planes > 1:
        where = ", ".join(str(p.offset) for p in plan.layout.planes[1:])
        lines.append(
            f"planes 1.. start at multiples of {offset.value}{_lcm_text(offset)}"
            + (f": offsets {where}" if where else "")
        )
    size = plan.find("size_align")
    if size is not None and size.value != 1:
        sizes = ", ".join(str(s) for s in plan.layout.buffer_sizes) or "decided by the exporter"
        lines.append(f"buffer size {sizes} a multiple of {size.value}{_lcm_text(size)}")
    minimum = plan.find("min_size")
    if minimum is not None and minimum.forced_by:
        lines.append(f"buffer size at least {minimum.value}: {_by(minimum)}")
    for name in ("min_pitch", "max_pitch", "max_width", "max_height"):
        record = plan.find(name)
        line = _limit_line(plan, record) if record is not None else None
        if line is not None:
            lines.append(line)
    buffers = plan.find("buffers")
    if buffers is not None:
        arrangement = "one buffer per plane" if buffers.value == "per-plane" else "one buffer"
        who = f": {_inputs(buffers, lambda v: v == 'any')}" if buffers.forced_by else ""
        note = f" ({buffers.note})" if buffers.note else ""
        lines.append(f"buffers: {arrangement}{who}{note}")
    count = plan.find("count")
    if count is not None:
        lines.append(f"count {count.value}: {count.note}")
    for name in (
        "contiguous",
        "max_segments",
        "dma_bits",
        "location",
        "protected",
        "coherent",
        "cpu_access",
    ):
        record = plan.find(name)
        line = _memory_line(plan, record) if record is not None else None
        if line is not None:
            lines.append(line)
    cache = plan.cache
    lines.append(f"cache: {cache.cpu_mapping} mapping, sync {cache.sync}: {cache.reason}")
    lines.append(f"heap: {plan.heap_hint}")
    return lines
