"""devalloc: the Linux device buffer allocator.

Example:
    >>> import devalloc
    >>> with devalloc.MemfdHeap().allocate(4096) as buf:
    ...     with buf.cpu_access("w") as view:
    ...         view[0] = 7
    ...     buf.size
    4096
"""

from __future__ import annotations

from .buffer import AccessMode as AccessMode
from .buffer import Buffer as Buffer
from .buffer import DmaBufInfo as DmaBufInfo
from .errors import ClosedResourceError as ClosedResourceError
from .errors import DevallocError as DevallocError
from .errors import KernelError as KernelError
from .errors import UsageError as UsageError
from .heaps.dmaheap import DmaHeap as DmaHeap
from .heaps.dmaheap import heap_paths as heap_paths
from .heaps.memfd import MemfdHeap as MemfdHeap
from .heaps.udmabuf import Memfd as Memfd
from .heaps.udmabuf import UdmabufDevice as UdmabufDevice
from .system import survey as survey

__version__ = "0.1.0"
