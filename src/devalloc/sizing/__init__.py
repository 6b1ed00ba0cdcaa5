"""Pool sizing for a product: how many bytes of each memory class the pipelines it runs need,
and the CMA area that serves them, from negotiated layouts and counts (``devalloc size``).

Example:
    >>> from pathlib import Path
    >>> examples = Path(__file__).resolve().parents[3] / "examples"
    >>> sizing = size_files([examples / "scenarios" / "video-call.toml"])
    >>> sizing.kernel_cmdline.startswith("cma=")
    True

:mod:`devalloc.sizing.cma` models the kernel's CMA heap placement, :mod:`.scenario` reads scenario
files, :mod:`.compute` sizes pipelines and combinations, :mod:`.observe` sizes from accounting
snapshots, and :mod:`.live` (the only module doing I/O) holds a combination's buffers on a real
CMA heap; see ``docs/sizing.md``.
"""

from __future__ import annotations

from .cma import CMA_ALIGNMENT_ORDER as CMA_ALIGNMENT_ORDER
from .cma import CMA_GRANULE as CMA_GRANULE
from .cma import CmaModel as CmaModel
from .cma import Placement as Placement
from .compute import CLASSES as CLASSES
from .compute import FULL_KERNEL_CMA_RESERVED as FULL_KERNEL_CMA_RESERVED
from .compute import PipelineSize as PipelineSize
from .compute import SizedCombination as SizedCombination
from .compute import Sizing as Sizing
from .compute import memory_class as memory_class
from .compute import size_files as size_files
from .compute import size_pipeline as size_pipeline
from .observe import Observed as Observed
from .observe import size_observed as size_observed
from .scenario import Scenario as Scenario
from .scenario import load_scenario as load_scenario
from .scenario import loads_scenario as loads_scenario

__all__ = [
    "CLASSES",
    "CMA_ALIGNMENT_ORDER",
    "CMA_GRANULE",
    "FULL_KERNEL_CMA_RESERVED",
    "CmaModel",
    "Observed",
    "PipelineSize",
    "Placement",
    "Scenario",
    "SizedCombination",
    "Sizing",
    "load_scenario",
    "loads_scenario",
    "memory_class",
    "size_files",
    "size_observed",
    "size_pipeline",
]
