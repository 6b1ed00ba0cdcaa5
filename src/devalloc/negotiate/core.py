"""The negotiation itself: common pairs, their ranking, the layout checks and the conflicts.

The raising front (:func:`~devalloc.negotiate.api.negotiate`, which also searches a copy path)
is in :mod:`devalloc.negotiate.api`; this module returns plans or conflicts.

Example:
    >>> from devalloc.constraints import Constraints
    >>> from devalloc.formats import LayoutRules, fourcc_code
    >>> nv12, xr24 = fourcc_code("NV12"), fourcc_code("XR24")
    >>> cam = Constraints("cam", "capture", ((nv12, 0), (xr24, 0)), access="write")
    >>> gpu = Constraints("gpu", "texture", ((xr24, 0), (nv12, 0)), LayoutRules(pitch_align=256))
    >>> plan = try_negotiate([cam, gpu], 1000, 100)
    >>> plan.format.name, [p.pitch for p in plan.layout.planes]
    ('NV12', [1024, 1024])
    >>> try_negotiate([cam, gpu], 1000, 100, ["XR24"]).format.name
    'XRGB8888'

See :mod:`devalloc.negotiate` for the ranking rule and ``docs/negotiation.md`` for the rest.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from ..constraints import (
    CPU_ACCESS_VALUES,
    MAX_BUFFER_COUNT,
    BufferCounts,
    Constraints,
    CpuAccess,
    format_text,
    modifier_text,
)
from ..errors import UsageError
from ..formats import (
    GST_FORMATS,
    MAX_DIMENSION,
    Layout,
    LayoutRules,
    Modifier,
    layout,
    lookup_format,
    parse_drm_format,
)
from ..formats.layout import MAX_ALIGN
from ..formats.modifier import DRM_FORMAT_MOD_LINEAR
from .combine import (
    DEFAULT_SLACK,
    Combined,
    CountResult,
    cache_policy,
    combine,
    combine_counts,
    name_list,
    provenance,
    subject,
)
from .plan import Plan
from .records import APPLICATION, CombinedRules, Conflict, Provenance

__all__ = [
    "ATTRIBUTES",
    "MAX_COPY_PATH_DEVICES",
    "Request",
    "acceptable_pairs",
    "prepare",
    "run",
    "try_negotiate",
]

#: Conflict attributes, in the order conflicts are reported.
ATTRIBUTES: Final = (
    "format",
    "modifier",
    "width",
    "height",
    "location",
    "protected",
    "alignment",
    "count",
    "buffers",
    "pitch",
    "layout",
)
#: The copy-path search tries every split of the devices in two; above this many it is skipped.
MAX_COPY_PATH_DEVICES: Final = 12

Pair = tuple[int, int]


@dataclass(frozen=True)
class Request:
    """A checked negotiation request: devices sorted by label, formats resolved to fourccs."""

    devices: tuple[Constraints, ...]
    width: int
    height: int
    candidates: tuple[int, ...] | None
    cpu_access: CpuAccess
    prefer_uncached: bool
    known_layout: bool = False
    counts: BufferCounts = dataclasses.field(default_factory=BufferCounts)
    slack: int = DEFAULT_SLACK
    #: (fourcc, modifier) pairs the application pins (``--format NV12:0x...``): a pinned format
    #: is taken with those modifiers only.
    pins: tuple[Pair, ...] = ()

    def subset(self, devices: Iterable[Constraints]) -> Request:
        """The same request for some of the devices."""
        return dataclasses.replace(self, devices=tuple(devices))

    @property
    def labels(self) -> tuple[str, ...]:
        """The devices' labels, sorted."""
        return tuple(d.label for d in self.devices)


def prepare(
    constraints: Iterable[Constraints],
    width: int,
    height: int,
    formats: Sequence[str | int] | None = None,
    cpu_access: CpuAccess = "none",
    prefer_uncached: bool = False,
    known_layout: bool = False,
    counts: BufferCounts | None = None,
    slack: int = DEFAULT_SLACK,
) -> Request:
    """Check a request and put it in canonical form (``known_layout``: see :func:`run`;
    ``counts``: the application's own :class:`~devalloc.constraints.BufferCounts`; ``slack``:
    buffers added to what every party holds, see
    :func:`~devalloc.negotiate.combine.combine_counts`).

    Raises:
        UsageError: no devices, a non-Constraints item, two devices with the same label, a bad
            size, an unknown format, an invalid CPU access, counts or slack.
    """
    if isinstance(constraints, Constraints):
        raise UsageError("negotiate takes a list of Constraints, not a single one")
    if not isinstance(constraints, Iterable) or isinstance(constraints, str | bytes | bytearray):
        raise UsageError(f"negotiate takes a list of Constraints, not {constraints!r:.80}")
    devices = list(constraints)
    if not devices:
        raise UsageError("negotiation needs the constraints of at least one device")
    for item in devices:
        if not isinstance(item, Constraints):
            raise UsageError(f"negotiate takes Constraints, not {type(item).__name__}")
    devices.sort(key=lambda d: d.label)
    for first, second in itertools.pairwise(devices):
        if first.label == second.label:
            raise UsageError(
                f"{first.label} is given twice; give each device its own id (e.g. cam0, cam1)"
            )
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"the {name} is an integer, not {value!r}")
        if not 1 <= value <= MAX_DIMENSION:
            raise UsageError(f"the {name} is from 1 to {MAX_DIMENSION}, not {value}")
    candidates: tuple[int, ...] | None = None
    if formats is not None:
        if isinstance(formats, str | bytes | bytearray):
            raise UsageError(f"formats is a list of formats, not the text {formats!r:.80}")
        if not isinstance(formats, Iterable):
            raise UsageError(
                f"formats is a list of format names or fourccs (or None), not {formats!r:.80}"
            )
        wanted = [_application_format(f) for f in formats]
        candidates = tuple(dict.fromkeys(fourcc for fourcc, _pin in wanted))
        pins = tuple(dict.fromkeys(pin for _fourcc, pin in wanted if pin is not None))
        if not candidates:
            raise UsageError("formats is empty; leave it out (None) to accept any format")
    if cpu_access not in CPU_ACCESS_VALUES:
        raise UsageError(f"cpu_access is one of {', '.join(CPU_ACCESS_VALUES)}, not {cpu_access!r}")
    if not isinstance(prefer_uncached, bool):
        raise UsageError(f"prefer_uncached is True or False, not {prefer_uncached!r}")
    if not isinstance(known_layout, bool):
        raise UsageError(f"known_layout is True or False, not {known_layout!r}")
    if counts is None:
        counts = BufferCounts()
    if not isinstance(counts, BufferCounts):
        raise UsageError(f"counts is a BufferCounts (or None), not {counts!r:.80}")
    if isinstance(slack, bool) or not isinstance(slack, int) or not 0 <= slack <= MAX_BUFFER_COUNT:
        raise UsageError(f"slack is an integer from 0 to {MAX_BUFFER_COUNT}, not {slack!r:.80}")
    return Request(
        tuple(devices),
        width,
        height,
        candidates,
        cpu_access,
        prefer_uncached,
        known_layout,
        counts,
        slack,
        pins if formats is not None else (),
    )


def _application_format(spec: str | int) -> tuple[int, Pair | None]:
    """A format the application accepts, and the pair it pins: a drm-format with a colon
    (``NV12:0x0100000000000002``, ``NV12:I915_Y_TILED``) or a GStreamer name for a tiled pair
    (``NV12_4L4``) pins its modifier; any other spelling takes every modifier."""
    if isinstance(spec, str) and (":" in spec or spec.strip() in GST_FORMATS):
        fmt, modifier = parse_drm_format(spec)
        if ":" in spec or not modifier.is_linear:
            return fmt.fourcc, (fmt.fourcc, modifier.value)
        return fmt.fourcc, None
    return lookup_format(spec).fourcc, None


# ---------------------------------------------------------------------------------------------
# Pairs: the intersection and the ranking.


def _rank_key(request: Request) -> Callable[[Pair], tuple[int, int, int, int, int]]:
    maps = [d.positions for d in request.devices]
    order = {f: i for i, f in enumerate(request.candidates or ())}

    def key(pair: Pair) -> tuple[int, int, int, int, int]:
        positions = [m[pair] for m in maps]
        return (order.get(pair[0], 0), sum(positions), max(positions), pair[0], pair[1])

    return key


def common_pairs(request: Request) -> list[Pair]:
    """The pairs every device lists (and the application's formats allow), unranked."""
    devices = request.devices
    smallest = min(devices, key=lambda d: len(d.pairs))
    common = set(smallest.positions)
    for device in devices:
        if device is not smallest:
            common.intersection_update(device.positions)
    if request.candidates is not None:
        allowed = set(request.candidates)
        common = {p for p in common if p[0] in allowed}
    if request.pins:
        pinned = {fourcc for fourcc, _modifier in request.pins}
        common = {p for p in common if p[0] not in pinned or p in request.pins}
    return list(common)


def _ranked(request: Request, pairs: list[Pair]) -> Iterator[Pair]:
    """``pairs`` best first; the best is found without sorting the rest."""
    if not pairs:
        return
    key = _rank_key(request)
    keyed = [(key(p), p) for p in pairs]
    best = min(keyed)
    yield best[1]
    keyed.remove(best)
    keyed.sort()
    for _key, pair in keyed:
        yield pair


def _format_rank(request: Request) -> Callable[[int], tuple[int, int, int]]:
    order = {f: i for i, f in enumerate(request.candidates or ())}

    def key(fourcc: int) -> tuple[int, int, int]:
        positions = [d.fourccs[fourcc] for d in request.devices]
        return (order.get(fourcc, 0), sum(positions), fourcc)

    return key


def _formats_of(device: Constraints) -> list[str]:
    return [format_text(f) for f in device.fourccs]


def _format_conflicts(request: Request) -> list[Conflict]:
    """Why there is no common pair: no common format, none the application accepts, or no
    common modifier for each common format."""
    devices = request.devices
    shared = set(devices[0].fourccs)
    for device in devices[1:]:
        shared.intersection_update(device.fourccs)
    if not shared:
        offers = [name_list(_formats_of(d)) for d in devices]
        return [
            Conflict(
                "format",
                request.labels,
                tuple(offers),
                "no format every device accepts: "
                + ", ".join(f"{d.label} offers {o}" for d, o in zip(devices, offers, strict=True)),
                _format_suggestion(devices),
            )
        ]
    rank = _format_rank(request)
    fourccs = sorted(shared, key=rank)
    if request.candidates is not None:
        wanted = [f for f in request.candidates if f in shared]
        if not wanted:
            asked = name_list([format_text(f) for f in request.candidates])
            common = name_list([format_text(f) for f in fourccs])
            return [
                Conflict(
                    "format",
                    (APPLICATION, *request.labels),
                    (asked, *(name_list(_formats_of(d)) for d in devices)),
                    f"the application accepts only {asked}; the formats every device"
                    f" accepts are {common}",
                    f"accept one of {common} in the application, or convert with a copy step",
                )
            ]
        fourccs = wanted
    conflicts = []
    for fourcc in fourccs:
        offers = [
            name_list([modifier_text(m) for f, m in d.pairs if f == fourcc], limit=6)
            for d in devices
        ]
        labels = list(request.labels)
        pinned = [modifier_text(m) for f, m in request.pins if f == fourcc]
        if pinned:
            labels.insert(0, APPLICATION)
            offers.insert(0, name_list(pinned))
        name = format_text(fourcc)
        conflicts.append(
            Conflict(
                "modifier",
                tuple(labels),
                tuple(offers),
                f"no common modifier for {name}: "
                + ", ".join(f"{d} offers {o}" for d, o in zip(labels, offers, strict=True)),
                f"a copy step that converts {name} between these modifiers (re-tiling), or list"
                " a modifier every device really supports (LINEAR is never implied)",
            )
        )
    return conflicts


def _format_suggestion(devices: Sequence[Constraints]) -> str:
    favourites = [f"{d.label}'s {format_text(d.pairs[0][0])}" for d in devices]
    if len(devices) == 2:
        return (
            f"convert with a copy step, e.g. {favourites[0]} to {favourites[1]} (or the other"
            " way round, from the writer to the reader); devalloc proposes a copy path"
        )
    return (
        "split the devices into two groups that each share a format and copy between them"
        f" (favourites: {', '.join(favourites)}); devalloc proposes a copy path"
    )


# ---------------------------------------------------------------------------------------------
# One pair: its layout and the checks on it.


@dataclass(frozen=True)
class _Failure:
    """Why one pair does not work."""

    pair: Pair
    attribute: str  # buffers | pitch | layout
    detail: str = ""
    pitch: int = 0  # the offending pitch (pitch failures)
    low: bool = False  # below min_pitch (else above max_pitch)
    raised: bool = False  # the pitch alignment was raised to meet min_pitch


@dataclass(frozen=True)
class _Fit:
    """A pair that works: its layout, the rules it was computed with and a note on them."""

    layout: Layout
    rules: LayoutRules
    pitch_note: str


def _fit(comb: Combined, pair: Pair, width: int, height: int) -> _Fit | list[_Failure]:
    fmt = lookup_format(pair[0])
    failures: list[_Failure] = []
    if comb.buffers_disagree and fmt.planes > 1:
        failures.append(_Failure(pair, "buffers"))
    rules = comb.layout_rules(fmt)
    try:
        lay = layout(fmt, width, height, pair[1], rules)
    except UsageError as exc:
        failures.append(_Failure(pair, "layout", str(exc)))
        return failures
    note = ""
    raised = False
    if not lay.opaque and lay.planes:
        if comb.min_pitch and min(p.pitch for p in lay.planes) < comb.min_pitch:
            base = step = rules.pitch_align
            if pair[1] != DRM_FORMAT_MOD_LINEAR:
                # A tiled layout rounds the pitch to its tile width too: step in multiples of
                # both, so the raised alignment is the pitch (and a stricter device can only
                # raise it further, never lower it).
                unit = layout(fmt, 1, 1, pair[1], LayoutRules())
                if not unit.opaque and unit.planes:
                    step = math.lcm(step, *(p.pitch for p in unit.planes))
            wider = -(-comb.min_pitch // step) * step
            if wider <= MAX_ALIGN:
                try:
                    again = dataclasses.replace(rules, pitch_align=wider)
                    lay, rules = layout(fmt, width, height, pair[1], again), again
                    raised = True
                    note = (
                        f"raised from {base} to {wider} so that every plane's pitch is at least"
                        f" min_pitch {comb.min_pitch}"
                    )
                except UsageError as exc:
                    failures.append(_Failure(pair, "layout", str(exc)))
                    return failures
        pitches = [p.pitch for p in lay.planes]
        if min(pitches) < comb.min_pitch:
            failures.append(_Failure(pair, "pitch", pitch=min(pitches), low=True, raised=raised))
        if comb.max_pitch is not None and max(pitches) > comb.max_pitch:
            failures.append(_Failure(pair, "pitch", pitch=max(pitches), raised=raised))
    if failures:
        return failures
    return _Fit(lay, rules, note)


def _pair_text(pair: Pair) -> str:
    return f"{format_text(pair[0])} {modifier_text(pair[1])}"


def _largest_fitting_width(comb: Combined, pair: Pair, width: int, height: int) -> int:
    """The largest width below ``width`` at which ``pair`` meets the pitch limits (0: none)."""
    low, high = 0, width - 1
    while low < high:
        mid = (low + high + 1) // 2
        fitted = _fit(comb, pair, mid, height)
        ok = isinstance(fitted, _Fit) or not any(f.attribute == "pitch" for f in fitted)
        if ok:
            low = mid
        else:
            high = mid - 1
    return low


def _pair_conflicts(comb: Combined, failures: list[_Failure]) -> list[Conflict]:
    """Conflicts from pairs that all failed (buffers, pitch, layout)."""
    devices = comb.devices
    conflicts: list[Conflict] = []
    buffers = [f for f in failures if f.attribute == "buffers"]
    if buffers:
        wanted = [d for d in devices if d.buffers != "any"]
        single = [d.label for d in wanted if d.buffers == "single"]
        per_plane = [d.label for d in wanted if d.buffers == "per-plane"]
        multi = name_list(list(dict.fromkeys(format_text(f.pair[0]) for f in buffers)))
        conflicts.append(
            Conflict(
                "buffers",
                tuple(d.label for d in wanted),
                tuple(d.buffers for d in wanted),
                f"{subject(single, 'needs', 'need')} every plane in one buffer but"
                f" {subject(per_plane, 'needs', 'need')} one buffer per plane, and the formats"
                f" {multi} have several planes",
                "a single-plane format every device accepts avoids the question; otherwise copy"
                " between a single-buffer and a per-plane buffer",
            )
        )
    pitch = [f for f in failures if f.attribute == "pitch"]
    if pitch and not any(c.attribute == "pitch" for c in comb.conflicts):
        involved: dict[str, str] = {}
        for failure in pitch:
            for d in devices:
                if failure.low and d.min_pitch > failure.pitch:
                    involved[d.label] = f"min_pitch {d.min_pitch}"
                if not failure.low and d.max_pitch is not None and d.max_pitch < failure.pitch:
                    involved[d.label] = f"max_pitch {d.max_pitch}"
                if failure.raised and d.min_pitch == comb.min_pitch:
                    involved.setdefault(d.label, f"min_pitch {d.min_pitch}")
        labels = [d.label for d in devices if d.label in involved]
        first = pitch[0]
        if first.low:
            what = f"a pitch of {first.pitch} bytes, below the min_pitch {comb.min_pitch}"
        else:
            what = f"{first.pitch} bytes per row, above the max_pitch {comb.max_pitch}"
        others = len({f.pair for f in pitch}) - 1
        more = f" ({others} other common pair(s) fail the same way)" if others else ""
        suggestion = "a format with fewer bytes per pixel, or a modifier with a smaller pitch"
        if not first.low:
            fits = _largest_fitting_width(comb, first.pair, comb.width, comb.height)
            if fits:
                suggestion = (
                    f"at most {fits} pixels wide fits in {_pair_text(first.pair)}; or " + suggestion
                )
        conflicts.append(
            Conflict(
                "pitch",
                tuple(labels),
                tuple(involved[label] for label in labels),
                f"{_pair_text(first.pair)} at {comb.width}x{comb.height} needs {what}"
                f" of {', '.join(labels)}{more}",
                suggestion,
            )
        )
    bad_layout = [f for f in failures if f.attribute == "layout"]
    if bad_layout:
        first = bad_layout[0]
        conflicts.append(
            Conflict(
                "layout",
                tuple(d.label for d in devices),
                tuple(modifier_text(first.pair[1]) for _d in devices),
                f"the layout engine refuses {_pair_text(first.pair)} at {comb.width}x{comb.height}:"
                f" {first.detail}",
                "a smaller size or another modifier",
            )
        )
    return conflicts


def _ordered(conflicts: Iterable[Conflict]) -> tuple[Conflict, ...]:
    return tuple(sorted(conflicts, key=lambda c: ATTRIBUTES.index(c.attribute)))


# ---------------------------------------------------------------------------------------------
# The whole negotiation.


def _rank_record(request: Request, pair: Pair, count: int, skipped: int = 0) -> Provenance:
    positions = [d.positions[pair] for d in request.devices]
    inputs: list[tuple[str, int | str | bool | None]] = []
    forced: tuple[str, ...] = ()
    best = f"the best of {count} common pair(s)"
    if skipped:
        best += f" after {skipped} vendor-private one(s)"
    note = f"{best}: position sum {sum(positions)}, worst {max(positions)}"
    if request.candidates is not None:
        index = request.candidates.index(pair[0])
        inputs.append((APPLICATION, index))
        forced = (APPLICATION,)
        note = f"the application's format #{index + 1}; " + note
    inputs.extend(zip(request.labels, positions, strict=True))
    return Provenance("pair", _pair_text(pair), "rank", forced, tuple(inputs), note)


def _layout_need(request: Request, comb: Combined) -> tuple[str, tuple[str, ...]]:
    """Why a vendor-private (opaque) layout will not do, and who says so; ("", ()) when it
    will."""
    parties = [APPLICATION] if comb.requested_cpu != "none" else []
    parties.extend(d.label for d in request.devices if d.memory.cpu_access != "none")
    reasons = []
    if comb.cpu_access != "none":
        reasons.append(f"not CPU-accessible (cpu_access {comb.cpu_access}: {', '.join(parties)})")
    if request.known_layout:
        reasons.append(
            "its size is the exporter's, so it cannot be allocated from a heap (known_layout)"
        )
        if APPLICATION not in parties:
            parties.insert(0, APPLICATION)
    return " and ".join(reasons), tuple(parties)


def _skip_record(
    request: Request, comb: Combined, pair: Pair, skipped: Sequence[Pair]
) -> Provenance:
    """Which vendor-private pairs ranked above ``pair`` were passed over, and why."""
    reason, parties = _layout_need(request, comb)
    texts = ", ".join(_pair_text(p) for p in skipped)
    if pair in skipped:  # nothing better: the vendor-private pair is the plan
        note = f"only vendor-private pairs fit ({texts}): {reason}; took {_pair_text(pair)} anyway"
    else:
        note = f"{texts} skipped: vendor-private modifier, {reason}; took {_pair_text(pair)}"
    return Provenance("skipped", texts, "known-layout", parties, (), note)


def _plan(
    request: Request,
    comb: Combined,
    pair: Pair,
    fit: _Fit,
    count: int,
    counted: CountResult,
    skipped: Sequence[Pair] = (),
) -> Plan:
    fmt = lookup_format(pair[0])
    memory = comb.memory
    assert memory is not None
    cache = cache_policy(memory, request.devices, request.prefer_uncached)
    passed_over = len([p for p in skipped if p != pair])
    records = [_rank_record(request, pair, count, passed_over)]
    if skipped:
        records.append(_skip_record(request, comb, pair, skipped))
    records.extend(provenance(comb, fmt, fit.rules, cache, fit.pitch_note))
    records.append(counted.record)
    assert counted.count is not None
    return Plan(
        format=fmt,
        modifier=Modifier(pair[1]),
        width=request.width,
        height=request.height,
        layout=fit.layout,
        rules=CombinedRules(
            fit.rules,
            comb.buffers,
            comb.min_pitch,
            comb.max_pitch,
            comb.max_width,
            comb.max_height,
        ),
        memory=memory,
        cache=cache,
        devices=request.labels,
        provenance=tuple(records),
        count=counted.count,
    )


def run(request: Request) -> Plan | tuple[Conflict, ...]:
    """Negotiate a checked request: the plan, or every conflict.

    When the CPU accesses the buffer (the application or a device) or the request says
    ``known_layout`` (the caller allocates from a heap), a pair whose layout is vendor-private
    cannot be served: the next fitting pair with a layout devalloc computes is taken, and a
    ``skipped`` provenance record says which pairs were passed over and why. When only
    vendor-private pairs fit, the best of them is the plan (and the record says so).
    """
    comb = combine(request.devices, request.width, request.height, request.cpu_access)
    counted = combine_counts(request.devices, request.counts, request.slack)
    pairs = common_pairs(request)
    conflicts = list(comb.conflicts)
    if counted.conflict is not None:
        conflicts.append(counted.conflict)
    if not pairs:
        conflicts.extend(_format_conflicts(request))
        return _ordered(conflicts)
    if not comb.aligned:
        return _ordered(conflicts)
    need_layout = request.known_layout or comb.cpu_access != "none"
    failures: list[_Failure] = []
    opaque: list[tuple[Pair, _Fit]] = []
    for pair in _ranked(request, pairs):
        fitted = _fit(comb, pair, request.width, request.height)
        if isinstance(fitted, _Fit):
            if need_layout and fitted.layout.opaque:
                opaque.append((pair, fitted))
                continue
            if conflicts:
                return _ordered(conflicts)
            skipped = [p for p, _f in opaque]
            return _plan(request, comb, pair, fitted, len(pairs), counted, skipped)
        failures.extend(fitted)
    if opaque:
        if conflicts:
            return _ordered(conflicts)
        pair, fitted = opaque[0]
        return _plan(request, comb, pair, fitted, len(pairs), counted, [p for p, _f in opaque])
    conflicts.extend(_pair_conflicts(comb, failures))
    return _ordered(conflicts)


def acceptable_pairs(
    constraints: Iterable[Constraints],
    width: int,
    height: int,
    formats: Sequence[str | int] | None = None,
    *,
    cpu_access: CpuAccess = "none",
    known_layout: bool = False,
) -> list[Pair]:
    """Every (fourcc, modifier) pair a plan could use, best first (empty when a conflict holds
    whatever the pair). :func:`negotiate` picks the first; when vendor-private layouts will not
    do (CPU access, ``known_layout``), they come after every pair with a computed layout.

    Raises:
        UsageError: an invalid request (see :func:`negotiate`).
    """
    request = prepare(constraints, width, height, formats, cpu_access, known_layout=known_layout)
    comb = combine(request.devices, request.width, request.height, request.cpu_access)
    if comb.conflicts or not comb.aligned:
        return []
    fits: list[tuple[Pair, _Fit]] = []
    for pair in _ranked(request, common_pairs(request)):
        fitted = _fit(comb, pair, width, height)
        if isinstance(fitted, _Fit):
            fits.append((pair, fitted))
    if request.known_layout or comb.cpu_access != "none":
        fits.sort(key=lambda item: item[1].layout.opaque)  # stable: rank order within each
    return [pair for pair, _fit in fits]


def try_negotiate(
    constraints: Iterable[Constraints],
    width: int,
    height: int,
    formats: Sequence[str | int] | None = None,
    *,
    cpu_access: CpuAccess = "none",
    prefer_uncached: bool = False,
    known_layout: bool = False,
    counts: BufferCounts | None = None,
    slack: int = DEFAULT_SLACK,
) -> Plan | tuple[Conflict, ...]:
    """Like :func:`~devalloc.negotiate.negotiate`, but returns the conflicts instead of raising.

    Raises:
        UsageError: an invalid request.
    """
    return run(
        prepare(
            constraints,
            width,
            height,
            formats,
            cpu_access,
            prefer_uncached,
            known_layout,
            counts,
            slack,
        )
    )
