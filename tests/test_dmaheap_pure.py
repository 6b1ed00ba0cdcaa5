"""The dma-heap allocation argument's fast form against the ctypes structure checked with C."""

from __future__ import annotations

import ctypes

from hypothesis import given
from hypothesis import strategies as st

from devalloc.heaps import dmaheap
from devalloc.uapi.dma_heap import dma_heap_allocation_data

u32 = st.integers(0, (1 << 32) - 1)
u64 = st.integers(0, (1 << 64) - 1)


def test_the_struct_has_the_c_size() -> None:
    assert dmaheap.ALLOCATION_DATA.size == ctypes.sizeof(dma_heap_allocation_data)


@given(u64, u32, u32, u64)
def test_packed_arguments_read_back_through_ctypes(
    length: int, fd: int, fd_flags: int, heap_flags: int
) -> None:
    packed = bytearray(dmaheap.ALLOCATION_DATA.pack(length, fd, fd_flags, heap_flags))
    data = dma_heap_allocation_data.from_buffer(packed)
    assert (data.len, data.fd, data.fd_flags, data.heap_flags) == (
        length,
        fd,
        fd_flags,
        heap_flags,
    )
    # the fd the kernel writes is read back from where ctypes puts it
    data.fd = fd ^ 0xFFFF
    assert dmaheap._unpack_fd(packed, dmaheap._FD_OFFSET)[0] == fd ^ 0xFFFF
