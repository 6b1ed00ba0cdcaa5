"""Wrong types and values given to the public API raise devalloc's typed errors (issue 12,
defect 3): negotiation, plan JSON, formats and the allocator, fuzzed with hypothesis.

Each call starts from valid arguments and replaces one to three of them with something wrong
(None, bools, floats, negative or 64-bit-overflowing integers, text with \\xff, surrogates or NUL,
bytearrays, dicts, nested lists). Whatever happens, an exception must be a
:class:`~devalloc.errors.DevallocError`, and no fd may be left open.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devalloc.allocator import Allocator, heap_request
from devalloc.constraints import Constraints
from devalloc.devices.discover import Discovery
from devalloc.errors import DevallocError, UsageError
from devalloc.formats import (
    LayoutRules,
    Modifier,
    fourcc_code,
    fourcc_to_str,
    layout,
    lookup_format,
    modifier_name,
    parse_modifier,
    parse_size,
)
from devalloc.heaps.registry import HeapRegistry
from devalloc.negotiate import (
    CachePolicy,
    CombinedRules,
    Conflict,
    CopyPath,
    Plan,
    Provenance,
    acceptable_pairs,
    negotiate,
    propose_copy_path,
    try_negotiate,
)

from .conftest import open_fds

NV12 = fourcc_code("NV12")
XR24 = fourcc_code("XR24")
CAMERA = Constraints("cam", "capture", ((NV12, 0), (XR24, 0)), access="write")
DISPLAY = Constraints("dpy", "primary", ((XR24, 0),), access="read")
PLAN = negotiate([CAMERA], 64, 64)
COPY = propose_copy_path([CAMERA, DISPLAY], 64, 64)

#: Text that trips encoders and C strings.
NASTY_TEXT = ["\xff", "a\udcffb", "\udc80", "a\x00b", "NV12\x00", "", " ", "LINEAR\udcff", "9" * 40]

LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([-1, 0, 2**31, 2**32, 2**63, 2**64, -(2**63)]),
    st.sampled_from(NASTY_TEXT),
    st.text(max_size=12),
    st.binary(max_size=8).map(bytearray),
    st.binary(max_size=8),
    st.sampled_from(["NV12", "XR24", "LINEAR", "64x64", "cam", "rk3399-vop:primary"]),
)
WRONG = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def alloc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Allocator]:
    """An allocator over a machine with no heaps (memfd only) and no live devices."""
    root: Path = tmp_path_factory.mktemp("nodev")
    (root / "dev").mkdir()
    (root / "sys").mkdir()
    registry = HeapRegistry.discover(str(root / "dev"), str(root / "sys"))
    with Allocator(registry=registry, discovery=Discovery()) as allocator:
        yield allocator
    registry.close()


def _close(result: object) -> None:
    """Close whatever a successful call returned (allocations, pools, allocators)."""
    if isinstance(result, tuple):
        for item in result:
            _close(item)
    close = getattr(result, "close", None)
    if callable(close):
        close()


Target = tuple[Callable[..., object], dict[str, object]]


def _targets(alloc: Allocator) -> dict[str, Target]:
    """Every public entry point under test, with valid keyword arguments."""
    neg = {"constraints": [CAMERA, DISPLAY], "width": 64, "height": 64, "formats": ["XR24"]}

    def allocator(**kwargs: Any) -> object:
        return Allocator(**kwargs)

    return {
        "negotiate": (
            negotiate,
            {**neg, "cpu_access": "r", "prefer_uncached": False, "known_layout": False},
        ),
        "try_negotiate": (try_negotiate, {**neg, "cpu_access": "none", "known_layout": True}),
        "acceptable_pairs": (acceptable_pairs, {**neg, "cpu_access": "w"}),
        "propose_copy_path": (propose_copy_path, {**neg, "formats": None}),
        "lookup_format": (lookup_format, {"key": "NV12"}),
        "fourcc_code": (fourcc_code, {"code": "NV12"}),
        "fourcc_to_str": (fourcc_to_str, {"value": NV12}),
        "parse_modifier": (parse_modifier, {"spec": "ARM_AFBC(16x16,SPARSE)"}),
        "modifier_name": (modifier_name, {"value": 0}),
        "Modifier": (Modifier, {"value": 0}),
        "parse_size": (parse_size, {"text": "64x64"}),
        "layout": (
            layout,
            {
                "format": "NV12",
                "width": 64,
                "height": 64,
                "modifier": "LINEAR",
                "rules": LayoutRules(),
            },
        ),
        "LayoutRules": (
            LayoutRules,
            {
                "pitch_align": 64,
                "plane_pitch_align": (64, 32),
                "height_align": 2,
                "offset_align": 4096,
                "size_align": 4096,
                "extra_rows": 1,
                "min_size": 0,
                "multi_buffer": False,
            },
        ),
        "Allocator": (
            allocator,
            {
                "registry": alloc.registry,
                "discovery": Discovery(),
                "constraints": [CAMERA],
                "discover_devices": False,
                "dev": "/nonexistent/dev",
                "sysfs": "/nonexistent/sys",
            },
        ),
        "allocate": (
            alloc.allocate,
            {
                "width": 64,
                "height": 64,
                "usages": [CAMERA],
                "formats": ["NV12"],
                "count": 1,
                "cpu_access": "rw",
                "prefer_uncached": False,
                "verify": False,
                "frames": 1,
                "allow_cpu_only": True,
                "name": "fuzz",
            },
        ),
        "pool": (
            alloc.pool,
            {
                "width": 64,
                "height": 64,
                "usages": [CAMERA],
                "count": 1,
                "formats": ["NV12"],
                "cpu_access": "w",
                "prefer_uncached": False,
                "grow": False,
                "max_count": None,
                "zero_on_reuse": "on-owner-change",
            },
        ),
        "plan": (alloc.plan, {"width": 64, "height": 64, "usages": ["rk3399-vop:primary"]}),
        "resolve": (alloc.resolve, {"spec": "rk3399-vop:primary"}),
        "heap_request": (heap_request, {"plan": PLAN, "device_importable": True}),
    }


#: Arguments that stay valid: a wrong count or size could ask for a huge allocation that is
#: legal (the cap on sizes is tested on its own); these get wrong values of other kinds only.
BOUNDED = {"count", "max_count", "width", "height"}


def _bounded(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool) and value > 64:
        return -value
    return value


def _call_must_be_typed(name: str, func: Callable[..., object], kwargs: dict[str, Any]) -> None:
    before = open_fds()
    try:
        result = func(**kwargs)
    except DevallocError:
        pass
    except Exception as exc:  # the assertion this test exists for
        pytest.fail(f"{name}({kwargs!r:.300}) raised untyped {type(exc).__name__}: {exc!r:.200}")
    else:
        _close(result)
    assert open_fds() <= before, f"{name}({kwargs!r:.300}) left an fd open"


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_wrong_arguments_raise_typed_errors(alloc: Allocator, data: st.DataObject) -> None:
    targets = _targets(alloc)
    name = data.draw(st.sampled_from(sorted(targets)), label="target")
    func, valid = targets[name]
    kwargs = dict(valid)
    keys = data.draw(
        st.lists(st.sampled_from(sorted(valid)), min_size=1, max_size=3, unique=True),
        label="replaced",
    )
    for key in keys:
        value = data.draw(WRONG, label=key)
        kwargs[key] = _bounded(value) if key in BOUNDED else value
    _call_must_be_typed(name, func, kwargs)


def _paths(value: object, prefix: tuple[object, ...] = ()) -> Iterator[tuple[object, ...]]:
    """Every path into a JSON value (dict keys and list indices)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replace(value: Any, path: tuple[object, ...], new: object) -> Any:
    if not path:
        return new
    changed = copy.copy(value)
    changed[path[0]] = _replace(value[path[0]], path[1:], new)
    return changed


assert COPY is not None
JSON_READERS: dict[str, tuple[Callable[[Any], object], dict[str, object]]] = {
    "Plan": (Plan.from_json, PLAN.to_json()),
    "CopyPath": (CopyPath.from_json, COPY.to_json()),
    "Conflict": (Conflict.from_json, Conflict("format", ("a:x",), ("NV12",), "m").to_json()),
    "Provenance": (Provenance.from_json, PLAN.provenance[0].to_json()),
    "CachePolicy": (CachePolicy.from_json, PLAN.cache.to_json()),
    "CombinedRules": (CombinedRules.from_json, PLAN.rules.to_json()),
}


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_plan_json_with_wrong_values_raises_typed_errors(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(JSON_READERS)), label="reader")
    reader, valid = JSON_READERS[name]
    document = json.loads(json.dumps(valid))
    paths = list(_paths(document))
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        path = data.draw(st.sampled_from(paths), label="path")
        document = _replace(document, path, data.draw(WRONG, label="value"))
        paths = list(_paths(document))
    _call_must_be_typed(f"{name}.from_json", reader, {"data": document})


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda a: negotiate(None, 64, 64), "list of Constraints"),  # type: ignore[arg-type]
        (lambda a: try_negotiate(64, 64, 64), "list of Constraints"),  # type: ignore[arg-type]
        (lambda a: propose_copy_path([CAMERA], 1, 1, 5), "formats"),  # type: ignore[arg-type]
        (lambda a: acceptable_pairs([CAMERA], 1, 1, True), "formats"),  # type: ignore[arg-type]
        (lambda a: a.allocate(64, 64, usages=True), "usages"),
        (lambda a: a.pool(64, 64, usages=1.5, count=1), "usages"),
        (lambda a: a.allocate(64, 64, usages=[CAMERA], name="a\udcffb"), "UTF-8"),
        (lambda a: a.allocate(64, 64, usages=[CAMERA], name="a\x00b"), "NUL"),
        (lambda a: a.allocate(64, 64, usages=[CAMERA], verify=None), "verify"),
        (lambda a: a.allocate(64, 64, usages=[CAMERA], frames=0), "frames"),
        (lambda a: heap_request(None), "Plan"),  # type: ignore[arg-type]
        (lambda a: Allocator(discovery=Discovery(), constraints=None), "constraints"),  # type: ignore[arg-type]
        (lambda a: Allocator(discovery=Discovery(), constraints=["x"]), "constraints"),  # type: ignore[list-item]
        (lambda a: Allocator(registry=a.registry, discovery="x"), "discovery"),  # type: ignore[arg-type]
        (lambda a: Allocator(discovery=Discovery(), dev="\udcff"), "UTF-8"),
        (lambda a: fourcc_code(b"NV12"), "ASCII"),  # type: ignore[arg-type]
        (lambda a: fourcc_code("\xff"), "ASCII"),
        (lambda a: fourcc_to_str(None), "32-bit"),  # type: ignore[arg-type]
        (lambda a: lookup_format(2**64), "32-bit"),
    ],
)
def test_known_reproductions(
    alloc: Allocator, call: Callable[[Allocator], object], match: str
) -> None:
    before = open_fds()
    with pytest.raises(UsageError, match=match):
        _close(call(alloc))
    assert open_fds() <= before
