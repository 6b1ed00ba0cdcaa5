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

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import limits as limits
from .buffer import AccessMode as AccessMode
from .buffer import Buffer as Buffer
from .buffer import DmaBufInfo as DmaBufInfo
from .errors import AllocationLimitError as AllocationLimitError
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

if TYPE_CHECKING:
    from .service.client import ServiceClient

__version__ = "0.1.0"


def connect(path: str | None = None, *, timeout: float | None = 60.0) -> ServiceClient:
    """A client of the devalloc service (``devalloc serve``): its ``allocate()`` takes the
    arguments of ``Allocator.allocate`` and returns the same ``Allocation`` (see
    :mod:`devalloc.service`). Imported on first use."""
    from .service.client import connect as _connect

    return _connect(path, timeout=timeout)


# Modules that moved into subsystem packages keep their old import paths: ``import devalloc.kms``
# gives the module ``devalloc.drm.kms`` itself (one module object, not a copy), loaded on first use.
_MOVED = {"devalloc.kms": "devalloc.drm.kms", "devalloc.m2m": "devalloc.v4l2.m2m"}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves the old names in :data:`_MOVED` to the modules at their new paths."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module(_MOVED[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the module was executed under its new name."""


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
