"""The carveout on a real kernel: udmabuf carving, zeroing before reuse, ranges held while any
reference remains (exports, a vgem import, the GC), fallback to the system heap when full,
refusals, and a hugetlb region (huge pages reserved in the VM) with its flag."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
from collections.abc import Iterator

import pytest

from devalloc.drm import DrmDevice
from devalloc.errors import InvalidArgumentError, OutOfMemoryError, UsageError
from devalloc.heaps.carveout import (
    HUGE_PAGE_SIZE,
    PAGE_SIZE,
    CarvedBuffer,
    Carveout,
    CarveoutEvent,
    hugetlb_pages_free,
)
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.heaps.udmabuf import UDMABUF_PATH, size_limit_bytes

from ..conftest import IN_VM, assert_fd_closed, require

pytestmark = pytest.mark.kernel

MIB = 1 << 20
NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages"


@pytest.fixture(autouse=True)
def _needs_udmabuf() -> None:
    require(os.path.exists(UDMABUF_PATH), f"{UDMABUF_PATH} is absent (no udmabuf support here)")
    require(os.access(UDMABUF_PATH, os.R_OK | os.W_OK), f"{UDMABUF_PATH} is not accessible")


def _fill(buf: CarvedBuffer, byte: int) -> None:
    with buf.cpu_access("w") as view:
        view[:] = bytes([byte]) * buf.size


def _is_all(buf: CarvedBuffer, byte: int) -> bool:
    with buf.cpu_access("r") as view:
        return view.tobytes() == bytes([byte]) * buf.size


def _carve(carveout: Carveout, size: int) -> CarvedBuffer:
    buf = carveout.allocate(size)
    assert isinstance(buf, CarvedBuffer)
    return buf


def test_carves_udmabufs_at_aligned_offsets() -> None:
    with Carveout(4 * MIB, name="k") as carveout:
        assert carveout.kernel_cpu_mapping_safe, carveout.kernel_cpu_mapping_note
        a = _carve(carveout, 3000)
        b = _carve(carveout, 64 << 10)
        assert (a.offset, a.size) == (0, PAGE_SIZE)
        assert (b.offset, b.size) == (PAGE_SIZE, 64 << 10)
        assert a.info().exp_name == b.info().exp_name == "udmabuf"
        assert a.info().size == PAGE_SIZE
        _fill(a, 0xAA)
        _fill(b, 0xBB)
        assert _is_all(a, 0xAA)
        assert _is_all(b, 0xBB)
        stats = carveout.stats()
        assert (stats.carved, stats.live, stats.bytes_in_use) == (2, 2, PAGE_SIZE + (64 << 10))
        assert stats.largest_free_block == 4 * MIB - PAGE_SIZE - (64 << 10)
        a_fd, b_fd = a.fileno(), b.fileno()
        a.close()
        b.close()
        assert_fd_closed(a_fd)
        assert_fd_closed(b_fd)
        stats = carveout.stats()
        assert (stats.live, stats.pending, stats.free_bytes, stats.free_blocks) == (
            0,
            0,
            4 * MIB,
            1,
        )
        assert stats.zeroed_bytes == PAGE_SIZE + (64 << 10)
        hint = carveout.properties_hint()
        assert hint["kind"] == "carveout"
        assert hint["contiguous"] is False
        assert hint["cpu_cache"] == "cached"
        assert hint["max_size"] == min(4 * MIB, size_limit_bytes() or 64 * MIB)
        assert hint["hugetlb"] is False
        assert hint["kernel_cpu_mapping_safe"] is True


def test_a_range_is_zeroed_before_it_is_carved_again() -> None:
    with Carveout(2 * MIB, name="reuse") as carveout:
        first = _carve(carveout, MIB)
        _fill(first, 0xA5)
        offset = first.offset
        first.close()
        with _carve(carveout, MIB) as second:
            assert second.offset == offset
            assert _is_all(second, 0)


def test_an_open_export_keeps_the_range_out_of_the_free_list() -> None:
    seen: list[CarveoutEvent] = []
    with Carveout(MIB, name="exp", on_event=seen.append) as carveout:
        buf = _carve(carveout, 64 << 10)
        _fill(buf, 0x5A)
        exported = buf.export()
        buf.close()
        stats = carveout.stats()
        assert (stats.live, stats.pending, stats.bytes_pending) == (0, 1, 64 << 10)
        assert [e.kind for e in seen] == ["deferred"]
        with _carve(carveout, 64 << 10) as other:
            assert other.offset != buf.offset  # not handed out again
        # The holder of the export still sees its data: nothing was zeroed under it.
        with mmap.mmap(exported.fileno(), 64 << 10) as view:
            assert view[:] == b"\x5a" * (64 << 10)
        assert carveout.reclaim() == 0
        exported.close()
        assert carveout.reclaim() == 64 << 10
        assert carveout.stats().pending == 0
        with _carve(carveout, 64 << 10) as again:
            assert again.offset == buf.offset
            assert _is_all(again, 0)


def test_a_device_import_keeps_the_range(vgem: DrmDevice) -> None:
    with Carveout(MIB, name="gem") as carveout:
        buf = _carve(carveout, 128 << 10)
        handle = vgem.import_buffer(buf)
        buf.close()
        assert carveout.reclaim() == 0  # the GEM object still holds the dma-buf
        assert carveout.stats().pending == 1
        handle.close()
        assert carveout.reclaim() == 128 << 10
        assert carveout.stats().free_bytes == MIB


def test_a_full_carveout_reclaims_pending_ranges_before_falling_back() -> None:
    with Carveout(MIB, name="tight") as carveout:
        buf = _carve(carveout, MIB)
        exported = buf.export()
        buf.close()
        exported.close()  # nobody holds it now, but nothing asked yet
        assert carveout.stats().pending == 1
        with _carve(carveout, MIB) as again:  # the failed fit reclaims it
            assert again.offset == 0
        assert carveout.stats().fallbacks == 0


def test_a_forgotten_buffer_gives_its_range_back() -> None:
    with Carveout(MIB, name="gc") as carveout:
        buf: CarvedBuffer | None = _carve(carveout, 256 << 10)
        assert buf is not None
        fd = buf.fileno()
        with pytest.warns(ResourceWarning, match="unclosed buffer from carveout gc"):
            del buf
        assert_fd_closed(fd)
        carveout.reclaim()
        stats = carveout.stats()
        assert (stats.live, stats.pending, stats.free_bytes) == (0, 0, MIB)


def test_a_full_carveout_falls_back_to_the_system_heap(system_heap: DmaHeap) -> None:
    seen: list[CarveoutEvent] = []
    with Carveout(MIB, fallback=system_heap, name="cam", on_event=seen.append) as carveout:
        with _carve(carveout, MIB) as carved, carveout.allocate(8192) as spilled:
            assert carved.info().exp_name == "udmabuf"
            assert not isinstance(spilled, CarvedBuffer)
            assert spilled.info().exp_name == "system"
            with carveout.allocate(2 * MIB) as too_big:  # more than the whole region
                assert too_big.info().exp_name == "system"
        stats = carveout.stats()
        assert (stats.carved, stats.fallbacks, stats.failures) == (1, 2, 0)
        assert [e.kind for e in carveout.events] == ["fallback", "fallback"]
        assert list(carveout.events) == seen
        event = seen[0]
        assert (event.carveout, event.requested, event.largest_free) == ("cam", 8192, 0)
        assert "to system" in event.detail
        assert "more than the whole region" in seen[1].detail
        assert carveout.properties_hint()["fallback"] == "system"


def test_no_fallback_is_out_of_memory_naming_the_largest_free_block() -> None:
    with Carveout(4 * PAGE_SIZE, name="frag") as carveout:
        pages = [_carve(carveout, PAGE_SIZE) for _ in range(4)]
        pages[0].close()
        pages[2].close()
        stats = carveout.stats()
        assert (stats.free_bytes, stats.largest_free_block, stats.free_blocks) == (
            2 * PAGE_SIZE,
            PAGE_SIZE,
            2,
        )
        assert stats.fragmentation == pytest.approx(0.5)
        with pytest.raises(OutOfMemoryError) as info:
            carveout.allocate(2 * PAGE_SIZE)
        err = info.value
        assert err.errno == errno.ENOMEM
        text = str(err)
        assert f"carveout frag ({4 * PAGE_SIZE} bytes of shmem)" in text
        assert f"cannot fit {2 * PAGE_SIZE} bytes" in text
        assert f"largest free block {PAGE_SIZE} bytes" in text
        assert "no fallback heap" in text
        assert carveout.stats().failures == 1
        assert carveout.events[-1].kind == "out-of-memory"
        for page in pages:
            page.close()
        with _carve(carveout, 4 * PAGE_SIZE):  # coalesced back into one block
            pass


def test_above_udmabufs_limit() -> None:
    limit = size_limit_bytes() or 64 * MIB
    with Carveout(limit + MIB, name="big") as carveout:
        assert carveout.max_size == limit
        with pytest.raises(UsageError, match="size_limit_mb"):
            carveout.allocate(limit + PAGE_SIZE)
        with _carve(carveout, limit) as whole:
            assert whole.size == limit


def test_closing_the_carveout_leaves_carved_buffers_valid() -> None:
    carveout = Carveout(MIB, name="early")
    buf = _carve(carveout, 64 << 10)
    _fill(buf, 0x33)
    carveout.close()
    carveout.close()
    assert carveout.closed
    assert _is_all(buf, 0x33)  # the dma-buf pins its own pages
    fd = buf.fileno()
    buf.close()
    assert_fd_closed(fd)


def test_a_failed_carve_returns_the_range() -> None:
    # Ask the kernel for more pages than udmabuf allows by lying about the limit: the kernel
    # refuses (EINVAL) and the range must come back.
    limit = size_limit_bytes() or 64 * MIB
    with Carveout(limit + MIB, name="refused") as carveout:
        carveout.udmabuf_limit = carveout.max_size = limit + MIB
        with pytest.raises(InvalidArgumentError, match="carve") as info:
            carveout.allocate(limit + MIB)
        assert info.value.errno == errno.EINVAL
        assert info.value.operation == "UDMABUF_CREATE"
        stats = carveout.stats()
        assert (stats.free_bytes, stats.live, stats.carved) == (limit + MIB, 0, 0)


# -- hugetlb ---------------------------------------------------------------------------------


@pytest.fixture
def huge_pages() -> Iterator[int]:
    """At least 8 free 2 MiB huge pages: reserved here in the VM (as root), else skip."""
    want = 8
    free = hugetlb_pages_free()
    require(free is not None, "this kernel has no 2 MiB hugetlb pages")
    assert free is not None
    original = None
    if free < want and IN_VM:
        with open(NR_HUGEPAGES, encoding="ascii") as f:
            original = int(f.read())
        with open(NR_HUGEPAGES, "w", encoding="ascii") as f:
            f.write(str(original + want - free))
    try:
        free = hugetlb_pages_free() or 0
        require(free >= want, f"{want} free huge pages needed (echo N > {NR_HUGEPAGES})")
        yield free
    finally:
        if original is not None:
            with open(NR_HUGEPAGES, "w", encoding="ascii") as f:
                f.write(str(original))


def _region_address(name: str) -> int:
    """Where the carveout ``name`` mapped its region (found in /proc/self/maps)."""
    with open("/proc/self/maps", encoding="utf-8") as f:
        for line in f:
            if f"/memfd:devalloc-carveout-{name} " in line:
                start, _, _ = line.partition("-")
                return int(start, 16)
    raise AssertionError(f"the region of carveout {name} is not mapped")


def _frames(buf: CarvedBuffer, name: str) -> list[int]:
    """The physical frame of every page of ``buf``, read from /proc/self/pagemap (root only)
    through the carveout's own mapping of the region: udmabuf's mmap is a PFN map, which pagemap
    does not walk. Also checks that the mapping shows what was written through the dma-buf."""
    address = _region_address(name) + buf.offset
    with buf.cpu_access("w") as view:
        view[:8] = b"carved!!"
    assert ctypes.string_at(address, 8) == b"carved!!"
    pages = buf.size // PAGE_SIZE
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(address // PAGE_SIZE * 8)
        entries = struct.unpack(f"<{pages}Q", f.read(pages * 8))
    assert all(e >> 63 for e in entries), "a page of the region is not present"
    frames = [e & ((1 << 55) - 1) for e in entries]
    require(any(frames), "/proc/self/pagemap hides frame numbers from this user (needs root)")
    return frames


def test_hugetlb_carveout_is_flagged_and_carves_contiguous_chunks(huge_pages: int) -> None:
    with Carveout(3 * HUGE_PAGE_SIZE, hugetlb=True, name="huge") as carveout:
        assert carveout.size == 3 * HUGE_PAGE_SIZE
        assert carveout.contiguous_chunk == HUGE_PAGE_SIZE
        assert carveout.kernel_cpu_mapping_safe is False
        assert "vmap" in carveout.kernel_cpu_mapping_note
        hint = carveout.properties_hint()
        assert hint["hugetlb"] is True
        assert hint["contiguous_chunk"] == HUGE_PAGE_SIZE
        assert hint["kernel_cpu_mapping_safe"] is False
        assert hint["backing"] == "hugetlb"
        small = _carve(carveout, MIB)
        chunk = _carve(carveout, HUGE_PAGE_SIZE)  # would straddle at 1 MiB: goes to 2 MiB
        gap = _carve(carveout, MIB)  # fills the gap left behind
        assert (small.offset, chunk.offset, gap.offset) == (0, HUGE_PAGE_SIZE, MIB)
        for buf in (small, chunk, gap):
            frames = _frames(buf, "huge")
            assert frames == list(range(frames[0], frames[0] + len(frames))), buf.offset
        _fill(chunk, 0x77)
        assert _is_all(chunk, 0x77)
        for buf in (small, chunk, gap):
            buf.close()
        stats = carveout.stats()
        assert (stats.free_bytes, stats.free_blocks) == (3 * HUGE_PAGE_SIZE, 1)
        with _carve(carveout, HUGE_PAGE_SIZE) as again:
            assert _is_all(again, 0)


def test_probe_runs() -> None:
    """The measuring code in bench/ works against this kernel (its numbers are not checked)."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "carveout_pool_probe.py")
    spec = importlib.util.spec_from_file_location("carveout_pool_probe", path)
    assert spec is not None
    assert spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    carve = probe.carve_latency(sizes=(PAGE_SIZE, MIB), repeat=3)
    assert set(carve) == {str(PAGE_SIZE), str(MIB)}
    assert all(v["carve_ns"] > 0 and v["release_ns"] > 0 for v in carve.values())
    assert carve[str(MIB)]["zero_ns"] > 0
    require(os.path.exists("/dev/dma_heap/system"), "no system dma-heap")
    pool = probe.pool_vs_heap(size=64 << 10, repeat=3)
    assert set(pool) == {
        "size",
        "heap_alloc_close_ns",
        "pool_same_owner_ns",
        "pool_owner_change_ns",
    }
    assert probe.zero_cost(size=64 << 10, repeat=3)["zero_ns"] > 0


def test_carveout_as_a_registry_heap() -> None:
    """The registry lists a carveout by properties and allocates named buffers from it."""
    from devalloc.heaps.carveout import CarveoutHeap
    from devalloc.heaps.properties import HeapRequest
    from devalloc.heaps.registry import HeapRegistry

    with HeapRegistry.discover() as registry:
        heap = registry.add(CarveoutHeap(Carveout(8 << 20, name="reg")))
        props = registry.properties(heap)
        assert (props.kind, props.contiguous, props.max_size) == ("carveout", False, 8 << 20)
        ordered = [c.properties.kind for c in registry.candidates(HeapRequest())]
        assert ordered.index("dma-heap") < ordered.index("carveout") < ordered.index("memfd")
        with registry.allocate(heap, 64 << 10, name="carved") as buf:
            assert buf.info().name == "carved"
            assert buf.info().exp_name == "udmabuf"
            fd = buf.fileno()
        assert_fd_closed(fd)
        assert registry.stats(heap).allocations == 1
