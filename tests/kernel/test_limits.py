"""devalloc.limits on a real kernel: a request that would get the process OOM-killed is refused
before the kernel, and the process goes on allocating."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devalloc import AllocationLimitError, limits
from devalloc.heaps.carveout import Carveout
from devalloc.heaps.device import DeviceHeap
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.heaps.udmabuf import UDMABUF_PATH, Memfd, UdmabufDevice, UdmabufHeap

from ..conftest import assert_fd_closed, open_fds, require
from .conftest import SYSTEM_HEAP, _vgem_node

pytestmark = pytest.mark.kernel

PAGE = os.sysconf("SC_PAGE_SIZE")


def test_a_terabyte_from_the_system_heap_is_refused_and_the_process_lives_on(
    system_heap: DmaHeap,
) -> None:
    before, in_use = open_fds(), limits.in_use()
    with pytest.raises(AllocationLimitError) as info:
        system_heap.allocate(1 << 40)
    text = str(info.value)
    assert "dma-heap system" in text
    assert f"{1 << 40} bytes" in text
    assert f"cap of {limits.max_buffer()} bytes" in text
    assert "DEVALLOC_MAX_BUFFER" in text
    assert open_fds() == before
    assert limits.in_use() == in_use
    with system_heap.allocate(1 << 20) as buf:  # and it goes on
        fd = buf.fileno()
        with buf.cpu_access("rw") as view:
            view[0] = 7
            assert view[0] == 7
        assert limits.in_use() == in_use + (1 << 20)
    assert_fd_closed(fd)
    assert limits.in_use() == in_use


def test_a_fresh_process_survives_the_terabyte_request() -> None:
    """The issue's reproduction as it was seen (the process was Killed): in a child of its own."""
    code = (
        "from devalloc import DmaHeap, AllocationLimitError\n"
        f"heap = DmaHeap({SYSTEM_HEAP!r})\n"
        "try:\n"
        "    heap.allocate(1 << 40)\n"
        "except AllocationLimitError as e:\n"
        "    print('refused', e.variable)\n"
        "heap.allocate(4096).close()\n"
        "heap.close()\n"
        "print('alive')\n"
    )
    if not os.access(SYSTEM_HEAP, os.R_OK):
        pytest.skip(f"{SYSTEM_HEAP} is not accessible")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["refused", "DEVALLOC_MAX_BUFFER", "alive"]


def test_the_total_cap_applies_to_the_system_heap(system_heap: DmaHeap) -> None:
    base = limits.in_use()
    limits.set_limits(max_buffer=1 << 20, max_total=base + (2 << 20))
    try:
        first = system_heap.allocate(1 << 20)
        second = system_heap.allocate(1 << 20)
        with pytest.raises(AllocationLimitError, match="DEVALLOC_MAX_TOTAL"):
            system_heap.allocate(PAGE)
        first.close()
        system_heap.allocate(PAGE).close()
        second.close()
    finally:
        limits.set_limits()
    assert limits.in_use() == base


def test_udmabuf_paths_are_charged(udmabuf: UdmabufDevice) -> None:
    base = limits.in_use()
    with Memfd(4 * PAGE) as mfd, udmabuf.create(mfd, 0, 4 * PAGE) as buf:
        assert buf.size == 4 * PAGE
        assert limits.in_use() == base + 4 * PAGE
    assert limits.in_use() == base
    with UdmabufHeap() as heap:
        with heap.allocate(3 * PAGE) as buf:
            assert limits.in_use() == base + 3 * PAGE
        limits.set_limits(max_buffer=PAGE)
        try:
            before = open_fds()
            with pytest.raises(AllocationLimitError, match="udmabuf"):
                heap.allocate(2 * PAGE)
            with Memfd(2 * PAGE) as mfd, pytest.raises(AllocationLimitError):
                udmabuf.create(mfd, 0, 2 * PAGE)
            assert open_fds() == before
        finally:
            limits.set_limits()
    assert limits.in_use() == base


def test_the_device_heap_charges_what_the_driver_made() -> None:
    base = limits.in_use()
    with DeviceHeap(_vgem_node("card")) as heap:
        with heap.allocate(PAGE + 1) as buf:
            assert limits.in_use() == base + buf.size
        assert limits.in_use() == base
        limits.set_limits(max_buffer=PAGE)
        try:
            before = open_fds()
            with pytest.raises(AllocationLimitError, match="device heap"):
                heap.allocate(PAGE + 1)
            assert open_fds() == before
            assert not any(heap.device.handle_exists(h) for h in range(1, 17))
        finally:
            limits.set_limits()
    assert limits.in_use() == base


def test_a_carveout_region_is_charged_until_closed() -> None:
    require(os.access(UDMABUF_PATH, os.R_OK | os.W_OK), f"{UDMABUF_PATH} is not accessible")
    base = limits.in_use()
    with Carveout(1 << 20, name="limits") as carveout:
        assert limits.in_use() == base + carveout.size
        with carveout.allocate(PAGE) as buf:  # carving takes nothing more
            assert buf.size == PAGE
            assert limits.in_use() == base + carveout.size
        limits.set_limits(max_buffer=PAGE)
        try:
            with pytest.raises(AllocationLimitError, match="carveout limits"):
                carveout.allocate(2 * PAGE)
        finally:
            limits.set_limits()
    assert limits.in_use() == base
    limits.set_limits(max_buffer=4 << 20, max_total=base + (1 << 20))
    try:
        before = open_fds()
        with pytest.raises(AllocationLimitError, match="DEVALLOC_MAX_TOTAL"):
            Carveout(2 << 20, name="too-big")
        assert open_fds() == before
    finally:
        limits.set_limits()
    assert limits.in_use() == base
