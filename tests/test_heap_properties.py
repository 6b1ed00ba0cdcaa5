"""Heap properties, requests and selection: the dma-heap name table, what satisfies what, the
selection order and the explanations (pure logic; heaps are memfd heaps with chosen properties)."""

from __future__ import annotations

import copy
import itertools
import json
import pickle
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc import UsageError
from devalloc.buffer import Buffer
from devalloc.errors import NoPlanError
from devalloc.heaps.memfd import MemfdHeap
from devalloc.heaps.properties import (
    CMA_HEAP_NAMES,
    HeapProperties,
    HeapRequest,
    dma_heap_properties,
    unmet,
)
from devalloc.heaps.registry import HeapRegistry, NoHeapError, selection_rank

KNOWN = {"system", "system-uncached", *CMA_HEAP_NAMES}


@pytest.mark.parametrize(
    ("name", "contiguous", "cache", "protected", "mappable"),
    [
        ("system", False, "cached", False, True),
        ("system-uncached", False, "write-combined", False, True),
        ("default_cma_region", True, "cached", False, True),
        ("linux,cma", True, "cached", False, True),
        ("reserved", True, "cached", False, True),
        ("default-pool", True, "cached", False, True),
        ("protected,secure-video", None, None, True, False),
        ("protected,", None, None, True, False),
        ("qcom,system", None, None, None, None),
        ("mtk_mm", None, None, None, None),
        ("System", None, None, None, None),
    ],
)
def test_dma_heap_name_table(
    name: str, contiguous: bool | None, cache: str | None, protected: bool | None, mappable: bool
) -> None:
    props = dma_heap_properties(name)
    assert props.kind == "dma-heap"
    assert props.name == f"/dev/dma_heap/{name}"
    assert (props.contiguous, props.cpu_cache, props.protected, props.cpu_mappable) == (
        contiguous,
        cache,
        protected,
        mappable,
    )
    assert props.device_importable
    assert props.accessible


def test_system_reach_and_cma_size_apply_only_where_known() -> None:
    assert dma_heap_properties("system", dma_bits=36).dma_bits == 36
    assert dma_heap_properties("reserved", dma_bits=36, cma_bytes=1 << 28).max_size == 1 << 28
    assert dma_heap_properties("system", cma_bytes=1 << 28).max_size is None
    assert dma_heap_properties("protected,x", dma_bits=36).dma_bits is None
    assert dma_heap_properties("vendor", dma_bits=36).dma_bits is None
    assert dma_heap_properties("vendor").location is None


@settings(deadline=None)  # timing depends on the machine's load, not on the code
@given(st.text(min_size=1, max_size=40).filter(lambda n: n not in KNOWN and "/" not in n))
def test_an_unknown_name_is_never_guessed(name: str) -> None:
    props = dma_heap_properties(name)
    assert props.contiguous is None
    if not name.startswith("protected,"):
        assert props.cpu_cache is None
        assert props.protected is None
    # Unknown contiguity never satisfies a contiguous request, and an ordinary request never
    # takes a heap that might be protected.
    assert unmet(props, HeapRequest(contiguous=True))
    assert unmet(props, HeapRequest())


def test_unmet_names_every_reason() -> None:
    system = dma_heap_properties("system", dma_bits=40)
    request = HeapRequest(contiguous=True, dma_bits=32, location="vram0", size=1 << 20)
    assert unmet(system, request) == [
        "is scattered",
        "reaches 40 address bits, beyond the device's 32",
        "is in system memory, not vram0",
    ]
    assert unmet(dma_heap_properties("system"), HeapRequest(dma_bits=32)) == [
        "has unknown DMA reach (the device addresses 32 bits)"
    ]
    assert unmet(dma_heap_properties("system"), HeapRequest(dma_bits=64)) == []
    udmabuf = HeapProperties("udmabuf", "udmabuf", False, "cached", False, True, None, "system")
    assert unmet(replace(udmabuf, max_size=64 << 20), HeapRequest(size=65 << 20)) == [
        f"allocates at most {64 << 20} bytes ({65 << 20} asked)"
    ]
    memfd = MemfdHeap().properties
    assert unmet(memfd, HeapRequest()) == ["is not importable by devices"]
    assert unmet(memfd, HeapRequest(device_importable=False)) == []
    protected = dma_heap_properties("protected,video")
    assert unmet(protected, HeapRequest()) == ["is protected", "is not CPU-mappable"]
    assert unmet(protected, HeapRequest(protected=True, cpu_access="none")) == []
    assert unmet(system, HeapRequest(protected=True, cpu_access="none")) == ["is not protected"]
    assert unmet(dma_heap_properties("x"), HeapRequest(location="system")) == [
        "may be protected (unknown)",
        "may not be CPU-mappable (unknown)",
        "has unknown memory location (system asked)",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "gpu"},
        {"cpu_cache": "uncached"},
        {"dma_bits": 0},
        {"dma_bits": 65},
        {"dma_bits": True},
        {"max_size": 0},
        {"max_size": 1.5},
        {"location": ""},
        {"reason": "no reason for an accessible heap"},
    ],
)
def test_bad_properties_are_refused(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"kind": "dma-heap", "name": "h"}
    with pytest.raises(UsageError, match="heap 'h'"):
        HeapProperties(**{**base, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"contiguous": 1}, "contiguous"),
        ({"protected": None}, "protected"),
        ({"device_importable": "yes"}, "device_importable"),
        ({"dma_bits": 0}, "dma_bits"),
        ({"size": 0}, "size"),
        ({"size": -4096}, "size"),
        ({"location": ""}, "location"),
        ({"cpu_access": "x"}, "cpu_access"),
        ({"cpu_cache": "wc"}, "cpu_cache"),
        ({"protected": True}, "protected memory cannot be accessed by the CPU"),
    ],
)
def test_bad_requests_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        HeapRequest(**kwargs)  # type: ignore[arg-type]


def test_properties_to_json_and_unavailable() -> None:
    props = dma_heap_properties("system")
    data = props.to_json()
    assert json.loads(json.dumps(data)) == data
    assert HeapProperties(**data) == props
    gone = props.unavailable("permission denied")
    assert (gone.accessible, gone.reason, gone.contiguous) == (False, "permission denied", False)


# -- selection over heaps with chosen properties (real memfd allocations) --------------------


class PropertiesHeap(MemfdHeap):
    """A memfd heap presenting chosen properties: selection logic without special hardware."""

    def __init__(self, properties: HeapProperties) -> None:
        super().__init__()
        self.properties = properties


def heap(name: str, kind: str = "dma-heap", **kwargs: object) -> HeapProperties:
    fields: dict[str, object] = {
        "contiguous": False,
        "cpu_cache": "cached",
        "protected": False,
        "cpu_mappable": True,
        "location": "system",
        **kwargs,
    }
    return HeapProperties(kind, name, **fields)  # type: ignore[arg-type]


SYSTEM = heap("/dev/dma_heap/system")
UNCACHED = heap("/dev/dma_heap/system-uncached", cpu_cache="write-combined")
CMA = heap("/dev/dma_heap/reserved", contiguous=True)
UDMABUF = heap("udmabuf", "udmabuf", max_size=64 << 20)
CARD = heap("/dev/dri/card0 (vgem)", "device", contiguous=None, cpu_cache="write-combined")
CARVEOUT = heap("carveout0", "carveout", contiguous=True)
MEMFD = MemfdHeap().properties


@pytest.fixture
def registry() -> Iterator[HeapRegistry]:
    with HeapRegistry(cap=1 << 30) as reg:
        for props in (MEMFD, CARVEOUT, CARD, UDMABUF, CMA, UNCACHED, SYSTEM):
            reg.add(PropertiesHeap(props))
        yield reg


def names(reg: HeapRegistry) -> list[str]:
    return [p.name for _, p in reg.heaps()]


def chosen(reg: HeapRegistry, request: HeapRequest) -> str:
    return reg.properties(reg.select(request)).name


def test_heaps_come_in_the_documented_order(registry: HeapRegistry) -> None:
    assert names(registry) == [
        SYSTEM.name,
        UNCACHED.name,
        CMA.name,
        UDMABUF.name,
        CARD.name,
        CARVEOUT.name,
        "memfd",
    ]


def test_selection_by_properties(registry: HeapRegistry) -> None:
    assert chosen(registry, HeapRequest()) == SYSTEM.name  # not CMA: leave it to who needs it
    assert chosen(registry, HeapRequest(contiguous=True)) == CMA.name  # CMA before the carveout
    assert chosen(registry, HeapRequest(cpu_cache="write-combined")) == UNCACHED.name
    assert chosen(registry, HeapRequest(cpu_cache="none")) == SYSTEM.name  # a preference only
    assert chosen(registry, HeapRequest(device_importable=False, location="system")) == SYSTEM.name


def test_inaccessible_heaps_are_skipped_with_their_reason() -> None:
    with HeapRegistry(cap=1 << 30) as reg:
        reg.add_unavailable(SYSTEM.unavailable("permission denied"))
        reg.add(PropertiesHeap(UDMABUF))
        reg.add(PropertiesHeap(MEMFD))
        assert chosen(reg, HeapRequest()) == "udmabuf"  # the usual fallback
        candidates = reg.candidates(HeapRequest())
        assert [c.properties.name for c in candidates] == ["udmabuf", SYSTEM.name, "memfd"]
        assert candidates[1].reasons == ("is not accessible (permission denied)",)
        # above udmabuf's limit: nothing importable is left
        with pytest.raises(NoHeapError) as info:
            reg.select(HeapRequest(size=65 << 20))
        message = str(info.value)
        assert message.startswith(f"no accessible device-importable, CPU rw, {65 << 20} bytes heap")
        assert "/dev/dma_heap/system is not accessible (permission denied)" in message
        assert f"udmabuf allocates at most {64 << 20} bytes" in message
        assert "memfd is not importable by devices" in message


def test_no_contiguous_heap_is_explained(registry: HeapRegistry) -> None:
    with HeapRegistry(cap=1 << 30) as reg:
        for props in (SYSTEM, UDMABUF, CARD, MEMFD):
            reg.add(PropertiesHeap(props))
        with pytest.raises(NoPlanError) as info:  # a NoPlanError: the CLI exits 3
            reg.select(HeapRequest(contiguous=True))
        assert isinstance(info.value, NoHeapError)
        assert str(info.value) == (
            "no accessible contiguous, device-importable, CPU rw heap: "
            "/dev/dma_heap/system is scattered; udmabuf is scattered; "
            "/dev/dri/card0 (vgem) has unknown contiguity; "
            "memfd is scattered and is not importable by devices"
        )
        assert len(info.value.conflicts) == 4


def test_a_selected_heap_allocates(registry: HeapRegistry) -> None:
    with registry.allocate(registry.select(HeapRequest(contiguous=True)), 4096) as buf:
        assert isinstance(buf, Buffer)
        assert buf.size == 4096


PROPERTIES = st.builds(
    HeapProperties,
    kind=st.sampled_from(["dma-heap", "udmabuf", "device", "memfd", "carveout"]),
    name=st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    contiguous=st.sampled_from([True, False, None]),
    cpu_cache=st.sampled_from(["cached", "write-combined", "none", None]),
    protected=st.sampled_from([True, False, None]),
    cpu_mappable=st.sampled_from([True, False, None]),
    dma_bits=st.sampled_from([None, 32, 36, 40, 64]),
    location=st.sampled_from(["system", "vram0", None]),
    max_size=st.sampled_from([None, 1 << 20, 1 << 26]),
    device_importable=st.booleans(),
)
REQUESTS = st.builds(
    HeapRequest,
    contiguous=st.booleans(),
    dma_bits=st.sampled_from([None, 32, 40, 64]),
    protected=st.just(False),
    location=st.sampled_from([None, "system", "vram0"]),
    cpu_access=st.sampled_from(["none", "r", "w", "rw"]),
    cpu_cache=st.sampled_from([None, "cached", "write-combined"]),
    device_importable=st.booleans(),
    size=st.sampled_from([None, 4096, 1 << 24, 1 << 27]),
) | st.builds(HeapRequest, protected=st.just(True), cpu_access=st.just("none"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(PROPERTIES, st.booleans()), max_size=8), REQUESTS)
def test_selection_laws(heaps: list[tuple[HeapProperties, bool]], request: HeapRequest) -> None:
    with HeapRegistry(cap=1 << 30) as reg:
        for props, accessible in heaps:
            if accessible:
                reg.add(PropertiesHeap(props))
            else:
                reg.add_unavailable(props.unavailable("not for this test"))
        ranks = [selection_rank(p) for _, p in reg.heaps()]
        assert ranks == sorted(ranks)
        candidates = reg.candidates(request)
        assert len(candidates) == len(heaps)
        assert {c.heap_id for c in candidates} == {h for h, _ in reg.heaps()}
        accepted = [c for c in candidates if c.ok]
        assert candidates[: len(accepted)] == accepted  # accepted first
        for c in candidates:
            props = c.properties
            assert c.ok == (props.accessible and not unmet(props, request))
            if c.ok:  # unknown never satisfies a requirement
                assert not request.contiguous or props.contiguous is True
                assert props.protected is request.protected
                assert not request.device_importable or props.device_importable
                assert request.cpu_access == "none" or props.cpu_mappable is True
        if not accepted:
            with pytest.raises(NoHeapError) as info:
                reg.select(request)
            for props, _ in heaps:
                assert props.name in str(info.value)
            return
        selected = reg.select(request)
        assert selected == accepted[0].heap_id
        if request.cpu_cache is not None and any(
            c.properties.cpu_cache == request.cpu_cache for c in accepted
        ):
            assert reg.properties(selected).cpu_cache == request.cpu_cache


@settings(deadline=None)
@given(st.permutations([SYSTEM, UNCACHED, CMA, UDMABUF, CARD, CARVEOUT, MEMFD]))
def test_order_does_not_depend_on_insertion(order: list[HeapProperties]) -> None:
    with HeapRegistry(cap=1 << 30) as reg:
        for props in order:
            reg.add(PropertiesHeap(props))
        assert [p.kind for _, p in reg.heaps()] == [
            "dma-heap",
            "dma-heap",
            "dma-heap",
            "udmabuf",
            "device",
            "carveout",
            "memfd",
        ]
        assert names(reg)[:3] == [SYSTEM.name, UNCACHED.name, CMA.name]


def test_rank_of_dma_heaps_follows_their_properties() -> None:
    ranked = sorted(
        (dma_heap_properties(n) for n in ("vendor", "protected,a", "reserved", "system")),
        key=selection_rank,
    )
    assert [p.name.rsplit("/", 1)[1] for p in ranked] == [
        "system",
        "reserved",
        "protected,a",
        "vendor",
    ]


def test_heap_ids_are_opaque_and_stable(registry: HeapRegistry) -> None:
    ids = [h for h, _ in registry.heaps()]
    assert ids == [h for h, _ in registry.heaps()]
    assert len(set(ids)) == len(ids)
    assert "system" in repr(ids[0])
    assert copy.deepcopy(ids[0]) is ids[0]
    with pytest.raises(TypeError, match="valid only in the process"):
        pickle.dumps(ids[0])
    assert all(a != b for a, b in itertools.combinations(ids, 2))
