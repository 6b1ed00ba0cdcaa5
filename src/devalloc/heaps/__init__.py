"""Heap backends (dma-heap nodes, udmabuf, DRM device heaps, memfd) and the registry that picks
one by properties.

Example:
    >>> from devalloc.heaps import HeapRegistry, HeapRequest
    >>> with HeapRegistry.discover() as registry:
    ...     heap = registry.select(HeapRequest(device_importable=False))
    ...     registry.allocate(heap, 8192).close()
"""

from __future__ import annotations

from .device import DeviceHeap as DeviceHeap
from .dmaheap import DmaHeap as DmaHeap
from .dmaheap import DmaHeapBackend as DmaHeapBackend
from .dmaheap import heap_paths as heap_paths
from .memfd import MemfdHeap as MemfdHeap
from .properties import CpuAccess as CpuAccess
from .properties import CpuCache as CpuCache
from .properties import HeapKind as HeapKind
from .properties import HeapProperties as HeapProperties
from .properties import HeapRequest as HeapRequest
from .properties import dma_heap_properties as dma_heap_properties
from .properties import unmet as unmet
from .registry import Candidate as Candidate
from .registry import HeapBackend as HeapBackend
from .registry import HeapId as HeapId
from .registry import HeapRegistry as HeapRegistry
from .registry import NoHeapError as NoHeapError
from .stats import HeapStats as HeapStats
from .stats import StatsSnapshot as StatsSnapshot
from .udmabuf import Memfd as Memfd
from .udmabuf import UdmabufDevice as UdmabufDevice
from .udmabuf import UdmabufHeap as UdmabufHeap
