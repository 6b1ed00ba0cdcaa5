"""Hostile arguments to every public heap API: any failure is a devalloc error, nothing leaks.

Each call gets wrong types and values (None, bools, floats, negatives, 2**63, 2**64, strings
with \\xff or lone surrogates, bytes, bytearrays, plain objects). A call may succeed (a resource
it returns is closed at once) or raise a :class:`DevallocError`; anything else fails the test, as
does an fd left open or bytes left charged to devalloc.limits. On the host there is no
/dev/dma_heap or /dev/udmabuf: the device classes are opened on /dev/null, so their argument
checks run and the kernel answers ENOTTY.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devalloc import DevallocError, MemfdHeap, limits
from devalloc.heaps import (
    DmaHeap,
    DmaHeapBackend,
    HeapProperties,
    HeapRegistry,
    HeapRequest,
    Memfd,
    UdmabufDevice,
    UdmabufHeap,
    dma_heap_properties,
    heap_paths,
    unmet,
)
from devalloc.heaps.carveout import Carveout, CarveoutHeap, RangeAllocator
from devalloc.heaps.stats import HeapStats

from .conftest import open_fds

PAGE = os.sysconf("SC_PAGE_SIZE")

#: Wrong (and a few right) values of every kind.
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, PAGE, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, 2**64 - 1]),
    st.text(max_size=6),
    st.sampled_from(["\xff", "\udcff", "\ud800", "a\0b", "x" * 300, "/dev/null", "system"]),
    st.binary(max_size=6),
    st.binary(max_size=6).map(bytearray),
    st.builds(object),
    st.lists(st.integers(-2, 2), max_size=3),
    st.tuples(st.integers(-1, 3), st.integers(-1, 3), st.integers(-1, 3)),
)

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _close(result: object) -> None:
    close = getattr(result, "close", None)
    if callable(close) and not isinstance(result, (HeapProperties, HeapRequest)):
        close()


def typed_or_ok(call: Callable[..., Any], *args: object, **kwargs: object) -> None:
    """Run ``call``: it returns (what it made is closed) or raises a DevallocError; no fd and no
    charged byte is left behind."""
    fds, charged = open_fds(), limits.in_use()
    with contextlib.suppress(DevallocError):
        _close(call(*args, **kwargs))
    assert open_fds() == fds, f"{call!r}{args}{kwargs} leaked an fd"
    assert limits.in_use() == charged, f"{call!r}{args}{kwargs} left bytes charged"


# -- defect 3: the reproduction ------------------------------------------------------------------


@pytest.mark.parametrize("length", [2**63, 2**63 - 1, 2**64, 2**70])
def test_huge_memfd_lengths_are_typed_and_leak_nothing(length: int) -> None:
    before = open_fds()
    with pytest.raises(DevallocError):
        MemfdHeap().allocate(length)
    limits.set_limits(max_buffer=2**80, max_total=2**81)  # past the caps: the file-size check
    try:
        with pytest.raises(DevallocError):
            MemfdHeap().allocate(length)
        if length >= 2**63:  # (2**63 - 1 is a valid sparse file for Memfd)
            with pytest.raises(DevallocError):
                Memfd(length).close()
    finally:
        limits.set_limits()
    assert open_fds() == before


# -- memfd ---------------------------------------------------------------------------------------


@FUZZ
@given(HOSTILE, HOSTILE, HOSTILE)
def test_memfd_heap(dma_bits: object, length: object, name: object) -> None:
    typed_or_ok(lambda: MemfdHeap(dma_bits=dma_bits))  # type: ignore[arg-type]
    typed_or_ok(MemfdHeap().allocate, length)
    typed_or_ok(MemfdHeap().allocate, PAGE, name=name)


@FUZZ
@given(HOSTILE, HOSTILE, HOSTILE, HOSTILE)
def test_memfd(size: object, name: object, seal: object, seals: object) -> None:
    typed_or_ok(Memfd, size)
    typed_or_ok(Memfd, PAGE, name=name)
    typed_or_ok(Memfd, PAGE, seal_shrink=seal)
    with Memfd(PAGE) as mfd:
        typed_or_ok(mfd.add_seals, seals)


# -- dma-heap and udmabuf (on /dev/null: the kernel says ENOTTY after devalloc's checks) --------


@FUZZ
@given(HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE)
def test_dma_heap(
    path: object, props: object, length: object, fd_flags: object, hf: object
) -> None:
    typed_or_ok(DmaHeap, path)
    typed_or_ok(DmaHeap, "/dev/null", properties=props)
    typed_or_ok(heap_paths, path)
    with DmaHeap("/dev/null") as heap:
        typed_or_ok(heap.allocate, length)
        typed_or_ok(heap.allocate, PAGE, fd_flags=fd_flags)
        typed_or_ok(heap.allocate, PAGE, heap_flags=hf)
        backend = DmaHeapBackend(heap)
        typed_or_ok(backend.allocate, length, name=props)
    typed_or_ok(DmaHeapBackend, path)


@FUZZ
@given(HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE)
def test_udmabuf_device(
    path: object, memfd: object, offset: object, size: object, x: object
) -> None:
    typed_or_ok(UdmabufDevice, path)
    with UdmabufDevice("/dev/null") as dev, Memfd(PAGE) as mfd:
        typed_or_ok(dev.create, memfd, 0, PAGE)
        typed_or_ok(dev.create, mfd, offset, size)
        typed_or_ok(dev.create, mfd, 0, PAGE, cloexec=x)
        typed_or_ok(dev.create_list, memfd)
        typed_or_ok(dev.create_list, [(mfd, offset, size)])
        typed_or_ok(dev.create_list, [x])


@FUZZ
@given(HOSTILE, HOSTILE, HOSTILE, HOSTILE)
def test_udmabuf_heap(path: object, param: object, dma_bits: object, size: object) -> None:
    typed_or_ok(UdmabufHeap, path)
    typed_or_ok(UdmabufHeap, "/dev/null", size_limit_param=param)
    typed_or_ok(UdmabufHeap, "/dev/null", dma_bits=dma_bits)
    with UdmabufHeap("/dev/null") as heap:
        typed_or_ok(heap.allocate, size)
        typed_or_ok(heap.allocate, PAGE, name=param)


# -- carveout (no udmabuf on the host: construction fails typed, after its own checks) -----------


@FUZZ
@given(HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE)
def test_carveout(
    size: object, hugetlb: object, name: object, align: object, hist: object, x: object
) -> None:
    typed_or_ok(Carveout, size)
    typed_or_ok(Carveout, PAGE, hugetlb=hugetlb)
    typed_or_ok(Carveout, PAGE, name=name)
    typed_or_ok(Carveout, PAGE, align=align)
    typed_or_ok(Carveout, PAGE, history=hist)
    typed_or_ok(Carveout, PAGE, fallback=x)
    typed_or_ok(Carveout, PAGE, on_event=x)
    typed_or_ok(Carveout, PAGE, udmabuf_path=x)
    typed_or_ok(CarveoutHeap, x)


@FUZZ
@given(HOSTILE, HOSTILE, HOSTILE, HOSTILE)
def test_range_allocator(size: object, align: object, chunk: object, n: object) -> None:
    typed_or_ok(RangeAllocator, size)
    typed_or_ok(RangeAllocator, 1 << 20, align=align)
    typed_or_ok(RangeAllocator, 1 << 20, chunk=chunk)
    ranges = RangeAllocator(1 << 20)
    typed_or_ok(ranges.alloc, n)
    typed_or_ok(ranges.free, n)


# -- the registry, properties and requests ------------------------------------------------------


@FUZZ
@given(HOSTILE, HOSTILE, HOSTILE, HOSTILE)
def test_registry(cap: object, where: object, size: object, name: object) -> None:
    typed_or_ok(HeapRegistry, cap=cap)
    typed_or_ok(HeapRegistry, proc=where)
    typed_or_ok(HeapRegistry.discover, where)
    typed_or_ok(HeapRegistry.discover, "/nonexistent", where)
    typed_or_ok(HeapRegistry.discover, "/nonexistent", proc=where)
    with HeapRegistry() as reg:
        heap = reg.add(MemfdHeap())
        typed_or_ok(reg.allocate, heap, size)
        typed_or_ok(reg.allocate, heap, PAGE, name=name)
        for call in (reg.properties, reg.stats):
            with contextlib.suppress(DevallocError):
                call(cap)  # type: ignore[arg-type]
        typed_or_ok(reg.allocate, cap, PAGE)
        typed_or_ok(reg.select, cap)
        typed_or_ok(reg.candidates, cap)
        typed_or_ok(reg.add, cap)
        typed_or_ok(reg.add_unavailable, cap)
        typed_or_ok(
            reg.add_unavailable, HeapProperties("dma-heap", "x").unavailable("no"), errno=cap
        )


FIELDS = st.fixed_dictionaries(
    {},
    optional={
        name: HOSTILE
        for name in (
            "contiguous",
            "cpu_cache",
            "protected",
            "cpu_mappable",
            "dma_bits",
            "location",
            "max_size",
            "device_importable",
            "accessible",
            "reason",
            "chunk",
        )
    },
)
REQUEST_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        name: HOSTILE
        for name in (
            "contiguous",
            "dma_bits",
            "protected",
            "location",
            "cpu_access",
            "cpu_cache",
            "device_importable",
            "size",
        )
    },
)


@FUZZ
@given(HOSTILE, HOSTILE, FIELDS, REQUEST_FIELDS)
def test_properties_and_requests(
    kind: object, name: object, fields: dict[str, Any], req: dict[str, Any]
) -> None:
    typed_or_ok(HeapProperties, kind, "x")
    typed_or_ok(HeapProperties, "memfd", name)
    typed_or_ok(HeapProperties, "memfd", "x", **fields)
    typed_or_ok(HeapRequest, **req)
    typed_or_ok(dma_heap_properties, name)
    typed_or_ok(dma_heap_properties, "system", path=kind)
    typed_or_ok(dma_heap_properties, "system", dma_bits=kind)
    typed_or_ok(dma_heap_properties, "reserved", cma_bytes=kind)
    props = HeapProperties("memfd", "x")
    typed_or_ok(unmet, props, kind)
    typed_or_ok(unmet, kind, HeapRequest())
    typed_or_ok(props.unavailable, name)


@FUZZ
@given(HOSTILE, HOSTILE, HOSTILE)
def test_stats(size: object, latency: object, q: object) -> None:
    stats = HeapStats()
    typed_or_ok(stats.record_allocation, size, latency)
    typed_or_ok(stats.record_close, size)
    typed_or_ok(lambda: stats.snapshot("h", "memfd").latency_quantile(q))  # type: ignore[arg-type]
    typed_or_ok(stats.snapshot, size, latency)


@FUZZ
@given(HOSTILE, HOSTILE, HOSTILE)
def test_limits_api(a: object, b: object, what: object) -> None:
    try:
        typed_or_ok(limits.set_limits, a, b)
    finally:
        limits.set_limits()
    typed_or_ok(limits.check, a, b, what="fuzz")
    typed_or_ok(limits.check, PAGE, what=what)
    typed_or_ok(limits.check_buffer, a, what="fuzz")
    typed_or_ok(limits.parse_size, a, "V")
    typed_or_ok(limits.machine_limits, a)
    typed_or_ok(limits.machine_limits, "/proc", a)
    typed_or_ok(limits.cgroup_memory_max, a)
    typed_or_ok(limits.read_meminfo, a)


@given(st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 31) - 1))
def test_the_dma_heap_hot_path_argument_is_the_c_structure(length: int, fd: int) -> None:
    """DmaHeap.allocate's array form of dma_heap_allocation_data (default flags, a length below
    4 GiB) reads back through the ctypes structure (checked against the C header), and the word
    it reads the new fd from is the structure's fd."""
    from devalloc.heaps import dmaheap
    from devalloc.uapi.dma_heap import dma_heap_allocation_data

    data = dmaheap._DEFAULT_DATA[:]
    data[dmaheap._LENGTH_WORD] = length
    assert data.itemsize * len(data) == ctypes.sizeof(dma_heap_allocation_data)
    view = dma_heap_allocation_data.from_buffer(data)
    assert (view.len, view.fd, view.fd_flags, view.heap_flags) == (
        length,
        0,
        os.O_RDWR | os.O_CLOEXEC,
        0,
    )
    view.fd = fd  # as the kernel writes it
    assert data[dmaheap._FD_WORD] == fd


@given(
    st.integers(0, (1 << 32) - 1),
    st.integers(0, (1 << 32) - 1),
    st.integers(0, (1 << 64) - 1),
    st.integers(0, (1 << 64) - 1),
)
def test_the_udmabuf_hot_path_argument_is_the_c_structure(
    memfd: int, flags: int, offset: int, size: int
) -> None:
    """UdmabufDevice's packed udmabuf_create is byte for byte the ctypes structure (checked
    against the C header)."""
    from devalloc.heaps import udmabuf
    from devalloc.uapi.udmabuf import udmabuf_create

    packed = udmabuf.CREATE_DATA.pack(memfd, flags, offset, size)
    assert packed == bytes(udmabuf_create(memfd, flags, offset, size))
