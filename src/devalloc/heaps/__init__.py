"""Heap backends: where dma-bufs come from (dma-heap nodes, udmabuf, memfd).

Example:
    >>> from devalloc.heaps.memfd import MemfdHeap
    >>> MemfdHeap().allocate(8192).close()
"""
