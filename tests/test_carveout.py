"""Host tests of the carveout's pure parts: the range allocator (with hypothesis), the sysfs
readers over fake trees, zero-filling, and the carveout's error paths that need no udmabuf."""

from __future__ import annotations

import errno
import itertools
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc.errors import KernelError, NotFoundError, UsageError
from devalloc.heaps.carveout import (
    HUGE_PAGE_SIZE,
    PAGE_SIZE,
    Carveout,
    RangeAllocator,
    dmabuf_file_count,
    fill_zero,
    hugetlb_pages_free,
    shmem_large_folios_possible,
)
from devalloc.heaps.udmabuf import Memfd

from .conftest import open_fds

ALIGN = 4096


# -- RangeAllocator: examples --------------------------------------------------------------


def test_first_fit_splits_and_coalesces() -> None:
    ranges = RangeAllocator(16 * ALIGN, align=ALIGN)
    a = ranges.alloc(2 * ALIGN)
    b = ranges.alloc(3 * ALIGN)
    c = ranges.alloc(ALIGN)
    assert (a, b, c) == (0, 2 * ALIGN, 5 * ALIGN)
    assert a is not None
    assert b is not None
    assert c is not None
    assert ranges.blocks() == ((6 * ALIGN, 10 * ALIGN),)
    ranges.free(b)  # a hole between a and c
    assert ranges.blocks() == ((2 * ALIGN, 3 * ALIGN), (6 * ALIGN, 10 * ALIGN))
    assert ranges.largest_free() == 10 * ALIGN
    assert ranges.fragmentation() == pytest.approx(1 - 10 / 13)
    assert ranges.alloc(2 * ALIGN) == 2 * ALIGN  # first fit: the hole
    ranges.free(2 * ALIGN)
    ranges.free(c)  # merges with the hole before and the tail after
    assert ranges.blocks() == ((2 * ALIGN, 14 * ALIGN),)
    ranges.free(a)
    assert ranges.blocks() == ((0, 16 * ALIGN),)
    assert ranges.free_bytes == 16 * ALIGN
    assert ranges.used_bytes == 0
    assert ranges.fragmentation() == 0.0


def test_full_and_too_big() -> None:
    ranges = RangeAllocator(4 * ALIGN, align=ALIGN)
    assert ranges.alloc(5 * ALIGN) is None
    assert ranges.alloc(4 * ALIGN) == 0
    assert ranges.alloc(ALIGN) is None
    assert ranges.largest_free() == 0
    assert ranges.fragmentation() == 0.0
    assert ranges.allocations() == {0: 4 * ALIGN}


def test_chunk_rule_keeps_small_ranges_inside_one_chunk() -> None:
    chunk = 4 * ALIGN
    ranges = RangeAllocator(16 * ALIGN, align=ALIGN, chunk=chunk)
    assert ranges.alloc(3 * ALIGN) == 0
    # 2 pages would fit at 3 but cross the chunk boundary at 4: placed at 4 instead.
    assert ranges.alloc(2 * ALIGN) == 4 * ALIGN
    assert ranges.alloc(ALIGN) == 3 * ALIGN  # the gap left behind is still usable
    # Longer than a chunk: starts on a chunk boundary.
    assert ranges.alloc(5 * ALIGN) == 8 * ALIGN
    assert ranges.blocks() == ((6 * ALIGN, 2 * ALIGN), (13 * ALIGN, 3 * ALIGN))


def test_bad_arguments() -> None:
    with pytest.raises(UsageError, match="power of two"):
        RangeAllocator(12 * ALIGN, align=3 * ALIGN)
    with pytest.raises(UsageError, match="not a multiple of align"):
        RangeAllocator(ALIGN + 1, align=ALIGN)
    with pytest.raises(UsageError, match="chunk"):
        RangeAllocator(8 * ALIGN, align=ALIGN, chunk=ALIGN + 512)
    ranges = RangeAllocator(8 * ALIGN, align=ALIGN)
    with pytest.raises(UsageError, match="not a multiple of align"):
        ranges.alloc(100)
    for bad in (0, -ALIGN, True):
        with pytest.raises(UsageError, match="positive integer"):
            ranges.alloc(bad)
    with pytest.raises(UsageError, match="no range is allocated at offset 0"):
        ranges.free(0)


# -- RangeAllocator: properties ------------------------------------------------------------


def _feasible(free_pages: set[int], start: int, pages: int, chunk_pages: int | None) -> bool:
    if not all(p in free_pages for p in range(start, start + pages)):
        return False
    if chunk_pages is None:
        return True
    if pages > chunk_pages:
        return start % chunk_pages == 0
    return start // chunk_pages == (start + pages - 1) // chunk_pages


ops = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.integers(1, 24)),
        st.tuples(st.just("free"), st.integers(0, 1000)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    total_pages=st.integers(1, 64),
    chunk_pages=st.sampled_from([None, 1, 2, 4, 8]),
    script=ops,
)
def test_random_alloc_free_against_a_page_model(
    total_pages: int, chunk_pages: int | None, script: list[tuple[str, int]]
) -> None:
    """Every answer is the lowest offset a brute-force page model allows (None only when there
    is none); ranges never overlap and stay aligned; free blocks stay sorted, disjoint and
    coalesced; freeing everything leaves one block."""
    chunk = None if chunk_pages is None else chunk_pages * ALIGN
    ranges = RangeAllocator(total_pages * ALIGN, align=ALIGN, chunk=chunk)
    free_pages = set(range(total_pages))
    held: list[int] = []
    for op, arg in script:
        if op == "alloc":
            candidates = [
                p for p in range(total_pages) if _feasible(free_pages, p, arg, chunk_pages)
            ]
            got = ranges.alloc(arg * ALIGN)
            if not candidates:
                assert got is None
                continue
            assert got == candidates[0] * ALIGN
            assert got % ALIGN == 0
            free_pages -= set(range(candidates[0], candidates[0] + arg))
            held.append(got)
        elif held:
            offset = held.pop(arg % len(held))
            length = ranges.allocations()[offset]
            ranges.free(offset)
            free_pages |= set(range(offset // ALIGN, (offset + length) // ALIGN))
        blocks = ranges.blocks()
        covered = {
            p for start, size in blocks for p in range(start // ALIGN, (start + size) // ALIGN)
        }
        assert covered == free_pages
        for (s1, n1), (s2, _n2) in itertools.pairwise(blocks):
            assert s1 + n1 < s2  # sorted, disjoint and never adjacent (coalesced)
        used = sorted(ranges.allocations().items())
        for (o1, n1), (o2, _n2) in itertools.pairwise(used):
            assert o1 + n1 <= o2
        assert ranges.free_bytes == len(free_pages) * ALIGN
        assert ranges.used_bytes + ranges.free_bytes == total_pages * ALIGN
    for offset in held:
        ranges.free(offset)
    assert ranges.blocks() == ((0, total_pages * ALIGN),)
    assert ranges.fragmentation() == 0.0


# -- sysfs readers over fake trees ---------------------------------------------------------


def _thp_tree(root: Path, top: str, per_size: dict[str, str]) -> str:
    choices = ["always", "within_size", "advise", "never", "deny", "force"]
    (root / "shmem_enabled").write_text(
        " ".join(f"[{c}]" if c == top else c for c in choices) + "\n"
    )
    for name, setting in per_size.items():
        d = root / name
        d.mkdir()
        options = ["always", "inherit", "within_size", "advise", "never"]
        (d / "shmem_enabled").write_text(
            " ".join(f"[{c}]" if c == setting else c for c in options) + "\n"
        )
    return str(root)


@pytest.mark.parametrize(
    ("top", "per_size", "expected"),
    [
        ("never", {}, None),
        ("advise", {}, None),
        ("always", {}, "shmem_enabled=always"),
        ("within_size", {}, "shmem_enabled=within_size"),
        ("force", {"hugepages-2048kB": "never"}, "shmem_enabled=force"),
        ("deny", {"hugepages-2048kB": "always"}, None),
        ("never", {"hugepages-2048kB": "inherit", "hugepages-64kB": "never"}, None),
        (
            "always",
            {"hugepages-2048kB": "inherit", "hugepages-64kB": "never"},
            "hugepages-2048kB/shmem_enabled=inherit (always)",
        ),
        ("never", {"hugepages-64kB": "within_size"}, "hugepages-64kB/shmem_enabled=within_size"),
        ("always", {"hugepages-2048kB": "never"}, None),
    ],
)
def test_shmem_large_folios(
    tmp_path: Path, top: str, per_size: dict[str, str], expected: str | None
) -> None:
    assert shmem_large_folios_possible(_thp_tree(tmp_path, top, per_size)) == expected


def test_shmem_large_folios_without_thp(tmp_path: Path) -> None:
    assert shmem_large_folios_possible(str(tmp_path / "absent")) is None


def test_hugetlb_pages_free(tmp_path: Path) -> None:
    (tmp_path / "free_hugepages").write_text("12\n")
    assert hugetlb_pages_free(str(tmp_path)) == 12
    assert hugetlb_pages_free(str(tmp_path / "absent")) is None


# -- small helpers -------------------------------------------------------------------------


def test_fill_zero() -> None:
    data = bytearray(b"\xff" * 10000)
    view = memoryview(data)
    fill_zero(view[100:9000])
    assert data[:100] == b"\xff" * 100
    assert data[100:9000] == bytes(8900)
    assert data[9000:] == b"\xff" * 1000
    fill_zero(view[:0])
    view.release()  # fill_zero left no export behind
    data.extend(b"x")


def test_file_count_of_a_non_dmabuf_is_an_error() -> None:
    with Memfd(PAGE_SIZE) as mfd:
        with pytest.raises(KernelError, match="not a dma-buf") as info:
            dmabuf_file_count(mfd.fileno())
        assert info.value.errno == errno.EINVAL
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(NotFoundError):
        dmabuf_file_count(r)


# -- the carveout's error paths that need no udmabuf ---------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 0}, "size must be a positive integer"),
        ({"size": 1 << 20, "align": 3 * PAGE_SIZE}, "power-of-two multiple"),
        ({"size": 1 << 20, "align": PAGE_SIZE // 2}, "power-of-two multiple"),
        ({"size": 1 << 20, "hugetlb": 1}, "hugetlb is True or False"),
    ],
)
def test_carveout_rejects_bad_arguments(
    no_fd_leak: None, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(UsageError, match=match):
        Carveout(**kwargs)  # type: ignore[arg-type]


def test_carveout_without_udmabuf_releases_the_region(no_fd_leak: None, tmp_path: Path) -> None:
    before = open_fds()
    with pytest.raises(NotFoundError, match="udmabuf") as info:
        Carveout(1 << 20, name="cam", udmabuf_path=str(tmp_path / "udmabuf"))
    assert info.value.path == str(tmp_path / "udmabuf")
    assert open_fds() == before


def test_hugetlb_carveout_without_huge_pages_says_what_is_missing(no_fd_leak: None) -> None:
    free = hugetlb_pages_free()
    if free is None:
        pytest.skip("this kernel has no 2 MiB hugetlb pages")
    if free >= 2:
        pytest.skip(f"{free} huge pages are free here: the shortage cannot be shown")
    with pytest.raises(KernelError) as info:
        Carveout(3 * HUGE_PAGE_SIZE // 2, hugetlb=True, name="cam")
    err = info.value
    assert err.errno in (errno.ENOSPC, errno.ENOMEM)
    assert err.operation == "fallocate"
    assert "carveout cam (4194304 bytes of hugetlb)" in str(err)  # rounded up to 2 huge pages
    assert "2 huge pages of 2 MiB needed" in str(err)
    assert "nr_hugepages" in str(err)
