"""Combining every device's rules into one set: the rules, the conflicts that do not depend on
the format, the cache/sync policy and the provenance of each combined value.

Example:
    >>> from devalloc.constraints import Constraints, MemoryRules
    >>> from devalloc.formats import LayoutRules, fourcc_code
    >>> nv12 = ((fourcc_code("NV12"), 0),)
    >>> a = Constraints("gpu", "render", nv12, LayoutRules(pitch_align=64))
    >>> b = Constraints("vop", "primary", nv12, LayoutRules(pitch_align=48),
    ...                 memory=MemoryRules(contiguous=True))
    >>> comb = combine((a, b), 1920, 1080, "none")
    >>> comb.pitch_align, comb.memory.contiguous, comb.conflicts
    (192, True, [])

Rules (see ``docs/negotiation.md``): alignments by lcm; ``extra_rows``, ``min_size`` and
``min_pitch`` by max; ``max_pitch``, ``max_width`` and ``max_height`` by min; ``contiguous`` and
``protected`` by OR; ``max_segments`` and ``dma_bits`` by min; CPU access by union (with the
application's); ``coherent`` only when every device is; every location other than ``any`` must
agree, and so must every ``buffers`` value other than ``any``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..constraints import (
    BufferCounts,
    Buffers,
    Constraints,
    CpuAccess,
    MemoryRules,
    cpu_access_union,
)
from ..formats import LayoutRules, PixelFormat
from ..formats.layout import MAX_ALIGN
from .records import APPLICATION, CachePolicy, Conflict, Provenance, ProvenanceValue

__all__ = [
    "DEFAULT_SLACK",
    "Combined",
    "CountResult",
    "cache_policy",
    "combine",
    "combine_counts",
    "lcm_forcing",
    "name_list",
    "subject",
]

#: Buffers added to what every party holds at once, so that one is always free to be filled
#: while the others are held (the application may ask for more or none).
DEFAULT_SLACK = 1


def subject(labels: Sequence[str], one: str, many: str) -> str:
    """``"a:x needs"`` or ``"a:x, b:y need"``: the labels and the verb that agrees with them."""
    return f"{', '.join(labels)} {one if len(labels) == 1 else many}"


def name_list(names: Sequence[str], limit: int = 8) -> str:
    """``{A, B, C}``, cut after ``limit`` names (``{A, B, ... +5 more}``)."""
    if len(names) <= limit:
        return "{" + ", ".join(names) + "}"
    return "{" + ", ".join(names[:limit]) + f", ... +{len(names) - limit} more}}"


def lcm_forcing(values: Sequence[tuple[str, int]], total: int) -> tuple[str, ...]:
    """The parties whose value holds a prime power of ``total`` at its full height (the ones
    that forced the lcm; with 64 and 16, only 64's owner)."""
    forced = []
    for label, value in values:
        if value <= 1:
            continue
        rest, other = value, total // value
        while (common := math.gcd(rest, other)) > 1:
            rest //= common
        if rest > 1:
            forced.append(label)
    return tuple(forced)


def _extreme(
    values: Sequence[tuple[str, int | None]], pick: Callable[..., int]
) -> tuple[int | None, tuple[str, ...]]:
    present = [v for _l, v in values if v is not None]
    if not present:
        return None, ()
    best = pick(present)
    return best, tuple(label for label, v in values if v == best)


@dataclass
class Combined:
    """The devices' rules combined (before a format is chosen).

    Attributes:
        devices: the constraints, sorted by label.
        width: the requested width.
        height: the requested height.
        pitch_align: lcm of the pitch alignments.
        plane_pitch_align: per-plane lcm of the extra plane alignments.
        height_align: lcm of the height alignments.
        offset_align: lcm of the offset alignments.
        size_align: lcm of the size alignments.
        extra_rows: the most extra rows.
        min_size: the largest minimum size.
        buffers: ``single`` or ``per-plane`` (``single`` when all say ``any``, or they disagree).
        buffers_disagree: one device wants ``single`` and another ``per-plane``.
        min_pitch: the largest minimum pitch.
        max_pitch: the smallest maximum pitch.
        max_width: the smallest maximum width.
        max_height: the smallest maximum height.
        memory: the combined memory rules (None when the locations disagree).
        cpu_access: the union of every party's CPU access.
        aligned: every combined alignment is within what the layout engine accepts.
        conflicts: the conflicts that hold whatever the format.
    """

    devices: tuple[Constraints, ...]
    width: int
    height: int
    pitch_align: int
    plane_pitch_align: tuple[int, ...]
    height_align: int
    offset_align: int
    size_align: int
    extra_rows: int
    min_size: int
    buffers: Buffers
    buffers_disagree: bool
    min_pitch: int
    max_pitch: int | None
    max_width: int | None
    max_height: int | None
    memory: MemoryRules | None
    cpu_access: CpuAccess
    requested_cpu: CpuAccess
    aligned: bool
    conflicts: list[Conflict]

    def layout_rules(self, fmt: PixelFormat) -> LayoutRules:
        """The combined layout rules for ``fmt`` (one buffer per plane only when a device asks
        for it and the format has several planes)."""
        return LayoutRules(
            pitch_align=self.pitch_align,
            plane_pitch_align=self.plane_pitch_align,
            height_align=self.height_align,
            offset_align=self.offset_align,
            size_align=self.size_align,
            extra_rows=self.extra_rows,
            min_size=self.min_size,
            multi_buffer=self.buffers == "per-plane" and fmt.planes > 1,
        )


def combine(
    devices: Sequence[Constraints], width: int, height: int, cpu_access: CpuAccess
) -> Combined:
    """Combine ``devices`` (already sorted by label) for a ``width`` x ``height`` buffer that the
    application accesses with ``cpu_access``."""
    conflicts: list[Conflict] = []
    layouts = [d.layout for d in devices]
    aligns = {
        "pitch_align": math.lcm(*(r.pitch_align for r in layouts)),
        "height_align": math.lcm(*(r.height_align for r in layouts)),
        "offset_align": math.lcm(*(r.offset_align for r in layouts)),
        "size_align": math.lcm(*(r.size_align for r in layouts)),
    }
    widest = max(len(r.plane_pitch_align) for r in layouts)
    plane_aligns = tuple(
        math.lcm(*(r.plane_pitch_align[i] if i < len(r.plane_pitch_align) else 1 for r in layouts))
        for i in range(widest)
    )
    checks = [*aligns.items()]
    if aligns["pitch_align"] <= MAX_ALIGN:  # else every plane repeats the same conflict
        checks.extend(
            (f"plane_pitch_align[{i}]", math.lcm(aligns["pitch_align"], v))
            for i, v in enumerate(plane_aligns)
        )
    too_big = [(name, value) for name, value in checks if value > MAX_ALIGN]
    for name, value in too_big:
        conflicts.append(_alignment_conflict(devices, name, value))
    aligned = not too_big

    buffers_wanted = {d.buffers for d in devices} - {"any"}
    buffers: Buffers = "per-plane" if buffers_wanted == {"per-plane"} else "single"

    min_pitch = max(d.min_pitch for d in devices)
    max_pitch, _ = _extreme([(d.label, d.max_pitch) for d in devices], min)
    max_width, _ = _extreme([(d.label, d.max_width) for d in devices], min)
    max_height, _ = _extreme([(d.label, d.max_height) for d in devices], min)
    if max_width is not None and width > max_width:
        conflicts.append(_size_conflict(devices, "width", width))
    if max_height is not None and height > max_height:
        conflicts.append(_size_conflict(devices, "height", height))
    if max_pitch is not None and min_pitch > max_pitch:
        conflicts.append(_pitch_range_conflict(devices, min_pitch, max_pitch))

    memories = [d.memory for d in devices]
    cpu = cpu_access_union(cpu_access, *(m.cpu_access for m in memories))
    locations = sorted({m.location for m in memories} - {"any"})
    memory: MemoryRules | None = None
    if len(locations) > 1:
        conflicts.append(_location_conflict(devices))
    else:
        contiguous = any(m.contiguous for m in memories)
        segments = [m.max_segments for m in memories if m.max_segments is not None]
        memory = MemoryRules(
            contiguous=contiguous,
            max_segments=1 if contiguous else (min(segments) if segments else None),
            dma_bits=min(m.dma_bits for m in memories),
            location=locations[0] if locations else "any",
            protected=any(m.protected for m in memories),
            coherent=all(m.coherent for m in memories),
            cpu_access=cpu,
        )
    if any(m.protected for m in memories) and cpu != "none":
        conflicts.append(_protected_conflict(devices, cpu_access))

    return Combined(
        devices=tuple(devices),
        width=width,
        height=height,
        pitch_align=aligns["pitch_align"],
        plane_pitch_align=plane_aligns,
        height_align=aligns["height_align"],
        offset_align=aligns["offset_align"],
        size_align=aligns["size_align"],
        extra_rows=max(r.extra_rows for r in layouts),
        min_size=max(r.min_size for r in layouts),
        buffers=buffers,
        buffers_disagree=len(buffers_wanted) > 1,
        min_pitch=min_pitch,
        max_pitch=max_pitch,
        max_width=max_width,
        max_height=max_height,
        memory=memory,
        cpu_access=cpu,
        requested_cpu=cpu_access,
        aligned=aligned,
        conflicts=conflicts,
    )


# ---------------------------------------------------------------------------------------------
# Conflicts that hold whatever the format.


def _alignment_conflict(devices: Sequence[Constraints], name: str, value: int) -> Conflict:
    def own(d: Constraints) -> int:
        if name.startswith("plane_pitch_align"):
            index = int(name[name.index("[") + 1 : -1])
            return d.layout.plane_align(index)
        result: int = getattr(d.layout, name)
        return result

    involved = [d for d in devices if own(d) > 1]
    return Conflict(
        "alignment",
        tuple(d.label for d in involved),
        tuple(f"{name} {own(d)}" for d in involved),
        f"the lcm of the {name} values"
        f" ({', '.join(f'{d.label} {own(d)}' for d in involved)}) is {value},"
        f" above the largest alignment devalloc describes ({MAX_ALIGN})",
        "these devices cannot share one buffer; give each its own buffer and copy between them",
    )


def _size_conflict(devices: Sequence[Constraints], what: str, requested: int) -> Conflict:
    key = f"max_{what}"
    limited = [
        (d.label, getattr(d, key)) for d in devices if (getattr(d, key) or requested) < requested
    ]
    smallest = min(v for _l, v in limited)
    parties = ", ".join(f"{label} ({value})" for label, value in limited)
    return Conflict(
        what,
        (APPLICATION, *(label for label, _v in limited)),
        (f"{what} {requested}", *(f"{key} {value}" for _l, value in limited)),
        f"the application asks for a {what} of {requested} pixels, above the max_{what} of"
        f" {parties}",
        f"scale or crop to at most {smallest} pixels of {what} before sharing with"
        f" {', '.join(label for label, _v in limited)}, or split the frame into parts",
    )


def _pitch_range_conflict(devices: Sequence[Constraints], low: int, high: int) -> Conflict:
    lows = [d for d in devices if d.min_pitch == low]
    highs = [d for d in devices if d.max_pitch == high]
    return Conflict(
        "pitch",
        tuple(d.label for d in (*lows, *highs)),
        (*(f"min_pitch {low}" for _d in lows), *(f"max_pitch {high}" for _d in highs)),
        f"{subject([d.label for d in lows], 'needs', 'need')} at least {low} bytes per row but"
        f" {', '.join(d.label for d in highs)} allows at most {high}",
        "no pitch satisfies both; give each side its own buffer and copy between them",
    )


def _location_conflict(devices: Sequence[Constraints]) -> Conflict:
    placed = [d for d in devices if d.memory.location != "any"]
    groups: dict[str, list[str]] = {}
    for d in placed:
        groups.setdefault(d.memory.location, []).append(d.label)
    described = "; ".join(
        subject(labels, "needs", "need") + f" {loc}" for loc, labels in groups.items()
    )
    hints = []
    for loc, labels in groups.items():
        members = [d for d in placed if d.label in labels]
        contiguous = any(d.memory.contiguous for d in members)
        bits = min(d.memory.dma_bits for d in members)
        hints.append(
            f"{loc} for {', '.join(labels)}"
            + (" (contiguous: a CMA heap" if contiguous else "")
            + (" below 4 GiB" if contiguous and bits <= 32 else "")
            + (")" if contiguous else "")
        )
    return Conflict(
        "location",
        tuple(d.label for d in placed),
        tuple(d.memory.location for d in placed),
        f"the devices need memory in different places: {described}",
        "allocate one buffer per location and copy between them ("
        + "; ".join(hints)
        + '), or set location = "any" for a device that can also use the other memory',
    )


def _protected_conflict(devices: Sequence[Constraints], requested: CpuAccess) -> Conflict:
    parties: list[tuple[str, str]] = []
    if requested != "none":
        parties.append((APPLICATION, f"cpu_access {requested}"))
    for d in devices:
        wants = []
        if d.memory.protected:
            wants.append("protected")
        if d.memory.cpu_access != "none":
            wants.append(f"cpu_access {d.memory.cpu_access}")
        if wants:
            parties.append((d.label, ", ".join(wants)))
    protected = [d.label for d in devices if d.memory.protected]
    touching = [label for label, want in parties if "cpu_access" in want]
    return Conflict(
        "protected",
        tuple(label for label, _w in parties),
        tuple(want for _l, want in parties),
        f"{subject(protected, 'needs', 'need')} protected (secure) memory, which the CPU cannot"
        f" access, but {subject(touching, 'needs', 'need')} CPU access",
        "drop the CPU access (cpu_access none) and leave the work to the devices, or give the CPU"
        " an unprotected copy made by a device allowed to read protected memory; protected"
        " memory comes from a secure heap",
    )


# ---------------------------------------------------------------------------------------------
# Buffer counts.


@dataclass(frozen=True)
class CountResult:
    """The combined buffer count: the count (None on a conflict), the conflict, the record."""

    count: int | None
    conflict: Conflict | None
    record: Provenance


def combine_counts(
    devices: Sequence[Constraints], application: BufferCounts, slack: int
) -> CountResult:
    """The plan's buffer count: what every party holds at once, plus ``slack``, raised to every
    party's ``min_count`` and lowered to every ``max_count`` (at least 1).

    What the parties hold is a floor as hard as the minima (they keep those buffers at the same
    time); slack is not, so the count is clamped to the smallest maximum when only slack passes
    it. A conflict when the floor is above the smallest maximum. Independent of the order of
    ``devices``: sums, maxima and minima only.

    Example:
        >>> from devalloc.formats import fourcc_code
        >>> nv12 = ((fourcc_code("NV12"), 0),)
        >>> dec = Constraints("dec", "out", nv12, counts=BufferCounts(holds=4))
        >>> dpy = Constraints("dpy", "primary", nv12, counts=BufferCounts(holds=2, max_count=6))
        >>> result = combine_counts([dec, dpy], BufferCounts(), 1)
        >>> result.count
        6
        >>> print(result.record.note)
        holds 6 (dec:out 4, dpy:primary 2) + slack 1 = 7; lowered to the max_count 6 of dpy:primary
    """
    parties: list[tuple[str, BufferCounts]] = [(APPLICATION, application)]
    parties.extend((d.label, d.counts) for d in devices)
    held = [(label, c.holds) for label, c in parties if c.holds]
    holds = sum(n for _l, n in held)
    low = max(c.min_count for _l, c in parties)
    highs = [c.max_count for _l, c in parties if c.max_count is not None]
    high = min(highs) if highs else None
    floor = max(low, holds, 1)
    inputs = tuple((label, c.describe()) for label, c in parties if c.stated)
    holders = tuple(label for label, _n in held)
    lows = tuple(label for label, c in parties if low and c.min_count == low)
    capping = tuple(label for label, c in parties if high is not None and c.max_count == high)
    held_text = ", ".join(f"{label} {n}" for label, n in held)
    summed = f"holds {holds} ({held_text})" if held else "holds 0"
    if high is not None and floor > high:
        below = holders if holds >= low else lows
        why = f"{summed} at once" if holds >= low else f"min_count {low} of {', '.join(lows)}"
        involved = tuple(dict.fromkeys((*below, *capping)))
        values = dict(parties)
        conflict = Conflict(
            "count",
            involved,
            tuple(values[label].describe() for label in involved),
            f"the parties need at least {floor} buffers ({why}) but"
            f" {', '.join(capping)} allow{'s' if len(capping) == 1 else ''} at most {high}",
            f"raise the max_count of {', '.join(capping)} to at least {floor}, or have"
            f" {', '.join(below)} hold fewer buffers at once; otherwise give each side its own"
            " buffers and copy between them",
        )
        record = Provenance("count", None, "sum", involved, inputs, conflict.message)
        return CountResult(None, conflict, record)
    target = max(holds + slack, low, 1)
    note = f"{summed} + slack {slack} = {holds + slack}"
    forced: tuple[str, ...] = holders
    count = target
    if low > holds + slack:
        note += f"; raised to the min_count {low} of {', '.join(lows)}"
        forced = tuple(dict.fromkeys((*holders, *lows)))
    elif holds + slack < 1:
        note += "; at least 1"
    if high is not None and target > high:
        count = high
        note += f"; lowered to the max_count {high} of {', '.join(capping)}"
        forced = tuple(dict.fromkeys((*forced, *capping)))
    return CountResult(count, None, Provenance("count", count, "sum", forced, inputs, note))


# ---------------------------------------------------------------------------------------------
# Cache policy and provenance.


def cache_policy(
    memory: MemoryRules, devices: Sequence[Constraints], prefer_uncached: bool
) -> CachePolicy:
    """How the CPU maps the buffer and whether it must sync (see ``docs/negotiation.md``)."""
    cpu = memory.cpu_access
    if cpu == "none":
        return CachePolicy(
            "none", "not-needed", "no CPU access: the CPU never maps the buffer, nothing to sync"
        )
    if memory.coherent:
        note = (
            " (write-combined is not needed: every device is coherent)" if prefer_uncached else ""
        )
        return CachePolicy(
            "cached",
            "recommended",
            f"CPU access {cpu} and every device snoops CPU caches, so a cached mapping needs no"
            " cache maintenance; DMA_BUF_IOCTL_SYNC bracketing is still recommended (exporters"
            f" may rely on it){note}",
        )
    blind = subject([d.label for d in devices if not d.memory.coherent], "does", "do")
    if prefer_uncached and cpu == "w":
        return CachePolicy(
            "write-combined",
            "required",
            f"the CPU only writes and {blind} not snoop CPU caches: a write-combined"
            " mapping needs no cache cleaning, but keep the DMA_BUF_IOCTL_SYNC bracketing (the"
            " dma-buf contract; it flushes write-combine buffers); never read through it:"
            " reading write-combined memory is slow",
        )
    note = ""
    if prefer_uncached:
        note = (
            "; write-combined was not chosen because the CPU also reads, and reading"
            " write-combined memory is slow"
        )
    return CachePolicy(
        "cached",
        "required",
        f"CPU access {cpu} and {blind} not snoop CPU caches: map cached and bracket every"
        " CPU access with DMA_BUF_IOCTL_SYNC (START ... END) so caches are cleaned and"
        f" invalidated{note}",
    )


def _lcm_record(
    attribute: str, inputs: list[tuple[str, int]], value: int, note: str = ""
) -> Provenance:
    total = math.lcm(*(v for _l, v in inputs))
    return Provenance(attribute, value, "lcm", lcm_forcing(inputs, total), _scalars(inputs), note)


def _scalars(
    inputs: Sequence[tuple[str, ProvenanceValue]],
) -> tuple[tuple[str, ProvenanceValue], ...]:
    return tuple(inputs)


def _extreme_record(
    attribute: str, inputs: list[tuple[str, int | None]], rule: str, default: int | None
) -> Provenance:
    value, forced = _extreme(inputs, max if rule == "max" else min)
    if value is None or value == default:
        forced = ()
    return Provenance(attribute, value, rule, forced, _scalars(inputs))


def provenance(
    comb: Combined,
    fmt: PixelFormat,
    rules: LayoutRules,
    cache: CachePolicy,
    pitch_note: str,
) -> list[Provenance]:
    """Where each combined value of a plan for ``fmt`` comes from (``rules``: the layout rules
    the plan uses, ``pitch_note``: why the pitch alignment was raised, if it was)."""
    devices = comb.devices
    records = [
        _lcm_record(
            "pitch_align",
            [(d.label, d.layout.pitch_align) for d in devices],
            rules.pitch_align,
            pitch_note,
        )
    ]
    for i in range(fmt.planes):
        records.append(
            _lcm_record(
                f"plane_align[{i}]",
                [(d.label, d.layout.plane_align(i)) for d in devices],
                rules.plane_align(i),
            )
        )
    for name in ("height_align", "offset_align", "size_align"):
        inputs = [(d.label, int(getattr(d.layout, name))) for d in devices]
        records.append(_lcm_record(name, inputs, int(getattr(rules, name))))
    for name in ("extra_rows", "min_size"):
        records.append(
            _extreme_record(name, [(d.label, getattr(d.layout, name)) for d in devices], "max", 0)
        )
    records.append(
        _extreme_record("min_pitch", [(d.label, d.min_pitch) for d in devices], "max", 0)
    )
    for name in ("max_pitch", "max_width", "max_height"):
        records.append(
            _extreme_record(name, [(d.label, getattr(d, name)) for d in devices], "min", None)
        )
    wanted = tuple(d.label for d in devices if d.buffers != "any")
    effective = "per-plane" if rules.multi_buffer else "single"
    records.append(
        Provenance(
            "buffers",
            effective,
            "agree",
            wanted,
            tuple((d.label, d.buffers) for d in devices),
            "one plane: one buffer either way" if wanted and fmt.planes == 1 else "",
        )
    )
    memory = comb.memory
    assert memory is not None
    mems = [(d.label, d.memory) for d in devices]
    records.append(
        Provenance(
            "contiguous",
            memory.contiguous,
            "or",
            tuple(label for label, m in mems if m.contiguous),
            tuple((label, m.contiguous) for label, m in mems),
        )
    )
    segments = _extreme_record(
        "max_segments", [(label, m.max_segments) for label, m in mems], "min", None
    )
    records.append(segments)
    records.append(
        _extreme_record("dma_bits", [(label, m.dma_bits) for label, m in mems], "min", 64)
    )
    records.append(
        Provenance(
            "location",
            memory.location,
            "agree",
            tuple(label for label, m in mems if m.location != "any"),
            tuple((label, m.location) for label, m in mems),
        )
    )
    records.append(
        Provenance(
            "protected",
            memory.protected,
            "or",
            tuple(label for label, m in mems if m.protected),
            tuple((label, m.protected) for label, m in mems),
        )
    )
    records.append(
        Provenance(
            "coherent",
            memory.coherent,
            "all",
            tuple(label for label, m in mems if not m.coherent),
            tuple((label, m.coherent) for label, m in mems),
        )
    )
    cpu_inputs: list[tuple[str, ProvenanceValue]] = [(APPLICATION, comb.requested_cpu)]
    cpu_inputs.extend((label, m.cpu_access) for label, m in mems)
    records.append(
        Provenance(
            "cpu_access",
            memory.cpu_access,
            "union",
            tuple(label for label, v in cpu_inputs if v != "none"),
            tuple(cpu_inputs),
        )
    )
    records.append(
        Provenance(
            "cache",
            cache.cpu_mapping,
            "policy",
            tuple(label for label, m in mems if not m.coherent)
            if memory.cpu_access != "none"
            else (),
            (),
            f"sync {cache.sync}: {cache.reason}",
        )
    )
    return records
