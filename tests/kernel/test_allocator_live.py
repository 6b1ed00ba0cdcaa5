"""The front door on live devices: discover, negotiate, pick a heap, allocate, verify for real.

Default boot (vivid's vmalloc allocator): vivid capture + vgem share system-heap buffers and the
captured frames read back. With ``--append vivid.allocators=1`` (vb2-dma-contig: a
contiguous-only device that V4L2 cannot describe), verification learns the contiguity need:

- stock kernel (no CMA heap): a 1080p request ends with an explanation naming the contiguity
  and the missing contiguous heap; a frame of at most 1 MiB still gets a plan;
- full kernel (``reserved`` CMA heap): the allocator re-negotiates, picks the CMA heap and
  captures correct frames.

Run the second mode with:
    bash tests/vm/run.sh --kernel stock --append vivid.allocators=1 -- -m kernel \
        tests/kernel/test_allocator_live.py
    bash tests/vm/run.sh --kernel full --append vivid.allocators=1 -- -m kernel \
        tests/kernel/test_allocator_live.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devalloc.allocator import Allocator
from devalloc.cli import main
from devalloc.errors import NoPlanError

from ..conftest import capability, need

pytestmark = pytest.mark.kernel

_ALLOCATORS = "/sys/module/vivid/parameters/allocators"


def _vivid_contig() -> bool:
    try:
        with open(_ALLOCATORS) as f:
            return f.read().strip().split(",")[0] == "1"
    except OSError:
        return False


@pytest.fixture
def alloc() -> Iterator[Allocator]:
    need("system_heap", "vivid", "vgem")
    with Allocator() as allocator:
        yield allocator


def _capture(alloc: Allocator) -> str:
    for device in alloc.discovery.v4l2:
        if device.name.startswith("vivid") and any(c.usage == "capture" for c in device.usages):
            return device.name
    raise AssertionError(f"no vivid capture node among {[d.name for d in alloc.discovery.v4l2]}")


def _nonzero_pages(buf: object, length: int | None = None) -> float:
    """The share of the first ``length`` bytes' pages (the frame) holding non-zero bytes."""
    from devalloc.buffer import Buffer

    assert isinstance(buf, Buffer)
    with buf.cpu_access("r") as view:
        pages = range(0, length or len(view), 4096)
        return sum(1 for i in pages if any(view[i : i + 64])) / len(pages)


def test_vivid_and_vgem_share_system_heap_buffers(alloc: Allocator, no_fd_leak: None) -> None:
    cam = _capture(alloc)
    with alloc.allocate(
        640,
        480,
        usages=[(cam, "capture"), "vgem"],
        formats=["YUYV"],
        count=2,
        verify=True,
        frames=2,
        cpu_access="r",
        name="live",
    ) as result:
        assert result.plan.format.name == "YUYV"
        assert result.plan.layout.planes[0].pitch == 1280
        assert result.heap_properties.kind == "dma-heap"
        assert [v.ok for v in result.verdicts] == [True] * len(result.verdicts)
        assert {v.device for v in result.verdicts} == {cam, "vgem"}
        if _vivid_contig():
            assert "contiguous" in result.attempts[0].learned[0]
            if _has_cma():  # learned, then served by the CMA heap
                assert result.heap_properties.contiguous is True
            else:  # 614400 bytes fit in one 1 MiB block of the system heap
                assert result.heap_properties.contiguous is False
                assert any("contiguous chunks" in note for note in result.notes)
                assert all(b.size == 1 << 20 for b in result.buffers)
        else:
            assert result.heap_properties.contiguous is False
            assert not result.attempts
        assert max(_nonzero_pages(b, result.plan.size) for b in result.buffers) > 0.9
        assert result.buffers[0].info().name == "live0"


def test_main_job_live_pipeline(capsys: pytest.CaptureFixture[str], no_fd_leak: None) -> None:
    need("system_heap", "vivid", "vgem")
    assert main(["examples", "examples/vivid-vgem.toml"]) == 0
    out = capsys.readouterr().out
    assert "== live (plan, as expected)" in out
    assert "verify vivid" in out


def _has_cma() -> bool:
    names = os.listdir("/dev/dma_heap") if os.path.isdir("/dev/dma_heap") else []
    return any(n in ("reserved", "linux,cma", "default_cma_region", "default-pool") for n in names)


def test_1080p_capture(alloc: Allocator, no_fd_leak: None) -> None:
    """vmalloc vivid takes scattered 1080p buffers; dma-contig vivid teaches contiguity."""
    cam = _capture(alloc)
    if not _vivid_contig():
        with alloc.allocate(
            1920,
            1080,
            usages=[(cam, "capture")],
            formats=["YUYV"],
            count=2,
            verify=True,
            frames=2,
            cpu_access="r",
        ) as result:
            assert result.heap_properties.contiguous is False
            assert not result.attempts
            assert all(v.ok for v in result.verdicts)
        return
    if not _has_cma():
        with pytest.raises(NoPlanError) as info:
            alloc.allocate(
                1920,
                1080,
                usages=[(cam, "capture")],
                formats=["YUYV"],
                count=2,
                verify=True,
                cpu_access="r",
            )
        text = str(info.value)
        assert "learned contiguous" in text
        assert "contiguous" in text
        assert "CMA" in text
        assert alloc.learned[f"{cam}:capture"].memory.contiguous
        return
    with alloc.allocate(
        1920,
        1080,
        usages=[(cam, "capture")],
        formats=["YUYV"],
        count=2,
        verify=True,
        frames=2,
        cpu_access="r",
    ) as result:
        assert result.heap_properties.contiguous is True
        assert [a.learned for a in result.attempts]
        assert "contiguous" in result.attempts[0].learned[0]
        assert all(v.ok for v in result.verdicts)
        assert max(_nonzero_pages(b, result.plan.size) for b in result.buffers) > 0.9


def test_small_frames_still_get_a_plan(alloc: Allocator, no_fd_leak: None) -> None:
    cam = _capture(alloc)
    # 640x360 YUYV = 460800 bytes (vivid's webcam input offers discrete sizes only): the system
    # heap hands out chunks of up to 1 MiB, so a buffer this small is physically contiguous and
    # vb2-dma-contig accepts it.
    with alloc.allocate(
        640, 360, usages=[(cam, "capture")], formats=["YUYV"], count=2, verify=True, cpu_access="r"
    ) as result:
        assert all(v.ok for v in result.verdicts)


def test_pool_of_negotiated_buffers(alloc: Allocator, no_fd_leak: None) -> None:
    cam = _capture(alloc)
    plan, pool = alloc.pool(640, 480, usages=[(cam, "capture"), "vgem"], formats=["YUYV"], count=3)
    with pool:
        assert plan.layout.size == 614400
        with pool.acquire(owner="a") as first:
            assert first.size >= 614400
            assert first.info().exp_name == "system"
        assert pool.stats().acquires == 1


@pytest.mark.needs("cma_heap")
def test_cma_exhaustion_is_a_typed_error_and_leaks_nothing(no_fd_leak: None) -> None:
    """Fill the CMA heap until it refuses: the error is OutOfMemoryError naming the heap and the
    size; a contiguous request through the front door then names every heap tried; closing
    everything gives the memory back."""
    from devalloc.constraints import Constraints, MemoryRules
    from devalloc.errors import OutOfMemoryError
    from devalloc.formats import fourcc_code
    from devalloc.heaps.dmaheap import DmaHeap

    path = capability("cma_heap").nodes[0]
    chunk = 16 << 20
    held = []
    try:
        with DmaHeap(path) as heap:
            refused: OutOfMemoryError | None = None
            for _ in range(256):  # 4 GiB at most: far beyond any test CMA area
                try:
                    held.append(heap.allocate(chunk))
                except OutOfMemoryError as exc:
                    refused = exc
                    break
            assert refused is not None, "the CMA heap never refused"
            assert held, "the CMA heap refused even the first 16 MiB"
            assert os.path.basename(path) in str(refused)
            assert str(chunk) in str(refused)
            dsp = Constraints(
                "dsp", "in", ((fourcc_code("XR24"), 0),), memory=MemoryRules(contiguous=True)
            )
            with Allocator(discover_devices=False) as alloc, pytest.raises(OutOfMemoryError) as e:
                alloc.allocate(1024, 1024, usages=[dsp], count=8)
            assert "out of memory" in str(e.value)
            assert path in str(e.value)
    finally:
        for buf in held:
            buf.close()
    # Everything came back: as many chunks fit again. (CmaFree itself is no measure: the page
    # allocator lends free CMA pages to movable allocations and migrates them out on demand.)
    count = len(held)
    again = []
    try:
        with DmaHeap(path) as heap:
            for _ in range(count):
                again.append(heap.allocate(chunk))
    finally:
        for buf in again:
            buf.close()
    assert len(again) == count
