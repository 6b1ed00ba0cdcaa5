"""Properties of negotiation over random devices (hypothesis).

(a) a plan satisfies every input constraint (re-checked on the plan's layout and memory);
(b) permuting the devices gives an equal plan or an equal conflict set;
(c) adding a device never enlarges the set of acceptable pairs;
(d) conflicts name only attributes that truly conflict: each reported attribute is confirmed by
    an independent check, and relaxing that rule on every device makes the conflict vanish;
(e) Plan, Constraints and Conflict JSON round trips.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devalloc.constraints import Constraints, CpuAccess, MemoryRules
from devalloc.formats import LayoutRules, lookup_format, parse_modifier
from devalloc.formats.layout import MAX_ALIGN
from devalloc.negotiate import (
    APPLICATION,
    Conflict,
    Plan,
    acceptable_pairs,
    try_negotiate,
)

FORMAT_NAMES = ("NV12", "YUV420", "XRGB8888", "RGB565", "YUYV", "P010", "R8")
FOURCCS = tuple(lookup_format(name).fourcc for name in FORMAT_NAMES)
MODIFIERS = tuple(
    parse_modifier(name).value
    for name in ("LINEAR", "I915_X_TILED", "I915_Y_TILED", "ARM_AFBC(16x16,SPARSE)")
)
CPU: tuple[CpuAccess, ...] = ("none", "r", "w", "rw")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


FRIENDLY_PAIRS = tuple(
    (lookup_format(name).fourcc, parse_modifier(mod).value)
    for name in ("NV12", "XRGB8888", "YUYV", "YUV420")
    for mod in ("LINEAR", "I915_Y_TILED")
)


@st.composite
def constraints(draw: st.DrawFn, index: int, hostile: bool = True) -> Constraints:
    """A random device. ``hostile`` draws from the whole universe (conflicts are common); the
    friendly variant shares most pairs and rarely clashes, so that plans for several devices
    are common too."""
    if hostile:
        universe = st.tuples(st.sampled_from(FOURCCS), st.sampled_from(MODIFIERS))
        pairs = draw(st.lists(universe, min_size=1, max_size=8, unique=True))
    else:
        pairs = draw(st.permutations(FRIENDLY_PAIRS))[: draw(st.integers(5, len(FRIENDLY_PAIRS)))]
        if (FRIENDLY_PAIRS[0] not in pairs) and draw(st.booleans()):
            pairs.append(FRIENDLY_PAIRS[0])

    def pick(hostile_choices: tuple[object, ...], friendly_choices: tuple[object, ...]) -> object:
        return draw(st.sampled_from(hostile_choices if hostile else friendly_choices))

    rules = LayoutRules(
        pitch_align=draw(st.sampled_from((1, 2, 16, 48, 64, 96, 256))),
        plane_pitch_align=tuple(draw(st.lists(st.sampled_from((1, 2, 64, 128)), max_size=3))),
        height_align=draw(st.sampled_from((1, 2, 16, 3))),
        offset_align=draw(st.sampled_from((1, 64, 4096))),
        size_align=draw(st.sampled_from((1, 4096, 6))),
        extra_rows=draw(st.integers(0, 8)),
        min_size=draw(st.sampled_from((0, 4096, 1 << 20))),
    )
    min_pitch = draw(st.sampled_from((0, 0, 64, 300)))
    max_pitch = pick((None, None, 256, 1024, 4096, 16384), (None, None, None, 4096, 16384))
    if max_pitch is not None and max_pitch < min_pitch:  # type: ignore[operator]
        max_pitch = None
    contiguous = draw(st.booleans())
    memory = MemoryRules(
        contiguous=contiguous,
        max_segments=None if contiguous else draw(st.sampled_from((None, 1, 4, 64))),
        dma_bits=draw(st.sampled_from((32, 40, 64))),
        location=pick(("system", "system", "any", "vram:card0"), ("system", "any")),  # type: ignore[arg-type]
        protected=bool(pick((False, False, False, True), (False,) * 7 + (True,))),
        coherent=draw(st.booleans()),
        cpu_access=pick(CPU, ("none", "none", "none", "r", "w", "rw")),  # type: ignore[arg-type]
    )
    return Constraints(
        device=f"dev{index}",
        usage=draw(st.sampled_from(("a", "b"))),
        pairs=tuple(pairs),
        layout=rules,
        buffers=pick(("any", "any", "single", "per-plane"), ("any",) * 4 + ("single", "per-plane")),  # type: ignore[arg-type]
        min_pitch=min_pitch,
        max_pitch=max_pitch,  # type: ignore[arg-type]
        max_width=pick((None, None, 640, 2048), (None, None, None, 2048)),  # type: ignore[arg-type]
        max_height=pick((None, None, 480, 2048), (None, None, None, 2048)),  # type: ignore[arg-type]
        memory=memory,
        access=draw(st.sampled_from(("read", "write", "read-write"))),
    )


def device_lists(low: int = 1, high: int = 4) -> st.SearchStrategy[list[Constraints]]:
    """Lists of devices, half of them drawn hostile and half friendly."""
    return st.tuples(st.integers(low, high), st.booleans()).flatmap(
        lambda nh: st.tuples(*(constraints(i, nh[1]) for i in range(nh[0]))).map(list)
    )


@st.composite
def requests(draw: st.DrawFn) -> dict[str, object]:
    candidates = draw(
        st.none() | st.lists(st.sampled_from(FORMAT_NAMES), min_size=1, max_size=3, unique=True)
    )
    friendly_cpu = draw(st.booleans())
    return {
        "width": draw(st.integers(1, 2500) | st.sampled_from((640, 641, 2048, 2049, 1920, 7))),
        "height": draw(st.integers(1, 1500) | st.sampled_from((480, 481, 1080, 2048, 2049, 5))),
        "formats": candidates,
        "cpu_access": "none" if friendly_cpu else draw(st.sampled_from(CPU)),
    }


def run(devices: list[Constraints], request: dict[str, object]) -> Plan | tuple[Conflict, ...]:
    return try_negotiate(
        devices,
        request["width"],  # type: ignore[arg-type]
        request["height"],  # type: ignore[arg-type]
        request["formats"],  # type: ignore[arg-type]
        cpu_access=request["cpu_access"],  # type: ignore[arg-type]
    )


def pairs_of(devices: list[Constraints], request: dict[str, object]) -> list[tuple[int, int]]:
    return acceptable_pairs(
        devices,
        request["width"],  # type: ignore[arg-type]
        request["height"],  # type: ignore[arg-type]
        request["formats"],  # type: ignore[arg-type]
        cpu_access=request["cpu_access"],  # type: ignore[arg-type]
    )


def _round_up(value: int, align: int) -> int:
    return -(-value // align) * align


def assert_satisfies(plan: Plan, c: Constraints, request: dict[str, object]) -> None:
    """Every rule of ``c`` holds on ``plan`` (checked from ``c``, not from the combined rules)."""
    pair = (plan.format.fourcc, plan.modifier.value)
    assert pair in c.positions, f"{c.label} does not list {pair}"
    formats = request["formats"]
    if formats is not None:
        assert plan.format.name in formats  # type: ignore[operator]
    width, height = request["width"], request["height"]
    assert (plan.width, plan.height) == (width, height)
    assert c.max_width is None or plan.width <= c.max_width
    assert c.max_height is None or plan.height <= c.max_height
    lay = plan.layout
    if not lay.opaque:
        assert len(lay.planes) == plan.format.planes
        for i, plane in enumerate(lay.planes):
            assert plane.pitch % c.layout.plane_align(i) == 0, (c.label, i, plane.pitch)
            assert plane.pitch >= c.min_pitch
            assert c.max_pitch is None or plane.pitch <= c.max_pitch
        rows = lay.planes[0].rows
        assert rows >= _round_up(plan.height, c.layout.height_align) + c.layout.extra_rows
        many = plan.format.planes > 1
        if c.buffers == "single" or not many:
            assert all(p.buffer == 0 for p in lay.planes)
            for plane in lay.planes[1:]:
                assert plane.offset % c.layout.offset_align == 0
        elif c.buffers == "per-plane":
            assert [p.buffer for p in lay.planes] == list(range(plan.format.planes))
        for plane in lay.planes:
            assert plane.offset + plane.size <= lay.buffer_sizes[plane.buffer]
        for size in lay.buffer_sizes:
            assert size % c.layout.size_align == 0
            assert size >= c.layout.min_size
        assert lay.size == sum(lay.buffer_sizes)
    memory = plan.memory
    assert memory.contiguous or not c.memory.contiguous
    if c.memory.max_segments is not None:
        assert memory.max_segments is not None
        assert memory.max_segments <= c.memory.max_segments
    assert memory.dma_bits <= c.memory.dma_bits
    assert c.memory.location in ("any", memory.location)
    assert memory.protected or not c.memory.protected
    assert c.memory.coherent or not memory.coherent
    for want in (c.memory.cpu_access, request["cpu_access"]):
        assert set(str(want).replace("none", "")) <= set(memory.cpu_access.replace("none", ""))
    cache = plan.cache
    if memory.cpu_access == "none":
        assert (cache.cpu_mapping, cache.sync) == ("none", "not-needed")
    elif memory.coherent:
        assert (cache.cpu_mapping, cache.sync) == ("cached", "recommended")
    else:
        assert (cache.cpu_mapping, cache.sync) == ("cached", "required")


@SETTINGS
@given(device_lists(), requests())
def test_a_plan_satisfies_every_constraint(
    devices: list[Constraints], request: dict[str, object]
) -> None:
    result = run(devices, request)
    if isinstance(result, Plan):
        for device in devices:
            assert_satisfies(result, device, request)
        best = pairs_of(devices, request)
        assert best
        assert best[0] == (result.format.fourcc, result.modifier.value)
    else:
        assert result, "no plan and no conflict"
        assert not pairs_of(devices, request) or any(
            c.attribute in ("width", "height", "location", "protected", "alignment", "pitch")
            for c in result
        )


@SETTINGS
@given(device_lists(2, 4), requests(), st.randoms(use_true_random=False))
def test_b_device_order_does_not_matter(
    devices: list[Constraints], request: dict[str, object], rng: object
) -> None:
    shuffled = list(devices)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert run(shuffled, request) == run(devices, request)
    assert pairs_of(list(reversed(devices)), request) == pairs_of(devices, request)


@SETTINGS
@given(device_lists(1, 3), constraints(9), requests())
def test_c_adding_a_device_never_enlarges_the_acceptable_pairs(
    devices: list[Constraints], extra: Constraints, request: dict[str, object]
) -> None:
    before = set(pairs_of(devices, request))
    after = set(pairs_of([*devices, extra], request))
    assert after <= before


def _common_fourccs(devices: list[Constraints]) -> set[int]:
    common = set(devices[0].fourccs)
    for d in devices[1:]:
        common &= set(d.fourccs)
    return common


def _common_pairs(devices: list[Constraints], request: dict[str, object]) -> set[tuple[int, int]]:
    common = set(devices[0].positions)
    for d in devices[1:]:
        common &= set(d.positions)
    formats = request["formats"]
    if formats is not None:
        wanted = {lookup_format(f).fourcc for f in formats}  # type: ignore[attr-defined]
        common = {p for p in common if p[0] in wanted}
    return common


def confirm(conflict: Conflict, devices: list[Constraints], request: dict[str, object]) -> None:
    """An independent check that ``conflict`` is real."""
    attribute = conflict.attribute
    by_label = {d.label: d for d in devices}
    involved = [by_label[label] for label in conflict.devices if label != APPLICATION]
    if attribute == "format":
        common = _common_fourccs(devices)
        if APPLICATION in conflict.devices:
            wanted = {lookup_format(f).fourcc for f in request["formats"]}  # type: ignore[attr-defined]
            assert common
            assert not common & wanted
        else:
            assert not common
    elif attribute == "modifier":
        assert _common_fourccs(devices)
        assert not _common_pairs(devices, request)
    elif attribute in ("width", "height"):
        limits = [getattr(d, f"max_{attribute}") for d in involved]
        assert involved
        assert all(limit < request[attribute] for limit in limits)
    elif attribute == "location":
        assert len({d.memory.location for d in involved} - {"any"}) > 1
    elif attribute == "protected":
        assert any(d.memory.protected for d in involved)
        cpu = [d.memory.cpu_access for d in involved] + [str(request["cpu_access"])]
        assert any(access != "none" for access in cpu)
    elif attribute == "buffers":
        assert {d.buffers for d in involved} == {"single", "per-plane"}
    elif attribute == "pitch":
        assert involved
        assert all(d.max_pitch is not None or d.min_pitch for d in involved)
    elif attribute == "alignment":
        total = math.lcm(*(d.layout.pitch_align for d in devices))
        planes = [math.lcm(total, *(d.layout.plane_align(i) for d in devices)) for i in range(3)]
        others = [
            math.lcm(*(getattr(d.layout, name) for d in devices))
            for name in ("height_align", "offset_align", "size_align")
        ]
        assert max(total, *planes, *others) > MAX_ALIGN
    else:
        raise AssertionError(f"unexpected conflict attribute {attribute}")


Relax = Callable[
    [list[Constraints], dict[str, object]], tuple[list[Constraints], dict[str, object]]
]


def _each(
    devices: list[Constraints], change: Callable[[Constraints], Constraints]
) -> list[Constraints]:
    return [change(d) for d in devices]


def _memory(d: Constraints, **changes: object) -> Constraints:
    return dataclasses.replace(d, memory=dataclasses.replace(d.memory, **changes))  # type: ignore[arg-type]


def _share_pairs(
    devices: list[Constraints], request: dict[str, object]
) -> tuple[list[Constraints], dict[str, object]]:
    first = devices[0].pairs
    shared = [
        dataclasses.replace(d, pairs=tuple(dict.fromkeys((*d.pairs, *first)))) for d in devices
    ]
    return shared, {**request, "formats": None}


def _share_modifiers(
    devices: list[Constraints], request: dict[str, object]
) -> tuple[list[Constraints], dict[str, object]]:
    every = tuple(dict.fromkeys(p for d in devices for p in d.pairs))
    return [
        dataclasses.replace(d, pairs=tuple(dict.fromkeys((*d.pairs, *every)))) for d in devices
    ], request


RELAX: dict[str, Relax] = {
    "format": _share_pairs,
    "modifier": _share_modifiers,
    "width": lambda ds, r: (_each(ds, lambda d: dataclasses.replace(d, max_width=None)), r),
    "height": lambda ds, r: (_each(ds, lambda d: dataclasses.replace(d, max_height=None)), r),
    "location": lambda ds, r: (_each(ds, lambda d: _memory(d, location="any")), r),
    "protected": lambda ds, r: (_each(ds, lambda d: _memory(d, protected=False)), r),
    "buffers": lambda ds, r: (_each(ds, lambda d: dataclasses.replace(d, buffers="any")), r),
    "pitch": lambda ds, r: (
        _each(ds, lambda d: dataclasses.replace(d, min_pitch=0, max_pitch=None)),
        r,
    ),
    "alignment": lambda ds, r: (
        _each(ds, lambda d: dataclasses.replace(d, layout=LayoutRules())),
        r,
    ),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(device_lists(1, 4), requests())
def test_d_conflicts_name_only_attributes_that_truly_conflict(
    devices: list[Constraints], request: dict[str, object]
) -> None:
    result = run(devices, request)
    if isinstance(result, Plan):
        return
    assert result
    for conflict in result:
        assert len(conflict.devices) == len(conflict.values)
        assert conflict.message
        assert conflict.suggestion
        confirm(conflict, devices, request)
        relaxed, relaxed_request = RELAX[conflict.attribute](devices, request)
        again = run(relaxed, relaxed_request)
        if not isinstance(again, Plan):
            assert conflict.attribute not in {c.attribute for c in again}, conflict.message


@SETTINGS
@given(device_lists(1, 3), requests())
def test_e_json_round_trips(devices: list[Constraints], request: dict[str, object]) -> None:
    for device in devices:
        assert Constraints.from_json(json.loads(json.dumps(device.to_json()))) == device
    result = run(devices, request)
    if isinstance(result, Plan):
        assert Plan.from_json(json.loads(json.dumps(result.to_json()))) == result
    else:
        for conflict in result:
            assert Conflict.from_json(json.loads(json.dumps(conflict.to_json()))) == conflict
