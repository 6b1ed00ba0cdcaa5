"""Sizing from observation: the peak per memory class of what a real run held, from accounting
snapshots (``devalloc ps --json``, or :func:`devalloc.accounting.scan` ``.to_json()``).

Example:
    >>> snapshot = {"buffers": [
    ...     {"inode": 7, "size": 3133440, "exp_name": "reserved"},
    ...     {"inode": 9, "size": 4096, "exp_name": "system"},
    ... ]}
    >>> observed = size_observed([snapshot], CmaModel(reserved=0))
    >>> observed.classes, observed.cma_bytes
    ({'contiguous': 3133440, 'system': 4096}, 4194304)

Each buffer's exporter name decides its class. Linux 6.12's dma-heaps name their buffers after the
heap (seen in the full test kernel: ``reserved`` for the default CMA area's heap, ``system``);
older kernels used the module name (``cma_heap``, ``system_heap``). CMA heaps are ``contiguous``
(``reserved``, ``linux,cma``, ``cma_heap``, or a name passed in ``cma_heaps``: a device-tree CMA
area's heap is named after its node); the system heap and udmabuf are ``system``; any other
exporter (a DRM or V4L2 driver's own buffers) is ``exporter:<name>``.

The CMA area of a snapshot is the model's area for its CMA buffers in inode order (the order they
were created in, as far as a snapshot tells: inode numbers come in per-CPU batches). The answer is
the peak over the snapshots: take them when the product is busiest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ..errors import UsageError
from .cma import CmaModel, page_align

__all__ = ["CMA_EXPORTERS", "SYSTEM_EXPORTERS", "Observed", "observed_class", "size_observed"]

#: Exporter names of CMA heap buffers.
CMA_EXPORTERS: Final = frozenset({"reserved", "linux,cma", "cma_heap"})
#: Exporter names of scattered system memory.
SYSTEM_EXPORTERS: Final = frozenset({"system", "system_heap", "udmabuf"})


def observed_class(exp_name: str | None, cma_heaps: frozenset[str] = frozenset()) -> str:
    """The memory class of a buffer by its exporter (see the module)."""
    if exp_name in CMA_EXPORTERS or exp_name in cma_heaps:
        return "contiguous"
    if exp_name in SYSTEM_EXPORTERS:
        return "system"
    return f"exporter:{exp_name or 'unknown'}"


@dataclass(frozen=True)
class Observed:
    """The peak of the snapshots.

    Attributes:
        classes: memory class -> the most bytes any snapshot held of it.
        cma_bytes: the largest CMA area any snapshot's CMA buffers need (model placement).
        snapshots: per snapshot, its classes and CMA area.
    """

    classes: dict[str, int]
    cma_bytes: int
    snapshots: tuple[tuple[dict[str, int], int], ...]

    def to_json(self) -> dict[str, object]:
        """``{classes, cma_bytes, snapshots: [{classes, cma_bytes}]}``."""
        return {
            "classes": self.classes,
            "cma_bytes": self.cma_bytes,
            "snapshots": [{"classes": c, "cma_bytes": a} for c, a in self.snapshots],
        }


def _buffers(snapshot: object, index: int) -> list[tuple[int, int, str | None]]:
    if not isinstance(snapshot, Mapping) or not isinstance(snapshot.get("buffers"), list):
        raise UsageError(
            f"snapshot #{index + 1} is not a devalloc ps --json report (no buffers list)"
        )
    found = []
    for item in snapshot["buffers"]:
        size, inode, name = (
            (item.get("size"), item.get("inode"), item.get("exp_name"))
            if isinstance(item, Mapping)
            else (None, None, None)
        )
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or size < 0
            or isinstance(inode, bool)
            or not isinstance(inode, int)
            or not (name is None or isinstance(name, str))
        ):
            raise UsageError(
                f"snapshot #{index + 1}: a buffer needs an integer inode and size and an"
                f" exp_name, not {item!r:.120}"
            )
        found.append((inode, size, name))
    return found


def size_observed(
    snapshots: Sequence[object], model: CmaModel, cma_heaps: frozenset[str] = frozenset()
) -> Observed:
    """The peak per class and CMA area over ``snapshots`` (parsed ``devalloc ps --json``);
    ``cma_heaps``: more exporter names that are CMA heaps.

    Raises:
        UsageError: no snapshot, or one that is not such a report.
    """
    if not snapshots:
        raise UsageError("sizing from observation needs at least one devalloc ps --json snapshot")
    peak: dict[str, int] = {}
    rows: list[tuple[dict[str, int], int]] = []
    for index, snapshot in enumerate(snapshots):
        classes: dict[str, int] = {}
        cma: list[int] = []
        for _inode, size, name in sorted(_buffers(snapshot, index)):
            if not size:
                continue  # a size the scan could not read
            cls = observed_class(name, cma_heaps)
            classes[cls] = classes.get(cls, 0) + page_align(size)
            if cls == "contiguous":
                cma.append(size)
        area = model.area(cma) if cma else 0
        rows.append((classes, area))
        for cls, value in classes.items():
            peak[cls] = max(peak.get(cls, 0), value)
    return Observed(peak, max(a for _c, a in rows), tuple(rows))
